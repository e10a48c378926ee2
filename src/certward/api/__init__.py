"""The REST API (FastAPI): `create_app(context)` builds it around an opened platform."""

from __future__ import annotations

from fastapi import FastAPI

from certward import __version__
from certward.api import problems
from certward.api.acme_challenges import router as acme_challenges_router
from certward.api.deps import PrincipalCache
from certward.api.incoming import router as incoming_router
from certward.api.inventory import router as inventory_router
from certward.api.limits import BodySizeLimit
from certward.api.platform import router as platform_router
from certward.api.restrictions import router as access_router
from certward.api.routes import healthz, router
from certward.api.upload_turns import UploadTurns
from certward.services.context import Context
from certward.web import mount_console

# Room for a certificate, key and chain at the upload cap, plus multipart framing.
_BODY_OVERHEAD = 64 * 1024


def create_app(context: Context) -> FastAPI:
    app = FastAPI(
        title="certward",
        version=__version__,
        description="The certificate control plane of an application hosting platform.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.context = context
    app.state.principals = PrincipalCache()
    problems.install(app)
    app.include_router(router)
    app.include_router(platform_router)
    app.include_router(incoming_router)
    app.include_router(inventory_router)
    app.include_router(acme_challenges_router)
    app.include_router(access_router)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    mount_console(app, context)  # the web console at /, after every API route
    settings = context.settings
    app.add_middleware(
        UploadTurns,
        concurrent=settings.material_workers,
        queue=4 * settings.material_workers,
        wait_seconds=settings.material_wall_seconds / 2,
        retry_after=settings.material_wall_seconds,
        on_refused=context.material_workers.count_busy,
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=3 * context.settings.max_upload_bytes + _BODY_OVERHEAD
    )
    return app
