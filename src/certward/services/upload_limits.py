"""Rate limits on every use case that takes uploaded material, for the API and console.

`guarded` runs such a use case (client certificate, authority, TLS certificate, signed
CSR certificate, an access profile's client CAs) under the process's `UploadLimits`:
429 ``rate-limited`` before any parsing when the caller's token or the app is over its
upload rate or its failed-upload rate, and a refused upload counted as a failure.

The app's buckets count only requests the token may make on that app: an app-scoped
token aimed at another app (answered 404 by the use case) spends its own token's
budget, never the other app's, so no tenant can starve another of uploads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select

from certward.authorization import Principal
from certward.errors import MaterialError, Refusal, TooManyRequests
from certward.model import App
from certward.services.context import Context

T = TypeVar("T")

# Refusals that judge what was uploaded (a wrong password, bad material, a clash):
# these count as failed uploads. Not 401/403/404: nothing was looked at.
FAILED_UPLOAD_STATUSES = frozenset({400, 409, 413, 415, 422})


def guarded(ctx: Context, principal: Principal, app_name: str, use_case: Callable[[], T]) -> T:
    """Run ``use_case`` (an upload into ``app_name``) within the upload rate limits."""
    app = _limited_app(ctx, principal, app_name)
    token = principal.token_id
    refused = ctx.upload_limits.admit(token=token, app=app, now=ctx.clock.now())
    if refused is not None:
        limit, wait = refused
        scope = "this token" if limit.value.endswith("token") else f"app {app_name!r}"
        what = "failed uploads" if limit.value.startswith("failed") else "uploads"
        raise TooManyRequests(
            f"Too many {what} for {scope}: try again in {wait} s.",
            retry_after=wait,
            limit=limit.value,
        )
    try:
        return use_case()
    except MaterialError:
        ctx.upload_limits.failed(token=token, app=app, now=ctx.clock.now())
        raise
    except Refusal as refusal:
        if refusal.status in FAILED_UPLOAD_STATUSES:
            ctx.upload_limits.failed(token=token, app=app, now=ctx.clock.now())
        raise


def _limited_app(ctx: Context, principal: Principal, app_name: str) -> str | None:
    """The id of the app whose buckets this upload counts against (None: none of them)."""
    with ctx.database.reading() as session:
        app_id = session.scalar(select(App.id).where(App.name == app_name))
    if app_id is None or (principal.app_id is not None and principal.app_id != app_id):
        return None
    return app_id
