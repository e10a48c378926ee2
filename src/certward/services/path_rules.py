"""An environment's path rules: staged through the API and the console, applied at
restart, read by the data plane.

A rule's prefix is stored in the form both data planes match it in, and a set of
rules is checked before it is staged (`certward.path_rule_checks`); here only whether
the access profiles it names exist is asked of the database.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.dataplane.state import PathRule as DataPlaneRule
from certward.errors import InvalidRequest, RefusalCode
from certward.model import AccessProfile, Environment, EnvironmentVersion
from certward.path_rule_checks import checked_rules, served_rules, shown_prefix
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment
from certward.services.staging import applied_snapshot, stage_path_rules, staged_path_rules
from certward.snapshot import PathRuleState, path_rules_json


@dataclass(frozen=True, slots=True, kw_only=True)
class PathRulesView:
    """``{prefix: {"rule", "profile"?}}`` staged (what a restart applies) and applied."""

    staged: dict[str, dict[str, str]]
    applied: dict[str, dict[str, str]]


def list_path_rules(
    ctx: Context, principal: Principal, app_name: str, env_name: str
) -> PathRulesView:
    with ctx.database.reading() as session:
        _, environment = find_environment(session, principal, app_name, env_name, Action.READ)
        applied = applied_snapshot(session, environment)
        return PathRulesView(
            staged=path_rules_json(staged_path_rules(session, environment)),
            applied=path_rules_json(applied.path_rules) if applied is not None else {},
        )


def replace_path_rules(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    rules: Sequence[PathRuleState],
) -> PathRulesView:
    """Stage ``rules`` as the environment's whole set; a restart applies them.

    Each prefix is stored in its canonical form (`certward.path_rule_checks`); a
    ``profile`` rule names an access profile of the app, and only a ``profile`` rule
    names one.
    """
    rules = checked_rules(rules)
    named = sorted({r.profile for r in rules if r.profile is not None})
    with ctx.database.transaction() as session:
        app, environment = find_environment(session, principal, app_name, env_name, Action.MANAGE)
        existing = set(
            session.scalars(
                select(AccessProfile.name)
                .where(AccessProfile.app_id == app.id, AccessProfile.name.in_(named))
                .with_for_update(read=True)  # not deleted before this transaction commits
            )
        )
        missing = [n for n in named if n not in existing]
        if missing:
            users = [r.prefix for r in rules if r.profile == missing[0]]
            raise InvalidRequest(
                f"The rule for {shown_prefix(users[0])} names the access profile {missing[0]!r}, "
                f"which app {app_name!r} does not have; create it first "
                "(POST /apps/{app}/access-profiles).",
                code=RefusalCode.UNKNOWN_ACCESS_PROFILE,
                detail={"access_profiles": missing},
            )
        before = path_rules_json(staged_path_rules(session, environment))
        stage_path_rules(session, environment, rules)
        after = path_rules_json(staged_path_rules(session, environment))
        audit.record(
            session,
            ctx,
            principal,
            action="path_rules.stage",
            object_type="environment",
            object_id=environment.id,
            app_id=app.id,
            before={"path_rules": before},
            after={"path_rules": after},
        )
        applied = applied_snapshot(session, environment)
        return PathRulesView(
            staged=after,
            applied=path_rules_json(applied.path_rules) if applied is not None else {},
        )


# -- for the data plane ---------------------------------------------------------------------


_RulesKey = tuple[str, int, str]  # environment id, version, digest
_APPLIED_RULES: dict[_RulesKey, tuple[DataPlaneRule, ...]] = {}
_CHUNK = 500


def applied_rules(
    session: Session, environment_ids: Collection[str] | None = None
) -> dict[str, tuple[DataPlaneRule, ...]]:
    """Applied path rules by environment id; only versions not seen before are read.

    With ``environment_ids``, the rules of those environments only, read through the
    cache without replacing it (the cache holds what a full read last found)."""
    global _APPLIED_RULES  # noqa: PLW0603 - replaced whole: holds applied versions only
    is_applied = (Environment.id == EnvironmentVersion.environment_id) & (
        Environment.applied_version == EnvironmentVersion.version
    )
    key_columns = (
        EnvironmentVersion.environment_id,
        EnvironmentVersion.version,
        EnvironmentVersion.digest,
    )
    query = select(*key_columns).join(Environment, is_applied)
    if environment_ids is not None:
        query = query.where(EnvironmentVersion.environment_id.in_(sorted(environment_ids)))
    known = _APPLIED_RULES
    fresh: dict[_RulesKey, tuple[DataPlaneRule, ...]] = {}
    missing: list[str] = []
    for environment_id, version, digest in session.execute(query):
        key = (environment_id, version, digest)
        rules = known.get(key)
        if rules is None:
            missing.append(key[0])
        else:
            fresh[key] = rules
    for start in range(0, len(missing), _CHUNK):
        snapshots = (
            select(*key_columns, EnvironmentVersion.snapshot["path_rules"])
            .join(Environment, is_applied)
            .where(EnvironmentVersion.environment_id.in_(missing[start : start + _CHUNK]))
        )
        for environment_id, version, digest, data in session.execute(snapshots):
            fresh[(environment_id, version, digest)] = served_rules(data or {})
    if environment_ids is None:
        _APPLIED_RULES = fresh
    return {key[0]: rules for key, rules in fresh.items()}
