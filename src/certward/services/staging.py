"""Staged versus applied: snapshots, pending changes, restart, rollback and versions.

Rows in the database are the staged state: client certificates, authorities, the
environment's settings and its path rules. A restart validates everything again,
freezes the staged state into a new numbered version (with its digest) and makes it
the applied one; a failed validation changes nothing. Rollback stages the content of
an earlier version and applies it as a new version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from certward.authorization import Action, Principal
from certward.bundles.files import BundleClientCertificate, BundleSpec, build_bundle
from certward.dataplane.state import RuleKind
from certward.errors import InvalidRequest, NotFound, RefusalCode, SecretError
from certward.model import (
    AccessProfile,
    App,
    CertificateAuthority,
    ClientCertificate,
    ClientCertificatePin,
    Environment,
    EnvironmentVersion,
    PathRule,
)
from certward.pki.checks import Purpose, judge
from certward.pki.convert import Pkcs12Profile
from certward.pki.material import Material, MaterialKind, load_stored_private_key
from certward.pki.problems import Problem, ProblemCode
from certward.secrets import associated_data
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment
from certward.snapshot import (
    AuthorityState,
    Change,
    ClientCertificateState,
    EnvironmentSnapshot,
    PathRuleState,
    diff,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionView:
    version: int
    digest: str
    applied_at: datetime
    actor: str | None
    current: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangesView:
    applied_version: int | None
    applied_digest: str | None
    staged_digest: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartView:
    version: int
    digest: str
    applied_at: datetime
    changed: bool
    problems: tuple[Problem, ...]


def key_aad(certificate_id: str) -> bytes:
    """Binds a client certificate's encrypted key to its row."""
    return associated_data("client_certificates", certificate_id, "private_key")


def password_aad(certificate_id: str) -> bytes:
    """Binds a client certificate's encrypted upload password to its row."""
    return associated_data("client_certificates", certificate_id, "password")


def client_certificate_state(
    row: ClientCertificate | CertificateRow, pins: Sequence[str] | None = None
) -> ClientCertificateState:
    """The staged state of a certificate (an ORM row, or a plain row with ``pins`` given)."""
    if pins is None:
        if not isinstance(row, ClientCertificate):
            raise TypeError("pins are needed for a plain row")
        pins = [p.pin for p in row.pins]
    return ClientCertificateState(
        id=row.id,
        subject=row.subject,
        sha256_fingerprint=row.sha256_fingerprint,
        not_after=row.not_after.isoformat(),
        pins=tuple(sorted(pins)),
        call_name=row.call_name,
        description=row.description,
    )


class CertificateRow(Protocol):
    """The public columns of a client certificate, as a plain query row carries them."""

    id: str
    subject: str
    sha256_fingerprint: str
    not_after: datetime
    call_name: str | None
    description: str


def authority_state(row: CertificateAuthority) -> AuthorityState:
    return AuthorityState(
        id=row.id,
        certificates=tuple(s["sha256_fingerprint"] for s in row.subjects),
        subjects=tuple(s["subject"] for s in row.subjects),
    )


def load_pins(session: Session, rows: Sequence[ClientCertificate]) -> None:
    """Fill every row's pins with one indexed query.

    (The relationship's own eager loading joins through the composite key, which
    SQLite plans as a scan of every pin in the environment.)
    """
    by_certificate: dict[str, list[ClientCertificatePin]] = {row.id: [] for row in rows}
    if by_certificate:
        pins = session.scalars(
            select(ClientCertificatePin).where(
                ClientCertificatePin.client_certificate_id.in_(by_certificate)
            )
        )
        for pin in pins:
            by_certificate[pin.client_certificate_id].append(pin)
    for row in rows:
        set_committed_value(row, "pins", sorted(by_certificate[row.id], key=lambda p: p.pin))


def path_rule_state(row: PathRule) -> PathRuleState:
    return PathRuleState(prefix=row.prefix, rule=RuleKind(row.rule), profile=row.profile_name)


