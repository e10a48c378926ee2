"""An environment's path rules: staged through the API and the console, applied at
restart, read by the data plane.

A rule's prefix is stored in the form both data planes match it in: percent-escapes
decoded once and the result checked (`certward.dataplane.request_target.
canonical_prefix`), so ``/files/a%20b`` is stored — and matched — as ``/files/a b``,
and a prefix that could not mean the same on the gateway and on nginx (an escaped
``/``, a dot segment, ``//``, a control character, bytes that are not UTF-8) is
refused with 422 ``invalid-path-prefix``. Two prefixes with the same canonical form
are one prefix given twice. Prefixes stored before that check are normalised when
the data plane reads them (`served_prefix`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.dataplane.request_target import PrefixRefused, canonical_prefix, served_prefix
from certward.dataplane.state import PathRule as DataPlaneRule
from certward.dataplane.state import RuleKind
from certward.errors import InvalidRequest, RefusalCode
from certward.model import AccessProfile, Environment, EnvironmentVersion
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment
from certward.services.staging import applied_snapshot, stage_path_rules, staged_path_rules
from certward.snapshot import PathRuleState, path_rules_json

MAX_PATH_RULES = 200  # per environment
MAX_PREFIX_LENGTH = 1024  # the column's size


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

    Each prefix is stored in its canonical form (see the module docstring); a
    ``profile`` rule names an access profile of the app, and only a ``profile`` rule
    names one.
    """
    if len(rules) > MAX_PATH_RULES:
        raise InvalidRequest(
            f"{len(rules)} path rules were given; an environment has at most "
            f"{MAX_PATH_RULES} (rules apply to prefixes, so one rule covers a whole subtree).",
            code=RefusalCode.TOO_MANY_PATH_RULES,
        )
    rules = [check_path_rule(rule) for rule in rules]
    prefixes = [rule.prefix for rule in rules]
    if len(set(prefixes)) != len(prefixes):
        twice = next(p for p in prefixes if prefixes.count(p) > 1)
        raise InvalidRequest(
            f"The prefix {_shown(twice)} is given twice (percent-escapes are decoded, so "
            "'/a%20b' and '/a b' are the same prefix).",
            code=RefusalCode.INVALID_PATH_RULE,
        )
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
                f"The rule for {_shown(users[0])} names the access profile {missing[0]!r}, "
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


def check_path_rule(rule: PathRuleState) -> PathRuleState:
    """``rule`` with its prefix in canonical form; 422 ``invalid-path-prefix`` for a
    prefix that cannot mean the same on both data planes, ``invalid-path-rule`` for a
    rule that is inconsistent about its profile."""
    shown = _shown(rule.prefix)
    if len(rule.prefix) > MAX_PREFIX_LENGTH:
        raise InvalidRequest(
            f"The path prefix {shown} is {len(rule.prefix)} characters long; at most "
            f"{MAX_PREFIX_LENGTH} are allowed.",
            code=RefusalCode.INVALID_PATH_PREFIX,
        )
    try:
        prefix = canonical_prefix(rule.prefix)
    except PrefixRefused as exc:
        raise InvalidRequest(
            f"The path prefix {shown} {exc}.", code=RefusalCode.INVALID_PATH_PREFIX
        ) from None
    if rule.rule is RuleKind.PROFILE and rule.profile is None:
        raise InvalidRequest(
            f"The rule for {shown} is 'profile' but names no profile: add \"profile\": the "
            "name of one of the app's access profiles.",
            code=RefusalCode.INVALID_PATH_RULE,
        )
    if rule.rule is not RuleKind.PROFILE and rule.profile is not None:
        raise InvalidRequest(
            f"The rule for {shown} is {rule.rule.value!r}, which takes no profile; use "
            '"rule": "profile" to restrict the path to a profile.',
            code=RefusalCode.INVALID_PATH_RULE,
        )
    return replace(rule, prefix=prefix)


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
            fresh[(environment_id, version, digest)] = _data_plane_rules(data or {})
    if environment_ids is None:
        _APPLIED_RULES = fresh
    return {key[0]: rules for key, rules in fresh.items()}


def _data_plane_rules(data: Mapping[str, Any]) -> tuple[DataPlaneRule, ...]:
    """The applied rules as the data planes match them: every prefix in its served form.
    Of two stored prefixes that come to the same one (possible only for prefixes
    stored before they were checked), the one already in canonical form wins."""
    rules: dict[str, DataPlaneRule] = {}
    for prefix, rule in sorted(data.items(), key=lambda item: served_prefix(item[0]) != item[0]):
        served = served_prefix(prefix)
        if served not in rules:
            rules[served] = DataPlaneRule(
                prefix=served, rule=RuleKind(rule["rule"]), profile=rule.get("profile")
            )
    return tuple(rules[prefix] for prefix in sorted(rules))


def _shown(prefix: str) -> str:
    """A prefix for a message: quoted with escapes, cut when very long."""
    return repr(prefix if len(prefix) <= 80 else prefix[:77] + "...")
