"""The web console: server-rendered pages (Jinja2, autoescaped) enhanced by htmx.

`mount_console(api, context)` adds the console to the API's application at ``/``. It is
a Starlette application of its own, with its own error pages and security headers,
mounted so that it never answers for the API's paths: ``/api/…``, ``/healthz`` and
``/metrics`` keep their problem+json errors, 404s and 405s exactly as before.

The console calls `certward.services` directly with the signed-in token's principal,
as the API routes do; it adds no rules of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from certward.errors import Refusal, RefusalCode
from certward.services.context import Context
from certward.web.pages import (
    Console,
    SignInRequired,
    begin,
    build_templates,
    redirect,
    render,
)
from certward.web.routes import console_routes
from certward.web.session import SessionSeal

log = logging.getLogger("certward.web")
STATIC = Path(__file__).parent / "static"
API_PREFIXES = ("/api/", "/healthz", "/metrics", "/.well-known/")

# No inline script or style anywhere: a value that escaped escaping still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the console's security headers to every response it sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)  # type: ignore[arg-type]


class ConsoleMount(Mount):
    """A mount at ``/`` that leaves the API's paths to the API's own routes."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


def console_app(
    context: Context, *, forget_token: Callable[[str], None] | None = None
) -> Starlette:
    """The console as an application of its own (its pages, static files, error pages).

    ``forget_token`` is called with the id of each token revoked in the console.
    """
    app = Starlette(
        routes=[
            *console_routes(),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            SignInRequired: _sign_in_required,
            Refusal: _refused,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.console = Console(
        context=context,
        seal=SessionSeal(context.secrets, context.randomness),
        templates=build_templates(),
        forget_token=forget_token,
    )
    return app


def mount_console(api: Starlette, context: Context) -> None:
    """Serve the console at ``/`` of ``api``, after every API route.

    A token revoked in the console is dropped from the API's cache of recently seen
    tokens at once, as when it is revoked through the API.
    """
    principals = getattr(api.state, "principals", None)
    forget_token = getattr(principals, "forget", None)
    api.router.routes.append(
        ConsoleMount("/", app=console_app(context, forget_token=forget_token), name="console")
    )


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, SignInRequired):  # registered for this class only
        raise exc
    visit = await begin(request, signed_in=False)
    return redirect(visit, f"/sign-in?next={quote(exc.next_path, safe='/')}")


async def _refused(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, Refusal):  # registered for this class only
        raise exc
    visit = getattr(request.state, "visit", None) or await begin(request, signed_in=False)
    return render(
        visit,
        "error.html",
        {"status": exc.status, "code": exc.code, "message": exc.message, "problems": exc.problems},
        status=exc.status,
    )


_HTTP_MESSAGES = {
    404: "There is no page at this address.",
    405: "This address does not take that kind of request.",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for this class only
        raise exc
    visit = getattr(request.state, "visit", None) or await begin(request, signed_in=False)
    return render(
        visit,
        "error.html",
        {
            "status": exc.status_code,
            "code": RefusalCode.NOT_FOUND if exc.status_code == 404 else RefusalCode.HTTP_ERROR,
            "message": _HTTP_MESSAGES.get(exc.status_code, str(exc.detail)),
            "problems": (),
        },
        status=exc.status_code,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return Response(
        "certward failed unexpectedly; see its log.", status_code=500, media_type="text/plain"
    )
