"""Certificate authorities that an environment's outgoing calls trust (staged)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import NotFound, RefusalCode
from certward.model import App, CertificateAuthority, Environment
from certward.pki.checks import Purpose
from certward.pki.inspect import describe_certificate
from certward.pki.problems import Problem
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment, require_licensed
from certward.services.staging import applied_snapshot, authority_state
from certward.services.uploads import Upload, judge_uploads


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityView:
    id: str
    app: str
    environment: str
    certificates: tuple[dict[str, Any], ...]
    state: str
    created_at: datetime
    problems: tuple[Problem, ...] = field(default=())


def upload(
    ctx: Context, principal: Principal, app_name: str, env_name: str, *, file: Upload
) -> AuthorityView:
    """Judge the upload as CA certificates (leaves refused by name) and stage it."""
    with ctx.database.reading() as session:
        app, _ = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
    judgement = judge_uploads(ctx, [file], app=app_name, password=None, purpose=Purpose.AUTHORITY)
    summaries = [_summary(describe_certificate(c)) for c in judgement.chain]
    pem = "".join(
        c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in judgement.chain
    )
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        row = CertificateAuthority(
            environment_id=environment.id,
            certificates_pem=pem,
            subjects=summaries,
            created_at=ctx.clock.now(),
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            ctx,
            principal,
            action="certificate_authority.upload",
            object_type="certificate_authority",
            object_id=row.id,
            app_id=app.id,
            after=authority_state(row).to_json(),
        )
        return _view(session, app, environment, row, problems=judgement.problems)


def list_authorities(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> list[AuthorityView]:
    with ctx.database.reading() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        require_licensed(app)
        rows = session.scalars(
            select(CertificateAuthority)
            .where(
                CertificateAuthority.environment_id == environment.id,
                CertificateAuthority.deleted_at.is_(None),
            )
            .order_by(CertificateAuthority.created_at, CertificateAuthority.id)
        )
        return [_view(session, app, environment, row) for row in rows]


def get_authority(
    ctx: Context, principal: Principal, app_name: str, env_name: str, authority_id: str
) -> AuthorityView:
    with ctx.database.reading() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        require_licensed(app)
        return _view(session, app, environment, _find(session, environment, authority_id))


def delete_authority(
    ctx: Context, principal: Principal, app_name: str, env_name: str, authority_id: str
) -> None:
    """Stage the removal; applied versions keep referring to the row."""
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        row = _find(session, environment, authority_id)
        row.deleted_at = ctx.clock.now()
        audit.record(
            session,
            ctx,
            principal,
            action="certificate_authority.delete",
            object_type="certificate_authority",
            object_id=row.id,
            app_id=app.id,
            before=authority_state(row).to_json(),
        )


def _summary(info: Any) -> dict[str, Any]:
    return {
        "subject": info.subject,
        "issuer": info.issuer,
        "serial": info.serial,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "sha256_fingerprint": info.sha256_fingerprint,
        "self_signed": info.self_signed,
    }


def _find(session: Session, environment: Environment, authority_id: str) -> CertificateAuthority:
    row = session.get(CertificateAuthority, authority_id)
    if row is None or row.environment_id != environment.id or row.deleted_at is not None:
        raise NotFound(
            f"No certificate authority {authority_id!r} in this environment.",
            code=RefusalCode.CERTIFICATE_AUTHORITY_NOT_FOUND,
        )
    return row


def _view(
    session: Session,
    app: App,
    environment: Environment,
    row: CertificateAuthority,
    *,
    problems: tuple[Problem, ...] = (),
) -> AuthorityView:
    applied = applied_snapshot(session, environment)
    applied_ids = {a.id for a in applied.authorities} if applied else set()
    return AuthorityView(
        id=row.id,
        app=app.name,
        environment=environment.name,
        certificates=tuple(row.subjects),
        state="applied" if row.id in applied_ids else "staged",
        created_at=row.created_at,
        problems=problems,
    )
