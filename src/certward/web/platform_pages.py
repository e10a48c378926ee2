"""Platform-level pages: the certificate inventory with its expiry timeline, the audit log
and the platform CA. The services scope each to the signed-in token, as the API does.
"""

from __future__ import annotations

from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from certward.access import Principal
from certward.expiry import CertificateStatus
from certward.services import (
    audit,
    inventory,
    platform_ca,
)
from certward.services.context import Context
from certward.services.inventory import CertificateKind
from certward.web.pages import (
    begin,
    call,
    render,
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


async def platform_ca_page(request: Request) -> Response:
    visit = await begin(request)
    view = await call(platform_ca.show, visit.context)
    return render(visit, "platform_ca.html", {"ca": view})
