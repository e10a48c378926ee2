"""The access decision for one request: a pure function of the site's rules, the
caller's address and the client certificate the TLS handshake verified.

Order: an address in one of the environment's IP deny ranges is refused first. Then
the path rule with the longest prefix of the request path applies (``inherit`` takes
the next shorter one). A path whose first segment ends in ``-doc`` (``/api-doc/``,
``/odata-doc``) is refused unless a rule's prefix covers that whole segment. With no
rule at all, requests are allowed. A ``profile`` rule passes when the address is in
the profile's ranges **or** the client certificate verified and was issued by one of
the profile's accepted CAs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import TypeAlias

from certward.dataplane.state import PathRule, RuleKind, Site

Address: TypeAlias = IPv4Address | IPv6Address

DOC_SUFFIX = "-doc"


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIdentity:
    """What the handshake learnt of the client certificate.

    ``verified`` is True only when the chain verified against the site's client CAs
    (clientAuth purpose, dates); ``failure`` says why not when a certificate was sent.
    """

    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    verified: bool
    failure: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    verdict: Verdict
    rule: str  # the rule that decided, e.g. "ip-deny", "deny-all /api-doc", "profile office"
    reason: str

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


_NO_RULE = Decision(verdict=Verdict.ALLOW, rule="default", reason="no rule applies")


def matching_rule(rules: tuple[PathRule, ...], path: str) -> PathRule | None:
    """The rule that applies to ``path`` (``inherit`` resolved), or None for none.

    Includes the implicit ``deny-all`` of a ``-doc`` first segment not covered by a rule.
    """
    candidates = [r for r in rules if path.startswith(r.prefix)] if rules else []
    if len(candidates) > 1:
        candidates.sort(key=lambda r: len(r.prefix), reverse=True)
    segment = first_segment(path)
    if segment.endswith(DOC_SUFFIX) and (
        not candidates or len(candidates[0].prefix) < len(segment) + 1
    ):
        return PathRule(prefix="/" + segment, rule=RuleKind.DENY_ALL)
    for rule in candidates:
        if rule.rule is not RuleKind.INHERIT:
            return rule
    return None


def first_segment(path: str) -> str:
    """``/api-doc/x`` → ``api-doc``; ``/`` → ``""``."""
    return path[1:].split("/", 1)[0] if path.startswith("/") else path.split("/", 1)[0]


def decide(site: Site, path: str, address: Address, client: ClientIdentity | None) -> Decision:
    """Allow or refuse one request to ``site``."""
    for network in site.deny_ranges:
        if address in network:
            return Decision(
                verdict=Verdict.DENY, rule="ip-deny", reason=f"{address} is in denied {network}"
            )
    rule = matching_rule(site.path_rules, path)
    if rule is None:
        return _NO_RULE
    label = f"{rule.rule.value} {rule.prefix}"
    if rule.rule is RuleKind.ALLOW_ALL:
        return Decision(verdict=Verdict.ALLOW, rule=label, reason="allowed for everyone")
    if rule.rule is RuleKind.DENY_ALL:
        return Decision(verdict=Verdict.DENY, rule=label, reason="denied for everyone")
    label = f"profile {rule.profile} {rule.prefix}"
    profile = site.profiles.get(rule.profile or "")
    if profile is None:
        return Decision(verdict=Verdict.DENY, rule=label, reason="the profile does not exist")
    if any(address in network for network in profile.ip_ranges):
        return Decision(verdict=Verdict.ALLOW, rule=label, reason=f"{address} is in range")
    if client is None:
        return Decision(
            verdict=Verdict.DENY, rule=label, reason="address not in range, no client certificate"
        )
    if not client.verified:
        return Decision(
            verdict=Verdict.DENY,
            rule=label,
            reason=f"client certificate not verified: {client.failure or 'unknown CA'}",
        )
    if client.issuer not in profile.accepted_issuers:
        return Decision(
            verdict=Verdict.DENY,
            rule=label,
            reason="client certificate issued by a CA this profile does not accept",
        )
    return Decision(verdict=Verdict.ALLOW, rule=label, reason="client certificate accepted")
