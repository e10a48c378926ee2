"""One inventory of every certificate: managed, custom-domain, client and CA.

Each kind is one indexed query filtered and sorted by expiry in the database (a status
is a date range), merged here; CA certificates, stored per upload, are expanded in
Python (there are few). Scoped by token: an app's tokens see their app only.

Where certward renews the certificate, its status depends on more than the dates (its
renewal is overdue or not; see `certward.expiry`): the database then narrows by a
condition every match fulfils, and `certward.services.standing.judge`, which decides
the status shown, keeps the exact matches as the rows stream in, soonest expiry first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import InvalidRequest, RefusalCode
from certward.expiry import MIN_OVERDUE_GRACE, CertificateStatus, Standing
from certward.model import (
    App,
    CertificateAuthority,
    ClientCertificate,
    CustomDomain,
    Environment,
    ManagedCertificate,
    TlsCertificate,
)
from certward.services.context import Context
from certward.services.lookups import find_app, require
from certward.services.standing import (
    CertificateKind,
    expires_soon_window,
    judge,
    judge_row,
)

MAX_PAGE = 1000
_STREAM = 500  # rows fetched at a time where the database only narrows


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryItem:
    kind: CertificateKind
    id: str
    app: str
    environment: str | None
    subject: str | None
    issuer: str | None
    not_before: datetime | None
    not_after: datetime | None
    status: CertificateStatus
    # Why an expires-soon certificate is one (a renewal overdue and its last failure, or
    # the window of an uploaded certificate); None for every other status.
    status_reason: str | None = None
    renew_after: datetime | None = None
    hostnames: tuple[str, ...] = ()
    sha256_fingerprint: str | None = None


def list_inventory(
    ctx: Context,
    principal: Principal,
    *,
    status: CertificateStatus | None = None,
    kind: CertificateKind | None = None,
    app_name: str | None = None,
    limit: int = 100,
) -> list[InventoryItem]:
    """Certificates visible to ``principal``, soonest expiry first."""
    limit = max(1, min(limit, MAX_PAGE))
    at = ctx.clock.now()
    with ctx.database.reading() as session:
        app_id = _scope(session, principal, app_name)
        kinds = [kind] if kind else list(CertificateKind)
        if status is CertificateStatus.PENDING:
            kinds = [k for k in kinds if k is CertificateKind.CUSTOM_DOMAIN]
        sources: list[Iterable[InventoryItem]] = []
        for wanted in kinds:
            if wanted is CertificateKind.MANAGED:
                sources.append(_managed(session, ctx, app_id, status, at, limit))
            elif wanted is CertificateKind.CUSTOM_DOMAIN:
                sources.append(_custom_domain(session, ctx, app_id, status, at, limit))
            elif wanted is CertificateKind.CLIENT:
                sources.append(_client(session, ctx, app_id, status, at, limit))
            else:
                sources.append(_authority(session, ctx, app_id, status, at, limit))
        merged = heapq.merge(*sources, key=_expiry_order)
        return [item for _, item in zip(range(limit), merged, strict=False)]


def _scope(session: Session, principal: Principal, app_name: str | None) -> str | None:
    """The app to restrict to (None: every app, for admins)."""
    if app_name is not None:
        return find_app(session, principal, app_name, Action.READ).id
    if principal.app_id is not None:
        require(principal, Action.READ, principal.app_id)
        return principal.app_id
    require(principal, Action.READ)
    return None


def _window(
    not_before: Any,
    not_after: Any,
    status: CertificateStatus | None,
    at: datetime,
    *,
    soon: timedelta,
    renew_after: Any = None,
    renewing: Any = None,
) -> tuple[Any, bool]:
    """An SQL condition every certificate of ``status`` at ``at`` fulfils, and whether
    only those do (else `judge` picks the exact matches).

    ``soon`` is the kind's window for uploaded certificates; ``renew_after`` the column
    of certificates certward renews, all of them or (``renewing``) those the condition
    says.
    """
    if status is None:
        return not_after.is_not(None), True
    if status is CertificateStatus.EXPIRED:
        return not_after < at, True
    if status is CertificateStatus.UPCOMING:
        return not_before > at, True
    current = and_(not_before <= at, not_after >= at)
    uploaded = not_after < at + soon
    if renew_after is None:  # uploaded certificates only: the dates decide
        if status is CertificateStatus.EXPIRES_SOON:
            return and_(current, uploaded), True
        if status is CertificateStatus.VALID:
            return and_(not_before <= at, not_after >= at + soon), True
    elif status is CertificateStatus.EXPIRES_SOON:
        overdue = renew_after < at - MIN_OVERDUE_GRACE
        if renewing is None:
            return and_(current, overdue), False
        return and_(current, or_(and_(renewing, overdue), and_(~renewing, uploaded))), False
    if status is CertificateStatus.VALID:
        return current, False
    raise InvalidRequest(
        f"Status {status.value!r} does not apply here.", code=RefusalCode.INVALID_STATUS
    )


def _matching(
    rows: Iterable[Any],
    status: CertificateStatus | None,
    judged: Callable[[Any], Standing],
    limit: int,
) -> Iterator[tuple[Any, Standing]]:
    """The first ``limit`` of ``rows`` whose standing (``judged(row)``) has ``status``."""
    found = 0
    for row in rows:
        if found >= limit:
            return
        result = judged(row)
        if status is None or result.status is status:
            found += 1
            yield row, result


def _expiry_order(item: InventoryItem) -> tuple[int, datetime]:
    if item.not_after is None:
        return (1, datetime.max.replace(tzinfo=None))
    return (0, item.not_after.replace(tzinfo=None))


def _in_scope(app_id: str | None) -> ColumnElement[bool]:
    return App.id == app_id if app_id is not None else true()


def _managed(
    session: Session,
    ctx: Context,
    app_id: str | None,
    status: CertificateStatus | None,
    at: datetime,
    limit: int,
) -> Iterator[InventoryItem]:
    row = ManagedCertificate
    condition, exact = _window(
        row.not_before, row.not_after, status, at, soon=timedelta(0), renew_after=row.renew_after
    )
    query = (
        select(row, Environment.name, App.name)
        .join(Environment, Environment.id == row.environment_id)
        .join(App, App.id == Environment.app_id)
        .where(row.state == "active", condition, _in_scope(app_id))
        .order_by(row.not_after)
    )
    query = query.limit(limit) if exact else query.execution_options(yield_per=_STREAM)
    rows = session.execute(query)
    for (certificate, environment, app), judged in _matching(
        rows, status, lambda r: judge_row(ctx.settings, r[0], at=at), limit
    ):
        yield InventoryItem(
            kind=CertificateKind.MANAGED,
            id=certificate.id,
            app=app,
            environment=environment,
            subject=f"CN={certificate.hostname}",
            issuer=None,
            not_before=certificate.not_before,
            not_after=certificate.not_after,
            status=judged.status,
            status_reason=judged.reason,
            renew_after=certificate.renew_after,
            hostnames=(certificate.hostname,),
            sha256_fingerprint=certificate.sha256_fingerprint,
        )


def _client(
    session: Session,
    ctx: Context,
    app_id: str | None,
    status: CertificateStatus | None,
    at: datetime,
    limit: int,
) -> Iterator[InventoryItem]:
    row = ClientCertificate
    kind = CertificateKind.CLIENT
    condition, exact = _window(
        row.not_before,
        row.not_after,
        status,
        at,
        soon=expires_soon_window(ctx.settings, kind),
    )
    # The page is chosen from the certificates alone (the expiry index decides), and
    # only its rows are then joined to their environments: with 100,000 certificates
    # that keeps the query a short index walk on SQLite and PostgreSQL alike.
    page = (
        select(row.id, row.not_before, row.not_after)
        .where(row.deleted_at.is_(None), condition)
        .order_by(row.not_after)
    )
    page = page.limit(limit) if exact else page.execution_options(yield_per=_STREAM)
    if app_id is not None:
        environment_id: ColumnElement[str] = row.environment_id.expression
        if session.get_bind().dialect.name == "sqlite":
            # SQLite has no statistics: left alone it walks the app's environments by
            # their index and sorts everything. Wrapping the column keeps it on the
            # expiry index, which yields the page in order.
            environment_id = func.coalesce(row.environment_id, "")
        page = page.where(
            environment_id.in_(select(Environment.id).where(Environment.app_id == app_id))
        )
    standings = {
        r.id: judged
        for r, judged in _matching(
            session.execute(page),
            status,
            lambda r: judge(ctx.settings, kind, r.not_before, r.not_after, at=at),
            limit,
        )
    }
    if not standings:
        return
    query = (
        select(
            row.id,
            row.subject,
            row.issuer,
            row.not_before,
            row.not_after,
            row.sha256_fingerprint,
            Environment.name,
            App.name,
        )
        .join(Environment, Environment.id == row.environment_id)
        .join(App, App.id == Environment.app_id)
        .where(row.id.in_(standings))
        .order_by(row.not_after)
    )
    for (
        id_,
        subject,
        issuer,
        not_before,
        not_after,
        fingerprint,
        environment,
        app,
    ) in session.execute(query):
        yield InventoryItem(
            kind=kind,
            id=id_,
            app=app,
            environment=environment,
            subject=subject,
            issuer=issuer,
            not_before=not_before,
            not_after=not_after,
            status=standings[id_].status,
            status_reason=standings[id_].reason,
            sha256_fingerprint=fingerprint,
        )


def _custom_domain(
    session: Session,
    ctx: Context,
    app_id: str | None,
    status: CertificateStatus | None,
    at: datetime,
    limit: int,
) -> Iterator[InventoryItem]:
    row = TlsCertificate
    condition: Any
    if status is CertificateStatus.PENDING:
        condition, exact = row.certificate_pem.is_(None), True
    elif status is None:
        condition, exact = true(), True
    else:
        condition, exact = _window(
            row.not_before,
            row.not_after,
            status,
            at,
            soon=expires_soon_window(ctx.settings, CertificateKind.CUSTOM_DOMAIN),
            renew_after=row.renew_after,
            renewing=row.renew_after.is_not(None),
        )
    query = (
        select(row, App.name)
        .join(App, App.id == row.app_id)
        .where(condition, _in_scope(app_id))
        .order_by(row.not_after.is_(None), row.not_after)
    )
    query = query.limit(limit) if exact else query.execution_options(yield_per=_STREAM)
    rows = list(
        _matching(
            session.execute(query),
            status,
            lambda r: judge_row(ctx.settings, r[0], at=at),
            limit,
        )
    )
    domains: dict[str, list[str]] = {certificate.id: [] for (certificate, _), _ in rows}
    if domains:
        for certificate_id, hostname in session.execute(
            select(CustomDomain.tls_certificate_id, CustomDomain.hostname).where(
                CustomDomain.tls_certificate_id.in_(domains)
            )
        ):
            domains[certificate_id].append(hostname)
    for (certificate, app), judged in rows:
        yield InventoryItem(
            kind=CertificateKind.CUSTOM_DOMAIN,
            id=certificate.id,
            app=app,
            environment=None,
            subject=certificate.subject,
            issuer=certificate.issuer,
            not_before=certificate.not_before,
            not_after=certificate.not_after,
            status=judged.status,
            status_reason=judged.reason,
            renew_after=certificate.renew_after,
            hostnames=tuple(sorted(domains[certificate.id])),
            sha256_fingerprint=certificate.sha256_fingerprint,
        )


def _authority(
    session: Session,
    ctx: Context,
    app_id: str | None,
    status: CertificateStatus | None,
    at: datetime,
    limit: int,
) -> Iterator[InventoryItem]:
    query = (
        select(CertificateAuthority, Environment.name, App.name)
        .join(Environment, Environment.id == CertificateAuthority.environment_id)
        .join(App, App.id == Environment.app_id)
        .where(CertificateAuthority.deleted_at.is_(None))
    )
    items: list[InventoryItem] = []
    for authority, environment, app in session.execute(query.where(_in_scope(app_id))):
        for summary in authority.subjects:
            not_before = datetime.fromisoformat(summary["not_before"])
            not_after = datetime.fromisoformat(summary["not_after"])
            judged = judge(ctx.settings, CertificateKind.AUTHORITY, not_before, not_after, at=at)
            if status is not None and judged.status is not status:
                continue
            items.append(
                InventoryItem(
                    kind=CertificateKind.AUTHORITY,
                    id=f"{authority.id}:{summary['sha256_fingerprint'][:16]}",
                    app=app,
                    environment=environment,
                    subject=summary["subject"],
                    issuer=summary.get("issuer"),
                    not_before=not_before,
                    not_after=not_after,
                    status=judged.status,
                    status_reason=judged.reason,
                    sha256_fingerprint=summary["sha256_fingerprint"],
                )
            )
    items.sort(key=_expiry_order)
    return iter(items[:limit])


__all__ = ["CertificateKind", "InventoryItem", "list_inventory"]
