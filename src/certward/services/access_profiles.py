"""Access restrictions: who may call an app's environments.

Three things, each with its own lifecycle:

- **Access profiles** belong to the app: IP ranges and client CAs (a root and
  intermediates, shown as a tree, with a selection). A ``profile`` path rule names one.
  Edits are live: a profile says whom the app trusts *now*, and waiting for a restart
  to stop trusting someone would be the wrong way round.
- **IP deny profiles** belong to the app too, and are attached to environments (live):
  addresses refused before any path rule is looked at.
- **Path rules** belong to one environment and are *staged* like its outgoing
  configuration: they join its `EnvironmentSnapshot` and take effect at restart, so a
  rule change ships with the release that needs it, and rollback brings old rules back.

`applied_access` gives the data plane all of it, for every environment, in a handful of
queries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certward.access import Action, Principal
from certward.dataplane.state import AccessProfile as DataPlaneProfile
from certward.dataplane.state import ClientCa, Network
from certward.dataplane.state import PathRule as DataPlaneRule
from certward.errors import Conflict, InvalidRequest, NotFound
from certward.model import (
    AccessProfile,
    AccessProfileCa,
    App,
    Environment,
    EnvironmentIpDeny,
    IpDenyProfile,
    PathRule,
)
from certward.pki.chains import issued_by, names_link
from certward.pki.checks import Purpose
from certward.pki.inspect import is_self_signed
from certward.pki.problems import Problem
from certward.services import audit
from certward.services.access import find_app, find_environment
from certward.services.apps import check_label
from certward.services.context import Context
from certward.services.path_rules import applied_rules
from certward.services.staging import applied_snapshot
from certward.services.uploads import Upload, judge_uploads

MAX_IP_RANGES = 500
MAX_CLIENT_CAS = 100  # per access profile
MAX_DENY_PROFILES = 100  # attached to one environment
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
class IpDenyProfileView:
    """An IP deny profile and the environments it is attached to."""

    name: str
    ip_ranges: tuple[str, ...]
    environments: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentIpDenyView:
    """The IP deny profiles attached to an environment, by name."""

    profiles: tuple[str, ...]


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


# -- IP ranges ------------------------------------------------------------------------------


def check_ip_ranges(values: Sequence[str]) -> list[str]:
    """Each entry a network in CIDR form (a bare address is its /32 or /128), normalized.

    Refused with every wrong entry named, by position, with the reason: host bits set
    (``10.0.0.1/8`` — which network was meant is a guess certward does not make),
    netmasks, scope ids, IPv4-mapped IPv6 ranges (clients arrive as IPv4 addresses, so
    such a range would never match). Duplicates are dropped; order is kept.
    """
    if len(values) > MAX_IP_RANGES:
        raise InvalidRequest(
            f"ip_ranges has {len(values)} entries; at most {MAX_IP_RANGES} are allowed "
            "(merge adjacent ranges into larger ones).",
            code="too-many-ip-ranges",
        )
    normalized: list[str] = []
    wrong: list[dict[str, object]] = []
    for index, value in enumerate(values):
        try:
            network = _network_of(value)
        except ValueError as exc:
            wrong.append({"index": index, "entry": value[:100], "reason": str(exc)})
            continue
        text = network.with_prefixlen
        if text not in normalized:
            normalized.append(text)
    if wrong:
        first = wrong[0]
        more = f" ({len(wrong) - 1} more entries are wrong too)" if len(wrong) > 1 else ""
        raise InvalidRequest(
            f"ip_ranges[{first['index']}] {first['entry']!r}: {first['reason']}{more}.",
            code="invalid-ip-range",
            detail={"invalid": wrong},
        )
    return normalized


def _network_of(value: str) -> Network:
    address, slash, prefix = value.partition("/")
    if not value:
        raise ValueError("the entry is empty; write a network like 10.0.0.0/8")
    if any(c.isspace() for c in value):
        raise ValueError("an IP range is written without spaces, like 10.0.0.0/8 or 2001:db8::/32")
    if "%" in address:
        raise ValueError("a scope id (%zone) has no meaning in an IP range; leave it out")
    if slash and not (prefix.isascii() and prefix.isdigit()):
        raise ValueError(
            "write the prefix length after the slash (10.0.0.0/8), not a netmask or anything else"
        )
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                "not an IP range: write an IPv4 or IPv6 network in CIDR form, like "
                "10.0.0.0/8 or 2001:db8::/32 (or a single address)"
            ) from None
        raise ValueError(
            f"host bits are set: {loose.with_prefixlen} is the /{loose.prefixlen} network "
            f"containing {address}; write that network, or {address}/{loose.max_prefixlen} for "
            "the one address"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        raise ValueError(
            "an IPv4-mapped IPv6 range never matches, because IPv4 clients arrive as IPv4 "
            "addresses; write the IPv4 range instead"
        )
    return network


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@lru_cache(maxsize=65536)
def _stored_network(text: str) -> Network:
    """A stored (already normalized) range as a network object, parsed once."""
    return ipaddress.ip_network(text)


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
        _flush(session, exists, code="access-profile-exists")
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
    judgement = judge_uploads(ctx, [file], app=app_name, password=None, purpose=Purpose.AUTHORITY)
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


# -- IP deny profiles -----------------------------------------------------------------------


def create_ip_deny_profile(
    ctx: Context, principal: Principal, app_name: str, *, name: str, ip_ranges: Sequence[str]
) -> IpDenyProfileView:
    check_label(name, "IP deny profile name")
    ranges = check_ip_ranges(ip_ranges)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        exists = f"App {app_name!r} already has an IP deny profile called {name!r}."
        if session.scalar(
            select(IpDenyProfile.id).where(
                IpDenyProfile.app_id == app.id, IpDenyProfile.name == name
            )
        ):
            raise Conflict(exists, code="ip-deny-profile-exists")
        now = ctx.clock.now()
        profile = IpDenyProfile(
            app_id=app.id, name=name, ip_ranges=ranges, created_at=now, updated_at=now
        )
        session.add(profile)
        _flush(session, exists, code="ip-deny-profile-exists")
        audit.record(
            session,
            ctx,
            principal,
            action="ip_deny_profile.create",
            object_type="ip_deny_profile",
            object_id=profile.id,
            app_id=app.id,
            after=_deny_state(profile),
        )
        return _deny_view(profile, ())


def list_ip_deny_profiles(
    ctx: Context, principal: Principal, app_name: str
) -> list[IpDenyProfileView]:
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        profiles = list(
            session.scalars(
                select(IpDenyProfile)
                .where(IpDenyProfile.app_id == app.id)
                .order_by(IpDenyProfile.name)
            )
        )
        attached = _attached_environments(session, [p.id for p in profiles])
        return [_deny_view(p, attached.get(p.id, ())) for p in profiles]


def get_ip_deny_profile(
    ctx: Context, principal: Principal, app_name: str, name: str
) -> IpDenyProfileView:
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        profile = _find_deny_profile(session, app, name)
        attached = _attached_environments(session, [profile.id])
        return _deny_view(profile, attached.get(profile.id, ()))


def update_ip_deny_profile(
    ctx: Context,
    principal: Principal,
    app_name: str,
    name: str,
    *,
    ip_ranges: Sequence[str] | None = None,
) -> IpDenyProfileView:
    """Replace the ranges (live, on every environment the profile is attached to)."""
    ranges = check_ip_ranges(ip_ranges) if ip_ranges is not None else None
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_deny_profile(session, app, name, for_update=True)
        before = _deny_state(profile)
        if ranges is not None:
            profile.ip_ranges = ranges
            profile.updated_at = ctx.clock.now()
        audit.record(
            session,
            ctx,
            principal,
            action="ip_deny_profile.update",
            object_type="ip_deny_profile",
            object_id=profile.id,
            app_id=app.id,
            before=before,
            after=_deny_state(profile),
        )
        attached = _attached_environments(session, [profile.id])
        return _deny_view(profile, attached.get(profile.id, ()))


def delete_ip_deny_profile(ctx: Context, principal: Principal, app_name: str, name: str) -> None:
    """Delete the profile; 409 naming the environments it is still attached to (deleting
    it would lift their denial without anyone saying so)."""
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = _find_deny_profile(session, app, name, for_update=True)
        attached = _attached_environments(session, [profile.id]).get(profile.id, ())
        if attached:
            raise Conflict(
                f"The IP deny profile {name!r} is attached to {', '.join(attached)}: detach "
                "it (PUT …/environments/{env}/ip-deny-profiles) before deleting it.",
                code="ip-deny-profile-in-use",
                detail={"environments": list(attached)},
            )
        audit.record(
            session,
            ctx,
            principal,
            action="ip_deny_profile.delete",
            object_type="ip_deny_profile",
            object_id=profile.id,
            app_id=app.id,
            before=_deny_state(profile),
        )
        session.delete(profile)


def environment_ip_denies(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> EnvironmentIpDenyView:
    with ctx.database.reading() as session:
        _, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        return EnvironmentIpDenyView(profiles=_attached_names(session, environment))


def attach_ip_deny_profiles(
    ctx: Context, principal: Principal, app_name: str, env_name: str, *, profiles: Sequence[str]
) -> EnvironmentIpDenyView:
    """Make ``profiles`` (names of the app's IP deny profiles) the attached set (live)."""
    names = sorted(set(profiles))
    if len(names) > MAX_DENY_PROFILES:
        raise InvalidRequest(
            f"At most {MAX_DENY_PROFILES} IP deny profiles may be attached to an environment.",
            code="too-many-ip-deny-profiles",
        )
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        found = {
            p.name: p
            for p in session.scalars(
                select(IpDenyProfile)
                .where(IpDenyProfile.app_id == app.id, IpDenyProfile.name.in_(names))
                .with_for_update(read=True)  # not deleted before this transaction commits
            )
        }
        unknown = [n for n in names if n not in found]
        if unknown:
            raise InvalidRequest(
                f"App {app_name!r} has no IP deny profile called {unknown[0]!r}; create it "
                "first (POST /apps/{app}/ip-deny-profiles).",
                code="unknown-ip-deny-profile",
                detail={"profiles": unknown},
            )
        before = _attached_names(session, environment)
        wanted = {found[n].id for n in names}
        current = list(
            session.scalars(
                select(EnvironmentIpDeny).where(EnvironmentIpDeny.environment_id == environment.id)
            )
        )
        for row in current:
            if row.profile_id not in wanted:
                session.delete(row)
        now = ctx.clock.now()
        session.add_all(
            EnvironmentIpDeny(environment_id=environment.id, profile_id=profile_id, created_at=now)
            for profile_id in sorted(wanted - {row.profile_id for row in current})
        )
        session.flush()
        audit.record(
            session,
            ctx,
            principal,
            action="environment.ip_deny_profiles",
            object_type="environment",
            object_id=environment.id,
            app_id=app.id,
            before={"ip_deny_profiles": list(before)},
            after={"ip_deny_profiles": names},
        )
        return EnvironmentIpDenyView(profiles=tuple(names))


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
    denies = _deny_ranges(session, environment_ids)
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
        ip_ranges=tuple(_stored_network(text) for text in ip_ranges),
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


def _deny_ranges(
    session: Session, environment_ids: Collection[str] | None
) -> dict[str, tuple[Network, ...]]:
    """Deny ranges by environment id (of ``environment_ids``): each profile's ranges
    parsed once, and each set of attached profiles merged once (environments of an app
    mostly share one)."""
    query = select(IpDenyProfile.id, IpDenyProfile.name, IpDenyProfile.ip_ranges)
    links = select(EnvironmentIpDeny.environment_id, EnvironmentIpDeny.profile_id)
    if environment_ids is not None:
        links = links.where(EnvironmentIpDeny.environment_id.in_(sorted(environment_ids)))
        query = query.where(
            IpDenyProfile.id.in_(links.with_only_columns(EnvironmentIpDeny.profile_id))
        )
    profiles: dict[str, tuple[str, tuple[Network, ...]]] = {
        profile_id: (name, tuple(_stored_network(text) for text in ip_ranges or ()))
        for profile_id, name, ip_ranges in session.execute(query)
    }
    attached: dict[str, list[str]] = {}
    for environment_id, profile_id in session.execute(links):
        if profile_id in profiles:  # attached after the profiles were read: next time
            attached.setdefault(environment_id, []).append(profile_id)
    merged: dict[tuple[str, ...], tuple[Network, ...]] = {}
    ranges: dict[str, tuple[Network, ...]] = {}
    for environment_id, profile_ids in attached.items():
        key = tuple(sorted(profile_ids, key=lambda p: profiles[p][0]))
        if key not in merged:
            merged[key] = tuple(dict.fromkeys(network for p in key for network in profiles[p][1]))
        ranges[environment_id] = merged[key]
    return ranges


# -- details --------------------------------------------------------------------------------


def _flush(session: Session, message: str, *, code: str) -> None:
    """Turn a unique-constraint race into the same 409 the pre-check gives."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(message, code=code) from exc


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


def _find_deny_profile(
    session: Session, app: App, name: str, *, for_update: bool = False
) -> IpDenyProfile:
    query = select(IpDenyProfile).where(IpDenyProfile.app_id == app.id, IpDenyProfile.name == name)
    profile = session.scalar(query.with_for_update() if for_update else query)
    if profile is None:
        raise NotFound(
            f"App {app.name!r} has no IP deny profile called {name!r}.",
            code="ip-deny-profile-not-found",
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


def _deny_state(profile: IpDenyProfile) -> dict[str, Any]:
    return {"name": profile.name, "ip_ranges": list(profile.ip_ranges or ())}


def _deny_view(profile: IpDenyProfile, environments: Iterable[str]) -> IpDenyProfileView:
    return IpDenyProfileView(
        name=profile.name,
        ip_ranges=tuple(profile.ip_ranges or ()),
        environments=tuple(environments),
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )


def _attached_environments(session: Session, profile_ids: list[str]) -> dict[str, tuple[str, ...]]:
    """Names of the environments each IP deny profile is attached to, sorted."""
    attached: dict[str, list[str]] = {}
    if profile_ids:
        for profile_id, env_name in session.execute(
            select(EnvironmentIpDeny.profile_id, Environment.name)
            .join(Environment, Environment.id == EnvironmentIpDeny.environment_id)
            .where(EnvironmentIpDeny.profile_id.in_(profile_ids))
            .order_by(Environment.name)
        ):
            attached.setdefault(profile_id, []).append(env_name)
    return {profile_id: tuple(names) for profile_id, names in attached.items()}


def _attached_names(session: Session, environment: Environment) -> tuple[str, ...]:
    return tuple(
        session.scalars(
            select(IpDenyProfile.name)
            .join(EnvironmentIpDeny, EnvironmentIpDeny.profile_id == IpDenyProfile.id)
            .where(EnvironmentIpDeny.environment_id == environment.id)
            .order_by(IpDenyProfile.name)
        )
    )


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
