"""Rendering console pages: who is visiting, the templates, and how values are shown.

Every value that comes from a certificate or a person (subjects, issuers, SANs,
descriptions, path prefixes) reaches the page through Jinja2 with autoescaping on, and
nothing in the templates marks such a value safe. Escaping alone does not stop a
subject holding a right-to-left override from displaying as something else, so the
``shown`` filter also makes invisible and direction-changing characters visible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from certward import __version__
from certward.authorization import Principal
from certward.errors import Forbidden, InternalSignal, RefusalCode, TooManyRequests, Unauthorized
from certward.services import console_sessions, tokens, upload_limits
from certward.services.context import Context
from certward.vocabulary import Role
from certward.web.forms import ConsoleForm, read_form
from certward.web.session import (
    CSRF_FIELD,
    NOTICE_COOKIE,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    ConsoleSession,
    Notice,
    SessionSeal,
    check_csrf,
    clear_notice_cookie,
    set_notice_cookie,
    set_session_cookie,
)

# Characters that change how the text around them is displayed, or are invisible.
_BIDI_AND_INVISIBLE = frozenset(
    (
        *(0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
)


def shown(value: object) -> str:
    """``value`` as text with control, bidi and zero-width characters written as ⟨U+XXXX⟩.

    The result is a plain string: autoescaping still applies to it.
    """
    if value is None:
        return ""
    text = str(value)
    return "".join(
        f"⟨U+{ord(c):04X}⟩"
        if (ord(c) < 0x20 and c not in "\t\n")
        or 0x7F <= ord(c) <= 0x9F
        or ord(c) in _BIDI_AND_INVISIBLE
        else c
        for c in text
    )


def when(value: datetime | None) -> str:
    """A moment in UTC to the minute, e.g. ``2026-11-26 21:05 UTC``."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def day(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d")


def grouped_hex(value: str | None) -> str:
    """A fingerprint in colon-separated pairs, as other tools print it."""
    if not value:
        return "—"
    return ":".join(value[i : i + 2] for i in range(0, len(value), 2)).upper()


def as_json(value: object) -> str:
    """Audit details as compact JSON text (escaped like any other text)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def segment(value: object) -> str:
    """A value for one URL path segment."""
    return quote(str(value), safe="")


def build_templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("certward.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        shown=shown, when=when, day=day, grouped_hex=grouped_hex, as_json=as_json, seg=segment
    )
    environment.globals["version"] = __version__
    return Jinja2Templates(env=environment)


@dataclass(frozen=True, slots=True, kw_only=True)
class Console:
    """What every console request needs: the services' context, the cookie seal, templates."""

    context: Context
    seal: SessionSeal
    templates: Jinja2Templates
    # Drops a revoked token from the API's cache of recently seen tokens (as the API's own
    # revocation does), so it stops working there at once; None when served on its own.
    forget_token: Callable[[str], None] | None = None


class SignInRequired(InternalSignal):
    """The page needs a signed-in visitor; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(slots=True, kw_only=True)
class Visit:
    """One request's visitor: their session, their principal once signed in, a notice."""

    request: Request
    console: Console
    session: ConsoleSession
    fresh: bool  # the session cookie must be (re)written
    principal: Principal | None
    notice: Notice | None
    retry_after: int | None = None  # set when an upload was rate-limited (429)

    @property
    def context(self) -> Context:
        return self.console.context

    @property
    def who(self) -> Principal:
        """The signed-in principal (pages that need one got it from `begin`)."""
        if self.principal is None:
            raise SignInRequired(self.request.url.path)
        return self.principal

    @property
    def can_manage(self) -> bool:
        """Whether to offer forms that change things (the services decide in the end)."""
        return self.principal is not None and self.principal.role in (Role.ADMIN, Role.MEMBER)

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.role is Role.ADMIN

    async def sign_in(self, token: str, principal: Principal) -> None:
        """Replace the session by a signed-in one, with a new CSRF token and server session."""
        secret = await run_in_threadpool(
            console_sessions.start,
            self.context,
            token_id=principal.token_id,
            lifetime=SESSION_LIFETIME,
        )
        self.session = self.console.seal.new_session(
            at=self.context.clock.now(), token=token, session_secret=secret
        )
        self.fresh = True

    async def sign_out(self) -> None:
        """End the server session (a saved copy of the cookie then opens nothing) and start
        a signed-out one with a new CSRF token."""
        if self.session.session_secret is not None:
            await run_in_threadpool(console_sessions.end, self.context, self.session.session_secret)
        self.session = self.console.seal.new_session(at=self.context.clock.now())
        self.principal = None
        self.fresh = True


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def begin(request: Request, *, signed_in: bool = True) -> Visit:
    """Open the visitor's session; with ``signed_in``, insist on a valid token.

    The token is authenticated on every request, and the server session looked up:
    revoking the token or signing out ends the session at once.
    """
    console = console_of(request)
    ctx = console.context
    session = console.seal.open(request.cookies.get(SESSION_COOKIE), at=ctx.clock.now())
    fresh = session is None
    if session is None:
        session = console.seal.new_session(at=ctx.clock.now())
    principal: Principal | None = None
    if session.token is not None:
        try:
            principal = await run_in_threadpool(_signed_in, ctx, session)
        except Unauthorized:
            session = console.seal.new_session(at=ctx.clock.now())
            fresh = True
    visit = Visit(
        request=request,
        console=console,
        session=session,
        fresh=fresh,
        principal=principal,
        notice=console.seal.open_notice(request.cookies.get(NOTICE_COOKIE)),
    )
    request.state.visit = visit
    if signed_in and principal is None:
        raise SignInRequired(_return_path(request))
    return visit


