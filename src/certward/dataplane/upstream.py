"""The gateway's side towards an app: where it may connect, over what, with what headers.

**Where.** A site's upstream URL is checked against the operator's `EgressPolicy`
(`certward.egress.check_url`) every time the gateway opens a connection to it, its
name is resolved then, and every address it resolves to is checked
(`check_addresses`): the gateway connects only to an address that passed, so a name
that resolves to loopback, a metadata address or one of the platform's own listeners
is refused (`UpstreamRefused`, answered 502 and logged with the reason) however the
URL was spelled, and a name whose answer changes after validation changes nothing.

**Over what.** ``https://`` upstreams are TLS with certificate verification and SNI
(the upstream's host name), port 443 by default; trust is the public roots (certifi's
bundle, else the system's), the platform CA and the operator's
``CERTWARD_UPSTREAM_CA_BUNDLE`` (`upstream_tls_context`). A failed verification is a
502, never a fall-back to cleartext. ``http://`` upstreams are plain HTTP, only where
the policy allows it (``CERTWARD_EGRESS_PLAIN_HTTP``).

**With what headers.** The caller's headers that apps trust because the data plane
sets them are dropped in any spelling (`certward.dataplane.caller_headers.is_stripped`:
``SSL-*``, ``X-SSL-*``, ``X-Forwarded-*``, ``X-Client-*``, ``X-Real-IP``,
``Forwarded``, ``True-Client-IP``, ``Client-Cert`` and the rest of
`caller_headers.STRIPPED_NAMES`), as are hop-by-hop headers; then the gateway adds
its own ``X-Real-IP``, ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``SSL-*`` and
appends its hop mark to ``CDN-Loop`` (`caller_headers.HOP_MARK`), keeping the
caller's other cdn-ids.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from certward.dataplane.caller_headers import HOP_MARK, HOP_MARK_HEADER, is_stripped
from certward.dataplane.gateway_pages import hsts_line, reason_phrase
from certward.egress import (
    Destination,
    EgressPolicy,
    EgressRefused,
    IPAddress,
    check_addresses,
    check_url,
)
from certward.errors import InternalSignal

log = logging.getLogger("certward.gateway")

UPSTREAM_CONNECT_TIMEOUT = 10.0
_P = TypeVar("_P", bound=asyncio.BaseProtocol)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)
_HOP_MARK_HEADER = HOP_MARK_HEADER.lower().encode()


class UpstreamRefused(InternalSignal):
    """The egress policy does not let the gateway reach a site's upstream."""


def upstream_tls_context(
    *, platform_ca_pem: bytes = b"", ca_bundle: Path | None = None
) -> ssl.SSLContext:
    """The client context for ``https://`` upstreams: verification and host-name checks
    on, trusting the public roots, the platform CA and the operator's bundle."""
    try:
        import certifi  # noqa: PLC0415 - optional: the system's roots otherwise

        context = ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi is a dependency of certward
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if platform_ca_pem.strip():
        context.load_verify_locations(cadata=platform_ca_pem.decode("ascii"))
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


