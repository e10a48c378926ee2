"""Where a certificate stands in its life at a given moment (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

EXPIRES_SOON = timedelta(days=30)


class CertificateStatus(StrEnum):
    """Computed from dates, never stored."""

    PENDING = "pending"  # a CSR waiting for its signed certificate
    UPCOMING = "upcoming"  # not valid yet
    VALID = "valid"
    EXPIRES_SOON = "expires-soon"  # valid, ending within `EXPIRES_SOON`
    EXPIRED = "expired"


def certificate_status(
    not_before: datetime | None,
    not_after: datetime | None,
    *,
    at: datetime,
    soon: timedelta = EXPIRES_SOON,
) -> CertificateStatus:
    """The status at ``at``; a certificate without dates is still pending."""
    if not_before is None or not_after is None:
        return CertificateStatus.PENDING
    if at < not_before:
        return CertificateStatus.UPCOMING
    if at > not_after:
        return CertificateStatus.EXPIRED
    if not_after - at < soon:
        return CertificateStatus.EXPIRES_SOON
    return CertificateStatus.VALID
