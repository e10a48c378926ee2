"""Bearer tokens: created (shown once), listed, revoked, and turned into principals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certward.authorization import Principal, generate_token, grant_action, hash_token
from certward.errors import Conflict, InvalidRequest, NotFound, RefusalCode, Unauthorized
from certward.model import App, Environment, Token
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_app, find_environment, require
from certward.vocabulary import Role

BOOTSTRAP_DESCRIPTION = "bootstrap admin token"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenView:
    id: str
    role: Role
    app: str | None
    environment: str | None
    description: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    """A token just created: ``token`` is its value, shown this once only."""

    view: TokenView
    token: str

    def __repr__(self) -> str:
        return f"NewToken(id={self.view.id!r}, role={self.view.role.value!r})"


def authenticate(ctx: Context, token: str | None) -> Principal:
    """The principal of a bearer token; 401 when missing, unknown or revoked."""
    if not token:
        raise Unauthorized("A bearer token is required (Authorization: Bearer ...).")
    with ctx.database.reading() as session:
        row = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
        if row is None or row.revoked_at is not None:
            raise Unauthorized("The bearer token is unknown or revoked.")
        return Principal(
            token_id=row.id, role=row.role, app_id=row.app_id, environment_id=row.environment_id
        )


def ensure_admin_token(ctx: Context, token: str) -> bool:
    """Register ``token`` as an admin token unless it already is one; True when added."""
    with ctx.database.transaction() as session:
        digest = hash_token(token)
        if session.scalar(select(Token.id).where(Token.token_hash == digest)):
            return False
        session.add(
            Token(
                token_hash=digest,
                role=Role.ADMIN,
                description=BOOTSTRAP_DESCRIPTION,
                created_at=ctx.clock.now(),
            )
        )
        return True


def has_admin_token(ctx: Context) -> bool:
    with ctx.database.reading() as session:
        return (
            session.scalar(
                select(Token.id).where(Token.role == Role.ADMIN, Token.revoked_at.is_(None))
            )
            is not None
        )


def create_token(
    ctx: Context,
    principal: Principal,
    *,
    role: Role,
    app_name: str | None,
    environment_name: str | None,
    description: str,
) -> NewToken:
    """A new token of ``role`` scoped as the role requires; members grant viewer/runtime."""
    if role is Role.ADMIN and (app_name or environment_name):
        raise InvalidRequest(
            "An admin token is not scoped to an app.", code=RefusalCode.INVALID_SCOPE
        )
    if role in (Role.MEMBER, Role.VIEWER) and (not app_name or environment_name):
        raise InvalidRequest(
            f"A {role.value} token needs an app and no environment.", code=RefusalCode.INVALID_SCOPE
        )
    if role is Role.RUNTIME and not (app_name and environment_name):
        raise InvalidRequest(
            "A runtime token needs an app and an environment.", code=RefusalCode.INVALID_SCOPE
        )
    value = generate_token(ctx.randomness)
    with ctx.database.transaction() as session:
        app: App | None = None
        environment: Environment | None = None
        if environment_name is not None and app_name is not None:
            app, environment = find_environment(
                session, principal, app_name, environment_name, grant_action(role)
            )
        elif app_name is not None:
            app = find_app(session, principal, app_name, grant_action(role))
        else:
            require(principal, grant_action(role))
        row = Token(
            token_hash=hash_token(value),
            role=role,
            app_id=app.id if app else None,
            environment_id=environment.id if environment else None,
            description=description,
            created_at=ctx.clock.now(),
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError as exc:  # a 256-bit collision: never in practice
            raise Conflict("Token could not be created; try again.") from exc
        audit.record(
            session,
            ctx,
            principal,
            action="token.create",
            object_type="token",
            object_id=row.id,
            app_id=row.app_id,
            after={"role": role.value, "app": app_name, "environment": environment_name},
        )
        return NewToken(view=_view(session, row), token=value)


def list_tokens(
    ctx: Context, principal: Principal, *, app_name: str | None = None
) -> list[TokenView]:
    """Admins see every token; members see their app's (never the values)."""
    with ctx.database.reading() as session:
        query = select(Token).order_by(Token.created_at, Token.id)
        if app_name is not None or principal.app_id is not None:
            app = find_app(
                session,
                principal,
                app_name or _app_name(session, principal.app_id),
                grant_action(Role.VIEWER),
            )
            query = query.where(Token.app_id == app.id)
        else:
            require(principal, grant_action(Role.ADMIN))
        return [_view(session, row) for row in session.scalars(query)]


def revoke_token(ctx: Context, principal: Principal, token_id: str) -> TokenView:
    """Revoke a token; members may revoke their app's viewer and runtime tokens."""
    with ctx.database.transaction() as session:
        row = session.get(Token, token_id)
        if row is None:
            raise NotFound("No such token.", code=RefusalCode.TOKEN_NOT_FOUND)
        try:
            require(principal, grant_action(row.role), row.app_id, row.environment_id)
        except NotFound:
            raise NotFound("No such token.", code=RefusalCode.TOKEN_NOT_FOUND) from None
        if row.revoked_at is None:
            row.revoked_at = ctx.clock.now()
            audit.record(
                session,
                ctx,
                principal,
                action="token.revoke",
                object_type="token",
                object_id=row.id,
                app_id=row.app_id,
            )
        return _view(session, row)


def _app_name(session: Session, app_id: str | None) -> str:
    app = session.get(App, app_id) if app_id else None
    return app.name if app else ""


def _view(session: Session, row: Token) -> TokenView:
    environment = session.get(Environment, row.environment_id) if row.environment_id else None
    return TokenView(
        id=row.id,
        role=row.role,
        app=_app_name(session, row.app_id) or None,
        environment=environment.name if environment else None,
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
