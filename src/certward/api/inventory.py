"""The certificate inventory and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from certward.api.deps import ContextDep, PrincipalDep, url_without_nul
from certward.authorization import Action
from certward.expiry import CertificateStatus
from certward.services import inventory, metrics
from certward.services.inventory import CertificateKind, InventoryItem
from certward.services.lookups import require

router = APIRouter(dependencies=[Depends(url_without_nul)])


@router.get("/api/v1/certificates", tags=["inventory"])
def list_certificates(
    ctx: ContextDep,
    who: PrincipalDep,
    status: CertificateStatus | None = None,
    kind: CertificateKind | None = None,
    app: str | None = Query(default=None, max_length=63),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[InventoryItem]:
    """Every certificate the token may see (managed, custom-domain, client, CA), soonest
    expiry first; ``status`` and ``kind`` filter, ``app`` narrows to one app."""
    return inventory.list_inventory(ctx, who, status=status, kind=kind, app_name=app, limit=limit)


@router.get("/metrics", tags=["inventory"])
def prometheus_metrics(ctx: ContextDep, who: PrincipalDep) -> Response:
    """Prometheus text format; needs an admin token (scrape with a bearer token)."""
    require(who, Action.ADMINISTER)
    return Response(metrics.render(ctx), media_type=metrics.CONTENT_TYPE)
