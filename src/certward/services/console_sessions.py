"""Console sessions on the server: started at sign-in, looked up on every visit, ended at
sign-out.

The session cookie is sealed and carries the bearer token, but a sealed cookie alone
would stay valid for its whole lifetime after sign-out (a saved copy could still act).
Each signed-in session therefore has a row keyed by the SHA-256 of a random secret the
cookie carries; sign-out marks it ended, and a cookie whose row is ended, expired or
gone signs nobody in. Rows are swept once they expire.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete

from certward.model import ConsoleSessionRecord
from certward.services.context import Context

_SECRET_BYTES = 32


def _row_id(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def start(ctx: Context, *, token_id: str | None, lifetime: timedelta) -> str:
    """A new session's secret (for the sealed cookie); its row records when it expires."""
    secret = ctx.randomness.token_urlsafe(_SECRET_BYTES)
    now = ctx.clock.now()
    with ctx.database.transaction() as session:
        session.execute(delete(ConsoleSessionRecord).where(ConsoleSessionRecord.expires_at <= now))
        session.add(
            ConsoleSessionRecord(
                id=_row_id(secret),
                token_id=token_id,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return secret


def is_live(ctx: Context, secret: str) -> bool:
    """Whether the session named by ``secret`` was started here and is neither ended nor expired."""
    with ctx.database.reading() as session:
        row = session.get(ConsoleSessionRecord, _row_id(secret))
        return row is not None and row.ended_at is None and ctx.clock.now() < row.expires_at


def end(ctx: Context, secret: str) -> None:
    """End the session named by ``secret`` (sign-out); nothing happens for an unknown one."""
    with ctx.database.transaction() as session:
        row = session.get(ConsoleSessionRecord, _row_id(secret))
        if row is not None and row.ended_at is None:
            row.ended_at = ctx.clock.now()
