"""IP ranges as tenants write them: checked, normalized, and parsed once for the data plane.

Access profiles (who may call) and IP deny profiles (who may not) take the same lists,
so both are judged here, with every wrong entry named. PURE: text in, networks or a
refusal out; no database, files or clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from certward.dataplane.state import Network
from certward.errors import InvalidRequest, RefusalCode

MAX_IP_RANGES = 500


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
            code=RefusalCode.TOO_MANY_IP_RANGES,
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
            code=RefusalCode.INVALID_IP_RANGE,
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
def stored_network(text: str) -> Network:
    """A stored (already normalized) range as a network object, parsed once."""
    return ipaddress.ip_network(text)
