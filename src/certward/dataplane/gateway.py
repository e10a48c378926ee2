"""The embedded TLS gateway: HTTPS for every hostname by SNI, access rules, proxying.

One asyncio event loop per worker process. TLS runs through pyOpenSSL on memory BIOs,
because Python's `ssl` cannot ask for a client certificate, or advertise acceptable CA
names, per SNI host: the servername callback switches the connection to the host's
`SSL.Context` and, only where the host's rules involve client CAs, sets
``VERIFY_PEER`` on that one connection. A client certificate that fails verification
does not break the handshake; the failure is recorded and the request is decided by
`certward.dataplane.access.decide` like any other (an IP range may still admit it).

HTTP/1.1 on both sides is h11: keep-alive, streamed bodies in both directions,
WebSocket upgrades (bytes are piped after the upstream's 101). The caller's own
``X-Forwarded-*``, ``X-Real-IP`` and ``SSL-*`` headers (any spelling, ``_`` or ``-``)
are dropped before the gateway adds its own.

The state comes from a `StateSource` polled every few seconds in a thread; a new state
replaces the old one atomically. Contexts are cached by hostname, certificate id and
client-CA digest, so a renewed or replaced certificate is served from the next
handshake on while connections already open keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import h11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from certward.dataplane.access import Address, ClientIdentity, decide, normalized_path
from certward.dataplane.nginx import openssl_dn
from certward.dataplane.state import DataPlaneState, Site

log = logging.getLogger("certward.gateway")
access_log = logging.getLogger("certward.gateway.access")

ACME_PREFIX = "/.well-known/acme-challenge/"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0
DEFAULT_CONTEXT_CAPACITY = 4096  # TLS contexts kept (most recently used hostnames)
IDLE_TIMEOUT = 75.0
UPSTREAM_CONNECT_TIMEOUT = 10.0

# Headers the gateway sets itself: whatever the caller sent under these names is dropped.
FORWARDED_HEADERS = frozenset(
    {
        "x-real-ip",
        "x-forwarded-for",
        "x-forwarded-proto",
        "ssl-protocol",
        "ssl-cipher",
        "ssl-client-s-dn",
        "ssl-client-i-dn",
        "ssl-client-fingerprint",
        "ssl-client-serial",
    }
)
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

FORBIDDEN_PAGE = (
    b"<!doctype html><html><head><title>403 Forbidden</title></head>"
    b"<body><h1>403 Forbidden</h1><p>Access to this path is restricted.</p></body></html>\n"
)
MISDIRECTED_PAGE = (
    b"<!doctype html><html><head><title>421 Misdirected Request</title></head>"
    b"<body><h1>421 Misdirected Request</h1><p>This connection serves another host.</p>"
    b"</body></html>\n"
)
BAD_GATEWAY_PAGE = (
    b"<!doctype html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The app did not answer.</p></body></html>\n"
)


class StateSource(Protocol):
    """Where the gateway gets what to serve (a database feed, or a fixed value in tests)."""

    def load(self) -> DataPlaneState: ...

    def challenge(self, token: str) -> str | None: ...


# -- TLS contexts ---------------------------------------------------------------------------


def _base_context() -> SSL.Context:
    """The context every connection starts on: no certificate, so an unknown SNI (or none)
    cannot complete a handshake."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    # No resumption: a resumed session would carry a client-certificate verdict made
    # under an earlier trust configuration (the nginx rendering does the same).
    context.set_options(
        SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET
    )
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return context


