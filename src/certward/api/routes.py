"""The REST API under /api/v1: thin handlers that parse, call one use case, render."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from certward.api.deps import ContextDep, PrincipalDep, read_upload_form, url_without_nul
from certward.api.schemas import (
    AppCreate,
    AppUpdate,
    ClientCertificateUpdate,
    EnvironmentCreate,
    EnvironmentUpdate,
    Rollback,
    TokenCreate,
)
from certward.services import (
    apps,
    audit,
    authorities,
    bundles,
    client_certificates,
    staging,
    tokens,
    upload_limits,
)
from certward.services.apps import AppView, EnvironmentView
from certward.services.audit import AuditView
from certward.services.authorities import AuthorityView
from certward.services.client_certificates import ClientCertificateView
from certward.services.staging import ChangesView, RestartView, VersionView
from certward.services.tokens import TokenView

router = APIRouter(prefix="/api/v1", dependencies=[Depends(url_without_nul)])
ENV = "/apps/{app}/environments/{env}"
MAX_EVENT_ID = 2**63 - 1  # audit event ids are a 64-bit integer column


def _multipart(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """OpenAPI description of a multipart body (parsed by hand, with caps)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": required}
                }
            },
        }
    }


_FILE = {"type": "string", "format": "binary"}

# -- health ---------------------------------------------------------------------------------


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """Liveness: no authentication."""
    return {"status": "ok"}


# -- apps -----------------------------------------------------------------------------------


@router.post("/apps", status_code=201, tags=["apps"])
def create_app(body: AppCreate, ctx: ContextDep, who: PrincipalDep) -> AppView:
    return apps.create_app(ctx, who, name=body.name, plan=body.plan, hsts_max_age=body.hsts_max_age)


@router.get("/apps", tags=["apps"])
def list_apps(ctx: ContextDep, who: PrincipalDep) -> list[AppView]:
    return apps.list_apps(ctx, who)


@router.get("/apps/{app}", tags=["apps"])
def get_app(app: str, ctx: ContextDep, who: PrincipalDep) -> AppView:
    return apps.get_app(ctx, who, app)


@router.patch("/apps/{app}", tags=["apps"])
def update_app(app: str, body: AppUpdate, ctx: ContextDep, who: PrincipalDep) -> AppView:
    return apps.update_app(
        ctx,
        who,
        app,
        plan=body.plan,
        hsts_max_age=body.hsts_max_age,
        set_hsts="hsts_max_age" in body.model_fields_set,
    )


@router.delete("/apps/{app}", status_code=204, tags=["apps"])
def delete_app(app: str, ctx: ContextDep, who: PrincipalDep) -> Response:
    apps.delete_app(ctx, who, app)
    return Response(status_code=204)


# -- environments ---------------------------------------------------------------------------


@router.post("/apps/{app}/environments", status_code=201, tags=["environments"])
def create_environment(
    app: str, body: EnvironmentCreate, ctx: ContextDep, who: PrincipalDep
) -> EnvironmentView:
    return apps.create_environment(ctx, who, app, name=body.name, upstream=body.upstream)


@router.get("/apps/{app}/environments", tags=["environments"])
def list_environments(app: str, ctx: ContextDep, who: PrincipalDep) -> list[EnvironmentView]:
    return apps.list_environments(ctx, who, app)


