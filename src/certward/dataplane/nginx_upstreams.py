"""Upstreams and forwarded headers of the nginx data plane.

**Checked addresses only.** Every site's upstream goes through the operator's egress
policy (`certward.egress`) when the configuration is rendered: the URL with
`check_url`, and each address its name resolves to with `check_addresses`. An
``upstream`` block lists those addresses as literal ``ip:port`` ``server`` lines, so
nginx resolves nothing itself and connects to nothing the policy did not pass (a name
that later resolves elsewhere changes nothing until the next render). A site whose
upstream is refused or does not resolve is left out with the reason, and the rest is
rendered: one tenant's upstream cannot break the configuration of the others.

**https upstreams** are verified: ``proxy_ssl_verify on`` against a trust bundle the
caller gives (public roots, the platform CA, the operator's ``CERTWARD_UPSTREAM_CA_BUNDLE``),
with SNI and the name checked being the upstream URL's host.

**Caller headers** listed in `certward.dataplane.caller_headers.STRIPPED_NAMES` are
cleared (``proxy_set_header Name "";``) unless certward sets them itself; nginx drops
names with ``_`` (``ignore_invalid_headers``). **Hops**: a request whose ``CDN-Loop``
already carries the platform's mark gets 508, and every forwarded request carries it
(appended to the caller's value), so an upstream that leads back into the platform
costs one extra request, not thousands. nginx 1.22 reads only the first ``CDN-Loop``
header of a request (``$http_cdn_loop``) and sends upstream one header: the caller's
first value with the mark appended.

Pure: names are resolved by the lookup the caller passes (none: names stay unresolved).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from certward.dataplane.caller_headers import HOP_MARK, HOP_MARK_NGINX_REGEX, STRIPPED_NAMES
from certward.egress import EgressPolicy, EgressRefused, check_addresses, check_url
from certward.pki.names import is_dns_name

UPSTREAM_KEEPALIVE = 16
UPSTREAM_VERIFY_DEPTH = 8
UPSTREAM_TRUST_FILE = "upstream-ca.pem"


Lookup = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``; raises `OSError` when the name does not resolve."""

SET_BY_CERTWARD: tuple[tuple[str, str], ...] = (
    ("Host", "$http_host"),
    ("X-Real-IP", "$remote_addr"),
    ("X-Forwarded-For", "$remote_addr"),
    ("X-Forwarded-Proto", "https"),
    ("SSL-Protocol", "$ssl_protocol"),
    ("SSL-Cipher", "$ssl_cipher"),
    ("SSL-Client-S-DN", "$cw_client_s_dn"),
    ("SSL-Client-I-DN", "$cw_client_i_dn"),
    ("SSL-Client-Fingerprint", "$cw_client_fingerprint"),
    ("SSL-Client-Serial", "$cw_client_serial"),
    ("Upgrade", "$http_upgrade"),
    ("Connection", "$cw_upstream_connection"),
    ("CDN-Loop", "$cw_cdn_loop"),
)
"""The headers every proxied request carries, as certward sets them."""


@dataclass(frozen=True, slots=True)
class CheckedUpstream:
    """An upstream that passed the policy, with the addresses nginx may connect to."""

    scheme: str
    host: str  # a normalised name, or an IP literal without brackets
    port: int
    addresses: tuple[str, ...]  # "ip:port" / "[v6]:port", each checked

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


UpstreamChecks = Mapping[str, CheckedUpstream | str]
"""Upstream URL -> its checked form, or why it may not be rendered."""


def check_upstreams(
    urls: Iterable[str], policy: EgressPolicy, lookup: Lookup | None = None
) -> dict[str, CheckedUpstream | str]:
    """Each distinct URL checked against ``policy``, names resolved through ``lookup``."""
    out: dict[str, CheckedUpstream | str] = {}
    for url in urls:
        if url not in out:
            out[url] = _check(url, policy, lookup)
    return out


def _check(url: str, policy: EgressPolicy, lookup: Lookup | None) -> CheckedUpstream | str:
    try:
        destination = check_url(policy, url, what="upstream")
        if destination.address is not None:
            found = [destination.address]
        else:
            if lookup is None:
                return f"the upstream's host {destination.host} was not resolved"
            try:
                names = lookup(destination.host, destination.port)
            except OSError as exc:
                return f"the upstream's host {destination.host} does not resolve ({exc})"
            found = check_addresses(policy, destination, _unique(names), what="upstream")
    except EgressRefused as exc:
        return f"upstream not allowed: {exc}"
    return CheckedUpstream(
        scheme=destination.scheme,
        host=destination.host,
        port=destination.port,
        addresses=tuple(_spell(str(a), destination.port) for a in found),
    )


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for address in addresses:
        if address not in seen:
            seen.append(address)
    return seen


