"""The hostnames an environment serves: its managed default hostname and custom domains.

A hostname belongs to one environment of the whole platform: custom domains are unique
among themselves (a database constraint) and never equal a default hostname; names
under the platform domain are the platform's own, so no custom domain may squat on the
default hostname of an environment created later. A custom domain is served with one
of its app's TLS certificates, which must cover it (RFC 6125 wildcards).

Changes are live, never staged: the data plane reads `live_hostnames`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal, visible
from certward.errors import Conflict, InvalidRequest, NotFound, RefusalCode
from certward.expiry import CertificateStatus
from certward.model import App, CustomDomain, Environment, ManagedCertificate, TlsCertificate
from certward.pki.inspect import describe_certificate
from certward.pki.names import HostnameError, covers, is_ip, normalize_hostname
from certward.pki.problems import ProblemCode
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment, require_licensed
from certward.services.standing import judge_row
from certward.services.tls_certificates import find_tls_certificate, leaf_of, require_usable

MANAGED = "managed"
CUSTOM = "custom"
ACTIVE = "active"  # the state of a managed certificate that is in service


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSummary:
    """The certificate a hostname is served with."""

    id: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    status: CertificateStatus
    status_reason: str | None = None  # why it is expires-soon (`certward.services.standing`)


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainView:
    """A hostname of an environment: ``managed`` (the default one) or ``custom``.

    ``certificate`` is None for a default hostname whose certificate is not issued yet.
    """

    hostname: str
    kind: str
    certificate: CertificateSummary | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveHostname:
    """What the data plane needs to serve one hostname.

    ``certificate_table`` and ``certificate_id`` name the row holding the certificate,
    chain and encrypted key (``private_key_aad(certificate_table)``); None when a default
    hostname has no certificate yet. A row's material never changes, so the id is a
    cache key: a renewal or a replacement shows up as another id.
    """

    hostname: str
    kind: str
    environment_id: str
    certificate_table: str
    certificate_id: str | None


def add_custom_domain(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    *,
    hostname: str,
    certificate_id: str,
) -> DomainView:
    """Serve ``hostname`` from the environment with one of the app's TLS certificates.

    422 when the certificate cannot serve it (pending, expired, not covering it) or the
    name is the platform's; 409 when another environment already has it.
    """
    host = _normalize(hostname)
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        certificate = find_tls_certificate(session, app, certificate_id, for_update=True)
        now = ctx.clock.now()
        require_usable(certificate, now, role="certificate")
        if not covers(leaf_of(certificate), host):
            raise InvalidRequest(
                f"The certificate {certificate.id} does not cover {host}: its subject "
                f"alternative names are {', '.join(certificate.sans) or 'none'} (a wildcard "
                "covers exactly one label; the common name is not used for matching).",
                code=ProblemCode.NAME_NOT_COVERED.value,
            )
        _refuse_taken(session, principal, host)
        _refuse_platform_name(ctx, host)
        domain = CustomDomain(
            environment_id=environment.id,
            hostname=host,
            tls_certificate_id=certificate.id,
            created_at=now,
        )
        session.add(domain)
        try:
            session.flush()
        except IntegrityError as exc:  # another request took the name in between
            raise Conflict(_taken_message(host), code=RefusalCode.HOSTNAME_TAKEN) from exc
        audit.record(
            session,
            ctx,
            principal,
            action="custom_domain.create",
            object_type="custom_domain",
            object_id=host,
            app_id=app.id,
            after={
                "hostname": host,
                "environment": environment.name,
                "tls_certificate_id": certificate.id,
            },
        )
        return DomainView(hostname=host, kind=CUSTOM, certificate=_summary(ctx, certificate, now))


def remove_custom_domain(
    ctx: Context, principal: Principal, app_name: str, env_name: str, hostname: str
) -> None:
    """Stop serving the custom domain (at once); its certificate stays."""
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        try:
            host = normalize_hostname(hostname)
        except HostnameError:
            host = hostname
        domain = session.scalar(
            select(CustomDomain).where(
                CustomDomain.environment_id == environment.id, CustomDomain.hostname == host
            )
        )
        if domain is None:
            raise NotFound(
                f"Environment {env_name!r} has no custom domain {hostname!r}.",
                code=RefusalCode.CUSTOM_DOMAIN_NOT_FOUND,
            )
        audit.record(
            session,
            ctx,
            principal,
            action="custom_domain.delete",
            object_type="custom_domain",
            object_id=host,
            app_id=app.id,
            before={
                "hostname": host,
                "environment": environment.name,
                "tls_certificate_id": domain.tls_certificate_id,
            },
        )
        session.delete(domain)


def list_domains(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> list[DomainView]:
    """The default hostname (with its newest active managed certificate), then custom
    domains by name. Free apps have a default hostname too, so no plan is required."""
    with ctx.database.reading() as session:
        _, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        now = ctx.clock.now()
        managed = session.scalar(
            select(ManagedCertificate)
            .where(
                ManagedCertificate.environment_id == environment.id,
                ManagedCertificate.state == ACTIVE,
            )
            .order_by(ManagedCertificate.created_at.desc(), ManagedCertificate.id.desc())
            .limit(1)
        )
        domains = [
            DomainView(
                hostname=environment.hostname,
                kind=MANAGED,
                certificate=None if managed is None else _managed_summary(ctx, managed, now),
            )
        ]
        rows = session.execute(
            select(CustomDomain.hostname, TlsCertificate)
            .join(TlsCertificate, TlsCertificate.id == CustomDomain.tls_certificate_id)
            .where(CustomDomain.environment_id == environment.id)
            .order_by(CustomDomain.hostname)
        )
        domains += [
            DomainView(hostname=host, kind=CUSTOM, certificate=_summary(ctx, certificate, now))
            for host, certificate in rows
        ]
        return domains


def live_hostnames(
    session: Session, hostnames: Collection[str] | None = None
) -> dict[str, LiveHostname]:
    """Every hostname the platform serves (or those of ``hostnames`` it serves), with
    its environment and certificate row.

    Three plain queries, whatever the number of environments: default hostnames,
    active managed certificates (the newest per environment wins), custom domains.
    With ``hostnames``, the same queries restricted to them (in chunks).
    """
    if hostnames is None:
        return _live(session, None)
    names = sorted(set(hostnames))
    served: dict[str, LiveHostname] = {}
    for start in range(0, len(names), _CHUNK):
        served |= _live(session, names[start : start + _CHUNK])
    return served


_CHUNK = 500


def _live(session: Session, names: list[str] | None) -> dict[str, LiveHostname]:
    defaults = select(Environment.hostname, Environment.id)
    domains = select(
        CustomDomain.hostname, CustomDomain.environment_id, CustomDomain.tls_certificate_id
    )
    managed = (
        select(ManagedCertificate.environment_id, ManagedCertificate.id)
        .where(ManagedCertificate.state == ACTIVE)
        .order_by(ManagedCertificate.created_at, ManagedCertificate.id)
    )
    if names is not None:
        defaults = defaults.where(Environment.hostname.in_(names))
        domains = domains.where(CustomDomain.hostname.in_(names))
    found = session.execute(defaults).all()
    if names is not None:  # by environment id: the (environment_id, state) index
        managed = managed.where(ManagedCertificate.environment_id.in_([e for _, e in found]))
    newest: dict[str, str] = {}
    for environment_id, certificate_id in session.execute(managed):
        newest[environment_id] = certificate_id
    served: dict[str, LiveHostname] = {}
    for host, environment_id in found:
        served[host] = LiveHostname(
            hostname=host,
            kind=MANAGED,
            environment_id=environment_id,
            certificate_table=ManagedCertificate.__tablename__,
            certificate_id=newest.get(environment_id),
        )
    for host, environment_id, certificate_id in session.execute(domains):
        served[host] = LiveHostname(
            hostname=host,
            kind=CUSTOM,
            environment_id=environment_id,
            certificate_table=TlsCertificate.__tablename__,
            certificate_id=certificate_id,
        )
    return served


# -- details --------------------------------------------------------------------------------


def _normalize(hostname: str) -> str:
    try:
        host = normalize_hostname(hostname)
    except HostnameError as exc:
        raise InvalidRequest(
            f"{exc}: a custom domain is a DNS host name (IDNs are converted to A-labels).",
            code=RefusalCode.INVALID_HOSTNAME,
        ) from None
    if is_ip(host):
        raise InvalidRequest(
            f"{host} is an IP address; a custom domain is a DNS host name.",
            code=RefusalCode.INVALID_HOSTNAME,
        )
    return host


def _refuse_taken(session: Session, principal: Principal, host: str) -> None:
    """409 when any environment has ``host``; its name only for callers who may see it."""
    holder = session.execute(
        select(Environment, App, CustomDomain.id)
        .join(App, App.id == Environment.app_id)
        .outerjoin(
            CustomDomain,
            (CustomDomain.environment_id == Environment.id) & (CustomDomain.hostname == host),
        )
        .where((Environment.hostname == host) | (CustomDomain.id.is_not(None)))
        .limit(1)
    ).first()
    if holder is None:
        return
    environment, app, custom_id = holder
    if not visible(principal, app.id, environment.id):
        raise Conflict(_taken_message(host), code=RefusalCode.HOSTNAME_TAKEN)
    kind = "a custom domain" if custom_id is not None else "the default hostname"
    raise Conflict(
        f"The hostname {host} is already {kind} of environment {environment.name!r} of app "
        f"{app.name!r}; a hostname belongs to one environment of the platform only.",
        code=RefusalCode.HOSTNAME_TAKEN,
        detail={"hostname": host, "app": app.name, "environment": environment.name},
    )


def _taken_message(host: str) -> str:
    return (
        f"The hostname {host} is already taken; a hostname belongs to one environment of "
        "the platform only."
    )


def _refuse_platform_name(ctx: Context, host: str) -> None:
    domain = ctx.settings.platform_domain
    if host == domain or host.endswith("." + domain):
        raise InvalidRequest(
            f"{host} is under the platform domain {domain}, whose names are the default "
            "hostnames of environments; a custom domain must be a name of your own.",
            code=RefusalCode.RESERVED_HOSTNAME,
        )


def _summary(ctx: Context, row: TlsCertificate, at: datetime) -> CertificateSummary:
    if row.not_before is None or row.not_after is None:
        raise ValueError(f"TLS certificate {row.id} is pending and serves no domain")
    judged = judge_row(ctx.settings, row, at=at)
    return CertificateSummary(
        id=row.id,
        subject=row.subject or "",
        issuer=row.issuer or "",
        not_before=row.not_before,
        not_after=row.not_after,
        status=judged.status,
        status_reason=judged.reason,
    )


def _managed_summary(ctx: Context, row: ManagedCertificate, at: datetime) -> CertificateSummary:
    subject, issuer = _names(row.certificate_pem)
    judged = judge_row(ctx.settings, row, at=at)
    return CertificateSummary(
        id=row.id,
        subject=subject,
        issuer=issuer,
        not_before=row.not_before,
        not_after=row.not_after,
        status=judged.status,
        status_reason=judged.reason,
    )


@lru_cache(maxsize=1024)
def _names(certificate_pem: str) -> tuple[str, str]:
    """Subject and issuer of a managed certificate (its row stores neither)."""
    info = describe_certificate(x509.load_pem_x509_certificate(certificate_pem.encode()))
    return info.subject, info.issuer
