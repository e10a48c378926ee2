"""IP deny profiles: addresses an app refuses before any path rule is looked at.

A profile belongs to the app and is attached to environments; both edits are live (a
denial that waited for a restart would come too late). It is a range profile
(`certward.services.range_profiles`): only the attachments are this module's own.
`certward.services.dataplane_access.deny_ranges` gives the data plane every
environment's merged ranges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import Conflict, InvalidRequest, RefusalCode
from certward.model import App, Environment, EnvironmentIpDeny, IpDenyProfile
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment
from certward.services.range_profiles import RangeProfileKind

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


# -- IP deny profiles -----------------------------------------------------------------------


def _attached_environments(
    session: Session, profile_ids: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Names of the environments each IP deny profile is attached to, sorted (one query)."""
    attached: dict[str, list[str]] = {profile_id: [] for profile_id in profile_ids}
    if profile_ids:
        for profile_id, env_name in session.execute(
            select(EnvironmentIpDeny.profile_id, Environment.name)
            .join(Environment, Environment.id == EnvironmentIpDeny.environment_id)
            .where(EnvironmentIpDeny.profile_id.in_(profile_ids))
            .order_by(Environment.name)
        ):
            attached.setdefault(profile_id, []).append(env_name)
    return {profile_id: tuple(names) for profile_id, names in attached.items()}


def _deny_view(profile: IpDenyProfile, environments: tuple[str, ...]) -> IpDenyProfileView:
    return IpDenyProfileView(
        name=profile.name,
        ip_ranges=tuple(profile.ip_ranges or ()),
        environments=environments,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )


def _refuse_attached(
    session: Session, app: App, profile: IpDenyProfile, attached: tuple[str, ...]
) -> None:
    """409 naming the environments the profile is still attached to (deleting it would
    lift their denial without anyone saying so)."""
    if attached:
        raise Conflict(
            f"The IP deny profile {profile.name!r} is attached to {', '.join(attached)}: "
            "detach it (PUT …/environments/{env}/ip-deny-profiles) before deleting it.",
            code=RefusalCode.IP_DENY_PROFILE_IN_USE,
            detail={"environments": list(attached)},
        )


def _no_state(_: tuple[str, ...]) -> Mapping[str, Any]:
    """Attachments are audited on the environment, not in the profile's state."""
    return {}


IP_DENY_PROFILES: RangeProfileKind[IpDenyProfile, tuple[str, ...], IpDenyProfileView] = (
    RangeProfileKind(
        table=IpDenyProfile,
        noun="IP deny profile",
        audit_name="ip_deny_profile",
        exists_code=RefusalCode.IP_DENY_PROFILE_EXISTS,
        not_found_code=RefusalCode.IP_DENY_PROFILE_NOT_FOUND,
        related=_attached_environments,
        state=_no_state,
        view=_deny_view,
        refuse_in_use=_refuse_attached,
    )
)


# -- attachments ----------------------------------------------------------------------------


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


# -- details --------------------------------------------------------------------------------


def _attached_names(session: Session, environment: Environment) -> tuple[str, ...]:
    return tuple(
        session.scalars(
            select(IpDenyProfile.name)
            .join(EnvironmentIpDeny, EnvironmentIpDeny.profile_id == IpDenyProfile.id)
            .where(EnvironmentIpDeny.environment_id == environment.id)
            .order_by(IpDenyProfile.name)
        )
    )