def site_context(site: Site) -> SSL.Context:
    """The TLS context of one hostname: its certificate chain and, where its rules involve
    client CAs, the names and trust store used to verify client certificates."""
    if site.certificate is None:
        raise ValueError(f"{site.hostname} has no certificate yet")
    context = _base_context()
    chain = x509.load_pem_x509_certificates(site.certificate.chain_pem)
    context.use_certificate(chain[0])
    for extra in chain[1:]:
        context.add_extra_chain_cert(extra)
    # The key was validated when it entered certward; pyca's RSA check costs ~40 ms.
    key = serialization.load_pem_private_key(
        site.certificate.key_pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    context.use_privatekey(key)  # type: ignore[arg-type]
    context.check_privatekey()
    trust = site.client_trust_pem()
    if trust:
        store = context.get_cert_store()
        if store is None:  # pragma: no cover - OpenSSL always gives a context a store
            raise RuntimeError("the TLS context has no certificate store")
        seen: set[bytes] = set()
        for certificate in x509.load_pem_x509_certificates(trust):
            der = certificate.public_bytes(Encoding.DER)
            if der in seen:
                continue
            seen.add(der)
            store.add_cert(crypto.X509.from_cryptography(certificate))
            context.add_client_ca(certificate)
        # A selected intermediate is a trust anchor by itself, its root uploaded or not.
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        context.set_verify_depth(8)
    return context


@dataclass(slots=True)
class _Handshake:
    """What one connection's handshake learnt."""

    site: Site | None = None
    verify_error: str | None = None
    wants_client_certificate: bool = False


class ContextCache:
    """TLS contexts by (hostname, certificate id, client-CA digest), built on first use
    and kept for the ``capacity`` most recently used hostnames.

    An OpenSSL context with its certificate costs about 27 KB, so building one for each of
    10,000 hostnames would take most of 300 MB; the state itself costs about 2 KB a
    hostname. A hostname whose context was dropped gets a new one at its next handshake
    (about a millisecond). ``_by_site`` remembers each `Site`'s key, so a handshake on a
    known site costs two dictionary lookups; `retain` clears it when the state changes.
    """

    def __init__(self, capacity: int = DEFAULT_CONTEXT_CAPACITY) -> None:
        self.capacity = capacity
        self._contexts: OrderedDict[tuple[str, str, str], SSL.Context] = OrderedDict()
        self._by_site: dict[int, tuple[Site, tuple[str, str, str], bool]] = {}

    def get(self, site: Site) -> tuple[SSL.Context, bool]:
        """The site's context, and whether it asks for a client certificate."""
        known = self._by_site.get(id(site))
        if known is not None and known[0] is site:
            key, wants = known[1], known[2]
        else:
            if site.certificate is None:
                raise ValueError(f"{site.hostname} has no certificate yet")
            digest = hashlib.sha256(site.client_trust_pem()).hexdigest()
            key = (site.hostname, site.certificate.id, digest)
            wants = site.wants_client_certificate
            self._by_site[id(site)] = (site, key, wants)
        context = self._contexts.get(key)
        if context is None:
            context = site_context(site)
            self._contexts[key] = context
            if len(self._contexts) > self.capacity:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(key)
        return context, wants

    def retain(self, state: DataPlaneState) -> None:
        """Forget contexts of hostnames or certificates no longer served."""
        self._by_site.clear()
        for key in list(self._contexts):
            site = state.sites.get(key[0])
            if site is None or site.certificate is None or site.certificate.id != key[1]:
                del self._contexts[key]

    def __len__(self) -> int:
        return len(self._contexts)


# -- the gateway ----------------------------------------------------------------------------


class Gateway:
    """Serves HTTPS (and the plain-HTTP challenge/redirect port) from a `StateSource`."""

    def __init__(
        self,
        source: StateSource,
        *,
        refresh_seconds: float = 2.0,
        log_allowed: bool = True,
    ) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        self.log_allowed = log_allowed
        self.contexts = ContextCache()
        self.state: DataPlaneState = DataPlaneState(sites={}, version="")
        self._base = _base_context()
        self._base.set_tlsext_servername_callback(self._on_servername)
        self._servers: list[asyncio.AbstractServer] = []
        self._refresher: asyncio.Task[None] | None = None

    # state ---------------------------------------------------------------------------------

    def apply(self, state: DataPlaneState) -> None:
        """Serve ``state`` from the next connection or request on."""
        if state.version == self.state.version:
            return
        self.state = state
        self.contexts.retain(state)
        log.info("serving %d hostnames (state %s)", len(state.sites), state.version[:12])

    async def _refresh_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                state = await loop.run_in_executor(None, self.source.load)
            except Exception:
                log.exception("could not load the data plane state; still serving the last one")
                continue
            self.apply(state)

    # TLS -----------------------------------------------------------------------------------

    def _on_servername(self, connection: SSL.Connection) -> None:
        handshake: _Handshake = connection.get_app_data()
        name = connection.get_servername()
        site = self.state.site(name.decode("ascii", "replace") if name else None)
        if site is None or site.certificate is None:
            return  # the base context has no certificate: the handshake fails
        try:
            context, wants_client_certificate = self.contexts.get(site)
        except Exception:
            log.exception("cannot build the TLS context of %s", site.hostname)
            return
        connection.set_context(context)
        handshake.site = site
        if wants_client_certificate:
            handshake.wants_client_certificate = True
            connection.set_verify(SSL.VERIFY_PEER, _accept_and_record)

    # serving -------------------------------------------------------------------------------

    async def start(self, https: tuple[str, int], http: tuple[str, int] | None = None) -> None:
        """Load the state and listen; `serve_forever` or `close` afterwards."""
        loop = asyncio.get_running_loop()
        self.apply(await loop.run_in_executor(None, self.source.load))
        self._servers.append(
            await loop.create_server(
                lambda: _TlsProtocol(self), host=https[0], port=https[1], backlog=1024
            )
        )
        if http is not None:
            self._servers.append(
                await loop.create_server(
                    lambda: _PlainProtocol(self), host=http[0], port=http[1], backlog=256
                )
            )
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def start_on_sockets(self, https_socket: Any, http_socket: Any | None) -> None:
        """Like `start`, on sockets bound by a parent process (pre-forked workers)."""
        loop = asyncio.get_running_loop()
        self.apply(await loop.run_in_executor(None, self.source.load))
        self._servers.append(
            await loop.create_server(lambda: _TlsProtocol(self), sock=https_socket, backlog=1024)
        )
        if http_socket is not None:
            self._servers.append(
                await loop.create_server(lambda: _PlainProtocol(self), sock=http_socket)
            )
        self._refresher = asyncio.create_task(self._refresh_forever())

    @property
    def ports(self) -> list[int]:
        return [int(s.sockets[0].getsockname()[1]) for s in self._servers]  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def log_request(self, record: dict[str, Any], *, allowed: bool) -> None:
        if allowed and not self.log_allowed:
            return
        access_log.info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _accept_and_record(
    connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int
) -> bool:
    """Never fail the handshake over a client certificate; remember why it failed."""
    if not ok:
        handshake: _Handshake = connection.get_app_data()
        if handshake.verify_error is None:
            handshake.verify_error = f"{_verify_message(error)} (depth {depth})"
    return True


# OpenSSL's words for the verification failures a client certificate commonly meets.
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}


