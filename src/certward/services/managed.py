"""Managed certificates: every environment's default hostname on a short-lived certificate
the platform CA issues when the environment is created and renews by itself.

One row per issuance; an environment's live certificate is its ``active`` row, the
rows it replaced are ``superseded``. Renewal is due at the row's ``renew_after``
(`certward.issuing.renewal`, from the certificate's own dates). `renew_due` is what a
worker calls, any number of workers at once:

1. **claim** (one short transaction): due rows are marked ``claimed_by`` this worker
   until ``claimed_until`` (a lease); on PostgreSQL they are picked with ``FOR UPDATE
   SKIP LOCKED``, so concurrent workers claim disjoint rows, on SQLite writers take
   turns anyway;
2. **issue** (no transaction open): a key and a certificate per claimed row;
3. **store** (one short transaction): each claimed row still held by this worker is
   marked ``superseded`` (a compare-and-set on ``claimed_by``) and only then its
   replacement inserted; a row whose issuance failed gets ``attempts + 1``, a
   ``next_attempt_at`` with backoff and its ``last_error``.

A worker that dies between 1 and 3 leaves its claims to expire with the lease; one
whose lease expired before it stored loses the compare-and-set and stores nothing.
Either way no certificate is replaced twice.

With ``CERTWARD_ACME_DIRECTORY`` set the certificates come from that ACME CA instead
(`certward.services.acme_issuing`): rows get ``issuer="acme"``, no ``issuing_ca_id``
and the chain the CA sent. An ACME failure is a renewal failure like any other (backoff);
at environment creation it refuses with `IssuerUnavailable` (503).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from certward.access import Action, Principal
from certward.errors import CertwardError, IssuerUnavailable, NotFound
from certward.issuing.acme import AcmeError
from certward.issuing.ca import generate_key, issue_server_certificate
from certward.issuing.renewal import renew_after, retry_at
from certward.model import Base, Environment, ManagedCertificate, new_id
from certward.pki.convert import private_key_der
from certward.pki.inspect import subject_of
from certward.secrets import private_key_aad
from certward.services.access import find_environment
from certward.services.acme_issuing import acme_enabled, acme_issuer
from certward.services.context import Context
from certward.services.platform_ca import IssuingCa, issuing_ca, retire_unused

ACTIVE = "active"
SUPERSEDED = "superseded"
BUILTIN = "builtin"
ACME = "acme"
CLAIM_LEASE = timedelta(minutes=5)
MIN_RENEWAL_DELAY = timedelta(minutes=1)  # never due again sooner than this after issuance
MAX_ERROR_LENGTH = 1000

managed_key_aad = private_key_aad("managed_certificates")

_rng = random.SystemRandom()


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagedCertificateView:
    """An environment's live managed certificate: public material and its renewal state."""

    hostname: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    renew_after: datetime
    serial: str
    sha256_fingerprint: str
    certificate_pem: str
    chain_pem: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalReport:
    """What one `renew_due` pass did."""

    claimed: int
    renewed: int
    failed: int
    lost: int  # claims another worker took over (lease expired) or rows deleted meanwhile


class RenewalCounters:
    """Totals of this process's renewal passes (for metrics), safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._renewed = 0
        self._failed = 0

    def add(self, report: RenewalReport) -> None:
        with self._lock:
            self._renewed += report.renewed
            self._failed += report.failed

    @property
    def renewed(self) -> int:
        return self._renewed

    @property
    def failed(self) -> int:
        return self._failed


COUNTERS = RenewalCounters()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Claim:
    id: str
    environment_id: str
    hostname: str
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Issued:
    """A freshly issued certificate, whoever issued it."""

    issuer: str  # BUILTIN or ACME
    issuing_ca_id: str | None
    certificate: x509.Certificate
    chain_pem: str
    private_key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    claim: _Claim
    row: dict[str, Any] | None = None  # the replacement's column values, when issued
    error: str | None = None


def issue_for_environment(
    session: Session, ctx: Context, environment: Environment
) -> ManagedCertificate:
    """Issue the first certificate of a new environment, in the caller's transaction.

    `IssuerUnavailable` when the ACME CA (if configured) does not issue.
    """
    now = ctx.clock.now()
    if acme_enabled(ctx):
        try:
            issued = _issue_acme(ctx, environment.hostname)
        except AcmeError as exc:
            raise IssuerUnavailable(
                f"No certificate for {environment.hostname}: {exc} The environment was not "
                "created; try again later.",
                detail={"hostname": environment.hostname},
            ) from exc
    else:
        issued = _issue(issuing_ca(session, ctx), environment.hostname, ctx, now)
    row = ManagedCertificate(**_row_values(ctx, environment.id, environment.hostname, issued, now))
    session.add(row)
    return row


def get_managed_certificate(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> ManagedCertificateView:
    """The environment's live managed certificate (READ)."""
    with ctx.database.reading() as session:
        _, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        row = session.scalar(
            select(ManagedCertificate)
            .where(
                ManagedCertificate.environment_id == environment.id,
                ManagedCertificate.state == ACTIVE,
            )
            .order_by(ManagedCertificate.not_after.desc())
            .limit(1)
        )
        if row is None:
            raise NotFound(
                f"The environment {env_name!r} has no managed certificate yet.",
                code="managed-certificate-not-found",
            )
        return _view(row)