def _spell(address: str, port: int) -> str:
    parsed = ipaddress.ip_address(address)  # a checked literal: never a name or a scope id
    return f"[{parsed}]:{port}" if parsed.version == 6 else f"{parsed}:{port}"


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """How a ``server`` reaches its upstream."""

    proxy_pass: str
    tls_name: str | None  # set for https: SNI and the name the certificate must carry
    trust_file: str = ""  # the bundle that verifies an https upstream


class UpstreamBlocks:
    """One ``upstream`` block (with idle keep-alive connections) per distinct origin.

    The request goes to ``scheme://<block>$request_uri``: the target exactly as the
    client sent it. The path of an upstream URL is not used, as in the gateway.
    """

    def __init__(self) -> None:
        self._blocks: dict[tuple[str, str, int], tuple[str, tuple[str, ...]]] = {}

    def name(self, upstream: CheckedUpstream, trust_file: str) -> UpstreamTarget:
        key = (upstream.scheme, upstream.host, upstream.port)
        block, _ = self._blocks.setdefault(
            key, (f"cw_upstream_{len(self._blocks)}", upstream.addresses)
        )
        return UpstreamTarget(
            proxy_pass=f"{upstream.scheme}://{block}$request_uri",
            tls_name=upstream.host if upstream.tls else None,
            trust_file=trust_file,
        )

    @property
    def any_tls(self) -> bool:
        return any(scheme == "https" for scheme, _, _ in self._blocks)

    def render(self) -> str:
        out: list[str] = []
        for block, addresses in self._blocks.values():
            servers = "".join(f"        server {address};\n" for address in addresses)
            out.append(
                f"    upstream {block} {{\n{servers}"
                f"        keepalive {UPSTREAM_KEEPALIVE};\n"
                "    }\n"
            )
        return "".join(out) + "\n"


def tls_lines(target: UpstreamTarget) -> list[str]:
    """The ``server`` directives that verify an https upstream (none for http)."""
    if target.tls_name is None:
        return []
    return [
        "proxy_ssl_verify on;",
        f"proxy_ssl_verify_depth {UPSTREAM_VERIFY_DEPTH};",
        f'proxy_ssl_trusted_certificate "{target.trust_file}";',
        "proxy_ssl_server_name on;",
        f"proxy_ssl_name {target.tls_name};",
        "proxy_ssl_protocols TLSv1.2 TLSv1.3;",
    ]


def forwarded_headers() -> str:
    """The http-level ``proxy_set_header`` lines and the hop-mark maps."""
    own = {name.lower() for name, _ in SET_BY_CERTWARD}
    lines = [f"    proxy_set_header {name} {value};\n" for name, value in SET_BY_CERTWARD]
    lines.append("    # Caller headers of the families certward sets or apps trust: cleared.\n")
    lines += [
        f'    proxy_set_header {_title(name)} "";\n'
        for name in sorted(STRIPPED_NAMES)
        if name not in own
    ]
    loop = HOP_MARK_NGINX_REGEX.replace("\\", "\\\\")
    lines.append(
        "    # The platform's hop mark: seen again means a loop (508); always sent on.\n"
        f'    map $http_cdn_loop $cw_loop {{\n        "{loop}" 1;\n        default 0;\n    }}\n'
        "    map $http_cdn_loop $cw_cdn_loop {\n"
        f'        "" "{HOP_MARK}";\n'
        f'        default "$http_cdn_loop, {HOP_MARK}";\n'
        "    }\n"
    )
    return "".join(lines)


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def acme_origin(value: str) -> str:
    """``http://host:port`` of the ACME responder (``host:port`` is accepted too).

    Set by the operator (certward's own API, usually on loopback), so it is not under
    the tenants' policy; it must be a plain http:// origin with an IP or a host name.
    """
    url = value if "://" in value else f"http://{value}"
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError as exc:
        raise ValueError(f"acme_upstream {value!r} is not a URL") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or not host:
        raise ValueError(f"acme_upstream must be a plain http:// origin, not {value!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not is_dns_name(host):
            raise ValueError(f"acme_upstream {value!r} does not name a host") from None
        return f"http://{host}:{port}"
    return f"http://{_spell(str(address), port)}"