def _signed_in(ctx: Context, session: ConsoleSession) -> Principal:
    """The principal of a signed-in cookie whose server session is still live."""
    if session.session_secret is None or not console_sessions.is_live(ctx, session.session_secret):
        raise Unauthorized("This console session has ended: sign in again.")
    return tokens.authenticate(ctx, session.token)


def render(
    visit: Visit,
    template: str,
    values: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response:
    """The page, with what every page shows (who is signed in, the CSRF token, a notice)."""
    context: dict[str, Any] = {
        "visit": visit,
        "principal": visit.principal,
        "csrf_token": visit.session.csrf_token,
        "notice": visit.notice,
        "can_manage": visit.can_manage,
        "is_admin": visit.is_admin,
        "path": visit.request.url.path,
        **(values or {}),
    }
    response = visit.console.templates.TemplateResponse(
        visit.request, template, context, status_code=status
    )
    if status == 429 and visit.retry_after is not None:
        response.headers["Retry-After"] = str(visit.retry_after)
    if status >= 400 and visit.request.method == "POST":
        # htmx keeps the address of the page the form was on; a reload then shows it.
        response.headers["HX-Push-Url"] = "false"
    _finish(visit, response, shown_notice=visit.notice is not None)
    return response


def redirect(visit: Visit, location: str, notice: Notice | None = None) -> Response:
    """303 to ``location`` (a path of this console), with an optional notice for it."""
    response = RedirectResponse(location, status_code=303)
    _finish(visit, response, shown_notice=False)
    if notice is not None:
        set_notice_cookie(response, visit.request, visit.console.seal.seal_notice(notice))
    return response


def safe_next(value: str | None) -> str:
    """A path on this console to go to after sign-in; anything else goes to the apps."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/apps"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return "/apps"
    return value


def _finish(visit: Visit, response: Response, *, shown_notice: bool) -> None:
    response.headers["Cache-Control"] = "no-store"
    if visit.fresh:
        set_session_cookie(response, visit.request, visit.console.seal.seal(visit.session))
    if shown_notice:
        clear_notice_cookie(response, visit.request)


def _return_path(request: Request) -> str:
    """Where to come back after signing in: the page asked for, or for a form sent after
    the session ended, the page the form was on (a form's address takes POSTs only)."""
    if request.method != "GET":
        referer = urlsplit(request.headers.get("referer", ""))
        if referer.netloc == request.url.netloc and referer.path.startswith("/"):
            return referer.path
        return "/apps"
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


T = TypeVar("T")


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) use case off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)


async def upload(
    visit: Visit, app: str, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run an upload use case into ``app`` off the event loop, within the upload rate
    limits (`certward.services.upload_limits`); a 429 remembers its ``Retry-After``."""
    use_case = partial(function, *args, **kwargs)
    try:
        return await run_in_threadpool(
            upload_limits.guarded, visit.context, visit.who, app, use_case
        )
    except TooManyRequests as refusal:
        visit.retry_after = refusal.retry_after
        raise


async def posted(request: Request, *, signed_in: bool = True) -> tuple[Visit, ConsoleForm]:
    """The visit and its form, once the form's CSRF token matched the session's."""
    visit = await begin(request, signed_in=signed_in)
    form = await read_form(request, max_file_bytes=visit.context.settings.max_upload_bytes)
    check_csrf(visit.session, form.text(CSRF_FIELD))
    return visit, form


def success(text: str) -> Notice:
    return Notice(kind="success", text=text)


def lines(value: str) -> list[str]:
    """Entries typed one per line (commas also separate them)."""
    return [p.strip() for p in value.replace(",", "\n").splitlines() if p.strip()]


def app_path(app: str, suffix: str = "") -> str:
    return f"/apps/{segment(app)}{suffix}"


def env_path(app: str, env: str, suffix: str = "") -> str:
    return f"/apps/{segment(app)}/environments/{segment(env)}{suffix}"


def plan_refusal(refusal: Forbidden) -> str:
    """The 403 text of a free app, shown in place of what needs a licensed plan."""
    if refusal.code != RefusalCode.PLAN_REQUIRED:
        raise refusal
    return refusal.message
