"""ACME certificates of an app's custom domains: ordered on request, renewed by the worker.

Ordered (`order_from_acme`, with ``CERTWARD_ACME_DIRECTORY`` set) over HTTP-01, so
every name must already point at the platform's data plane; the order runs outside any
transaction. The worker renews them (`renew_due_acme`) from
``renew_after``, about two thirds into their own lifetime, the way managed
certificates are renewed, from the same renewal queue
(`certward.services.renewal_queue`): claimed with a lease, ordered outside a
transaction, a failure retried with backoff. Since material never changes, a renewal is a new row:
one short transaction inserts it, moves every custom domain of the old certificate to
it, and deletes the old one (audited as ``tls_certificate.renew`` with both ids). The
data plane sees the domains switch at once; the app keeps one certificate per order,
not a trail of expiring ones (whose expiry notices would be false alarms). With renewal
information from the CA (RFC 9773), ``renew_after`` follows its suggested window
(`certward.services.acme_issuing.renewal_plan`), a row claimed before its window only
gets its next ``renew_after``, and the renewal names the certificate it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import Conflict, InvalidRequest, IssuerUnavailable, RefusalCode
from certward.issuing.acme import AcmeError
from certward.issuing.renewal import CUSTOM_DOMAIN_RENEWAL_MIN_DELAY
from certward.model import App, Base, CustomDomain, Environment, TlsCertificate
from certward.pki.convert import private_key_der
from certward.pki.inspect import describe_certificate
from certward.pki.names import is_ip
from certward.services import audit, renewal_queue
from certward.services.acme_issuing import (
    AcmeOrder,
    acme_enabled,
    order_certificate,
    renewal_plan,
)
from certward.services.context import Context
from certward.services.lookups import find_app, require_licensed
from certward.services.renewal_queue import RELEASED, RenewalReport
from certward.services.tls_certificates import (
    ACME,
    TlsCertificateView,
    certificate_state,
    certificate_view,
    check_description,
    csr_names,
    key_aad,
    key_type_of,
    pem_of,
    sans_of,
)
from certward.vocabulary import Role

_TABLE = Base.metadata.tables[TlsCertificate.__tablename__]
_RENEWAL = Principal(token_id=None, role=Role.ADMIN)  # the worker, acting for the platform


def order_from_acme(
    ctx: Context,
    principal: Principal,
    app_name: str,
    *,
    sans: Sequence[str],
    description: str = "",
) -> TlsCertificateView:
    """A certificate for ``sans`` from the ACME CA, with a key certward generates and keeps.

    Validated over HTTP-01, so each name must already resolve to the platform's data
    plane; renewed by the worker (see the module). The order holds no transaction while
    the CA validates. 403 unless licensed; 409 ``acme-not-configured`` without an ACME
    directory; 422 for names HTTP-01 cannot validate (wildcards, IP addresses) or that
    are not the app's to ask for; 503 ``issuer-unavailable`` when the CA cannot be
    reached or does not issue (its reason in the message).
    """
    check_description(description)
    names = _acme_names(ctx, sans)
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        if not acme_enabled(ctx):
            raise Conflict(
                "No ACME CA is configured on this platform (CERTWARD_ACME_DIRECTORY): upload "
                "a certificate, or create a CSR and have it signed, instead.",
                code=RefusalCode.ACME_NOT_CONFIGURED,
            )
        _refuse_names_of_other_apps(session, app, names)
    try:
        order = order_certificate(ctx, names)
    except AcmeError as exc:
        raise IssuerUnavailable(
            f"{exc} Nothing was stored; make sure every name resolves to the platform and "
            "try again.",
            detail={"sans": list(names)},
        ) from exc
    renew_at = _renew_after(ctx, order)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        row = _acme_row(
            session, ctx, app.id, order, names=names, description=description, renew_at=renew_at
        )
        audit.record(
            session,
            ctx,
            principal,
            action="tls_certificate.acme",
            object_type="tls_certificate",
            object_id=row.id,
            app_id=app.id,
            after=certificate_state(row),
        )
        return certificate_view(session, ctx, app, row)


def renew_due_acme(ctx: Context, *, worker: str, limit: int) -> RenewalReport:
    """Renew up to ``limit`` ACME certificates that are due (what a worker calls).

    Claimed in one statement with a lease (any number of workers at once), ordered with
    no transaction open, then each stored in its own short transaction: a new row, the
    domains moved to it, the old row deleted (see the module). A failed order is
    recorded on the old row with backoff; the domains keep the old certificate.
    """
    claims = _claim_acme(ctx, worker, limit)
    renewed = failed = rescheduled = 0
    for certificate_id, names, attempts, certificate_pem in claims:
        current = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
        plan = renewal_plan(ctx, current)
        if plan.ask_again_at is not None and plan.renew_at > ctx.clock.now():
            rescheduled += _reschedule(ctx, worker, certificate_id, plan.next_at)
            continue
        try:
            order = order_certificate(ctx, names, replacing=current)
        except AcmeError as exc:
            failed += _record_failure(ctx, worker, certificate_id, attempts, str(exc))
        else:
            renewed += _store_renewal(ctx, worker, certificate_id, order, _renew_after(ctx, order))
    return RenewalReport(
        claimed=len(claims),
        renewed=renewed,
        failed=failed,
        rescheduled=rescheduled,
        lost=len(claims) - renewed - failed - rescheduled,
    )


def _renew_after(ctx: Context, order: AcmeOrder) -> datetime:
    """The ``renew_after`` of a certificate just ordered (`renewal_plan`)."""
    earliest = ctx.clock.now() + CUSTOM_DOMAIN_RENEWAL_MIN_DELAY
    return renewal_plan(ctx, order.certificate, earliest=earliest).next_at


def _acme_names(ctx: Context, sans: Sequence[str]) -> tuple[str, ...]:
    """The names of an ACME order, normalized like a CSR's, without repeats; 422 for what
    HTTP-01 cannot validate and for names of the platform's own domain."""
    if not sans:
        raise InvalidRequest(
            "Name at least one host name in sans.", code=RefusalCode.INVALID_HOSTNAME
        )
    names = csr_names(sans[0], sans[1:], check_common_name=False)
    for name in names:
        if name.startswith("*."):
            raise InvalidRequest(
                f"{name} is a wildcard: the ACME CA validates names over HTTP-01, which "
                "cannot prove a wildcard. Name each host, or create a CSR instead.",
                code=RefusalCode.INVALID_HOSTNAME,
            )
        if is_ip(name):
            raise InvalidRequest(
                f"{name} is an IP address: ACME certificates here are for DNS host names.",
                code=RefusalCode.INVALID_HOSTNAME,
            )
        domain = ctx.settings.platform_domain
        if name == domain or name.endswith("." + domain):
            raise InvalidRequest(
                f"{name} is under the platform domain {domain}, whose names have managed "
                "certificates already; order certificates for names of your own.",
                code=RefusalCode.RESERVED_HOSTNAME,
            )
    return names


