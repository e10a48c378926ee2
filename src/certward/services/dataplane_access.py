"""The data plane's view of access restrictions, for every environment at once.

`applied_access` gives `certward.services.dataplane_feed` what each environment
enforces: its applied path rules (`certward.services.path_rules`), its app's access
profiles as they are now (`certward.services.access_profiles`) and the ranges of the
IP deny profiles attached to it (`certward.services.ip_deny_profiles`), in a fixed
number of queries whatever the number of environments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.dataplane.state import AccessProfile as DataPlaneProfile
from certward.dataplane.state import ClientCa, ClientCrl, Network
from certward.dataplane.state import PathRule as DataPlaneRule
from certward.ip_ranges import stored_network
from certward.model import (
    AccessProfile,
    AccessProfileCa,
    Environment,
    EnvironmentIpDeny,
    IpDenyProfile,
)
from certward.services.access_profiles import ca_children, ca_order
from certward.services.path_rules import applied_rules


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
    children = ca_children(rows)
    ordered = sorted(rows, key=ca_order)
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
        crls=tuple(
            ClientCrl(id=hashlib.sha256(row.crl_der).hexdigest(), der=row.crl_der)
            for row in trusted.values()
            if row.crl_der is not None and row.crl_set_aside_at is None
        ),
    )