def _verify_message(error: int) -> str:
    return _VERIFY_ERRORS.get(error, f"certificate verify error {error}")


# -- HTTPS connections ----------------------------------------------------------------------


class _TlsProtocol(asyncio.Protocol):
    """One client connection: TLS on memory BIOs, then HTTP served by `_HttpExchange`.

    Per-connection work is kept to what the handshake needs: the stream reader, the
    request task and the parsed peer address appear only when the first request bytes
    do (a handshake costs OpenSSL about 0.4 ms here; Python around it should not add
    as much again).
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.handshake = _Handshake()
        self.tls = SSL.Connection(gateway._base, None)
        self.tls.set_app_data(self.handshake)
        self.tls.set_accept_state()
        self.transport: asyncio.Transport | None = None
        self.established = False
        self.reader: asyncio.StreamReader | None = None
        self.peer_host = ""
        self.peer: Address | None = None
        self.task: asyncio.Task[None] | None = None
        self.timeout: asyncio.TimerHandle | None = None
        self._can_write: asyncio.Event | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer_host = peer[0] if isinstance(peer, tuple) and peer else ""
        self.timeout = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self.abort)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.tls.bio_write(data)
        if not self.established:
            try:
                self.tls.do_handshake()
            except SSL.WantReadError:
                self._flush()
                return
            except SSL.Error:
                self._flush()
                self.abort()
                return
            self._flush()
            self.established = True
            if self.handshake.site is None:
                self.abort()
                return
            if self.timeout is not None:  # from now on: the wait for a first request
                self.timeout.cancel()
            self.timeout = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.abort)
        self._read_plaintext()

    def _start_http(self) -> asyncio.StreamReader | None:
        """The first request bytes arrived: parse the peer, start serving requests."""
        if self.timeout is not None:
            self.timeout.cancel()
            self.timeout = None
        try:
            self.peer = ip_address(self.peer_host.split("%", 1)[0])
        except ValueError:
            self.abort()
            return None
        self.reader = asyncio.StreamReader(limit=READ_CHUNK * 4)
        self.task = asyncio.get_running_loop().create_task(self._serve())
        return self.reader

    def _read_plaintext(self) -> None:
        received = False
        while True:
            try:
                chunk = self.tls.recv(READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                if self.reader is not None:
                    self.reader.feed_eof()
                else:
                    self.close()
                return
            except SSL.Error:
                if self.reader is not None:
                    self.reader.feed_eof()
                self.abort()
                return
            if not chunk:
                break
            reader = self.reader or self._start_http()
            if reader is None:
                return
            reader.feed_data(chunk)
            received = True
        if received:  # reading may have written too (a TLS 1.3 KeyUpdate answer)
            self._flush()

    def _flush(self) -> None:
        # One read takes whatever OpenSSL wrote (a handshake flight is a few KB); loop
        # only when the buffer came back full.
        out = b""
        while True:
            try:
                piece = self.tls.bio_read(READ_CHUNK)
            except SSL.WantReadError:
                break
            out += piece
            if len(piece) < READ_CHUNK:
                break
        if out and self.transport is not None and not self.closed:
            self.transport.write(out)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        view = memoryview(data)
        while view:
            try:
                sent = self.tls.send(view[: 16 * 1024])
            except SSL.Error:
                self.abort()
                return
            view = view[sent:]
            self._flush()

    async def drain(self) -> None:
        if self._can_write is not None:
            await self._can_write.wait()

    def pause_writing(self) -> None:
        if self._can_write is None:
            self._can_write = asyncio.Event()
        self._can_write.clear()

    def resume_writing(self) -> None:
        if self._can_write is not None:
            self._can_write.set()

    def eof_received(self) -> bool | None:
        if self.reader is not None:
            self.reader.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._can_write is not None:
            self._can_write.set()
        if self.timeout is not None:
            self.timeout.cancel()
        if self.reader is not None:
            self.reader.feed_eof()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def close(self) -> None:
        if self.closed or self.transport is None:
            return
        with contextlib.suppress(SSL.Error):
            self.tls.shutdown()
        self._flush()
        self.transport.close()

    def identity(self) -> ClientIdentity | None:
        if not self.handshake.wants_client_certificate:
            return None
        peer = self.tls.get_peer_certificate()
        if peer is None:
            return None
        certificate = peer.to_cryptography()
        return ClientIdentity(
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            verified=self.handshake.verify_error is None,
            failure=self.handshake.verify_error,
        )

    async def _serve(self) -> None:
        site = self.handshake.site
        if site is None or self.peer is None or self.reader is None:
            return
        try:
            await _HttpExchange(self, site, self.peer, self.reader).run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("request handling failed on %s", site.hostname)
        finally:
            self.close()


def tls_headers(protocol: _TlsProtocol) -> list[tuple[bytes, bytes]]:
    """The ``SSL-*`` headers sent upstream (empty values are left out, as nginx does)."""
    tls = protocol.tls
    headers: list[tuple[bytes, bytes]] = [
        (b"SSL-Protocol", (tls.get_protocol_version_name() or "").encode()),
        (b"SSL-Cipher", (tls.get_cipher_name() or "").encode()),
    ]
    # Client details only for a certificate that verified (an app must be able to trust
    # them), with DNs as OpenSSL prints them, as nginx sends them.
    if protocol.handshake.wants_client_certificate and protocol.handshake.verify_error is None:
        peer = tls.get_peer_certificate()
        if peer is not None:
            certificate = peer.to_cryptography()
            serial = f"{certificate.serial_number:X}"
            if len(serial) % 2:
                serial = "0" + serial
            headers += [
                (b"SSL-Client-S-DN", openssl_dn(certificate.subject).encode()),
                (b"SSL-Client-I-DN", openssl_dn(certificate.issuer).encode()),
                (
                    b"SSL-Client-Fingerprint",
                    peer.digest("sha1").decode().replace(":", "").lower().encode(),
                ),
                (b"SSL-Client-Serial", serial.encode()),
            ]
    return [(name, value) for name, value in headers if value]


# -- HTTP over one connection ---------------------------------------------------------------


class _Closed(Exception):
    """The client went away or broke the protocol."""


class _HttpExchange:
    """Keep-alive request loop of one client connection, proxied to the site's upstream."""

    def __init__(
        self, client: _TlsProtocol, site: Site, peer: Address, reader: asyncio.StreamReader
    ) -> None:
        self.client = client
        self.reader = reader
        self.site = site
        self.peer = peer
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.identity = client.identity()
        # The same for every request of the connection: computed once.
        self.tls_headers = tls_headers(client)

    async def _next_client_event(self) -> Any:
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                raise _Closed from None
            if event is h11.NEED_DATA:
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK), IDLE_TIMEOUT)
                except TimeoutError:
                    raise _Closed from None
                self.http.receive_data(data)
                continue
            return event

    def _send(self, event: Any) -> None:
        data = self.http.send(event)
        if data:
            self.client.send(data)

    async def run(self) -> None:
        try:
            while True:
                event = await self._next_client_event()
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return
                keep_going = await self._handle(event)
                if not keep_going or self.http.our_state is h11.MUST_CLOSE:
                    return
                try:
                    self.http.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (_Closed, ConnectionError):
            return
        finally:
            if self.upstream is not None:
                self.upstream[1].close()

    async def _handle(self, request: h11.Request) -> bool:
        target = request.target.decode("latin-1")
        path = normalized_path(target)
        host = self.site.hostname
        if _host_header(request) != host:
            # A connection serves the host it was opened for: its client certificate was
            # verified against that host's CAs, not the other one's.
            await self._drain_request_body()
            self._respond(421, MISDIRECTED_PAGE)
            return self.http.our_state is not h11.MUST_CLOSE
        decision = decide(self.site, path, self.peer, self.identity)
        record: dict[str, Any] = {
            "host": host,
            "method": request.method.decode("latin-1"),
            "path": path,
            "ip": str(self.peer),
            "decision": decision.verdict.value,
            "rule": decision.rule,
            "reason": decision.reason,
            "client_subject": self.identity.subject if self.identity else None,
            "client_issuer": self.identity.issuer if self.identity else None,
        }
        if not decision.allowed:
            record["status"] = 403
            self.gateway_log(record, allowed=False)
            await self._drain_request_body()
            self._respond(403, FORBIDDEN_PAGE)
            return self.http.our_state is not h11.MUST_CLOSE
        status = await self._proxy(request)
        record["status"] = status
        self.gateway_log(record, allowed=True)
        return status not in {0, 101}

    def gateway_log(self, record: dict[str, Any], *, allowed: bool) -> None:
        self.client.gateway.log_request(record, allowed=allowed)

    async def _drain_request_body(self) -> None:
        while True:
            event = await self._next_client_event()
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return

    def _respond(self, status: int, body: bytes) -> None:
        self._send(
            h11.Response(
                status_code=status,
                headers=[
                    (b"Content-Type", b"text/html; charset=utf-8"),
                    (b"Content-Length", str(len(body)).encode()),
                    (b"Cache-Control", b"no-store"),
                ],
            )
        )
        self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())

    def _upstream_headers(self, request: h11.Request) -> tuple[list[tuple[bytes, bytes]], bool]:
        named_in_connection: set[bytes] = set()
        upgrade = False
        for name, value in request.headers:
            if name == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                named_in_connection |= tokens
                upgrade = upgrade or b"upgrade" in tokens
        websocket = upgrade and any(
            name == b"upgrade" and value.lower() == b"websocket" for name, value in request.headers
        )
        headers: list[tuple[bytes, bytes]] = []
        chunked = False
        for name, value in request.headers:
            text = name.decode("latin-1").replace("_", "-")
            if name == b"transfer-encoding":
                chunked = True  # h11 accepts only chunked: the body is sent on chunked
            if text in FORWARDED_HEADERS or text in HOP_BY_HOP or name in named_in_connection:
                continue
            headers.append((name, value))
        if chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        peer = str(self.peer).encode()
        headers += [
            (b"X-Real-IP", peer),
            (b"X-Forwarded-For", peer),
            (b"X-Forwarded-Proto", b"https"),
            *self.tls_headers,
        ]
        if websocket:
            headers += [(b"Upgrade", b"websocket"), (b"Connection", b"upgrade")]
        return headers, websocket

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream is not None and not self.upstream[1].is_closing():
            return self.upstream
        parts = urlsplit(self.site.upstream)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        self.upstream = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=READ_CHUNK * 4), UPSTREAM_CONNECT_TIMEOUT
        )
        return self.upstream

    async def _proxy(self, request: h11.Request) -> int:
        """Forward one request and its response; the status sent (0: connection dropped)."""
        headers, websocket = self._upstream_headers(request)
        try:
            reader, writer = await self._open_upstream()
        except (OSError, TimeoutError):
            await self._drain_request_body()
            self._respond(502, BAD_GATEWAY_PAGE)
            return 502
        upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        outgoing = h11.Request(
            method=request.method, target=request.target, headers=headers, http_version="1.1"
        )
        try:
            writer.write(upstream.send(outgoing) or b"")
            # The request body, streamed as it arrives.
            while True:
                event = await self._next_client_event()
                if isinstance(event, h11.Data):
                    writer.write(upstream.send(event) or b"")
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    writer.write(upstream.send(h11.EndOfMessage()) or b"")
                    await writer.drain()
                    break
                else:
                    raise _Closed
            return await self._relay_response(upstream, reader, writer, websocket)
        except (OSError, h11.ProtocolError) as exc:
            if self.upstream is not None:
                self.upstream[1].close()
                self.upstream = None
            if self.http.our_state is h11.SEND_RESPONSE:
                log.warning("upstream %s failed: %s", self.site.upstream, exc)
                self._respond(502, BAD_GATEWAY_PAGE)
                return 502
            return 0

    async def _relay_response(
        self,
        upstream: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        websocket: bool,
    ) -> int:
        status = 0
        while True:
            event = upstream.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_CHUNK)
                upstream.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101 and websocket:
                    self._send(
                        h11.InformationalResponse(
                            status_code=101, headers=_response_headers(event.headers, upgrade=True)
                        )
                    )
                    trailing, _ = upstream.trailing_data
                    await self._pipe(reader, writer, trailing)
                    return 101
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                self._send(
                    h11.Response(
                        status_code=status,
                        headers=_response_headers(event.headers, upgrade=False),
                        reason=event.reason,
                    )
                )
            elif isinstance(event, h11.Data):
                self._send(h11.Data(data=event.data))
                await self.client.drain()
            elif isinstance(event, h11.EndOfMessage):
                self._send(h11.EndOfMessage())
                if upstream.our_state is h11.MUST_CLOSE or upstream.their_state is h11.MUST_CLOSE:
                    writer.close()
                    self.upstream = None
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the upstream closed the connection")

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes
    ) -> None:
        """After a 101: bytes both ways until either side closes."""
        trailing, _ = self.http.trailing_data
        if trailing:
            writer.write(trailing)
        if first:
            self.client.send(first)

        async def client_to_upstream() -> None:
            while data := await self.reader.read(READ_CHUNK):
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()

        async def upstream_to_client() -> None:
            while data := await reader.read(READ_CHUNK):
                self.client.send(data)
                await self.client.drain()

        tasks = [
            asyncio.create_task(client_to_upstream()),
            asyncio.create_task(upstream_to_client()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            writer.close()
            self.upstream = None


def _response_headers(headers: Any, *, upgrade: bool) -> list[tuple[bytes, bytes]]:
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named |= {t.strip().lower() for t in value.split(b",")}
    kept = [(n, v) for n, v in headers if n not in _HOP_BY_HOP_BYTES and n not in named]
    if upgrade:
        kept += [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
    return kept


# -- the plain-HTTP port --------------------------------------------------------------------


class _PlainProtocol(asyncio.Protocol):
    """Port 80's job: ACME HTTP-01 answers, and a redirect to HTTPS for everything else."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if self.transport is None:
            return
        try:
            event = self.http.next_event()
        except h11.RemoteProtocolError:
            self.transport.close()
            return
        if isinstance(event, h11.Request):
            self.busy = True
            asyncio.get_running_loop().create_task(self._answer(event))
        elif isinstance(event, h11.ConnectionClosed):
            self.transport.close()

    async def _answer(self, request: h11.Request) -> None:
        if self.transport is None:
            return
        target = request.target.decode("latin-1")
        path = target.split("?", 1)[0]
        host = ""
        for name, value in request.headers:
            if name == b"host":
                host = _strip_port(value.decode("latin-1"))
        if path.startswith(ACME_PREFIX):
            token = path[len(ACME_PREFIX) :]
            answer = None
            if _TOKEN.match(token):
                loop = asyncio.get_running_loop()
                answer = await loop.run_in_executor(None, self.gateway.source.challenge, token)
            if answer is None:
                response = _simple(404, b"not found\n", b"text/plain")
            else:
                response = _simple(200, answer.encode("ascii"), b"text/plain")
        elif self.gateway.state.site(host) is not None:
            response = [
                h11.Response(
                    status_code=301,
                    headers=[
                        (b"Location", f"https://{host}{target}".encode("latin-1")),
                        (b"Content-Length", b"0"),
                    ],
                ),
                h11.EndOfMessage(),
            ]
        else:
            response = _simple(404, b"unknown host\n", b"text/plain")
        try:
            for event in response:
                self.transport.write(self.http.send(event) or b"")
        except h11.LocalProtocolError:
            self.transport.close()
            return
        self.transport.close()


def _host_header(request: h11.Request) -> str:
    """The request's ``Host`` as nginx's ``$host``: lower case, no port, no trailing dot."""
    for name, value in request.headers:
        if name == b"host":
            return _strip_port(value.decode("latin-1")).rstrip(".").lower()
    return ""


def _strip_port(host: str) -> str:
    """``example.com:8080`` → ``example.com``; ``[::1]:80`` → ``[::1]``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


def _simple(status: int, body: bytes, content_type: bytes) -> list[Any]:
    return [
        h11.Response(
            status_code=status,
            headers=[(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())],
        ),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]
