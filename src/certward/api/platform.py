"""Platform-level routes: the built-in CA (public) and environments' managed certificates.

The CA routes need no token: the root certificate is what developer machines import to
trust the platform's default hostnames, and the per-certificate and CRL routes are
where the caIssuers and CRL URLs of issued certificates point.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from certward.api.deps import ContextDep, PrincipalDep, url_without_nul
from certward.services import dataplane_exclusions, dataplane_nodes, managed, platform_ca
from certward.services.dataplane_exclusions import ExcludedSite
from certward.services.dataplane_nodes import Nodes
from certward.services.managed import ManagedCertificateView
from certward.services.platform_ca import CaCertificateView

router = APIRouter(prefix="/api/v1", dependencies=[Depends(url_without_nul)])

PEM = "application/x-pem-file"
DER_CERTIFICATE = "application/pkix-cert"
DER_CRL = "application/pkix-crl"
_PUBLIC_CACHE = "public, max-age=300"

AllQuery = Annotated[
    bool,
    Query(
        alias="all",
        description="Every published root and intermediate, not only the active root.",
    ),
]


@router.get(
    "/platform/ca",
    tags=["platform CA"],
    response_class=Response,
    responses={200: {"content": {PEM: {}}, "description": "PEM certificates"}},
)
def platform_ca_pem(ctx: ContextDep, every: AllQuery = False) -> Response:
    """The active root certificate of the platform CA, as PEM (no token needed).

    With ``all=true``: every published root and intermediate, active and retiring.
    """
    view = platform_ca.show(ctx)
    certificates = view.published if every else (view.root,)
    return Response(
        "".join(c.certificate_pem for c in certificates),
        media_type=PEM,
        headers={
            "Content-Disposition": 'inline; filename="certward-platform-ca.pem"',
            "Cache-Control": _PUBLIC_CACHE,
        },
    )


@router.get("/platform/ca/certificates", tags=["platform CA"])
def platform_ca_certificates(ctx: ContextDep, every: AllQuery = False) -> list[CaCertificateView]:
    """The published certificates of the platform CA with their state, newest first
    (``all=true``: retired ones too). No token needed."""
    view = platform_ca.show(ctx)
    return list(view.certificates if every else view.published)


@router.get(
    "/platform/ca/{ca_id}/certificate",
    tags=["platform CA"],
    response_class=Response,
    responses={200: {"content": {DER_CERTIFICATE: {}}, "description": "DER certificate"}},
)
def platform_ca_certificate(ca_id: str, ctx: ContextDep) -> Response:
    """One CA certificate in DER: where issued certificates' caIssuers URL points."""
    return Response(
        platform_ca.certificate_der(ctx, ca_id),
        media_type=DER_CERTIFICATE,
        headers={"Cache-Control": _PUBLIC_CACHE},
    )


@router.get(
    "/platform/ca/{ca_id}/crl",
    tags=["platform CA"],
    response_class=Response,
    responses={200: {"content": {DER_CRL: {}}, "description": "DER CRL"}},
)
def platform_ca_crl(ca_id: str, ctx: ContextDep) -> Response:
    """One CA's certificate revocation list in DER, freshly signed (and empty: certward
    replaces its short-lived certificates rather than revoking them)."""
    return Response(
        platform_ca.crl_der(ctx, ca_id),
        media_type=DER_CRL,
        headers={"Cache-Control": _PUBLIC_CACHE},
    )


@router.get("/apps/{app}/environments/{env}/managed-certificate", tags=["managed certificates"])
def managed_certificate(
    app: str, env: str, ctx: ContextDep, who: PrincipalDep
) -> ManagedCertificateView:
    """The certificate of the environment's default hostname, issued and renewed by the
    platform: public material, dates and renewal state (never its key)."""
    return managed.get_managed_certificate(ctx, who, app, env)


@router.get("/platform/data-plane/excluded-sites", tags=["data plane"])
def excluded_sites(ctx: ContextDep, who: PrincipalDep) -> list[ExcludedSite]:
    """The sites the nginx data plane leaves out of its configuration, with the reason
    (an upstream refused by the egress policy or that does not resolve, a site nginx
    refuses) and since when. Platform administrators only."""
    return dataplane_exclusions.list_excluded(ctx, who)


@router.get("/platform/data-plane/nodes", tags=["data plane"])
def data_plane_nodes(ctx: ContextDep, who: PrincipalDep) -> Nodes:
    """The current data-plane change sequence and every gateway worker and nginx agent as
    it last reported itself: the sequence it serves and its lag behind the current one,
    the digest of its state, its hostnames, its last contact. A node that cannot reach
    the database keeps serving its last state and stops reporting (its last contact
    ages). Platform administrators only."""
    return dataplane_nodes.list_nodes(ctx, who)