def staged_path_rules(session: Session, environment: Environment) -> tuple[PathRuleState, ...]:
    """The environment's staged path rules, by prefix."""
    rows = session.scalars(
        select(PathRule).where(PathRule.environment_id == environment.id).order_by(PathRule.prefix)
    )
    return tuple(path_rule_state(row) for row in rows)


def stage_path_rules(
    session: Session, environment: Environment, rules: Sequence[PathRuleState]
) -> None:
    """Make the environment's path-rule rows exactly ``rules`` (the caller checked them)."""
    wanted = {rule.prefix: rule for rule in rules}
    for row in session.scalars(select(PathRule).where(PathRule.environment_id == environment.id)):
        rule = wanted.pop(row.prefix, None)
        if rule is None:
            session.delete(row)
        else:
            row.rule = rule.rule.value
            row.profile_name = rule.profile
    session.add_all(
        PathRule(
            environment_id=environment.id,
            prefix=rule.prefix,
            rule=rule.rule.value,
            profile_name=rule.profile,
        )
        for rule in wanted.values()
    )
    session.flush()


def staged_snapshot(session: Session, environment: Environment) -> EnvironmentSnapshot:
    """What a restart would apply now."""
    certificates = session.scalars(
        select(ClientCertificate).where(
            ClientCertificate.environment_id == environment.id,
            ClientCertificate.deleted_at.is_(None),
        )
    ).all()
    load_pins(session, certificates)
    authorities = session.scalars(
        select(CertificateAuthority).where(
            CertificateAuthority.environment_id == environment.id,
            CertificateAuthority.deleted_at.is_(None),
        )
    ).all()
    return EnvironmentSnapshot(
        pkcs12_profile=environment.pkcs12_profile.value,
        client_certificates=tuple(client_certificate_state(c) for c in certificates),
        authorities=tuple(authority_state(a) for a in authorities),
        no_client_certificate=tuple(environment.no_client_certificate or ()),
        path_rules=staged_path_rules(session, environment),
    )


def applied_snapshot(session: Session, environment: Environment) -> EnvironmentSnapshot | None:
    """The snapshot of the applied version, or None before the first restart."""
    applied = _applied(session, environment)
    return applied.snapshot if applied is not None else None


def applied_client_certificate_states(
    session: Session, environment: Environment
) -> dict[str, dict[str, Any]]:
    """Each applied client certificate's state (JSON form) by id; empty before a restart."""
    applied = _applied(session, environment)
    return applied.client_certificates if applied is not None else {}


@dataclass(frozen=True, slots=True)
class _Applied:
    snapshot: EnvironmentSnapshot
    client_certificates: dict[str, dict[str, Any]]


def _applied(session: Session, environment: Environment) -> _Applied | None:
    """The applied version, parsed once per (environment, version, digest) and kept.

    Versions never change: a read costs one indexed lookup of the digest, not a JSON
    parse (with 10,000 certificates a parse takes longer than the request itself).
    """
    if environment.applied_version is None:
        return None
    this_version = (
        EnvironmentVersion.environment_id == environment.id,
        EnvironmentVersion.version == environment.applied_version,
    )
    digest = session.scalar(select(EnvironmentVersion.digest).where(*this_version))
    if digest is None:
        return None
    key = (environment.id, environment.applied_version, digest)
    applied = _APPLIED.get(key)
    if applied is None:
        data = session.scalar(select(EnvironmentVersion.snapshot).where(*this_version))
        snapshot = EnvironmentSnapshot.from_json(data or {})
        applied = _Applied(
            snapshot=snapshot,
            client_certificates={c.id: c.to_json() for c in snapshot.client_certificates},
        )
        if len(_APPLIED) >= _APPLIED_CACHE_SIZE:
            _APPLIED.pop(next(iter(_APPLIED)))
        _APPLIED[key] = applied
    return applied


_APPLIED_CACHE_SIZE = 64
_APPLIED: dict[tuple[str, int, str], _Applied] = {}