def _refuse_names_of_other_apps(session: Session, app: App, names: Sequence[str]) -> None:
    """409 when another app serves one of ``names`` as a custom domain (without saying
    which app: that is not the caller's to know)."""
    taken = session.scalars(
        select(CustomDomain.hostname)
        .join(Environment, Environment.id == CustomDomain.environment_id)
        .where(CustomDomain.hostname.in_(list(names)), Environment.app_id != app.id)
        .order_by(CustomDomain.hostname)
    ).all()
    if taken:
        raise Conflict(
            f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} served by another app "
            "of the platform: a certificate for it cannot be ordered here.",
            code=RefusalCode.HOSTNAME_TAKEN,
            detail={"hostnames": list(taken)},
        )


def _acme_row(
    session: Session,
    ctx: Context,
    app_id: str,
    order: AcmeOrder,
    *,
    names: Sequence[str],
    description: str,
    renew_at: datetime,
) -> TlsCertificate:
    """A new row for an ordered certificate (flushed, key sealed), due at ``renew_at``."""
    now = ctx.clock.now()
    certificate = order.certificate
    info = describe_certificate(certificate)
    row = TlsCertificate(
        app_id=app_id,
        origin=ACME,
        description=description,
        common_name=names[0],
        key_type=key_type_of(order.private_key),
        subject=info.subject,
        issuer=info.issuer,
        serial=info.serial,
        not_before=info.not_before,
        not_after=info.not_after,
        sha256_fingerprint=info.sha256_fingerprint,
        sans=list(sans_of(certificate)),
        certificate_pem=pem_of([certificate]),
        chain_pem=order.chain_pem,
        renew_after=renew_at,
        attempts=0,
        private_key_ciphertext=b"",
        key_id=ctx.secrets.keyring.active.key_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()  # assigns the id the ciphertext is bound to
    row.private_key_ciphertext = ctx.secrets.encrypt(
        private_key_der(order.private_key), aad=key_aad(row.id)
    )
    return row


def _claim_acme(
    ctx: Context, worker: str, limit: int
) -> list[tuple[str, tuple[str, ...], int, str]]:
    """Mark up to ``limit`` due ACME certificates as this worker's: (id, names, attempts,
    certificate PEM)."""
    with ctx.database.transaction() as session:
        claimed = renewal_queue.claim(
            session.connection(),
            _TABLE,
            worker=worker,
            now=ctx.clock.now(),
            limit=limit,
            returning=(_TABLE.c.id, _TABLE.c.sans, _TABLE.c.attempts, _TABLE.c.certificate_pem),
        )
        return [(r.id, tuple(r.sans), r.attempts, r.certificate_pem) for r in claimed]


def _reschedule(ctx: Context, worker: str, certificate_id: str, renew_at: datetime) -> int:
    """Give a certificate this worker holds its next ``renew_after`` and release it (1),
    or do nothing if it lost the claim (0)."""
    with ctx.database.transaction() as session:
        result = session.execute(
            update(TlsCertificate)
            .where(TlsCertificate.id == certificate_id, TlsCertificate.claimed_by == worker)
            .values(renew_after=renew_at, **RELEASED)
        )
        return 1 if getattr(result, "rowcount", 0) == 1 else 0


def _store_renewal(
    ctx: Context, worker: str, certificate_id: str, order: AcmeOrder, renew_at: datetime
) -> int:
    """Replace the certificate this worker holds by its renewal (1), or store nothing
    when the claim was lost or the certificate deleted meanwhile (0)."""
    with ctx.database.transaction() as session:
        old = session.scalar(
            select(TlsCertificate)
            .where(TlsCertificate.id == certificate_id, TlsCertificate.claimed_by == worker)
            .with_for_update()
        )
        if old is None:
            return 0
        new = _acme_row(
            session,
            ctx,
            old.app_id,
            order,
            names=tuple(old.sans),
            description=old.description,
            renew_at=renew_at,
        )
        hostnames = list(
            session.scalars(
                update(CustomDomain)
                .where(CustomDomain.tls_certificate_id == old.id)
                .values(tls_certificate_id=new.id)
                .returning(CustomDomain.hostname)
            )
        )
        audit.record(
            session,
            ctx,
            _RENEWAL,
            action="tls_certificate.renew",
            object_type="tls_certificate",
            object_id=old.id,
            app_id=old.app_id,
            before=certificate_state(old),
            after=certificate_state(new),
            detail={"replacement_id": new.id, "hostnames": sorted(hostnames)},
        )
        session.delete(old)
        return 1


def _record_failure(
    ctx: Context, worker: str, certificate_id: str, attempts: int, error: str
) -> int:
    """Back off on a certificate this worker holds (1), or do nothing if it lost it (0)."""
    with ctx.database.transaction() as session:
        held = renewal_queue.record_failure(
            session.connection(),
            _TABLE,
            certificate_id,
            worker=worker,
            attempts=attempts,
            error=f"ACME renewal failed: {error}",
            now=ctx.clock.now(),
        )
        return 1 if held else 0
