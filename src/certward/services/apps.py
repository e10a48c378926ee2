"""Apps and their environments."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal, authorize
from certward.db import flush_or_conflict
from certward.errors import Conflict, InvalidRequest, RefusalCode
from certward.model import App, Environment
from certward.pki.convert import Pkcs12Profile
from certward.pki.names import HostnameError, is_dns_label, normalize_hostname
from certward.services import audit, managed, upstreams
from certward.services.client_certificates import normalize_pins
from certward.services.context import Context
from certward.services.lookups import find_app, find_environment, require
from certward.vocabulary import Plan

_URL_CHARACTERS = re.compile(r"[\x21-\x7e]+")


HSTS_MAX_AGE_LIMIT = 63_072_000  # two years, in seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class AppView:
    name: str
    plan: Plan
    created_at: datetime
    environments: tuple[str, ...]
    hsts_max_age: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentView:
    app: str
    name: str
    hostname: str
    upstream: str
    pkcs12_profile: Pkcs12Profile
    no_client_certificate: tuple[str, ...]
    applied_version: int | None
    created_at: datetime


def check_label(value: str, what: str) -> str:
    """A DNS label: lower-case letters, digits and hyphens, 1-63, no hyphen at either end."""
    if not is_dns_label(value):
        raise InvalidRequest(
            f"The {what} {value!r} is not a DNS label: use 1-63 lower-case letters, digits "
            "and hyphens, not starting or ending with a hyphen.",
            code=RefusalCode.INVALID_NAME,
        )
    return value


def check_upstream(value: str) -> str:
    """An http(s) URL with a host: where the data plane forwards the environment's traffic.

    Printable ASCII only (no spaces or control characters; international names in
    A-label form), and a valid host name or IP (422 ``invalid-upstream``). What it may
    lead to is the operator's policy, checked by `certward.services.upstreams.admit`.
    """
    if not _URL_CHARACTERS.fullmatch(value):
        raise InvalidRequest(
            "The upstream must be an http:// or https:// URL of printable ASCII characters "
            "without spaces (percent-encode the rest; use the xn-- form of international "
            "host names).",
            code=RefusalCode.INVALID_UPSTREAM,
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(
            f"The upstream {value!r} is not a URL.", code=RefusalCode.INVALID_UPSTREAM
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise InvalidRequest(
            f"The upstream {value!r} must be an http:// or https:// URL with a host.",
            code=RefusalCode.INVALID_UPSTREAM,
        )
    try:
        normalize_hostname(parts.hostname)
    except HostnameError as exc:
        raise InvalidRequest(
            f"The upstream {value!r} does not name a valid host name or IP address.",
            code=RefusalCode.INVALID_UPSTREAM,
        ) from exc
    return value


def check_hsts_max_age(value: int | None) -> int | None:
    """An HSTS ``max-age`` in seconds: 0 (browsers forget the host's HSTS) to two years
    (422 ``invalid-hsts-max-age``); None sends no header."""
    if value is not None and not 0 <= value <= HSTS_MAX_AGE_LIMIT:
        raise InvalidRequest(
            f"hsts_max_age must be between 0 and {HSTS_MAX_AGE_LIMIT} seconds (two years), "
            "or null for no Strict-Transport-Security header.",
            code=RefusalCode.INVALID_HSTS_MAX_AGE,
        )
    return value


def create_app(
    ctx: Context, principal: Principal, *, name: str, plan: Plan, hsts_max_age: int | None = None
) -> AppView:
    require(principal, Action.ADMINISTER)
    check_label(name, "app name")
    check_hsts_max_age(hsts_max_age)
    with ctx.database.transaction() as session:
        if session.scalar(select(App.id).where(App.name == name)):
            raise Conflict(f"An app called {name!r} already exists.", code=RefusalCode.APP_EXISTS)
        app = App(name=name, plan=plan, created_at=ctx.clock.now(), hsts_max_age=hsts_max_age)
        session.add(app)
        flush_or_conflict(session, f"An app called {name!r} already exists.")
        audit.record(
            session,
            ctx,
            principal,
            action="app.create",
            object_type="app",
            object_id=app.id,
            app_id=app.id,
            after={"name": name, "plan": plan.value, "hsts_max_age": hsts_max_age},
        )
        return _app_view(session, app)


def list_apps(ctx: Context, principal: Principal) -> list[AppView]:
    with ctx.database.reading() as session:
        apps = session.scalars(select(App).order_by(App.name))
        # Apps the principal may read: a runtime token (bundle download only) sees none.
        return [_app_view(session, a) for a in apps if authorize(principal, Action.READ, a.id)]


def get_app(ctx: Context, principal: Principal, name: str) -> AppView:
    with ctx.database.reading() as session:
        return _app_view(session, find_app(session, principal, name, Action.READ))


def update_app(
    ctx: Context,
    principal: Principal,
    name: str,
    *,
    plan: Plan | None,
    hsts_max_age: int | None = None,
    set_hsts: bool = False,
) -> AppView:
    """Change the plan (None: unchanged) and, with ``set_hsts``, the HSTS max-age."""
    if set_hsts:
        check_hsts_max_age(hsts_max_age)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, name, Action.ADMINISTER)
        before = {"name": app.name, "plan": app.plan.value, "hsts_max_age": app.hsts_max_age}
        if plan is not None:
            app.plan = plan
        if set_hsts:
            app.hsts_max_age = hsts_max_age
        audit.record(
            session,
            ctx,
            principal,
            action="app.update",
            object_type="app",
            object_id=app.id,
            app_id=app.id,
            before=before,
            after={"name": app.name, "plan": app.plan.value, "hsts_max_age": app.hsts_max_age},
        )
        return _app_view(session, app)


def delete_app(ctx: Context, principal: Principal, name: str) -> None:
    with ctx.database.transaction() as session:
        app = find_app(session, principal, name, Action.ADMINISTER)
        audit.record(
            session,
            ctx,
            principal,
            action="app.delete",
            object_type="app",
            object_id=app.id,
            app_id=app.id,
            before={"name": app.name, "plan": app.plan.value},
        )
        session.delete(app)
    ctx.bundles.remove_app(name)


def create_environment(
    ctx: Context, principal: Principal, app_name: str, *, name: str, upstream: str
) -> EnvironmentView:
    """Create the environment with its default hostname and its managed certificate.

    From the built-in CA the certificate is issued in the same transaction. From an ACME
    CA the environment and a pending certificate row commit first, and only then is the
    certificate ordered, holding no transaction (an order can take a minute, and on
    SQLite a transaction held that long would stop every other writer): its outcome is
    stored in a second short transaction, and a failure is retried by the renewal worker
    with backoff. Either way the environment exists when this returns.
    """
    check_label(name, "environment name")
    check_upstream(upstream)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        label = f"{name}-{app.name}"
        if len(label) > 63:
            raise InvalidRequest(
                f"The default hostname label {label!r} would be longer than 63 characters; "
                "choose a shorter environment name.",
                code=RefusalCode.INVALID_NAME,
            )
        hostname = f"{label}.{ctx.settings.platform_domain}"
        upstreams.admit(session, ctx, app, upstream)
        exists = select(Environment.id).where(
            (Environment.app_id == app.id) & (Environment.name == name)
            | (Environment.hostname == hostname)
        )
        if session.scalar(exists):
            raise Conflict(
                f"App {app_name!r} already has an environment called {name!r}, or its "
                f"hostname {hostname} is taken.",
                code=RefusalCode.ENVIRONMENT_EXISTS,
            )
        environment = Environment(
            app_id=app.id,
            name=name,
            upstream=upstream,
            hostname=hostname,
            pkcs12_profile=Pkcs12Profile.MODERN,
            no_client_certificate=[],
            created_at=ctx.clock.now(),
        )
        session.add(environment)
        flush_or_conflict(session, f"App {app_name!r} already has an environment called {name!r}.")
        pending = managed.issue_for_environment(session, ctx, environment)
        audit.record(
            session,
            ctx,
            principal,
            action="environment.create",
            object_type="environment",
            object_id=environment.id,
            app_id=app.id,
            after={"name": name, "upstream": upstream, "hostname": hostname},
        )
        view = _environment_view(app, environment)
    if pending is not None:
        managed.complete_issuance(ctx, pending)
    return view


def list_environments(ctx: Context, principal: Principal, app_name: str) -> list[EnvironmentView]:
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        rows = session.scalars(
            select(Environment).where(Environment.app_id == app.id).order_by(Environment.name)
        )
        return [_environment_view(app, e) for e in rows]


def get_environment(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> EnvironmentView:
    with ctx.database.reading() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        return _environment_view(app, environment)


def update_environment(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    *,
    upstream: str | None = None,
    pkcs12_profile: Pkcs12Profile | None = None,
    no_client_certificate: Sequence[str] | None = None,
) -> EnvironmentView:
    """Change the upstream (live), or the PKCS12 profile and the hosts and services that
    must never get a client certificate (both staged until restart)."""
    if upstream is not None:
        check_upstream(upstream)
    excluded = normalize_pins(no_client_certificate) if no_client_certificate is not None else None
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        before = _settings_of(environment)
        if upstream is not None:
            upstreams.admit(session, ctx, app, upstream)
            environment.upstream = upstream
            upstreams.release_unused(session, app)
        if pkcs12_profile is not None:
            environment.pkcs12_profile = pkcs12_profile
        if excluded is not None:
            environment.no_client_certificate = list(excluded)
        audit.record(
            session,
            ctx,
            principal,
            action="environment.update",
            object_type="environment",
            object_id=environment.id,
            app_id=app.id,
            before=before,
            after=_settings_of(environment),
        )
        return _environment_view(app, environment)


def delete_environment(ctx: Context, principal: Principal, app_name: str, env_name: str) -> None:
    """Delete the environment with everything it holds, its runtime bundles included."""
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        audit.record(
            session,
            ctx,
            principal,
            action="environment.delete",
            object_type="environment",
            object_id=environment.id,
            app_id=app.id,
            before={"name": environment.name, "hostname": environment.hostname},
        )
        session.delete(environment)
        upstreams.release_unused(session, app)
    ctx.bundles.remove_environment(app_name, env_name)


def _app_view(session: Session, app: App) -> AppView:
    names = session.scalars(
        select(Environment.name).where(Environment.app_id == app.id).order_by(Environment.name)
    )
    return AppView(
        name=app.name,
        plan=app.plan,
        created_at=app.created_at,
        environments=tuple(names),
        hsts_max_age=app.hsts_max_age,
    )


def _settings_of(environment: Environment) -> dict[str, object]:
    return {
        "upstream": environment.upstream,
        "pkcs12_profile": environment.pkcs12_profile.value,
        "no_client_certificate": list(environment.no_client_certificate or ()),
    }


def _environment_view(app: App, environment: Environment) -> EnvironmentView:
    return EnvironmentView(
        app=app.name,
        name=environment.name,
        hostname=environment.hostname,
        upstream=environment.upstream,
        pkcs12_profile=environment.pkcs12_profile,
        no_client_certificate=tuple(environment.no_client_certificate or ()),
        applied_version=environment.applied_version,
        created_at=environment.created_at,
    )
