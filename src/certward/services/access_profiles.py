"""Access restrictions: who may call an app's environments.

Three things, each with its own lifecycle:

- **Access profiles** (here) belong to the app: IP ranges and client CAs (a root and
  intermediates, shown as a tree, with a selection). A ``profile`` path rule names one.
  Edits are live: a profile says whom the app trusts *now*, and waiting for a restart
  to stop trusting someone would be the wrong way round.
- **IP deny profiles** (`certward.services.ip_deny_profiles`) belong to the app too, and
  are attached to environments (live): addresses refused before any path rule is
  looked at.
- **Path rules** (`certward.services.path_rules`) belong to one environment and are
  *staged* like its outgoing configuration: they join its `EnvironmentSnapshot` and
  take effect at restart, so a rule change ships with the release that needs it, and
  rollback brings old rules back.

`applied_access` gives the data plane all of it, for every environment, in a handful of
queries.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.dataplane.state import AccessProfile as DataPlaneProfile
from certward.dataplane.state import ClientCa, Network
from certward.dataplane.state import PathRule as DataPlaneRule
from certward.db import flush_or_conflict
from certward.errors import Conflict, InvalidRequest, NotFound
from certward.model import (
    AccessProfile,
    AccessProfileCa,
    App,
    Environment,
    PathRule,
)
from certward.pki.chains import issued_by, names_link
from certward.pki.checks import Purpose
from certward.pki.inspect import is_self_signed
from certward.pki.problems import Problem
from certward.services import audit
from certward.services.apps import check_label
from certward.services.context import Context
from certward.services.ip_deny_profiles import deny_ranges
from certward.services.ip_ranges import check_ip_ranges, stored_network
from certward.services.lookups import find_app
from certward.services.path_rules import applied_rules
from certward.services.staging import applied_snapshot
from certward.services.uploads import Upload, judge_uploads

MAX_CLIENT_CAS = 100  # per access profile
_FINGERPRINT_LENGTH = 64
_HEX = frozenset("0123456789abcdef")


# -- views ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCaNode:
    """A client CA of a profile and the uploaded certificates it issued.

    ``selected`` is the stored choice; with nothing selected in the profile, every CA is
    accepted.
    """

    sha256_fingerprint: str
    subject: str  # RFC 4514
    issuer: str
    not_before: datetime
    not_after: datetime
    selected: bool
    children: tuple[ClientCaNode, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCaTreeView:
    """An access profile's client CAs as a tree: roots (and orphans) at the top."""

    certificates: tuple[ClientCaNode, ...]
    problems: tuple[Problem, ...] = field(default=())  # the upload's warnings


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessProfileView:
    name: str
    ip_ranges: tuple[str, ...]
    certificates: tuple[ClientCaNode, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentAccess:
    """What the data plane enforces for one environment.

    ``path_rules`` are the applied ones (staged rules wait for a restart); ``profiles``
    are every access profile of the environment's app, as stored now (profiles are
    live); ``deny_ranges`` come from the attached IP deny profiles.
    """

    environment_id: str
    path_rules: tuple[DataPlaneRule, ...]
    profiles: Mapping[str, DataPlaneProfile]
    deny_ranges: tuple[Network, ...]


# -- access profiles ------------------------------------------------------------------------


def create_access_profile(
    ctx: Context, principal: Principal, app_name: str, *, name: str, ip_ranges: Sequence[str]
) -> AccessProfileView:
    check_label(name, "access profile name")
    ranges = check_ip_ranges(ip_ranges)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        exists = f"App {app_name!r} already has an access profile called {name!r}."
        if session.scalar(
            select(AccessProfile.id).where(
                AccessProfile.app_id == app.id, AccessProfile.name == name
            )
        ):
            raise Conflict(exists, code="access-profile-exists")
        now = ctx.clock.now()
        profile = AccessProfile(
            app_id=app.id, name=name, ip_ranges=ranges, created_at=now, updated_at=now
        )
        session.add(profile)
        flush_or_conflict(session, exists, code="access-profile-exists")
        audit.record(
            session,
            ctx,
            principal,
            action="access_profile.create",
            object_type="access_profile",
            object_id=profile.id,
            app_id=app.id,
            after=_profile_state(profile, []),
        )
        return _profile_view(profile, [])


def list_access_profiles(
    ctx: Context, principal: Principal, app_name: str
) -> list[AccessProfileView]:
    """The app's access profiles by name, each with its client-CA tree (two queries)."""
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        profiles = list(
            session.scalars(
                select(AccessProfile)
                .where(AccessProfile.app_id == app.id)
                .order_by(AccessProfile.name)
            )
        )
        cas: dict[str, list[AccessProfileCa]] = {p.id: [] for p in profiles}
        if cas:
            for row in session.scalars(
                select(AccessProfileCa).where(AccessProfileCa.profile_id.in_(cas))
            ):
                cas[row.profile_id].append(row)
        return [_profile_view(p, cas[p.id]) for p in profiles]


def get_access_profile(
    ctx: Context, principal: Principal, app_name: str, name: str
) -> AccessProfileView:
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        profile = _find_profile(session, app, name)
        return _profile_view(profile, _cas_of(session, profile))


def update_access_profile(
    ctx: Context,
    principal: Principal,
    app_name: str,
    name: str,
    *,
    ip_ranges: Sequence[str] | None = None,
) -> AccessProfileView:
    """Replace the profile's IP ranges (live). The name never changes: rules refer to it."""
    ranges = check_ip_ranges(ip_ranges) if ip_ranges is not None else None
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_profile(session, app, name, for_update=True)
        cas = _cas_of(session, profile)
        before = _profile_state(profile, cas)
        if ranges is not None:
            profile.ip_ranges = ranges
            profile.updated_at = ctx.clock.now()
        audit.record(
            session,
            ctx,
            principal,
            action="access_profile.update",
            object_type="access_profile",
            object_id=profile.id,
            app_id=app.id,
            before=before,
            after=_profile_state(profile, cas),
        )
        return _profile_view(profile, cas)


def delete_access_profile(ctx: Context, principal: Principal, app_name: str, name: str) -> None:
    """Delete the profile and its client CAs; 409 naming the environments whose staged or
    applied path rules still name it (the data plane would then deny those paths)."""
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_profile(session, app, name, for_update=True)
        users = _environments_naming(session, app, name)
        if users:
            listed = ", ".join(f"{u['environment']} ({_where(u)})" for u in users)
            raise Conflict(
                f"The access profile {name!r} is named by path rules of {listed}: change "
                "those rules (PUT …/path-rules), restart where they are applied, then delete "
                "the profile.",
                code="access-profile-in-use",
                detail={"environments": users},
            )
        audit.record(
            session,
            ctx,
            principal,
            action="access_profile.delete",
            object_type="access_profile",
            object_id=profile.id,
            app_id=app.id,
            before=_profile_state(profile, _cas_of(session, profile)),
        )
        session.delete(profile)


# -- client CAs -----------------------------------------------------------------------------


def upload_client_cas(
    ctx: Context, principal: Principal, app_name: str, name: str, *, file: Upload
) -> ClientCaTreeView:
    """Add CA certificates (a root and intermediates; PEM, or one DER certificate).

    Judged as an authority: end-entity certificates are refused by name (``not-a-ca``),
    as are expired CAs and unreadable files with the material engine's codes. A
    certificate already in the profile is skipped. Returns the profile's whole tree.
    """
    with ctx.database.reading() as session:  # refuse early, before any expensive work
        _find_profile(session, find_app(session, principal, app_name, Action.MANAGE), name)
    judgement = judge_uploads(
        ctx, [file], app=app_name, password=None, purpose=Purpose.CLIENT_AUTHORITY
    )
    uploaded: dict[str, x509.Certificate] = {}
    for certificate in judgement.material.certificates:
        uploaded.setdefault(certificate.fingerprint(hashes.SHA256()).hex(), certificate)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_profile(session, app, name, for_update=True)
        rows = _cas_of(session, profile)
        before = _profile_state(profile, rows)
        known = {row.sha256_fingerprint for row in rows}
        added = [fp for fp in uploaded if fp not in known]
        if len(known) + len(added) > MAX_CLIENT_CAS:
            raise InvalidRequest(
                f"The access profile {name!r} would hold {len(known) + len(added)} client CA "
                f"certificates; at most {MAX_CLIENT_CAS} are allowed.",
                code="too-many-client-cas",
            )
        now = ctx.clock.now()
        for fingerprint in added:
            certificate = uploaded[fingerprint]
            row = AccessProfileCa(
                profile_id=profile.id,
                sha256_fingerprint=fingerprint,
                subject=certificate.subject.rfc4514_string(),
                issuer=certificate.issuer.rfc4514_string(),
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
                selected=False,
                created_at=now,
            )
            session.add(row)
            rows.append(row)
        _link(rows, parsed=uploaded)
        if added:
            profile.updated_at = now
        session.flush()
        audit.record(
            session,
            ctx,
            principal,
            action="access_profile.client_cas.upload",
            object_type="access_profile",
            object_id=profile.id,
            app_id=app.id,
            before=before,
            after=_profile_state(profile, rows),
            detail={"added": added, "already_present": sorted(known & uploaded.keys())},
        )
        return ClientCaTreeView(certificates=_tree(rows), problems=judgement.problems)


def select_client_cas(
    ctx: Context, principal: Principal, app_name: str, name: str, *, selected: Sequence[str]
) -> ClientCaTreeView:
    """Accept client certificates issued below the ``selected`` CAs only (live).

    An empty selection accepts every CA of the profile. An unknown fingerprint is
    refused (422) and nothing changes.
    """
    wanted = [_fingerprint(value) for value in selected]
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_profile(session, app, name, for_update=True)
        rows = _cas_of(session, profile)
        before = _profile_state(profile, rows)
        stored = {row.sha256_fingerprint for row in rows}
        unknown = [fp for fp in wanted if fp not in stored]
        if unknown:
            raise InvalidRequest(
                f"The access profile {name!r} has no client CA with the SHA-256 fingerprint "
                f"{unknown[0]}: select among the fingerprints it shows.",
                code="unknown-client-ca",
                detail={"fingerprints": unknown},
            )
        for row in rows:
            row.selected = row.sha256_fingerprint in wanted
        profile.updated_at = ctx.clock.now()
        audit.record(
            session,
            ctx,
            principal,
            action="access_profile.client_cas.select",
            object_type="access_profile",
            object_id=profile.id,
            app_id=app.id,
            before=before,
            after=_profile_state(profile, rows),
        )
        return ClientCaTreeView(certificates=_tree(rows))


def remove_client_ca(
    ctx: Context, principal: Principal, app_name: str, name: str, fingerprint: str
) -> None:
    """Remove one client CA (live); the certificates it issued move to the top.

    Removing the last selected CA while others remain is refused (409): with nothing
    selected every remaining CA would be accepted, which widens access silently.
    """
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_profile(session, app, name, for_update=True)
        rows = _cas_of(session, profile)
        wanted = fingerprint.replace(":", "").lower()
        target = next((r for r in rows if r.sha256_fingerprint == wanted), None)
        if target is None:
            raise NotFound(
                f"The access profile {name!r} has no client CA {fingerprint!r}.",
                code="client-ca-not-found",
            )
        remaining = [r for r in rows if r is not target]
        if target.selected and remaining and not any(r.selected for r in remaining):
            raise Conflict(
                f"{target.subject} is the only selected client CA of {name!r}; removing it "
                "would leave nothing selected, which accepts every remaining CA. Select the "
                "CAs to accept first (PATCH …/client-cas), or remove the others too.",
                code="last-selected-client-ca",
            )
        before = _profile_state(profile, rows)
        session.delete(target)
        _link(remaining)
        profile.updated_at = ctx.clock.now()
        audit.record(
            session,
            ctx,
            principal,
            action="access_profile.client_cas.remove",
            object_type="access_profile",
            object_id=profile.id,
            app_id=app.id,
            before=before,
            after=_profile_state(profile, remaining),
            detail={"sha256_fingerprint": target.sha256_fingerprint, "subject": target.subject},
        )


# -- for the data plane ---------------------------------------------------------------------


def applied_access(
    session: Session, environment_ids: Collection[str] | None = None
) -> dict[str, EnvironmentAccess]:
    """Every environment's (or those of ``environment_ids``) applied path rules, its
    app's access profiles (live) and its IP deny ranges, keyed by environment id.

    A fixed number of queries whatever the number of environments: environments,
    applied versions' digests (path rules are read from a version's snapshot once and
    kept, since versions never change), access profiles, their client CAs, attached
    IP deny profiles. Profiles are shared between the environments of one app.
    """
    query = select(Environment.id, Environment.app_id)
    if environment_ids is not None:
        query = query.where(Environment.id.in_(sorted(environment_ids)))
    environments = session.execute(query).all()
    rules = applied_rules(session, environment_ids)
    apps = None if environment_ids is None else {app_id for _, app_id in environments}
    profiles = _data_plane_profiles(session, apps)
    denies = deny_ranges(session, environment_ids)
    none: Mapping[str, DataPlaneProfile] = MappingProxyType({})
    return {
        environment_id: EnvironmentAccess(
            environment_id=environment_id,
            path_rules=rules.get(environment_id, ()),
            profiles=profiles.get(app_id, none),
            deny_ranges=denies.get(environment_id, ()),
        )
        for environment_id, app_id in environments
    }


def _data_plane_profiles(
    session: Session, app_ids: Collection[str] | None
) -> dict[str, Mapping[str, DataPlaneProfile]]:
    """Every access profile (of ``app_ids``) as the data plane reads it, by app id, then
    by name."""
    ca_query = select(AccessProfileCa).order_by(AccessProfileCa.profile_id)
    query = select(
        AccessProfile.id, AccessProfile.app_id, AccessProfile.name, AccessProfile.ip_ranges
    )
    if app_ids is not None:
        ca_query = ca_query.join(AccessProfile).where(AccessProfile.app_id.in_(sorted(app_ids)))
        query = query.where(AccessProfile.app_id.in_(sorted(app_ids)))
    cas: dict[str, list[AccessProfileCa]] = {}
    for row in session.scalars(ca_query):
        cas.setdefault(row.profile_id, []).append(row)
    by_app: dict[str, dict[str, DataPlaneProfile]] = {}
    for profile_id, app_id, name, ip_ranges in session.execute(query):
        by_app.setdefault(app_id, {})[name] = _data_plane_profile(
            name, ip_ranges or [], cas.get(profile_id, [])
        )
    return {app_id: MappingProxyType(profiles) for app_id, profiles in by_app.items()}


def _data_plane_profile(
    name: str, ip_ranges: Iterable[str], rows: list[AccessProfileCa]
) -> DataPlaneProfile:
    """Selected CAs (all when none is) are accepted, with every uploaded CA below them:
    those may issue client certificates, and a verifier needs them to build the path."""
    children: dict[str | None, list[AccessProfileCa]] = {}
    fingerprints = {row.sha256_fingerprint for row in rows}
    for row in sorted(rows, key=_node_order):
        parent = row.parent_fingerprint if row.parent_fingerprint in fingerprints else None
        children.setdefault(parent, []).append(row)
    ordered = sorted(rows, key=_node_order)
    selected = [row for row in ordered if row.selected] or ordered
    trusted: dict[str, AccessProfileCa] = {}
    pending = list(selected)
    while pending:
        row = pending.pop(0)
        if row.sha256_fingerprint in trusted:
            continue
        trusted[row.sha256_fingerprint] = row
        pending += children.get(row.sha256_fingerprint, [])
    return DataPlaneProfile(
        name=name,
        ip_ranges=tuple(stored_network(text) for text in ip_ranges),
        client_cas=tuple(
            ClientCa(
                sha256_fingerprint=row.sha256_fingerprint,
                subject=row.subject,
                certificate_pem=row.certificate_pem.encode("ascii"),
            )
            for row in selected
        ),
        accepted_issuers=frozenset(row.subject for row in trusted.values()),
        trust_pem=b"".join(row.certificate_pem.encode("ascii") for row in trusted.values()),
    )


# -- details --------------------------------------------------------------------------------


def _find_profile(
    session: Session, app: App, name: str, *, for_update: bool = False
) -> AccessProfile:
    query = select(AccessProfile).where(AccessProfile.app_id == app.id, AccessProfile.name == name)
    profile = session.scalar(query.with_for_update() if for_update else query)
    if profile is None:
        raise NotFound(
            f"App {app.name!r} has no access profile called {name!r}.",
            code="access-profile-not-found",
        )
    return profile


def _cas_of(session: Session, profile: AccessProfile) -> list[AccessProfileCa]:
    return list(
        session.scalars(select(AccessProfileCa).where(AccessProfileCa.profile_id == profile.id))
    )


def _environments_naming(session: Session, app: App, name: str) -> list[dict[str, Any]]:
    """The app's environments whose staged or applied path rules name profile ``name``."""
    environments = list(
        session.scalars(
            select(Environment).where(Environment.app_id == app.id).order_by(Environment.name)
        )
    )
    staged = set(
        session.scalars(
            select(PathRule.environment_id).where(
                PathRule.environment_id.in_([e.id for e in environments]),
                PathRule.profile_name == name,
            )
        )
    )
    users: list[dict[str, Any]] = []
    for environment in environments:
        snapshot = applied_snapshot(session, environment)
        applied = snapshot is not None and any(r.profile == name for r in snapshot.path_rules)
        if applied or environment.id in staged:
            users.append(
                {
                    "environment": environment.name,
                    "staged": environment.id in staged,
                    "applied": applied,
                }
            )
    return users


def _link(
    rows: list[AccessProfileCa], *, parsed: Mapping[str, x509.Certificate] | None = None
) -> None:
    """Set every row's parent: the row whose key signed it (None for roots and orphans).

    Names and key identifiers narrow the candidates and the signature decides, so a
    certificate only claiming to come from a selected CA is not accepted below it. A
    cycle (two CAs cross-signing each other) is cut at its first member.
    """
    known = parsed or {}
    certificates = {
        row.sha256_fingerprint: known.get(row.sha256_fingerprint)
        or x509.load_pem_x509_certificate(row.certificate_pem.encode("ascii"))
        for row in rows
    }
    parents: dict[str, str | None] = {}
    for fingerprint, certificate in sorted(certificates.items()):
        parents[fingerprint] = None
        if is_self_signed(certificate):
            continue
        for candidate_fp, candidate in sorted(certificates.items()):
            if (
                candidate_fp != fingerprint
                and names_link(certificate, candidate)
                and issued_by(certificate, candidate)
            ):
                parents[fingerprint] = candidate_fp
                break
    for fingerprint in sorted(parents):
        seen = {fingerprint}
        current = parents[fingerprint]
        while current is not None:
            if current == fingerprint:
                parents[fingerprint] = None
                break
            if current in seen:
                break
            seen.add(current)
            current = parents[current]
    for row in rows:
        row.parent_fingerprint = parents[row.sha256_fingerprint]


def _where(use: Mapping[str, Any]) -> str:
    """``staged``, ``applied`` or both: where an environment's rules name a profile."""
    return " and ".join(state for state in ("staged", "applied") if use[state])


def _node_order(row: AccessProfileCa) -> tuple[str, str]:
    return (row.subject, row.sha256_fingerprint)


def _tree(rows: Sequence[AccessProfileCa]) -> tuple[ClientCaNode, ...]:
    """Roots, and certificates whose issuer is not in the profile, at the top."""
    fingerprints = {row.sha256_fingerprint for row in rows}
    children: dict[str | None, list[AccessProfileCa]] = {}
    for row in sorted(rows, key=_node_order):
        parent = row.parent_fingerprint if row.parent_fingerprint in fingerprints else None
        children.setdefault(parent, []).append(row)

    def node(row: AccessProfileCa, depth: int) -> ClientCaNode:
        # `_link` leaves no cycle; the depth bound only keeps a damaged row harmless.
        below = children.get(row.sha256_fingerprint, []) if depth < len(rows) else []
        return ClientCaNode(
            sha256_fingerprint=row.sha256_fingerprint,
            subject=row.subject,
            issuer=row.issuer,
            not_before=row.not_before,
            not_after=row.not_after,
            selected=row.selected,
            children=tuple(node(child, depth + 1) for child in below),
        )

    return tuple(node(row, 0) for row in children.get(None, []))


def _profile_view(profile: AccessProfile, cas: Sequence[AccessProfileCa]) -> AccessProfileView:
    return AccessProfileView(
        name=profile.name,
        ip_ranges=tuple(profile.ip_ranges or ()),
        certificates=_tree(cas),
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )


def _profile_state(profile: AccessProfile, cas: Sequence[AccessProfileCa]) -> dict[str, Any]:
    return {
        "name": profile.name,
        "ip_ranges": list(profile.ip_ranges or ()),
        "client_cas": [
            {"sha256_fingerprint": row.sha256_fingerprint, "selected": row.selected}
            for row in sorted(cas, key=lambda r: r.sha256_fingerprint)
        ],
    }


def _fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as certward shows it: 64 lower-case hex digits (colons and
    upper case, as other tools print them, are accepted)."""
    text = value.replace(":", "").lower()
    if len(text) != _FINGERPRINT_LENGTH or not set(text) <= _HEX:
        raise InvalidRequest(
            f"{value[:100]!r} is not a SHA-256 fingerprint (64 hexadecimal digits).",
            code="unknown-client-ca",
        )
    return text
