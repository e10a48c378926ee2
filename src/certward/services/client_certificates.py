"""Outgoing client certificates of an environment: upload, read, edit, remove (all staged).

Pins (host names and ``Module.Service`` names) and call names share one namespace
per environment, as they do in the runtime's ``ClientCertificateUsages``: a name used
by two certificates is refused at once, naming both (the reference silently lets the
last one win). Compared case-insensitively; host names are stored in lower case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import Conflict, InvalidRequest, NotFound, RefusalCode
from certward.model import (
    App,
    ClientCertificate,
    ClientCertificatePin,
    Environment,
)
from certward.pki.checks import Purpose
from certward.pki.convert import private_key_der
from certward.pki.inspect import chain_summary, describe_certificate
from certward.pki.names import HostnameError, normalize_hostname
from certward.pki.problems import Problem
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment, require_licensed
from certward.services.staging import (
    applied_client_certificate_states,
    client_certificate_state,
    key_aad,
    password_aad,
)
from certward.services.uploads import Upload, judge_uploads

MAX_PINS = 100
MAX_PAGE = 1000
# ``Module.Service``: exactly two identifiers; told apart from a two-label host name by
# an upper-case letter or an underscore, which host names never need.
_SERVICE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_CALL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCertificateView:
    id: str
    app: str
    environment: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256_fingerprint: str
    chain: tuple[dict[str, str], ...]
    pins: tuple[str, ...]
    call_name: str | None
    description: str
    state: str  # "staged" (new or edited since the applied version) or "applied"
    created_at: datetime
    updated_at: datetime
    problems: tuple[Problem, ...] = field(default=())  # warnings found at upload


def normalize_pin(pin: str) -> str:
    """A host name in lower-case A-label form, or a ``Module.Service`` name as given."""
    text = pin.strip()
    if any(c.isspace() or not c.isprintable() for c in text):  # e.g. "a\n.example.com"
        raise InvalidRequest(
            f"The pin {pin!r} contains spaces or control characters.", code=RefusalCode.INVALID_PIN
        )
    if _SERVICE_NAME.fullmatch(text) and (not text.islower() or "_" in text):
        return text
    try:
        return normalize_hostname(text)
    except HostnameError:
        pass
    raise InvalidRequest(
        f"The pin {pin!r} is neither a host name nor a Module.Service name.",
        code=RefusalCode.INVALID_PIN,
    )


def normalize_pins(pins: Iterable[str]) -> tuple[str, ...]:
    normalized: dict[str, str] = {}
    for pin in pins:
        value = normalize_pin(pin)
        normalized.setdefault(value.lower(), value)
    if len(normalized) > MAX_PINS:
        raise InvalidRequest(
            f"A client certificate may have at most {MAX_PINS} pins.",
            code=RefusalCode.TOO_MANY_PINS,
        )
    return tuple(sorted(normalized.values()))


def check_call_name(call_name: str | None) -> str | None:
    if call_name is None or call_name.strip() == "":
        return None
    value = call_name.strip()
    if not _CALL_NAME.match(value):
        raise InvalidRequest(
            f"The call name {call_name!r} must be 1-255 letters, digits, dots, dashes or "
            "underscores, starting with a letter or digit.",
            code=RefusalCode.INVALID_CALL_NAME,
        )
    return value


def upload(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    *,
    file: Upload,
    password: bytes | None,
    key: Upload | None = None,
    chain: Upload | None = None,
    description: str = "",
    pins: Sequence[str] = (),
    call_name: str | None = None,
) -> ClientCertificateView:
    """Judge the upload as a client certificate and stage it; 422 with problems if unusable."""
    pins_ = normalize_pins(pins)
    call_name_ = check_call_name(call_name)
    _check_description(description)
    with ctx.database.reading() as session:  # refuse early, before any expensive work
        app, _ = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
    uploads = [u for u in (file, key, chain) if u is not None]
    judgement = judge_uploads(
        ctx, uploads, app=app_name, password=password, purpose=Purpose.CLIENT_CERTIFICATE
    )
    leaf, private_key = judgement.leaf, judgement.material.private_key
    if leaf is None or private_key is None:  # judge_uploads refuses these; keeps mypy sure
        raise InvalidRequest("The upload holds no usable client certificate.")
    info = describe_certificate(leaf)
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        _check_conflicts(session, environment, None, info.subject, pins_, call_name_)
        now = ctx.clock.now()
        row = ClientCertificate(
            environment_id=environment.id,
            description=description,
            call_name=call_name_,
            subject=info.subject,
            issuer=info.issuer,
            serial=info.serial,
            not_before=info.not_before,
            not_after=info.not_after,
            sha256_fingerprint=info.sha256_fingerprint,
            certificate_pem=leaf.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            chain_pem="".join(
                c.public_bytes(serialization.Encoding.PEM).decode("ascii")
                for c in judgement.chain[1:]
            ),
            private_key_ciphertext=b"",
            key_id=ctx.secrets.keyring.active.key_id,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()  # assigns the id the ciphertexts are bound to
        row.private_key_ciphertext = ctx.secrets.encrypt(
            private_key_der(private_key), aad=key_aad(row.id)
        )
        if password:
            row.password_ciphertext = ctx.secrets.encrypt(password, aad=password_aad(row.id))
        row.pins = [ClientCertificatePin(pin=p, environment_id=environment.id) for p in pins_]
        _flush_or_conflict(session)
        state = client_certificate_state(row).to_json()
        audit.record(
            session,
            ctx,
            principal,
            action="client_certificate.upload",
            object_type="client_certificate",
            object_id=row.id,
            app_id=app.id,
            after=state,
        )
        return _view(session, app, environment, row, problems=judgement.problems)


def list_certificates(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    *,
    limit: int = 100,
    after: str | None = None,
) -> list[ClientCertificateView]:
    """Certificates staged in the environment, ordered by id; ``after`` pages on."""
    limit = max(1, min(limit, MAX_PAGE))
    with ctx.database.reading() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        require_licensed(app)
        # Plain rows, not ORM objects: a page of 100 costs a tenth of the time.
        query = select(*_LISTED).where(
            ClientCertificate.environment_id == environment.id,
            ClientCertificate.deleted_at.is_(None),
        )
        if after is not None:
            query = query.where(ClientCertificate.id > after)
        rows = session.execute(query.order_by(ClientCertificate.id).limit(limit)).all()
        pins: dict[str, list[str]] = {row.id: [] for row in rows}
        if pins:
            for certificate_id, pin in session.execute(
                select(ClientCertificatePin.client_certificate_id, ClientCertificatePin.pin).where(
                    ClientCertificatePin.client_certificate_id.in_(pins)
                )
            ):
                pins[certificate_id].append(pin)
        applied = applied_client_certificate_states(session, environment)
        return [
            _view(session, app, environment, row, pins=pins[row.id], applied=applied)
            for row in rows
        ]


_LISTED = (
    ClientCertificate.id,
    ClientCertificate.subject,
    ClientCertificate.issuer,
    ClientCertificate.serial,
    ClientCertificate.not_before,
    ClientCertificate.not_after,
    ClientCertificate.sha256_fingerprint,
    ClientCertificate.chain_pem,
    ClientCertificate.call_name,
    ClientCertificate.description,
    ClientCertificate.created_at,
    ClientCertificate.updated_at,
)


def get_certificate(
    ctx: Context, principal: Principal, app_name: str, env_name: str, certificate_id: str
) -> ClientCertificateView:
    with ctx.database.reading() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        require_licensed(app)
        row = _find(session, environment, certificate_id)
        return _view(session, app, environment, row)


_UNSET: Any = object()


def update_certificate(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    certificate_id: str,
    *,
    pins: Sequence[str] | None = None,
    call_name: str | None = _UNSET,
    description: str | None = None,
) -> ClientCertificateView:
    """Change pins, call name or description (staged); conflicts are refused with 409."""
    pins_ = normalize_pins(pins) if pins is not None else None
    call_name_ = check_call_name(call_name) if call_name is not _UNSET else _UNSET
    if description is not None:
        _check_description(description)
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        row = _find(session, environment, certificate_id)
        before = client_certificate_state(row).to_json()
        new_pins = pins_ if pins_ is not None else tuple(p.pin for p in row.pins)
        new_call_name = row.call_name if call_name_ is _UNSET else call_name_
        _check_conflicts(session, environment, row, row.subject, new_pins, new_call_name)
        if pins_ is not None:
            row.pins = []
            session.flush()
            row.pins = [ClientCertificatePin(pin=p, environment_id=environment.id) for p in pins_]
        row.call_name = new_call_name
        if description is not None:
            row.description = description
        row.updated_at = ctx.clock.now()
        _flush_or_conflict(session)
        after = client_certificate_state(row).to_json()
        audit.record(
            session,
            ctx,
            principal,
            action="client_certificate.update",
            object_type="client_certificate",
            object_id=row.id,
            app_id=app.id,
            before=before,
            after=after,
        )
        return _view(session, app, environment, row)


def delete_certificate(
    ctx: Context, principal: Principal, app_name: str, env_name: str, certificate_id: str
) -> None:
    """Stage the removal. The row and its key stay while an applied version refers to it."""
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        require_licensed(app)
        row = _find(session, environment, certificate_id)
        before = client_certificate_state(row).to_json()
        retire_certificate(session, row, ctx.clock.now())
        audit.record(
            session,
            ctx,
            principal,
            action="client_certificate.delete",
            object_type="client_certificate",
            object_id=row.id,
            app_id=app.id,
            before=before,
        )


def retire_certificate(session: Session, row: ClientCertificate, at: datetime) -> None:
    """Mark removed and free its pins and call name for other certificates."""
    row.deleted_at = at
    row.call_name = None
    row.pins = []
    session.flush()


def _check_description(description: str) -> None:
    if len(description) > 1000:
        raise InvalidRequest(
            "A description may be at most 1000 characters.", code=RefusalCode.INVALID_DESCRIPTION
        )


def _find(session: Session, environment: Environment, certificate_id: str) -> ClientCertificate:
    row = session.get(ClientCertificate, certificate_id)
    if row is None or row.environment_id != environment.id or row.deleted_at is not None:
        raise NotFound(
            f"No client certificate {certificate_id!r} in this environment.",
            code=RefusalCode.CLIENT_CERTIFICATE_NOT_FOUND,
        )
    return row


def _check_conflicts(
    session: Session,
    environment: Environment,
    row: ClientCertificate | None,
    subject: str,
    pins: Sequence[str],
    call_name: str | None,
) -> None:
    """409 when a pin or call name is taken by another certificate of the environment."""
    wanted = {p.lower(): ("pin", p) for p in pins}
    if call_name is not None:
        wanted.setdefault(call_name.lower(), ("call name", call_name))
    if not wanted:
        return
    taken_pins = session.execute(
        select(ClientCertificatePin.pin, ClientCertificatePin.client_certificate_id).where(
            ClientCertificatePin.environment_id == environment.id,
            func.lower(ClientCertificatePin.pin).in_(wanted),
        )
    ).all()
    taken_call_names = session.execute(
        select(ClientCertificate.call_name, ClientCertificate.id).where(
            ClientCertificate.environment_id == environment.id,
            ClientCertificate.deleted_at.is_(None),
            func.lower(ClientCertificate.call_name).in_(wanted),
        )
    ).all()
    clashes = [
        (str(name), holder)
        for name, holder in [*taken_pins, *taken_call_names]
        if row is None or holder != row.id
    ]
    if not clashes:
        return
    subjects = dict(
        session.execute(
            select(ClientCertificate.id, ClientCertificate.subject).where(
                ClientCertificate.id.in_({holder for _, holder in clashes})
            )
        ).all()
    )
    conflicts = [
        {
            "field": wanted[name.lower()][0],
            "value": wanted[name.lower()][1],
            "client_certificate_id": holder,
            "client_certificate_subject": subjects.get(holder, ""),
        }
        for name, holder in clashes
    ]
    first = conflicts[0]
    this = (
        f"client certificate {row.id} ({subject})"
        if row
        else f"the uploaded certificate ({subject})"
    )
    raise Conflict(
        f"The {first['field']} {first['value']!r} of {this} is already used by client "
        f"certificate {first['client_certificate_id']} ({first['client_certificate_subject']}) "
        "in this environment; each pin and call name may name one certificate only.",
        code=RefusalCode.PIN_CONFLICT,
        detail={"conflicts": conflicts},
    )


def _flush_or_conflict(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the name in between
        raise Conflict(
            "A pin or call name was taken by another certificate at the same time; try again.",
            code=RefusalCode.PIN_CONFLICT,
        ) from exc


def _view(
    session: Session,
    app: App,
    environment: Environment,
    row: ClientCertificate | Any,
    *,
    pins: Sequence[str] | None = None,
    applied: dict[str, dict[str, Any]] | None = None,
    problems: Iterable[Problem] = (),
) -> ClientCertificateView:
    """The view of an ORM row, or of a plain query row of `_LISTED` with its ``pins``."""
    if applied is None:
        applied = applied_client_certificate_states(session, environment)
    state = client_certificate_state(row, pins)
    chain = chain_summary(row.chain_pem)
    return ClientCertificateView(
        id=row.id,
        app=app.name,
        environment=environment.name,
        subject=row.subject,
        issuer=row.issuer,
        serial=row.serial,
        not_before=row.not_before,
        not_after=row.not_after,
        sha256_fingerprint=row.sha256_fingerprint,
        chain=chain,
        pins=state.pins,
        call_name=row.call_name,
        description=row.description,
        state="applied" if applied.get(row.id) == state.to_json() else "staged",
        created_at=row.created_at,
        updated_at=row.updated_at,
        problems=tuple(problems),
    )