def renew_due(ctx: Context, *, worker: str, limit: int) -> RenewalReport:
    """Renew up to ``limit`` certificates that are due (see the module docstring)."""
    claims = _claim(ctx, worker, limit)
    if not claims:
        return RenewalReport(claimed=0, renewed=0, failed=0, lost=0)
    outcomes = _issue_all(ctx, claims, ctx.clock.now())
    report = _store(ctx, worker, outcomes)
    COUNTERS.add(report)
    return report


def _claim(ctx: Context, worker: str, limit: int) -> list[_Claim]:
    with ctx.database.transaction() as session:
        now = ctx.clock.now()
        due = session.execute(
            select(
                ManagedCertificate.id,
                ManagedCertificate.environment_id,
                ManagedCertificate.hostname,
                ManagedCertificate.attempts,
            )
            .where(
                ManagedCertificate.state == ACTIVE,
                ManagedCertificate.renew_after <= now,
                or_(
                    ManagedCertificate.next_attempt_at.is_(None),
                    ManagedCertificate.next_attempt_at <= now,
                ),
                or_(
                    ManagedCertificate.claimed_until.is_(None),
                    ManagedCertificate.claimed_until < now,
                ),
            )
            .order_by(ManagedCertificate.renew_after)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claims = [
            _Claim(
                id=r.id, environment_id=r.environment_id, hostname=r.hostname, attempts=r.attempts
            )
            for r in due
        ]
        if claims:
            session.execute(
                update(ManagedCertificate)
                .where(ManagedCertificate.id.in_([c.id for c in claims]))
                .values(claimed_by=worker, claimed_until=now + CLAIM_LEASE)
            )
        return claims


def _issue_all(ctx: Context, claims: Sequence[_Claim], now: datetime) -> list[_Outcome]:
    """Keys, certificates and sealed rows for every claim, before the store transaction."""
    if acme_enabled(ctx):
        return _issue_all_acme(ctx, claims, now)
    try:
        with ctx.database.reading() as session:
            issuer = issuing_ca(session, ctx)
    except CertwardError as exc:
        reason = f"The platform CA cannot issue: {exc}"
        return [_Outcome(claim=c, error=reason) for c in claims]
    outcomes = []
    for claim in claims:
        try:
            issued = _issue(issuer, claim.hostname, ctx, now)
        except ValueError as exc:
            outcomes.append(_Outcome(claim=claim, error=f"Issuance failed: {exc}"))
        else:
            row = _row_values(ctx, claim.environment_id, claim.hostname, issued, now)
            outcomes.append(_Outcome(claim=claim, row=row))
    return outcomes


def _issue_all_acme(ctx: Context, claims: Sequence[_Claim], now: datetime) -> list[_Outcome]:
    outcomes = []
    for claim in claims:
        try:
            issued = _issue_acme(ctx, claim.hostname)
        except (AcmeError, ValueError) as exc:
            outcomes.append(_Outcome(claim=claim, error=f"ACME issuance failed: {exc}"))
        else:
            row = _row_values(ctx, claim.environment_id, claim.hostname, issued, now)
            outcomes.append(_Outcome(claim=claim, row=row))
    return outcomes


def _store(ctx: Context, worker: str, outcomes: Sequence[_Outcome]) -> RenewalReport:
    """Supersede the rows this worker still holds and insert their replacements; record
    failures with backoff. One transaction, a few statements for the whole batch."""
    table = Base.metadata.tables[ManagedCertificate.__tablename__]
    issued = {o.claim.id: o.row for o in outcomes if o.row is not None}
    failures = [o for o in outcomes if o.row is None]
    failed = 0
    with ctx.database.transaction() as session:
        connection = session.connection()
        now = ctx.clock.now()
        held = (table.c.state == ACTIVE, table.c.claimed_by == worker)
        superseded: set[str] = set()
        if issued:
            # Compare-and-set: only the worker that still holds a claim replaces the row.
            superseded = set(
                connection.scalars(
                    update(table)
                    .where(table.c.id.in_(list(issued)), *held)
                    .values(state=SUPERSEDED, claimed_by=None, claimed_until=None)
                    .returning(table.c.id)
                )
            )
        if superseded:
            connection.execute(insert(table), [issued[i] for i in superseded])
        for outcome in failures:
            attempts = outcome.claim.attempts + 1
            result = connection.execute(
                update(table)
                .where(table.c.id == outcome.claim.id, *held)
                .values(
                    attempts=attempts,
                    next_attempt_at=retry_at(now, attempts),
                    last_error=(outcome.error or "unknown failure")[:MAX_ERROR_LENGTH],
                    claimed_by=None,
                    claimed_until=None,
                )
            )
            failed += 1 if result.rowcount == 1 else 0
        retire_unused(session, now)
    renewed = len(superseded)
    return RenewalReport(
        claimed=len(outcomes), renewed=renewed, failed=failed, lost=len(outcomes) - renewed - failed
    )


def _issue(issuer: IssuingCa, hostname: str, ctx: Context, now: datetime) -> _Issued:
    issued = issue_server_certificate(
        issuer.authority,
        hostname,
        at=now,
        lifetime=ctx.settings.managed_cert_lifetime,
        issuer_locations=issuer.locations,
        chain=issuer.chain,
    )
    return _Issued(
        issuer=BUILTIN,
        issuing_ca_id=issuer.id,
        certificate=issued.certificate,
        chain_pem=issuer.chain_pem,
        private_key=issued.private_key,
    )


def _issue_acme(ctx: Context, hostname: str) -> _Issued:
    """A key and a certificate for ``hostname`` from the ACME CA; `AcmeError` if not."""
    key = generate_key()
    certificate_pem, chain_pem = acme_issuer(ctx).issue([hostname], key)
    return _Issued(
        issuer=ACME,
        issuing_ca_id=None,
        certificate=x509.load_pem_x509_certificate(certificate_pem.encode()),
        chain_pem=chain_pem,
        private_key=key,
    )


def _row_values(
    ctx: Context,
    environment_id: str,
    hostname: str,
    issued: _Issued,
    now: datetime,
) -> dict[str, Any]:
    """The row of a freshly issued certificate, its renewal scheduled from its own dates."""
    row_id = new_id()
    certificate = issued.certificate
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return {
        "id": row_id,
        "environment_id": environment_id,
        "hostname": hostname,
        "issuer": issued.issuer,
        "issuing_ca_id": issued.issuing_ca_id,
        "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "chain_pem": issued.chain_pem,
        "serial": format(certificate.serial_number, "x"),  # positive (RFC 5280)
        "sha256_fingerprint": certificate.fingerprint(hashes.SHA256()).hex(),
        "not_before": not_before,
        "not_after": not_after,
        "renew_after": renew_after(
            not_before, not_after, rng=_rng, earliest=now + MIN_RENEWAL_DELAY
        ),
        "private_key_ciphertext": ctx.secrets.encrypt(
            private_key_der(issued.private_key), aad=managed_key_aad(row_id)
        ),
        "key_id": ctx.secrets.keyring.active.key_id,
        "state": ACTIVE,
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": None,
        "claimed_by": None,
        "claimed_until": None,
        "created_at": now,
    }


def _view(row: ManagedCertificate) -> ManagedCertificateView:
    certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    return ManagedCertificateView(
        hostname=row.hostname,
        subject=subject_of(certificate),
        issuer=certificate.issuer.rfc4514_string(),
        not_before=row.not_before,
        not_after=row.not_after,
        renew_after=row.renew_after,
        serial=row.serial,
        sha256_fingerprint=row.sha256_fingerprint,
        certificate_pem=row.certificate_pem,
        chain_pem=row.chain_pem,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )
