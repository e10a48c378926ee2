"""IP deny profiles: addresses an app refuses before any path rule is looked at.

A profile belongs to the app and is attached to environments; both edits are live (a
denial that waited for a restart would come too late). `deny_ranges` gives the data
plane every environment's merged ranges in two queries.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.dataplane.state import Network
from certward.db import flush_or_conflict
from certward.errors import Conflict, InvalidRequest, NotFound, RefusalCode
from certward.model import App, Environment, EnvironmentIpDeny, IpDenyProfile
from certward.services import audit
from certward.services.apps import check_label
from certward.services.context import Context
from certward.services.ip_ranges import check_ip_ranges, stored_network
from certward.services.lookups import find_app, find_environment

MAX_DENY_PROFILES = 100  # attached to one environment


# -- views ----------------------------------------------------------------------------------


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
            raise Conflict(exists, code=RefusalCode.IP_DENY_PROFILE_EXISTS)
        now = ctx.clock.now()
        profile = IpDenyProfile(
            app_id=app.id, name=name, ip_ranges=ranges, created_at=now, updated_at=now
        )
        session.add(profile)
        flush_or_conflict(session, exists, code=RefusalCode.IP_DENY_PROFILE_EXISTS)
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
                code=RefusalCode.IP_DENY_PROFILE_IN_USE,
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
            code=RefusalCode.TOO_MANY_IP_DENY_PROFILES,
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
                code=RefusalCode.UNKNOWN_IP_DENY_PROFILE,
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


def deny_ranges(
    session: Session, environment_ids: Collection[str] | None = None
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
        profile_id: (name, tuple(stored_network(text) for text in ip_ranges or ()))
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


def _find_deny_profile(
    session: Session, app: App, name: str, *, for_update: bool = False
) -> IpDenyProfile:
    query = select(IpDenyProfile).where(IpDenyProfile.app_id == app.id, IpDenyProfile.name == name)
    profile = session.scalar(query.with_for_update() if for_update else query)
    if profile is None:
        raise NotFound(
            f"App {app.name!r} has no IP deny profile called {name!r}.",
            code=RefusalCode.IP_DENY_PROFILE_NOT_FOUND,
        )
    return profile


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
