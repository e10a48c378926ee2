"""Where a certificate stands in its life at a given moment (pure).

Two rules decide whether a valid certificate is ``expires-soon``, by who renews it:

- one that certward renews by itself (managed certificates, ACME custom-domain
  certificates: a `Renewal` is passed) stays ``valid`` until its renewal is overdue,
  `OVERDUE_GRACE_FRACTION` of its lifetime (at least `MIN_OVERDUE_GRACE`) after the
  ``renew_after`` the renewal worker goes by; ``expires-soon`` then means the renewal
  window passed without a renewal, and the reason says why (the last failure, or that
  no renewal was attempted yet). Its own short lifetime is never news by itself;
- an uploaded one (a person renews it) is ``expires-soon`` once less than its kind's
  window (`EXPIRES_SOON` unless configured) is left. The window is not shortened for a
  short certificate: one whose whole lifetime is shorter than the window is
  ``expires-soon`` from its first day, because nobody but a person replaces it before
  it expires (an operator who uploads such certificates on purpose sets a shorter
  window for their kind).

`standing` decides for every surface (inventory, console, metrics, webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

EXPIRES_SOON = timedelta(days=30)
OVERDUE_GRACE_FRACTION = 1 / 10  # of the lifetime, after renew_after, before it is overdue
MIN_OVERDUE_GRACE = timedelta(hours=1)
NO_RENEWAL_ATTEMPTED = "no renewal attempted yet"


class CertificateStatus(StrEnum):
    """Computed from dates, never stored."""

    PENDING = "pending"  # a CSR waiting for its signed certificate
    UPCOMING = "upcoming"  # not valid yet
    VALID = "valid"
    EXPIRES_SOON = "expires-soon"  # valid, but expiring without a renewal on its way
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Renewal:
    """How certward renews a certificate by itself: when it is due, and how it went."""

    renew_after: datetime
    attempts: int = 0  # failures in a row since the last success
    last_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """A status, and for ``expires-soon`` the reason (None otherwise)."""

    status: CertificateStatus
    reason: str | None = None


def renewal_overdue_at(
    not_before: datetime, not_after: datetime, renew_after: datetime
) -> datetime:
    """When a renewal due at ``renew_after`` counts as overdue: a grace of
    `OVERDUE_GRACE_FRACTION` of the lifetime (at least `MIN_OVERDUE_GRACE`) later."""
    grace = max(MIN_OVERDUE_GRACE, (not_after - not_before) * OVERDUE_GRACE_FRACTION)
    return renew_after + grace


def standing(
    not_before: datetime | None,
    not_after: datetime | None,
    *,
    at: datetime,
    soon: timedelta = EXPIRES_SOON,
    renewal: Renewal | None = None,
) -> Standing:
    """Where the certificate stands at ``at`` (see the module docstring).

    ``soon`` is the window of an uploaded certificate's kind; ``renewal`` is given for a
    certificate that certward renews by itself, and ``soon`` then plays no part.
    """
    if not_before is None or not_after is None:
        return Standing(status=CertificateStatus.PENDING)
    if at < not_before:
        return Standing(status=CertificateStatus.UPCOMING)
    if at > not_after:
        return Standing(status=CertificateStatus.EXPIRED)
    if renewal is not None:
        if at <= renewal_overdue_at(not_before, not_after, renewal.renew_after):
            return Standing(status=CertificateStatus.VALID)
        if renewal.attempts > 0 or renewal.last_error:
            failure = renewal.last_error or "unknown failure"
            reason = f"renewal overdue: {renewal.attempts} failed attempt(s), last: {failure}"
        else:
            reason = f"renewal overdue: {NO_RENEWAL_ATTEMPTED}"
        return Standing(status=CertificateStatus.EXPIRES_SOON, reason=reason)
    if not_after - at < soon:
        return Standing(
            status=CertificateStatus.EXPIRES_SOON,
            reason=f"expires within {_duration(soon)} and is not renewed by certward",
        )
    return Standing(status=CertificateStatus.VALID)


def certificate_status(
    not_before: datetime | None,
    not_after: datetime | None,
    *,
    at: datetime,
    soon: timedelta = EXPIRES_SOON,
    renewal: Renewal | None = None,
) -> CertificateStatus:
    """The status at ``at`` (`standing` without its reason); without dates: pending."""
    return standing(not_before, not_after, at=at, soon=soon, renewal=renewal).status


def _duration(window: timedelta) -> str:
    """``30 days`` for whole days, ``36 hours`` (rounded) otherwise."""
    if window >= timedelta(days=1) and window % timedelta(days=1) == timedelta(0):
        days = window // timedelta(days=1)
        return f"{days} day{'s' if days != 1 else ''}"
    hours = max(1, round(window / timedelta(hours=1)))
    return f"{hours} hour{'s' if hours != 1 else ''}"
