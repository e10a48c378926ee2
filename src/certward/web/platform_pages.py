"""Platform-level pages: the certificate inventory with its expiry timeline, the audit log,
the platform CA and the API tokens. The services scope each to the signed-in token, as
the API does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from certward.authorization import Principal, authorize, grant_action
from certward.errors import Forbidden, Refusal, RefusalCode
from certward.expiry import CertificateStatus
from certward.services import (
    apps,
    audit,
    dataplane_exclusions,
    dataplane_nodes,
    inventory,
    platform_ca,
    tokens,
)
from certward.services.apps import AppView
from certward.services.context import Context
from certward.services.inventory import CertificateKind
from certward.vocabulary import Role
from certward.web.forms import FieldErrors, form_values
from certward.web.pages import (
    Visit,
    begin,
    call,
    posted,
    redirect,
    render,
    success,
)
from certward.web.timeline import expiry_timeline

INVENTORY_PAGE = 500
AUDIT_PAGE = 100

# -- platform level ------------------------------------------------------------------------------


async def inventory_page(request: Request) -> Response:
    visit = await begin(request)
    query = request.query_params
    status = _enum_or_none(CertificateStatus, query.get("status"))
    kind = _enum_or_none(CertificateKind, query.get("kind"))
    app = query.get("app") or None
    items, everything = await call(_inventory_values, visit.context, visit.who, status, kind, app)
    now = visit.context.clock.now()
    return render(
        visit,
        "inventory.html",
        {
            "items": items,
            "timeline": expiry_timeline(everything, start=now),
            "statuses": list(CertificateStatus),
            "kinds": list(CertificateKind),
            "status_filter": status.value if status else "",
            "kind_filter": kind.value if kind else "",
            "app_filter": app or "",
        },
    )


def _inventory_values(
    ctx: Context,
    who: Principal,
    status: CertificateStatus | None,
    kind: CertificateKind | None,
    app: str | None,
) -> tuple[list[inventory.InventoryItem], list[inventory.InventoryItem]]:
    items = inventory.list_inventory(
        ctx, who, status=status, kind=kind, app_name=app, limit=INVENTORY_PAGE
    )
    if status is None and kind is None:
        return items, items
    # The timeline always shows every kind: what the filters hide still expires.
    return items, inventory.list_inventory(ctx, who, app_name=app, limit=INVENTORY_PAGE)


E = TypeVar("E", CertificateStatus, CertificateKind)


def _enum_or_none(kind: type[E], value: str | None) -> E | None:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        return None


async def audit_page(request: Request) -> Response:
    visit = await begin(request)
    query = request.query_params
    before = query.get("before")
    before_id = int(before) if before and before.isdigit() and len(before) < 19 else None
    app = query.get("app") or None
    events = await call(
        audit.list_events,
        visit.context,
        visit.who,
        app_name=app,
        before_id=before_id,
        limit=AUDIT_PAGE,
    )
    return render(
        visit,
        "audit.html",
        {
            "events": events,
            "app_filter": app or "",
            "older": events[-1].id if len(events) == AUDIT_PAGE else None,
        },
    )


async def data_plane_page(request: Request) -> Response:
    """Platform administrators: the data-plane nodes and their lag, and the sites the
    nginx data plane leaves out, and why."""
    visit = await begin(request)
    nodes = await call(dataplane_nodes.list_nodes, visit.context, visit.who)
    excluded = await call(dataplane_exclusions.list_excluded, visit.context, visit.who)
    return render(visit, "data_plane.html", {"excluded": excluded, "nodes": nodes})


async def platform_ca_page(request: Request) -> Response:
    visit = await begin(request)
    view = await call(platform_ca.show, visit.context)
    return render(visit, "platform_ca.html", {"ca": view})


# -- API tokens ----------------------------------------------------------------------------------

TOKENS = "/platform/tokens"
MAX_TOKEN_DESCRIPTION = 1000  # what a token's description holds (the API's schema says the same)
# Least powerful first: the form offers them in this order.
_ROLE_ORDER = (Role.VIEWER, Role.RUNTIME, Role.MEMBER, Role.ADMIN)
_ROLE_HINTS = {
    Role.VIEWER: "reads one app.",
    Role.RUNTIME: "downloads one environment's runtime bundle, nothing else.",
    Role.MEMBER: "manages one app, reads its audit log, creates its viewer and runtime tokens.",
    Role.ADMIN: "everything, on the whole platform.",
}
_TOKEN_FIELDS: dict[str, str] = {
    RefusalCode.APP_NOT_FOUND: "app",
    RefusalCode.ENVIRONMENT_NOT_FOUND: "environment",
}


async def tokens_page(request: Request) -> Response:
    visit = await begin(request)
    return await _tokens(visit, app_filter=request.query_params.get("app") or None)


async def _tokens(
    visit: Visit,
    *,
    app_filter: str | None = None,
    created: tokens.NewToken | None = None,
    errors: FieldErrors | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    who = visit.who
    listed, visible_apps = await call(_tokens_values, visit.context, who, app_filter)
    grantable = _grantable(who)
    return render(
        visit,
        "tokens.html",
        {
            "tokens": listed,
            "apps": visible_apps,
            "grantable": grantable,
            "role_hints": [(role, _ROLE_HINTS[role]) for role in grantable],
            "platform_scope": Role.ADMIN in grantable,
            "app_filter": app_filter or "",
            "created": created,
            "errors": errors or FieldErrors(),
            "values": values or {"app": app_filter or ""},
        },
        status=status,
    )


def _tokens_values(
    ctx: Context, who: Principal, app: str | None
) -> tuple[list[tokens.TokenView], list[AppView]]:
    return tokens.list_tokens(ctx, who, app_name=app), apps.list_apps(ctx, who)


def _grantable(who: Principal) -> list[Role]:
    """The roles ``who`` may create and revoke tokens of (in its own app, if it has one):
    the rule the token service applies, used to offer only what it would allow."""
    return [role for role in _ROLE_ORDER if authorize(who, grant_action(role), who.app_id)]


def _scope_field(role: Role, app: str | None) -> str:
    """The field a scope refusal is about: the app, or else the environment."""
    if role is Role.ADMIN:
        return "app" if app else "environment"
    return "environment" if app else "app"


async def create_token(request: Request) -> Response:
    visit, form = await posted(request)
    values = form_values(form)
    app = form.text("app").strip() or None
    environment = form.text("environment").strip() or None
    description = form.text("description")
    errors = FieldErrors()
    role = next((r for r in Role if r.value == form.text("role")), None)
    if role is None:
        errors.add("role", "Choose one of the roles offered.")
    if len(description) > MAX_TOKEN_DESCRIPTION:
        errors.add(
            "description", f"A description may be at most {MAX_TOKEN_DESCRIPTION:,} characters."
        )
    if role is None or errors:
        return await _tokens(visit, errors=errors, values=values, status=422)
    try:
        created = await call(
            tokens.create_token,
            visit.context,
            visit.who,
            role=role,
            app_name=app,
            environment_name=environment,
            description=description,
        )
    except Refusal as refusal:
        fields = {**_TOKEN_FIELDS, "invalid-scope": _scope_field(role, app)}
        default = "role" if isinstance(refusal, Forbidden) else None
        errors = FieldErrors.from_refusal(refusal, fields, default=default)
        return await _tokens(visit, errors=errors, values=values, status=refusal.status)
    # Shown in this response only: certward keeps the token's hash, never its value.
    return await _tokens(visit, created=created)


async def revoke_token(request: Request) -> Response:
    visit, form = await posted(request)
    token_id = request.path_params["token_id"]
    revoked = await call(tokens.revoke_token, visit.context, visit.who, token_id)
    forget = visit.console.forget_token
    if forget is not None:
        forget(revoked.id)
    app_filter = form.text("app_filter")
    back = f"{TOKENS}?app={quote(app_filter, safe='')}" if app_filter else TOKENS
    text = f"Token {revoked.id} revoked: whatever used it is refused from now on."
    if revoked.id == visit.who.token_id:
        text = f"Token {revoked.id} revoked. It was the token you signed in with: sign in again."
    return redirect(visit, back, success(text))
