"""A site's access decision in nginx: IP deny, path rules and access profiles.

`decision_blocks` renders the ``geo`` and ``map`` blocks that reproduce
`certward.dataplane.access.decide` for one site (see `certward.dataplane.nginx` for how
the whole configuration uses them): a ``geo`` on ``$remote_addr`` for the deny ranges,
a ``map $uri`` whose regexes (`path_patterns`, then `doc_pattern`) name the rule that
decides, a ``geo`` and an issuer regex per access profile, and the verdict and label
maps the server block reads.

Pure: no files, sockets or clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from certward.dataplane.access import matching_rule
from certward.dataplane.nginx_client_ca import accepted_issuer_dns
from certward.dataplane.nginx_syntax import label, quote
from certward.dataplane.state import AccessProfile, Network, PathRule, RuleKind, Site


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a path rule decides: ``allow``/``deny``, or the profile variable to consult."""

    label: str
    verdict: str


def decision_blocks(site: Site, var: str) -> str:
    """The blocks deciding a request to ``site``: ``$<var>_verdict`` (``allow``,
    ``deny`` or a profile's verdict) and ``$<var>_label`` (the rule that decided)."""
    lines: list[str] = []
    deny_source = "0"
    if site.deny_ranges:
        lines.append(_geo(f"{var}_deny", site.deny_ranges))
        deny_source = f"${var}_deny"
    profiles = _used_profiles(site)
    profile_vars: dict[str, str] = {}
    for number, profile in enumerate(profiles):
        profile_var = f"{var}_p{number}"
        lines.append(_profile_blocks(site, profile, profile_var))
        profile_vars[profile.name] = f"${profile_var}_ok"
    patterns, outcomes = _path_table(site, profile_vars)
    rule_map = [f'        {quote("~" + pattern)} "r{number}";\n' for pattern, number in patterns]
    rule_map.append(f'        {quote("~" + doc_pattern(f"{var}_seg"))} "d";\n')
    lines.append(f"    map $uri ${var}_rule {{\n{''.join(rule_map)}        default n;\n    }}\n")
    verdicts = ["        0n allow;\n", "        0d deny;\n"]
    labels = ["        0n default;\n", f'        0d "deny-all /${var}_seg";\n']
    for number, outcome in enumerate(outcomes):
        verdicts.append(f"        0r{number} {outcome.verdict};\n")
        labels.append(f"        0r{number} {label(outcome.label)};\n")
    source = quote(f"{deny_source}${var}_rule")
    lines.append(
        f"    map {source} ${var}_verdict {{\n{''.join(verdicts)}        default deny;\n    }}\n"
    )
    lines.append(
        f"    map {source} ${var}_label {{\n{''.join(labels)}        default ip-deny;\n    }}\n"
    )
    return "".join(lines)


def _used_profiles(site: Site) -> list[AccessProfile]:
    named = {r.profile for r in site.path_rules if r.rule is RuleKind.PROFILE and r.profile}
    return [site.profiles[name] for name in sorted(named) if name in site.profiles]


def _profile_blocks(site: Site, profile: AccessProfile, var: str) -> str:
    """``$<var>_ok``: allow when the address is in range or the certificate qualifies."""
    lines: list[str] = []
    range_source = "0"
    if profile.ip_ranges:
        lines.append(_geo(f"{var}_range", profile.ip_ranges))
        range_source = f"${var}_range"
    entries = ['        "~^1:" allow;\n']
    issuers = accepted_issuer_dns(site, profile) if site.wants_client_certificate else []
    if issuers:
        alternatives = "|".join(_regex_literal(dn) for dn in issuers)
        pattern = quote("~^0:SUCCESS:(?:" + alternatives + ")\\z")
        entries.append(f"        {pattern} allow;\n")
    source = quote(f"{range_source}:$ssl_client_verify:$ssl_client_i_dn")
    lines.append(
        f"    map {source} ${var}_ok {{\n{''.join(entries)}        default deny;\n    }}\n"
    )
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class PathPattern:
    """One entry of a site's ``map $uri``: a path matching ``regex`` (PCRE, tried in
    order, first match wins) is decided by ``rule``; None means no rule applies."""

    regex: str
    rule: PathRule | None


def path_patterns(site: Site) -> list[PathPattern]:
    """The site's distinct rule prefixes as regexes, longest first, each with its rule.

    A path's longest matching prefix fixes the rule (every shorter candidate is a prefix
    of it), so the rule for a prefix is `matching_rule` applied to the prefix itself.
    Paths these miss are tried against `doc_pattern`, then get no rule. Prefixes not
    starting with ``/`` never match an nginx ``$uri`` and are left out.
    """
    prefixes = sorted(
        {r.prefix for r in site.path_rules if r.prefix.startswith("/")},
        key=lambda p: (-len(p), p),
    )
    return [
        PathPattern(regex=_prefix_pattern(prefix), rule=matching_rule(site.path_rules, prefix))
        for prefix in prefixes
    ]


def doc_pattern(capture: str) -> str:
    """Paths whose first segment ends in ``-doc``, the segment captured as ``capture``."""
    return f"^/(?<{capture}>[^/]*)(?<=-doc)(?:/|\\z)"


def _path_table(
    site: Site, profile_vars: Mapping[str, str]
) -> tuple[list[tuple[str, int]], list[_Outcome]]:
    """`path_patterns`, each with the index of its outcome (outcomes shared)."""
    outcomes: list[_Outcome] = []
    patterns: list[tuple[str, int]] = []
    for entry in path_patterns(site):
        outcome = _outcome(site, entry.rule, profile_vars)
        if outcome not in outcomes:
            outcomes.append(outcome)
        patterns.append((entry.regex, outcomes.index(outcome)))
    return patterns, outcomes


def _outcome(site: Site, rule: PathRule | None, profile_vars: Mapping[str, str]) -> _Outcome:
    if rule is None:
        return _Outcome(label="default", verdict="allow")
    if rule.rule is RuleKind.ALLOW_ALL:
        return _Outcome(label=f"{rule.rule.value} {rule.prefix}", verdict="allow")
    if rule.rule is RuleKind.DENY_ALL:
        return _Outcome(label=f"{rule.rule.value} {rule.prefix}", verdict="deny")
    label = f"profile {rule.profile} {rule.prefix}"
    if rule.profile is None or rule.profile not in site.profiles:
        return _Outcome(label=label, verdict="deny")
    return _Outcome(label=label, verdict=profile_vars[rule.profile])


def _prefix_pattern(prefix: str) -> str:
    """A regex matching paths that start with ``prefix`` — unless the path's first
    segment ends in ``-doc`` and ``prefix`` stops inside that segment."""
    literal = _regex_literal(prefix)
    if "/" in prefix[1:]:
        return "^" + literal  # the prefix spans the whole first segment
    return "^" + literal + "(?![^/]+(?<=-doc)(?:/|\\z))"


def _regex_literal(text: str) -> str:
    """``text`` as a PCRE literal: ASCII letters and digits as they are, every other
    byte of its UTF-8 as ``\\xHH`` (nginx matches bytes; nothing is left to quote)."""
    return "".join(
        chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else f"\\x{byte:02x}"
        for byte in text.encode("utf-8")
    )


def _geo(variable: str, networks: Iterable[Network]) -> str:
    entries = "".join(f"        {network} 1;\n" for network in networks)
    return f"    geo ${variable} {{\n        default 0;\n{entries}    }}\n"
