"""What a set of path rules must be before it is staged, and the applied rules in the
form the data planes match them.

A rule's prefix is kept in the form both data planes match it in: percent-escapes
decoded once and the result checked (`certward.dataplane.request_target.
canonical_prefix`), so ``/files/a%20b`` is kept -- and matched -- as ``/files/a b``,
and a prefix that could not mean the same on the gateway and on nginx (an escaped
``/``, a dot segment, ``//``, a control character, bytes that are not UTF-8) is
refused with 422 ``invalid-path-prefix``. Two prefixes with the same canonical form
are one prefix given twice. Prefixes stored before that check are normalised when
the data plane reads them (`served_prefix`, in `served_rules`).

Pure: rules in, rules (or `InvalidRequest`) out; whether a named access profile exists
is the caller's question (`certward.services.path_rules`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from certward.dataplane.request_target import PrefixRefused, canonical_prefix, served_prefix
from certward.dataplane.state import PathRule as DataPlaneRule
from certward.dataplane.state import RuleKind
from certward.errors import InvalidRequest, RefusalCode
from certward.snapshot import PathRuleState

MAX_PATH_RULES = 200  # per environment
MAX_PREFIX_LENGTH = 1024  # the column's size


def checked_rules(rules: Sequence[PathRuleState]) -> list[PathRuleState]:
    """``rules`` as one environment's whole set, each prefix in canonical form; 422
    ``too-many-path-rules`` beyond `MAX_PATH_RULES`, ``invalid-path-rule`` for a prefix
    given twice, and what `check_path_rule` refuses."""
    if len(rules) > MAX_PATH_RULES:
        raise InvalidRequest(
            f"{len(rules)} path rules were given; an environment has at most "
            f"{MAX_PATH_RULES} (rules apply to prefixes, so one rule covers a whole subtree).",
            code=RefusalCode.TOO_MANY_PATH_RULES,
        )
    checked = [check_path_rule(rule) for rule in rules]
    prefixes = [rule.prefix for rule in checked]
    if len(set(prefixes)) != len(prefixes):
        twice = next(p for p in prefixes if prefixes.count(p) > 1)
        raise InvalidRequest(
            f"The prefix {shown_prefix(twice)} is given twice (percent-escapes are decoded, "
            "so '/a%20b' and '/a b' are the same prefix).",
            code=RefusalCode.INVALID_PATH_RULE,
        )
    return checked


def check_path_rule(rule: PathRuleState) -> PathRuleState:
    """``rule`` with its prefix in canonical form; 422 ``invalid-path-prefix`` for a
    prefix that cannot mean the same on both data planes, ``invalid-path-rule`` for a
    rule that is inconsistent about its profile."""
    shown = shown_prefix(rule.prefix)
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


def served_rules(data: Mapping[str, Any]) -> tuple[DataPlaneRule, ...]:
    """Applied rules (a snapshot's ``path_rules``) as the data planes match them: every
    prefix in its served form. Of two stored prefixes that come to the same one
    (possible only for prefixes stored before they were checked), the one already in
    canonical form wins."""
    rules: dict[str, DataPlaneRule] = {}
    for prefix, rule in sorted(data.items(), key=lambda item: served_prefix(item[0]) != item[0]):
        served = served_prefix(prefix)
        if served not in rules:
            rules[served] = DataPlaneRule(
                prefix=served, rule=RuleKind(rule["rule"]), profile=rule.get("profile")
            )
    return tuple(rules[prefix] for prefix in sorted(rules))


def shown_prefix(prefix: str) -> str:
    """A prefix for a message: quoted with escapes, cut when very long."""
    return repr(prefix if len(prefix) <= 80 else prefix[:77] + "...")