@router.get(ENV, tags=["environments"])
def get_environment(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> EnvironmentView:
    return apps.get_environment(ctx, who, app, env)


@router.patch(ENV, tags=["environments"])
def update_environment(
    app: str, env: str, body: EnvironmentUpdate, ctx: ContextDep, who: PrincipalDep
) -> EnvironmentView:
    return apps.update_environment(
        ctx,
        who,
        app,
        env,
        upstream=body.upstream,
        pkcs12_profile=body.pkcs12_profile,
        no_client_certificate=body.no_client_certificate,
    )


@router.delete(ENV, status_code=204, tags=["environments"])
def delete_environment(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> Response:
    apps.delete_environment(ctx, who, app, env)
    return Response(status_code=204)


# -- client certificates --------------------------------------------------------------------


@router.post(
    ENV + "/client-certificates",
    status_code=201,
    tags=["client certificates"],
    openapi_extra=_multipart(
        {
            "file": _FILE,
            "password": {"type": "string", "format": "password"},
            "key": _FILE,
            "chain": _FILE,
            "description": {"type": "string"},
            "pins": {"type": "array", "items": {"type": "string"}},
            "call_name": {"type": "string"},
        },
        ["file"],
    ),
)
async def upload_client_certificate(
    app: str, env: str, request: Request, ctx: ContextDep, who: PrincipalDep
) -> ClientCertificateView:
    """PKCS12 (+ password), or PEM/DER certificate with ``key`` (and ``chain``) files."""
    form = await read_upload_form(
        request,
        ctx,
        files=frozenset({"file", "key", "chain"}),
        fields=frozenset({"password", "description", "pins", "call_name"}),
        repeatable=frozenset({"pins"}),
    )
    upload = partial(
        client_certificates.upload,
        ctx,
        who,
        app,
        env,
        file=form.files["file"],
        password=form.password,
        key=form.files.get("key"),
        chain=form.files.get("chain"),
        description=form.text("description") or "",
        pins=[p for value in form.fields.get("pins", []) for p in _split_pins(value)],
        call_name=form.text("call_name"),
    )
    return await run_in_threadpool(upload_limits.guarded, ctx, who, app, upload)


def _split_pins(value: str) -> list[str]:
    """A pins field may hold one name or several separated by commas or newlines."""
    return [p for p in value.replace("\n", ",").split(",") if p.strip()]


@router.get(ENV + "/client-certificates", tags=["client certificates"])
def list_client_certificates(
    app: str,
    env: str,
    ctx: ContextDep,
    who: PrincipalDep,
    response: Response,
    limit: int = Query(default=100, ge=1, le=1000),
    after: str | None = Query(default=None, max_length=36),
) -> list[ClientCertificateView]:
    """Ordered by id; when a page is full, a ``Link: rel="next"`` header points on."""
    page = client_certificates.list_certificates(ctx, who, app, env, limit=limit, after=after)
    if len(page) == limit:
        response.headers["Link"] = (
            f"</api/v1/apps/{app}/environments/{env}/client-certificates"
            f'?limit={limit}&after={page[-1].id}>; rel="next"'
        )
    return page


@router.get(ENV + "/client-certificates/{certificate_id}", tags=["client certificates"])
def get_client_certificate(
    app: str, env: str, certificate_id: str, ctx: ContextDep, who: PrincipalDep
) -> ClientCertificateView:
    return client_certificates.get_certificate(ctx, who, app, env, certificate_id)


@router.patch(ENV + "/client-certificates/{certificate_id}", tags=["client certificates"])
def update_client_certificate(
    app: str,
    env: str,
    certificate_id: str,
    body: ClientCertificateUpdate,
    ctx: ContextDep,
    who: PrincipalDep,
) -> ClientCertificateView:
    changes: dict[str, Any] = {}
    if "call_name" in body.model_fields_set:
        changes["call_name"] = body.call_name
    return client_certificates.update_certificate(
        ctx,
        who,
        app,
        env,
        certificate_id,
        pins=body.pins,
        description=body.description,
        **changes,
    )


@router.delete(
    ENV + "/client-certificates/{certificate_id}", status_code=204, tags=["client certificates"]
)
def delete_client_certificate(
    app: str, env: str, certificate_id: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    client_certificates.delete_certificate(ctx, who, app, env, certificate_id)
    return Response(status_code=204)


# -- certificate authorities ----------------------------------------------------------------


@router.post(
    ENV + "/certificate-authorities",
    status_code=201,
    tags=["certificate authorities"],
    openapi_extra=_multipart({"file": _FILE}, ["file"]),
)
async def upload_certificate_authority(
    app: str, env: str, request: Request, ctx: ContextDep, who: PrincipalDep
) -> AuthorityView:
    """PEM with one or more CA certificates (a root and its intermediates)."""
    form = await read_upload_form(request, ctx, files=frozenset({"file"}), fields=frozenset())
    upload = partial(authorities.upload, ctx, who, app, env, file=form.files["file"])
    return await run_in_threadpool(upload_limits.guarded, ctx, who, app, upload)


@router.get(ENV + "/certificate-authorities", tags=["certificate authorities"])
def list_certificate_authorities(
    app: str, env: str, ctx: ContextDep, who: PrincipalDep
) -> list[AuthorityView]:
    return authorities.list_authorities(ctx, who, app, env)


@router.get(ENV + "/certificate-authorities/{authority_id}", tags=["certificate authorities"])
def get_certificate_authority(
    app: str, env: str, authority_id: str, ctx: ContextDep, who: PrincipalDep
) -> AuthorityView:
    return authorities.get_authority(ctx, who, app, env, authority_id)


@router.delete(
    ENV + "/certificate-authorities/{authority_id}",
    status_code=204,
    tags=["certificate authorities"],
)
def delete_certificate_authority(
    app: str, env: str, authority_id: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    authorities.delete_authority(ctx, who, app, env, authority_id)
    return Response(status_code=204)


# -- staged changes, restart, versions ------------------------------------------------------


@router.get(ENV + "/changes", tags=["restart"])
def pending_changes(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> ChangesView:
    return staging.pending_changes(ctx, who, app, env)


@router.post(ENV + "/restart", tags=["restart"])
def restart(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> RestartView:
    """Apply every staged change as a new version (validated again first)."""
    return staging.restart(ctx, who, app, env)


@router.post(ENV + "/rollback", tags=["restart"])
def rollback(app: str, env: str, body: Rollback, ctx: ContextDep, who: PrincipalDep) -> RestartView:
    return staging.rollback(ctx, who, app, env, version=body.version)


@router.get(ENV + "/versions", tags=["restart"])
def versions(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> list[VersionView]:
    return staging.list_versions(ctx, who, app, env)


@router.get(
    ENV + "/runtime-bundle",
    tags=["restart"],
    response_class=Response,
    responses={200: {"content": {"application/gzip": {}}, "description": "the bundle"}},
)
def runtime_bundle(
    app: str,
    env: str,
    ctx: ContextDep,
    who: PrincipalDep,
    version: int | None = Query(default=None, ge=1, le=2**31 - 1),
) -> Response:
    """The applied version's runtime bundle (or ``version``'s) as a gzipped tar.

    For the environment's runtime token, or a member or admin; every download is audited.
    """
    bundle = bundles.download(ctx, who, app, env, version=version)
    return Response(
        bundle.tarball,
        media_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="{bundle.filename}"',
            "X-Certward-Version": str(bundle.version),
            "Cache-Control": "no-store",
        },
    )


# -- tokens and audit -----------------------------------------------------------------------


@router.post("/tokens", status_code=201, tags=["access"])
def create_token(body: TokenCreate, ctx: ContextDep, who: PrincipalDep) -> dict[str, Any]:
    """The token value is in this response only; certward keeps its hash."""
    created = tokens.create_token(
        ctx,
        who,
        role=body.role,
        app_name=body.app,
        environment_name=body.environment,
        description=body.description,
    )
    view = created.view
    return {
        "id": view.id,
        "token": created.token,
        "role": view.role.value,
        "app": view.app,
        "environment": view.environment,
        "description": view.description,
        "created_at": view.created_at.isoformat(),
    }


@router.get("/tokens", tags=["access"])
def list_tokens(
    ctx: ContextDep, who: PrincipalDep, app: str | None = Query(default=None, max_length=63)
) -> list[TokenView]:
    return tokens.list_tokens(ctx, who, app_name=app)


@router.delete("/tokens/{token_id}", tags=["access"])
def revoke_token(token_id: str, request: Request, ctx: ContextDep, who: PrincipalDep) -> TokenView:
    revoked = tokens.revoke_token(ctx, who, token_id)
    request.app.state.principals.forget(token_id)
    return revoked


@router.get("/audit", tags=["access"])
def audit_log(
    ctx: ContextDep,
    who: PrincipalDep,
    app: str | None = Query(default=None, max_length=63),
    before: int | None = Query(default=None, ge=1, le=MAX_EVENT_ID),
    limit: int = Query(default=100, ge=1, le=500),
) -> list[AuditView]:
    return audit.list_events(ctx, who, app_name=app, before_id=before, limit=limit)
