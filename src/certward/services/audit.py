"""The audit log: who changed what, when, with digests before and after — never secrets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.model import App, AuditEvent
from certward.services.context import Context
from certward.services.lookups import find_app, require

MAX_PAGE = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditView:
    id: int
    at: datetime
    actor_token_id: str | None
    action: str
    object_type: str
    object_id: str
    app: str | None
    before_digest: str | None
    after_digest: str | None
    detail: dict[str, Any]


def digest_of(state: dict[str, Any] | None) -> str | None:
    """SHA-256 of a public description of an object (callers never pass secrets)."""
    if state is None:
        return None
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record(
    session: Session,
    ctx: Context,
    principal: Principal,
    *,
    action: str,
    object_type: str,
    object_id: str,
    app_id: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to the use case's transaction.

    An update whose ``after`` equals its ``before`` and that carries no ``detail`` (a
    PATCH that sets nothing, or every field to what it was) would record nothing: no
    event is added.
    """
    before_digest, after_digest = digest_of(before), digest_of(after)
    if before is not None and before_digest == after_digest and not detail:
        return
    session.add(
        AuditEvent(
            at=ctx.clock.now(),
            actor_token_id=principal.token_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            app_id=app_id,
            before_digest=before_digest,
            after_digest=after_digest,
            detail=detail or {},
        )
    )


def list_events(
    ctx: Context,
    principal: Principal,
    *,
    app_name: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditView]:
    """Newest first. Admins see everything; members see their app's events."""
    limit = max(1, min(limit, MAX_PAGE))
    with ctx.database.reading() as session:
        query = select(AuditEvent, App.name).outerjoin(App, App.id == AuditEvent.app_id)
        if app_name is not None:
            app = find_app(session, principal, app_name, Action.READ_AUDIT)
            query = query.where(AuditEvent.app_id == app.id)
        elif principal.app_id is not None:
            require(principal, Action.READ_AUDIT, principal.app_id)
            query = query.where(AuditEvent.app_id == principal.app_id)
        else:
            require(principal, Action.READ_AUDIT)
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        rows = session.execute(query.order_by(AuditEvent.id.desc()).limit(limit)).all()
        return [
            AuditView(
                id=event.id,
                at=event.at,
                actor_token_id=event.actor_token_id,
                action=event.action,
                object_type=event.object_type,
                object_id=event.object_id,
                app=app,
                before_digest=event.before_digest,
                after_digest=event.after_digest,
                detail=dict(event.detail or {}),
            )
            for event, app in rows
        ]
