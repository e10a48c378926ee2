"""PURE: the operator's egress policy — where a URL a tenant gives may lead.

Tenants name destinations that certward or its data plane then connect to: an
environment's upstream, a webhook URL. A hostile tenant names the platform itself
(the API port, the gateway's own listeners), loopback, link-local and cloud metadata
addresses, or spells one of those so that a naive check misses it (``2130706433``,
``0x7f000001``, ``[::ffff:127.0.0.1]``, ``[fe80::1%eth0]``). This module decides,
without any IO, whether a URL and later each address its name resolves to may be
reached:

* `check_url` at validation time: scheme, credentials, port, and the host's
  spelling; an IP literal is checked as an address, a name against the refused names
  and the operator's allowed suffixes (a name cannot be resolved here: it is checked
  again when it is used);
* `check_address` at connect time (the gateway) or render time (nginx), for every
  address a name resolved to: the data plane connects only to addresses that passed.

The default policy (no ``allow`` list) lets any address through that is not refused
by its kind: loopback, unspecified, link-local, multicast, reserved and broadcast
addresses, cloud metadata addresses, IPv4-mapped and IPv4-compatible IPv6 forms, and
addresses with a scope id. An operator who lists networks and name suffixes in
``CERTWARD_EGRESS_ALLOW`` opens exactly those (a listed network opens even a kind
refused by default, such as loopback for a one-machine installation); the platform's
own listeners stay refused whatever the list says.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from socket import inet_aton  # a string parser: no IO
from urllib.parse import urlsplit

from certward.errors import CertwardError
from certward.pki.names import HostnameError, normalize_hostname

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Printable ASCII without spaces, quotes, braces, semicolons or backslashes: nothing
# that could end a token of a configuration file the URL is rendered into.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,=%]+")
_INET_ATON_FORM = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)

# Addresses of instance-metadata services that are not in a range refused anyway.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
METADATA_NAMES: frozenset[str] = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
_REFUSED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches the local host
        "100.64.0.0/10",  # carrier-grade NAT: provider-internal
        "192.0.0.0/24",  # IETF protocol assignments (Oracle's metadata lives here)
        "::/96",  # IPv4-compatible (deprecated) and the unspecified address
        "::ffff:0:0/96",  # IPv4-mapped: the IPv4 address in disguise
        "64:ff9b::/96",  # NAT64: an IPv4 address in disguise
        "2002::/16",  # 6to4: an IPv4 address in disguise
        "fec0::/10",  # site-local (deprecated)
    )
)


class EgressRefused(CertwardError):
    """A destination the egress policy does not let certward or its data plane reach."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One address:port the platform itself listens on (never a tenant's destination)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressPolicy:
    """What the operator opens to tenants' URLs; see the module docstring."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    allow_plain_http: bool = True
    platform_listeners: tuple[Listener, ...] = ()

    @property
    def restricted(self) -> bool:
        """Whether the operator listed what is open (else: everything not refused by kind)."""
        return bool(self.allowed_networks or self.allowed_suffixes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """A URL that passed `check_url`: where to connect, before name resolution."""

    scheme: str
    host: str = field()  # a normalised name or an IP literal without brackets
    port: int
    address: IPAddress | None  # set when ``host`` is an IP literal
    # A name under one of the operator's suffixes: its addresses are judged by kind
    # (never loopback, metadata, ...), not against the network list.
    opened_by_name: bool = False

    @property
    def authority(self) -> str:
        """``host:port`` as it goes on the wire (IPv6 in brackets)."""
        host = (
            f"[{self.host}]"
            if self.address is not None and self.address.version == 6
            else self.host
        )
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_allow_list(text: str) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    """``10.0.0.0/8, .svc.cluster.local`` -> (networks, name suffixes); `ValueError` if wrong."""
    networks: list[IPNetwork] = []
    suffixes: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
            continue
        except ValueError:
            pass
        name = item.lstrip(".")
        try:
            normalised = normalize_hostname(name)
        except HostnameError:
            raise ValueError(
                f"{item!r} is neither a network (CIDR) nor a host-name suffix"
            ) from None
        if _is_ip_literal(normalised):
            raise ValueError(f"{item!r} is an address: write it as a network, e.g. {item}/32")
        suffixes.append(normalised)
    return tuple(networks), tuple(suffixes)


def check_url(policy: EgressPolicy, url: str, *, what: str = "URL") -> Destination:
    """The destination of ``url`` if the policy may let it through; `EgressRefused` says why."""
    if not _URL_CHARACTERS.fullmatch(url):
        raise EgressRefused(
            f"The {what} must be an http:// or https:// URL of printable ASCII characters "
            "without spaces, quotes, braces, semicolons or backslashes (percent-encode the "
            "rest; use the xn-- form of international host names)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"The {what} {url!r} is not a URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused(f"The {what} {url!r} must be an http:// or https:// URL with a host.")
    if scheme == "http" and not policy.allow_plain_http:
        raise EgressRefused(
            f"The {what} {url!r} must use https://: the platform allows no plain HTTP."
        )
    if "@" in parts.netloc:
        raise EgressRefused(f"The {what} must not carry a user name or password before its host.")
    if port == 0:
        raise EgressRefused(f"The {what} {url!r} names port 0.")
    port = port or (443 if scheme == "https" else 80)
    raw_host = parts.hostname
    if "%" in raw_host:
        raise EgressRefused(f"The {what}'s address must not carry a scope id (%…).")
    if _INET_ATON_FORM.fullmatch(raw_host) and not _is_canonical_ipv4(raw_host):
        raise EgressRefused(
            f"The {what}'s host {raw_host!r} is an IPv4 address in an unusual spelling; "
            "write it as four decimal numbers (a.b.c.d)."
        )
    try:
        host = normalize_hostname(raw_host)
    except HostnameError as exc:
        raise EgressRefused(
            f"The {what} {url!r} does not name a valid host name or IP address."
        ) from exc
    if parts.netloc.startswith("[") is not (":" in host):
        raise EgressRefused(f"The {what} {url!r} does not name a valid host name or IP address.")
    address = ipaddress.ip_address(host) if _is_ip_literal(host) else None
    if address is not None:
        check_address(policy, address, port, what=what)
    else:
        opened_by_name = _name_opened(policy, host, what=what)
        _check_listener_name(policy, host, port, what=what)
        return Destination(
            scheme=scheme, host=host, port=port, address=None, opened_by_name=opened_by_name
        )
    return Destination(scheme=scheme, host=host, port=port, address=address)


def check_address(
    policy: EgressPolicy,
    address: str | IPAddress,
    port: int,
    *,
    what: str = "URL",
    opened_by_name: bool = False,
) -> None:
    """Refuse an address (given or resolved) the policy does not open; see the module docstring."""
    if isinstance(address, str):
        if "%" in address:
            raise EgressRefused(f"The {what} resolves to {address}, an address with a scope id.")
        address = ipaddress.ip_address(address)
    for listener in policy.platform_listeners:
        if listener.port == port and _listener_covers(listener.host, address):
            raise EgressRefused(
                f"The {what} leads to {_spell(address, port)}, where the platform itself listens."
            )
    if policy.restricted and not opened_by_name:
        if any(
            address in network
            for network in policy.allowed_networks
            if network.version == address.version
        ):
            return
        raise EgressRefused(
            f"The {what} leads to {address}, outside the networks the platform opens to apps."
        )
    refusal = refused_kind(address)
    if refusal:
        raise EgressRefused(f"The {what} leads to {address}, {refusal}, which apps may not reach.")


def check_addresses(
    policy: EgressPolicy,
    destination: Destination,
    addresses: Iterable[str | IPAddress],
    *,
    what: str = "URL",
) -> list[IPAddress]:
    """The addresses ``destination``'s name resolved to, once each is checked.

    `EgressRefused` if any one may not be reached.

    Refusing the whole name when one of its addresses is refused keeps a name from
    mixing a public address with a metadata one and winning on a retry.
    """
    allowed: list[IPAddress] = []
    for item in addresses:
        address = ipaddress.ip_address(item) if isinstance(item, str) else item
        check_address(
            policy,
            address,
            destination.port,
            what=what,
            opened_by_name=destination.opened_by_name,
        )
        allowed.append(address)
    if not allowed:
        raise EgressRefused(f"The {what}'s host name resolves to no address.")
    return allowed


def refused_kind(address: IPAddress) -> str | None:
    """Why the default policy refuses ``address`` (a few words), or None."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"the IPv4 address {address.ipv4_mapped} in IPv6 form"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return "the broadcast address"
    if address.is_reserved:
        return "a reserved address"
    for network in _REFUSED_NETWORKS:
        if network.version == address.version and address in network:
            return f"an address in {network}"
    return None


