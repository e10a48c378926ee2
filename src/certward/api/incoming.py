"""Routes for incoming certificates: an app's TLS certificates and its custom domains."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from certward.api.deps import ContextDep, PrincipalDep, read_upload_form, url_without_nul
from certward.api.routes import _FILE, ENV, _multipart
from certward.api.schemas import (
    CustomDomainCreate,
    TlsAcmeCreate,
    TlsCertificateReplace,
    TlsCsrCreate,
)
from certward.expiry import CertificateStatus
from certward.services import domains, tls_acme, tls_certificates, upload_limits
from certward.services.domains import DomainView
from certward.services.tls_certificates import TlsCertificateView

router = APIRouter(prefix="/api/v1", dependencies=[Depends(url_without_nul)])
TLS = "/apps/{app}/tls-certificates"
ONE_TLS = TLS + "/{tls_certificate_id}"

# -- TLS certificates -----------------------------------------------------------------------


@router.post(
    TLS,
    status_code=201,
    tags=["tls certificates"],
    openapi_extra=_multipart(
        {
            "certificate": _FILE,
            "chain": _FILE,
            "private_key": _FILE,
            "password": {"type": "string", "format": "password"},
            "description": {"type": "string"},
        },
        ["certificate", "private_key"],
    ),
)
async def upload_tls_certificate(
    app: str, request: Request, ctx: ContextDep, who: PrincipalDep
) -> TlsCertificateView:
    """PEM or DER certificate, optional chain, and its private key (``password`` if encrypted)."""
    form = await read_upload_form(
        request,
        ctx,
        files=frozenset({"certificate", "chain", "private_key"}),
        fields=frozenset({"password", "description"}),
        required_files=frozenset({"certificate", "private_key"}),
    )
    upload = partial(
        tls_certificates.upload,
        ctx,
        who,
        app,
        certificate=form.files["certificate"],
        private_key=form.files["private_key"],
        chain=form.files.get("chain"),
        password=form.password,
        description=form.text("description") or "",
    )
    return await run_in_threadpool(upload_limits.guarded, ctx, who, app, upload)


@router.post(TLS + "/csr", status_code=201, tags=["tls certificates"])
def create_tls_csr(
    app: str, body: TlsCsrCreate, ctx: ContextDep, who: PrincipalDep
) -> TlsCertificateView:
    """A key generated and kept by certward, and a CSR for the names: ``pending``."""
    return tls_certificates.create_csr(
        ctx,
        who,
        app,
        common_name=body.common_name,
        sans=body.sans,
        key_type=body.key_type,
        description=body.description,
    )


@router.post(TLS + "/acme", status_code=201, tags=["tls certificates"])
def order_acme_tls_certificate(
    app: str, body: TlsAcmeCreate, ctx: ContextDep, who: PrincipalDep
) -> TlsCertificateView:
    """A certificate for ``sans`` from the platform's ACME CA (HTTP-01: every name must
    resolve to the platform already), with a key certward generates and keeps; renewed
    automatically. 409 ``acme-not-configured``; 503 ``issuer-unavailable`` when the CA
    cannot be reached or does not issue."""
    return tls_acme.order_from_acme(ctx, who, app, sans=body.sans, description=body.description)


@router.post(
    ONE_TLS + "/signed-certificate",
    tags=["tls certificates"],
    openapi_extra=_multipart({"certificate": _FILE, "chain": _FILE}, ["certificate"]),
)
async def add_signed_tls_certificate(
    app: str, tls_certificate_id: str, request: Request, ctx: ContextDep, who: PrincipalDep
) -> TlsCertificateView:
    """Complete a pending CSR with the certificate the CA signed (and its chain)."""
    form = await read_upload_form(
        request,
        ctx,
        files=frozenset({"certificate", "chain"}),
        fields=frozenset(),
        required_files=frozenset({"certificate"}),
    )
    upload = partial(
        tls_certificates.add_signed_certificate,
        ctx,
        who,
        app,
        tls_certificate_id,
        certificate=form.files["certificate"],
        chain=form.files.get("chain"),
    )
    return await run_in_threadpool(upload_limits.guarded, ctx, who, app, upload)


@router.get(TLS, tags=["tls certificates"])
def list_tls_certificates(
    app: str,
    ctx: ContextDep,
    who: PrincipalDep,
    status: Annotated[CertificateStatus | None, Query()] = None,
) -> list[TlsCertificateView]:
    """The app's TLS certificates, oldest first; ``status`` is computed at request time."""
    return tls_certificates.list_certificates(ctx, who, app, status=status)


@router.get(ONE_TLS, tags=["tls certificates"])
def get_tls_certificate(
    app: str, tls_certificate_id: str, ctx: ContextDep, who: PrincipalDep
) -> TlsCertificateView:
    return tls_certificates.get_certificate(ctx, who, app, tls_certificate_id)


@router.post(ONE_TLS + "/replace", tags=["tls certificates"])
def replace_tls_certificate(
    app: str,
    tls_certificate_id: str,
    body: TlsCertificateReplace,
    ctx: ContextDep,
    who: PrincipalDep,
) -> TlsCertificateView:
    """Move every custom domain using the certificate to the replacement (returned)."""
    return tls_certificates.replace_certificate(
        ctx, who, app, tls_certificate_id, replacement_id=body.replacement_id
    )


@router.delete(ONE_TLS, status_code=204, tags=["tls certificates"])
def delete_tls_certificate(
    app: str, tls_certificate_id: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    tls_certificates.delete_certificate(ctx, who, app, tls_certificate_id)
    return Response(status_code=204)


# -- domains --------------------------------------------------------------------------------


@router.post(ENV + "/custom-domains", status_code=201, tags=["domains"])
def add_custom_domain(
    app: str, env: str, body: CustomDomainCreate, ctx: ContextDep, who: PrincipalDep
) -> DomainView:
    """Serve ``hostname`` from the environment with one of the app's TLS certificates (live)."""
    return domains.add_custom_domain(
        ctx, who, app, env, hostname=body.hostname, certificate_id=body.certificate_id
    )


@router.delete(ENV + "/custom-domains/{hostname}", status_code=204, tags=["domains"])
def remove_custom_domain(
    app: str, env: str, hostname: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    domains.remove_custom_domain(ctx, who, app, env, hostname)
    return Response(status_code=204)


@router.get(ENV + "/domains", tags=["domains"])
def list_domains(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> list[DomainView]:
    """The managed default hostname first, then the custom domains by name."""
    return domains.list_domains(ctx, who, app, env)
