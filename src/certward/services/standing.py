"""The status of a stored certificate, the one place every surface asks (the inventory,
the console, the metrics and the webhooks).

It applies `certward.expiry.standing` with what the rows hold: a certificate certward
renews by itself (every managed certificate, an ACME custom-domain certificate: a
``renew_after`` is stored) is judged by its renewal; an uploaded one by the window
the operator set for its kind (``CERTWARD_EXPIRES_SOON_DAYS_*``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from certward.expiry import Renewal, Standing, standing
from certward.model import ManagedCertificate, TlsCertificate
from certward.settings import Settings


class CertificateKind(StrEnum):
    MANAGED = "managed"
    CUSTOM_DOMAIN = "custom-domain"
    CLIENT = "client"
    AUTHORITY = "authority"


def expires_soon_window(settings: Settings, kind: CertificateKind) -> timedelta:
    """The configured expires-soon window of an uploaded certificate of ``kind``."""
    if kind is CertificateKind.CLIENT:
        return settings.expires_soon_client_certificate
    if kind is CertificateKind.AUTHORITY:
        return settings.expires_soon_authority
    return settings.expires_soon_tls_certificate


def renewal_of(row: ManagedCertificate | TlsCertificate) -> Renewal | None:
    """How certward renews ``row`` by itself; None for a certificate it never renews."""
    if row.renew_after is None:
        return None
    return Renewal(renew_after=row.renew_after, attempts=row.attempts, last_error=row.last_error)


def judge(
    settings: Settings,
    kind: CertificateKind,
    not_before: datetime | None,
    not_after: datetime | None,
    *,
    at: datetime,
    renewal: Renewal | None = None,
) -> Standing:
    """Where a certificate of ``kind`` stands at ``at``; ``renewal`` for one certward renews."""
    return standing(
        not_before,
        not_after,
        at=at,
        soon=expires_soon_window(settings, kind),
        renewal=renewal,
    )


def judge_row(
    settings: Settings, row: ManagedCertificate | TlsCertificate, *, at: datetime
) -> Standing:
    """`judge` for a managed or custom-domain certificate row."""
    kind = (
        CertificateKind.MANAGED
        if isinstance(row, ManagedCertificate)
        else CertificateKind.CUSTOM_DOMAIN
    )
    return judge(settings, kind, row.not_before, row.not_after, at=at, renewal=renewal_of(row))


__all__ = ["CertificateKind", "expires_soon_window", "judge", "judge_row", "renewal_of"]