def _name_opened(policy: EgressPolicy, host: str, *, what: str) -> bool:
    """Check a host name; True when one of the operator's suffixes opens it."""
    if host in METADATA_NAMES or host == "localhost" or host.endswith(".localhost"):
        raise EgressRefused(
            f"The {what}'s host {host!r} names the local machine or a metadata service."
        )
    if host.rsplit(".", 1)[-1].isdigit():
        raise EgressRefused(f"The {what}'s host {host!r} ends in a number but is no IPv4 address.")
    opened = any(
        host == suffix or host.endswith("." + suffix) for suffix in policy.allowed_suffixes
    )
    if policy.restricted and not opened and not policy.allowed_networks:
        raise EgressRefused(
            f"The {what}'s host {host!r} is outside the names the platform opens to apps."
        )
    # A name outside the suffixes is judged by the addresses it resolves to.
    return opened


def _check_listener_name(policy: EgressPolicy, host: str, port: int, *, what: str) -> None:
    for listener in policy.platform_listeners:
        if listener.port == port and listener.host.lower() == host:
            raise EgressRefused(
                f"The {what} leads to {host}:{port}, where the platform itself listens."
            )


def _listener_covers(listener_host: str, address: IPAddress) -> bool:
    try:
        bound = ipaddress.ip_address(listener_host.strip("[]"))
    except ValueError:
        # A listener bound by name (e.g. localhost): every loopback address is it.
        return address.is_loopback
    if bound.is_unspecified:
        return True  # bound to every address of the machine: any address may be one of them
    if bound.is_loopback and address.is_loopback:
        return True
    return bound == address


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_canonical_ipv4(host: str) -> bool:
    try:
        inet_aton(host)
    except OSError:
        return True  # not an inet_aton spelling at all: judged as a name
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def _spell(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