def pending_changes(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> ChangesView:
    with ctx.database.reading() as session:
        _, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        applied = applied_snapshot(session, environment)
        staged = staged_snapshot(session, environment)
        return ChangesView(
            applied_version=environment.applied_version,
            applied_digest=applied.digest() if applied else None,
            staged_digest=staged.digest(),
            changes=tuple(diff(applied, staged)),
        )


def list_versions(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> list[VersionView]:
    with ctx.database.reading() as session:
        _, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        rows = session.scalars(
            select(EnvironmentVersion)
            .where(EnvironmentVersion.environment_id == environment.id)
            .order_by(EnvironmentVersion.version.desc())
        )
        return [_version_view(environment, row) for row in rows]


def restart(ctx: Context, principal: Principal, app_name: str, env_name: str) -> RestartView:
    """Validate the staged state and apply it as a new version; nothing changes on failure.

    The bundle of the new version is written completely before the transaction commits,
    and becomes ``current`` only after it did: a crash anywhere leaves the previous
    version current (`reconcile_bundles` finishes the switch at the next start).
    """
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        result = _apply(session, ctx, principal, app, environment, action="environment.restart")
    ctx.bundles.activate(app_name, env_name, result.version)
    return result


def rollback(
    ctx: Context, principal: Principal, app_name: str, env_name: str, *, version: int
) -> RestartView:
    """Stage the content of ``version`` and apply it, in one transaction."""
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        target = session.get(EnvironmentVersion, (environment.id, version))
        if target is None:
            raise NotFound(
                f"Environment {env_name!r} has no version {version}.",
                code=RefusalCode.VERSION_NOT_FOUND,
            )
        _stage(session, environment, EnvironmentSnapshot.from_json(target.snapshot), ctx)
        result = _apply(
            session,
            ctx,
            principal,
            app,
            environment,
            action="environment.rollback",
            detail={"to_version": version},
        )
    ctx.bundles.activate(app_name, env_name, result.version)
    return result


def _stage(
    session: Session, environment: Environment, target: EnvironmentSnapshot, ctx: Context
) -> None:
    """Make the rows say what ``target`` says (certificates back, pins, call names, profile,
    path rules).

    A version whose path rules name an access profile deleted since is refused: the
    data plane would deny every request under those prefixes, which nobody asked for.
    """
    now = ctx.clock.now()
    wanted = {c.id: c for c in target.client_certificates}
    certificates = session.scalars(
        select(ClientCertificate).where(ClientCertificate.environment_id == environment.id)
    ).all()
    missing = wanted.keys() - {c.id for c in certificates}
    if missing:
        raise InvalidRequest(
            "That version refers to client certificates that no longer exist.",
            code=RefusalCode.VERSION_INCOMPLETE,
        )
    for row in certificates:  # free every name first: the target may move them around
        row.call_name = None
        row.pins = []
    session.flush()
    for row in certificates:
        state = wanted.get(row.id)
        if state is None:
            if row.deleted_at is None:
                row.deleted_at = now
            continue
        row.deleted_at = None
        row.call_name = state.call_name
        row.description = state.description
        row.pins = [ClientCertificatePin(pin=p, environment_id=environment.id) for p in state.pins]
        row.updated_at = now
    wanted_authorities = {a.id for a in target.authorities}
    for authority in session.scalars(
        select(CertificateAuthority).where(CertificateAuthority.environment_id == environment.id)
    ):
        if authority.id in wanted_authorities:
            authority.deleted_at = None
        elif authority.deleted_at is None:
            authority.deleted_at = now
    environment.pkcs12_profile = Pkcs12Profile(target.pkcs12_profile)
    environment.no_client_certificate = list(target.no_client_certificate)
    named = {r.profile for r in target.path_rules if r.profile is not None}
    if named:
        existing = set(
            session.scalars(
                select(AccessProfile.name)
                .where(AccessProfile.app_id == environment.app_id, AccessProfile.name.in_(named))
                .with_for_update(read=True)  # not deleted before this transaction commits
            )
        )
        gone = sorted(named - existing)
        if gone:
            listed = ", ".join(repr(n) for n in gone)
            raise InvalidRequest(
                f"That version's path rules name the access profile{'s' if len(gone) > 1 else ''}"
                f" {listed}, deleted since; create {'them' if len(gone) > 1 else 'it'} again "
                "(or roll back to another version).",
                code=RefusalCode.VERSION_INCOMPLETE,
                detail={"access_profiles": gone},
            )
    stage_path_rules(session, environment, target.path_rules)
    session.flush()


def _apply(
    session: Session,
    ctx: Context,
    principal: Principal,
    app: App,
    environment: Environment,
    *,
    action: str,
    detail: dict[str, Any] | None = None,
) -> RestartView:
    staged = staged_snapshot(session, environment)
    problems = validate(session, ctx, environment)
    errors = [p for p in problems if p.is_error]
    if errors:
        raise InvalidRequest(
            f"The restart was refused: {errors[0].message} Nothing was applied.",
            code=RefusalCode.APPLY_REFUSED,
            problems=problems,
        )
    applied = applied_snapshot(session, environment)
    if (
        applied is not None
        and applied.digest() == staged.digest()
        and action != "environment.rollback"
    ):
        current = session.get(EnvironmentVersion, (environment.id, environment.applied_version))
        if current is not None:
            return RestartView(
                version=current.version,
                digest=current.digest,
                applied_at=current.applied_at,
                changed=False,
                problems=tuple(problems),
            )
    latest = session.scalar(
        select(func.max(EnvironmentVersion.version)).where(
            EnvironmentVersion.environment_id == environment.id
        )
    )
    row = EnvironmentVersion(
        environment_id=environment.id,
        version=(latest or 0) + 1,
        digest=staged.digest(),
        snapshot=staged.to_json(),
        applied_at=ctx.clock.now(),
        actor=principal.token_id,
    )
    session.add(row)
    environment.applied_version = row.version
    session.flush()
    ctx.bundles.write(
        app.name,
        environment.name,
        row.version,
        build_bundle(bundle_spec(session, ctx, app, environment, row), randomness=ctx.randomness),
    )
    audit.record(
        session,
        ctx,
        principal,
        action=action,
        object_type="environment",
        object_id=environment.id,
        app_id=app.id,
        before={"digest": applied.digest()} if applied else None,
        after={"digest": row.digest, "version": row.version},
        detail={"version": row.version, **(detail or {})},
    )
    return RestartView(
        version=row.version,
        digest=row.digest,
        applied_at=row.applied_at,
        changed=True,
        problems=tuple(problems),
    )


def bundle_spec(
    session: Session,
    ctx: Context,
    app: App,
    environment: Environment,
    version: EnvironmentVersion,
) -> BundleSpec:
    """What version ``version``'s bundle is made of: its snapshot plus the stored material."""
    snapshot = EnvironmentSnapshot.from_json(version.snapshot)
    wanted = [c.id for c in snapshot.client_certificates]
    rows = {
        row.id: row
        for row in session.scalars(
            select(ClientCertificate).where(ClientCertificate.id.in_(wanted))
        )
    }
    certificates: list[BundleClientCertificate] = []
    for state in snapshot.client_certificates:
        row = rows[state.id]
        chain = x509.load_pem_x509_certificates((row.certificate_pem + row.chain_pem).encode())
        key = load_stored_private_key(
            ctx.secrets.decrypt(row.private_key_ciphertext, aad=key_aad(row.id))
        )
        certificates.append(
            BundleClientCertificate(
                id=row.id,
                call_name=state.call_name,
                pins=state.pins,
                subject=state.subject,
                not_after=row.not_after,
                certificate=chain[0],
                chain=tuple(chain[1:]),
                private_key=key,
            )
        )
    authority_ids = [a.id for a in snapshot.authorities]
    seen: set[bytes] = set()
    authorities: list[x509.Certificate] = []
    for authority in session.scalars(
        select(CertificateAuthority)
        .where(CertificateAuthority.id.in_(authority_ids))
        .order_by(CertificateAuthority.created_at, CertificateAuthority.id)
    ):
        for certificate in x509.load_pem_x509_certificates(authority.certificates_pem.encode()):
            fingerprint = certificate.fingerprint(hashes.SHA256())
            if fingerprint not in seen:
                seen.add(fingerprint)
                authorities.append(certificate)
    return BundleSpec(
        app=app.name,
        environment=environment.name,
        version=version.version,
        digest=version.digest,
        created_at=version.applied_at,
        pkcs12_profile=Pkcs12Profile(snapshot.pkcs12_profile),
        client_certificates=tuple(certificates),
        authorities=tuple(authorities),
        no_client_certificate=snapshot.no_client_certificate,
    )


def reconcile_bundles(ctx: Context) -> list[str]:
    """At start: every environment's applied bundle complete on disk and ``current``.

    Repairs what a crash between committing a version and switching ``current`` (or a
    lost bundle directory) left behind. Returns ``app/env`` names that needed work.
    """
    repaired: list[str] = []
    store = ctx.bundles
    store.remove_incoming()
    store.remove_unsealed()
    with ctx.database.reading() as session:
        rows = session.execute(
            select(App, Environment)
            .join(Environment, Environment.app_id == App.id)
            .where(Environment.applied_version.is_not(None))
        ).all()
        for app, environment in rows:
            version = session.get(EnvironmentVersion, (environment.id, environment.applied_version))
            if version is None:
                continue
            name = f"{app.name}/{environment.name}"
            if not store.is_complete(app.name, environment.name, version.version):
                spec = bundle_spec(session, ctx, app, environment, version)
                store.write(
                    app.name,
                    environment.name,
                    version.version,
                    build_bundle(spec, randomness=ctx.randomness),
                )
                repaired.append(name)
            if store.current_version(app.name, environment.name) != version.version:
                store.activate(app.name, environment.name, version.version)
                if name not in repaired:
                    repaired.append(name)
    return repaired


def validate(session: Session, ctx: Context, environment: Environment) -> list[Problem]:
    """Judge every staged certificate again, now, with its stored key."""
    problems: list[Problem] = []
    at = ctx.clock.now()
    certificates = session.scalars(
        select(ClientCertificate).where(
            ClientCertificate.environment_id == environment.id,
            ClientCertificate.deleted_at.is_(None),
        )
    ).all()
    for row in certificates:
        try:
            key_der = ctx.secrets.decrypt(row.private_key_ciphertext, aad=key_aad(row.id))
        except SecretError:
            problems.append(
                Problem.error(
                    ProblemCode.CORRUPTED,
                    f"The stored private key of client certificate {row.id} cannot be "
                    "decrypted with the master key.",
                    certificate=row.subject,
                )
            )
            continue
        certificates_ = x509.load_pem_x509_certificates(
            (row.certificate_pem + row.chain_pem).encode("ascii")
        )
        material = Material(
            kind=MaterialKind.PEM,
            certificates=tuple(certificates_),
            private_key=load_stored_private_key(key_der),
        )
        judgement = judge(
            material, at=at, purpose=Purpose.CLIENT_CERTIFICATE, known_roots=ctx.known_roots
        )
        problems += judgement.problems
    for authority in session.scalars(
        select(CertificateAuthority).where(
            CertificateAuthority.environment_id == environment.id,
            CertificateAuthority.deleted_at.is_(None),
        )
    ):
        material = Material(
            kind=MaterialKind.PEM,
            certificates=tuple(
                x509.load_pem_x509_certificates(authority.certificates_pem.encode())
            ),
        )
        problems += judge(material, at=at, purpose=Purpose.AUTHORITY).problems
    return problems


def _version_view(environment: Environment, row: EnvironmentVersion) -> VersionView:
    return VersionView(
        version=row.version,
        digest=row.digest,
        applied_at=row.applied_at,
        actor=row.actor,
        current=row.version == environment.applied_version,
    )