class UpstreamConnector:
    """Opens connections to upstreams as the policy allows (kept alive and shared by the
    client connections of a worker: `certward.dataplane.upstream_connection`)."""

    def __init__(self, policy: EgressPolicy, tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.tls = tls if tls is not None else upstream_tls_context()
        self._destinations: dict[str, Destination | str] = {}

    def destination(self, upstream: str) -> Destination:
        """The checked destination of an upstream URL; `UpstreamRefused` says why not.

        The verdict on the URL itself is cached (it depends on the text and the policy
        only); names are resolved and their addresses checked at every connection.
        """
        known = self._destinations.get(upstream)
        if known is None:
            known = _destination(self.policy, upstream)
            if len(self._destinations) > 65536:
                self._destinations.clear()
            self._destinations[upstream] = known
        if isinstance(known, str):
            raise UpstreamRefused(known)
        return known

    async def connect(self, upstream: str, factory: Callable[[], _P]) -> _P:
        """A connection to ``upstream`` (TLS for https://), to a checked address only,
        served by the protocol ``factory`` makes.

        `UpstreamRefused` when the policy refuses it; `OSError` or `TimeoutError` when
        it cannot be reached (a TLS verification failure is an `ssl.SSLError`).
        """
        destination = self.destination(upstream)
        return await asyncio.wait_for(self._connect(destination, factory), UPSTREAM_CONNECT_TIMEOUT)

    async def _connect(self, destination: Destination, factory: Callable[[], _P]) -> _P:
        addresses = await self._addresses(destination)
        tls: dict[str, Any] = (
            {"ssl": self.tls, "server_hostname": destination.host} if destination.tls else {}
        )
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        for address in addresses:
            try:
                _, protocol = await loop.create_connection(
                    factory, str(address), destination.port, **tls
                )
            except ssl.SSLError:
                raise  # the upstream answered, with a certificate that does not verify
            except OSError as exc:
                failure = exc
            else:
                return protocol
        raise failure or OSError(f"no address of {destination.host} answered")

    async def _addresses(self, destination: Destination) -> list[IPAddress]:
        if destination.address is not None:
            return [destination.address]  # an IP literal: checked with the URL
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.getaddrinfo(
                destination.host, destination.port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise OSError(f"{destination.host} does not resolve: {exc.strerror}") from exc
        resolved = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
        try:
            return check_addresses(self.policy, destination, resolved, what="upstream")
        except EgressRefused as exc:
            raise UpstreamRefused(str(exc)) from None


def _destination(policy: EgressPolicy, upstream: str) -> Destination | str:
    """`check_url`'s verdict, or why not in words that never repeat credentials."""
    if "@" in upstream.split("://", 1)[-1].split("/", 1)[0]:
        return "The upstream URL carries a user name or password before its host."
    try:
        return check_url(policy, upstream, what="upstream")
    except EgressRefused as exc:
        return str(exc)


# -- headers --------------------------------------------------------------------------------


_STRIPPED: dict[bytes, bool] = {}


def _dropped(name: bytes) -> bool:
    """`is_stripped` of a lower-case header name, remembered (a bounded table)."""
    known = _STRIPPED.get(name)
    if known is None:
        known = is_stripped(name.decode("latin-1"))
        if len(_STRIPPED) >= 4096:
            _STRIPPED.clear()
        _STRIPPED[name] = known
    return known


def fixed_request_headers(peer: str, tls_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The headers the gateway adds to every request of one client connection, encoded
    once: ``X-Real-IP``, ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``SSL-*``."""
    address = peer.encode()
    lines = [
        (b"X-Real-IP", address),
        (b"X-Forwarded-For", address),
        (b"X-Forwarded-Proto", b"https"),
        *tls_headers,
    ]
    return b"".join(name + b": " + value + b"\r\n" for name, value in lines)


_HOP_MARK_LINE = HOP_MARK_HEADER.encode() + b": "
_OWN_HOP_MARK = HOP_MARK.encode()


def upstream_head(
    method: bytes,
    origin: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    *,
    fixed: bytes,
    chunked: bool,
) -> tuple[bytes, bool]:
    """The request head forwarded upstream (see the module docstring), and whether the
    request is a WebSocket upgrade. ``headers`` are the caller's, names in lower case,
    names and values checked by the request parser (no CR, LF or NUL); ``fixed`` is
    `fixed_request_headers`; ``chunked``: the body is sent on chunked encoding."""
    items = headers if isinstance(headers, list) else list(headers)
    named_in_connection: set[bytes] = set()
    upgrade = False
    for name, value in items:
        if name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            named_in_connection |= tokens
            upgrade = upgrade or b"upgrade" in tokens
    websocket = upgrade and any(
        name == b"upgrade" and value.lower() == b"websocket" for name, value in items
    )
    out = [method, b" ", origin, b" HTTP/1.1\r\n"]
    cdn_loop: list[bytes] = []
    for name, value in items:
        if name == _HOP_MARK_HEADER:
            cdn_loop.append(value)
            continue
        if name in _HOP_BY_HOP_BYTES or name in named_in_connection or _dropped(name):
            continue
        out += (name, b": ", value, b"\r\n")
    if chunked:
        out.append(b"transfer-encoding: chunked\r\n")
    cdn_loop.append(_OWN_HOP_MARK)
    out += (fixed, _HOP_MARK_LINE, b", ".join(cdn_loop), b"\r\n")
    if websocket:
        out.append(b"Upgrade: websocket\r\nConnection: upgrade\r\n")
    out.append(b"\r\n")
    return b"".join(out), websocket


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    upgrade: bool = False,
    framing: bytes = b"",
    hsts: bytes | None = None,
) -> bytes:
    """An upstream response's head as sent to the client: hop-by-hop headers dropped
    (names in lower case, checked by the response parser), an empty reason replaced by
    the standard one, ``framing`` (the ``Transfer-Encoding`` or ``Connection`` lines the
    gateway's own framing needs) added. ``hsts``, the app's setting, replaces whatever
    ``Strict-Transport-Security`` the upstream sent."""
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named |= {t.strip().lower() for t in value.split(b",")}
    if hsts is not None:
        named.add(b"strict-transport-security")
    out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_phrase(status))]
    for name, value in headers:
        if name not in _HOP_BY_HOP_BYTES and name not in named:
            out += (name, b": ", value, b"\r\n")
    out.append(hsts_line(hsts))
    if upgrade:
        out.append(b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
    out += (framing, b"\r\n")
    return b"".join(out)
