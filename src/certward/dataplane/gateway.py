"""The embedded TLS gateway: HTTPS for every hostname by SNI, access rules, proxying.

One asyncio event loop per worker process. TLS runs through pyOpenSSL on memory BIOs,
because Python's `ssl` cannot ask for a client certificate, or advertise acceptable CA
names, per SNI host: the servername callback switches the connection to the host's
`SSL.Context` (`certward.dataplane.tls_contexts`) and, only where the host's rules
involve client CAs, sets ``VERIFY_PEER`` on that one connection. A client certificate
that fails verification does not break the handshake; the failure is recorded and the
request is decided by `certward.dataplane.access.decide` like any other (an IP range
may still admit it).

HTTP/1.1 is parsed by httptools on both sides, the exchange driven by callbacks
(`certward.dataplane.http_exchange`, `certward.dataplane.upstream_connection`):
keep-alive, pipelining in order, upstream connections pooled per worker, streamed
bodies in both directions, WebSocket upgrades (bytes are piped after the upstream's
101); the plain-HTTP port uses h11. Request targets are served in origin-form only
(`certward.dataplane.request_target`); every decision is made on the normalised path,
as nginx makes it.

Caller headers: every header `certward.dataplane.caller_headers.is_stripped` names —
the ``SSL-*``, ``X-SSL-*``, ``X-Forwarded-*`` and ``X-Client-*`` families, and
`caller_headers.STRIPPED_NAMES` (``X-Real-IP``, ``Forwarded``, ``True-Client-IP``,
``Client-Cert``, ...), in any letter case and with ``_`` for ``-`` — is dropped before
the gateway adds its own ``X-Real-IP``, ``X-Forwarded-For``, ``X-Forwarded-Proto`` and
``SSL-*``. A request whose ``CDN-Loop`` carries the platform's mark is refused with
508; every forwarded one carries it (`certward.dataplane.upstream`).

Upstreams are reached only where the operator's egress policy allows, checked at
connect time on the addresses the name resolves to; ``https://`` upstreams over
verified TLS with SNI (`certward.dataplane.upstream`).

Deadlines (`ConnectionLimits`): the TLS handshake, each request's head, and idle time
between requests are bounded; the plain-HTTP port gives a client the header deadline
for its one request.

The state comes from a `StateSource` polled every few seconds in a thread (in
production `certward.services.dataplane_follower.StateFollower`: one small query when
nothing changed, the changed sites otherwise, the last good state while the database
is away); a new state replaces the old one atomically. Contexts are cached by
hostname, certificate id and client-CA digest, so a renewed or replaced certificate
is served from the next handshake on while connections already open keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import ssl
from ipaddress import ip_address
from typing import Any, Protocol, cast

import h11
from OpenSSL import SSL

from certward.dataplane.access import ClientIdentity
from certward.dataplane.gateway_pages import BAD_REQUEST_PAGE, reason_phrase
from certward.dataplane.http_exchange import READ_CHUNK, HttpExchange
from certward.dataplane.http_request import ConnectionLimits, strip_port
from certward.dataplane.request_target import TargetRefused, parse_target
from certward.dataplane.state import DataPlaneState
from certward.dataplane.tls_contexts import (
    ContextCache,
    Handshake,
    accept_and_record,
    base_context,
    check_resumed,
    tls_headers,
)
from certward.dataplane.tls_policy import INTERMEDIATE, TlsPolicy
from certward.dataplane.upstream import UpstreamConnector
from certward.dataplane.upstream_connection import UpstreamPool
from certward.egress import EgressPolicy

log = logging.getLogger("certward.gateway")
access_log = logging.getLogger("certward.gateway.access")

ACME_PREFIX = "/.well-known/acme-challenge/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
PLAIN_HEAD_BYTES = 16 * 1024


class StateSource(Protocol):
    """Where the gateway gets what to serve (a database feed, or a fixed value in tests)."""

    def load(self) -> DataPlaneState: ...

    def challenge(self, token: str) -> str | None: ...


# -- the gateway ----------------------------------------------------------------------------


class Gateway:
    """Serves HTTPS (and the plain-HTTP challenge/redirect port) from a `StateSource`."""

    def __init__(
        self,
        source: StateSource,
        *,
        refresh_seconds: float = 2.0,
        log_allowed: bool = True,
        egress: EgressPolicy | None = None,
        upstream_tls: ssl.SSLContext | None = None,
        limits: ConnectionLimits | None = None,
        tls: TlsPolicy = INTERMEDIATE,
        session_context: SSL.Context | None = None,
    ) -> None:
        """``egress`` is the operator's policy (`Settings.egress_policy`; by default every
        address but loopback, link-local, metadata and the like); ``upstream_tls`` the
        client context for https:// upstreams (`upstream_tls_context`; by default the
        public roots only). ``tls`` is the TLS policy (`certward.dataplane.tls_policy`);
        ``session_context`` the `base_context` to start connections on, made by the
        parent of pre-forked workers so that they share its session-ticket keys (by
        default one of this gateway's own)."""
        self.source = source
        self.refresh_seconds = refresh_seconds
        self.log_allowed = log_allowed
        self.connector = UpstreamConnector(egress or EgressPolicy(), upstream_tls)
        self.pool = UpstreamPool(self.connector)
        self.limits = limits or ConnectionLimits()
        self.contexts = ContextCache(policy=tls)
        self.state: DataPlaneState = DataPlaneState(sites={}, version="")
        self._base = session_context or base_context(tls)
        self._base.set_tlsext_servername_callback(self._on_servername)
        self._servers: list[asyncio.AbstractServer] = []
        self.https_authority_port = ""
        """``:port`` of the HTTPS listener for redirects, empty for 443."""
        self._refresher: asyncio.Task[None] | None = None

    # state ---------------------------------------------------------------------------------

    def apply(self, state: DataPlaneState) -> None:
        """Serve ``state`` from the next connection or request on."""
        if state.version == self.state.version:
            return
        self.state = state
        self.contexts.retain(state)
        # The state is long-lived and holds no cycles: keep it (and everything loaded so
        # far) out of the cyclic collector's passes, which would otherwise walk every
        # site of a large state while requests wait. Objects are still freed by count.
        gc.freeze()
        log.info("serving %d hostnames (state %s)", len(state.sites), state.version[:12])

    async def _refresh_forever(self) -> None:
        loop = asyncio.get_running_loop()
        wait = getattr(self.source, "wait_for_change", None)  # woken early by a change
        while True:
            if wait is None:
                await asyncio.sleep(self.refresh_seconds)
            else:
                await loop.run_in_executor(None, wait, self.refresh_seconds)
            try:
                state = await loop.run_in_executor(None, self.source.load)
            except Exception:
                log.exception("could not load the data plane state; still serving the last one")
                continue
            self.apply(state)

    # TLS -----------------------------------------------------------------------------------

    def _on_servername(self, connection: SSL.Connection) -> None:
        handshake: Handshake = connection.get_app_data()
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
            connection.set_verify(SSL.VERIFY_PEER, accept_and_record)

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
        self._note_https_port()
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
        self._note_https_port()
        if http_socket is not None:
            self._servers.append(
                await loop.create_server(lambda: _PlainProtocol(self), sock=http_socket)
            )
        self._refresher = asyncio.create_task(self._refresh_forever())

    def _note_https_port(self) -> None:
        port = self.ports[0]
        self.https_authority_port = "" if port == 443 else f":{port}"

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
        self.pool.close()

    def log_request(self, record: dict[str, Any], allowed: bool) -> None:
        if allowed and not self.log_allowed:
            return
        access_log.info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


# -- HTTPS connections ----------------------------------------------------------------------


class _TlsProtocol(asyncio.Protocol):
    """One client connection: TLS on memory BIOs, then HTTP served by `HttpExchange`.

    Per-connection work is kept to what the handshake needs: the exchange and the
    parsed peer address appear only when the first request bytes do (a handshake
    costs OpenSSL about 0.4 ms here; Python around it should not add as much again).
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.handshake = Handshake()
        self.tls = SSL.Connection(gateway._base, None)
        self.tls.set_app_data(self.handshake)
        self.tls.set_accept_state()
        self.transport: asyncio.Transport | None = None
        self.established = False
        self.exchange: HttpExchange | None = None
        self.peer_host = ""
        self.timeout: asyncio.TimerHandle | None = None
        self.head_started = 0.0
        self.closed = False
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer_host = peer[0] if isinstance(peer, tuple) and peer else ""
        self.timeout = asyncio.get_running_loop().call_later(
            self.gateway.limits.handshake_seconds, self.abort
        )

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
            check_resumed(self.tls, self.handshake)
            if self.timeout is not None:  # from now on: the first request's head deadline
                self.timeout.cancel()
            loop = asyncio.get_running_loop()
            self.head_started = loop.time()
            self.timeout = loop.call_later(self.gateway.limits.header_seconds, self.abort)
        self._read_plaintext()

    def _start_http(self) -> HttpExchange | None:
        """The first request bytes arrived: parse the peer, start serving requests."""
        if self.timeout is not None:
            self.timeout.cancel()
            self.timeout = None
        site = self.handshake.site
        try:
            peer = ip_address(self.peer_host.split("%", 1)[0])
        except ValueError:
            self.abort()
            return None
        if site is None:
            self.abort()
            return None
        gateway = self.gateway
        self.exchange = HttpExchange(
            self,
            site=site,
            peer=peer,
            identity=self.identity(),
            tls_headers=tls_headers(self.tls, self.handshake),
            pool=gateway.pool,
            limits=gateway.limits,
            log_request=gateway.log_request,
            log_allowed=gateway.log_allowed,
            head_started=self.head_started,
        )
        return self.exchange

    def _read_plaintext(self) -> None:
        received = False
        tls = self.tls
        while self.reading and not self.closed:
            try:
                chunk = tls.recv(READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                if self.exchange is not None:
                    self.exchange.feed_eof()
                else:
                    self.close()
                return
            except SSL.Error:
                self.abort()
                return
            if not chunk:
                break
            exchange = self.exchange or self._start_http()
            if exchange is None:
                return
            exchange.feed(chunk)
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

    # what the exchange uses (`http_exchange.ClientConnection`) ------------------------------

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if len(data) <= 16 * 1024:
            try:
                self.tls.send(data)
            except SSL.Error:
                self.abort()
                return
            self._flush()
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

    def pause_reading(self) -> None:
        self.reading = False
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading or self.closed:
            return
        self.reading = True
        if self.transport is not None:
            self.transport.resume_reading()
        # plaintext OpenSSL already holds would otherwise wait for the next bytes
        asyncio.get_running_loop().call_soon(self._read_plaintext)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client_writable(False)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client_writable(True)

    def eof_received(self) -> bool | None:
        if self.exchange is not None:
            self.exchange.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timeout is not None:
            self.timeout.cancel()
        if self.exchange is not None:
            self.exchange.connection_lost()

    def close(self) -> None:
        if self.closed or self.transport is None:
            return
        with contextlib.suppress(SSL.Error):
            self.tls.shutdown()
        self._flush()
        self.transport.close()
        self.closed = True

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


# -- the plain-HTTP port --------------------------------------------------------------------


class _PlainProtocol(asyncio.Protocol):
    """Port 80's job: ACME HTTP-01 answers, and a redirect to HTTPS for everything else.

    One request per connection, whose head must arrive within the header deadline.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=PLAIN_HEAD_BYTES)
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.timeout: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.timeout = asyncio.get_running_loop().call_later(
            self.gateway.limits.header_seconds, self.transport.abort
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timeout is not None:
            self.timeout.cancel()

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
            if self.timeout is not None:
                self.timeout.cancel()
            asyncio.get_running_loop().create_task(self._answer(event))
        elif isinstance(event, h11.ConnectionClosed):
            self.transport.close()

    async def _answer(self, request: h11.Request) -> None:
        if self.transport is None:
            return
        host = ""
        for name, value in request.headers:
            if name == b"host":
                host = strip_port(value.decode("latin-1")).rstrip(".").lower()
        try:
            target = parse_target(
                request.method.decode("latin-1"), request.target.decode("utf-8", "surrogateescape")
            )
            if target.asterisk or (target.authority is not None and target.authority != host):
                raise TargetRefused("asterisk-form, or an authority other than Host")
        except TargetRefused:
            response = _simple(400, BAD_REQUEST_PAGE, b"text/html; charset=utf-8")
        else:
            response = await self._response(host, target.origin, target.path)
        try:
            for event in response:
                self.transport.write(self.http.send(event) or b"")
        except h11.LocalProtocolError:
            self.transport.close()
            return
        self.transport.close()

    async def _response(self, host: str, origin: str, path: str) -> list[Any]:
        if path.startswith(ACME_PREFIX):
            token = path[len(ACME_PREFIX) :]
            answer = None
            if _TOKEN.fullmatch(token):
                loop = asyncio.get_running_loop()
                answer = await loop.run_in_executor(None, self.gateway.source.challenge, token)
            if answer is None:
                return _simple(404, b"not found\n", b"text/plain")
            return _simple(200, answer.encode("ascii"), b"text/plain")
        if self.gateway.state.site(host) is not None:
            return [
                h11.Response(
                    status_code=301,
                    reason=reason_phrase(301),
                    headers=[
                        (
                            b"Location",
                            f"https://{host}{self.gateway.https_authority_port}".encode()
                            + origin.encode("utf-8", "surrogateescape"),
                        ),
                        (b"Content-Length", b"0"),
                    ],
                ),
                h11.EndOfMessage(),
            ]
        return _simple(404, b"unknown host\n", b"text/plain")


def _simple(status: int, body: bytes, content_type: bytes) -> list[Any]:
    return [
        h11.Response(
            status_code=status,
            reason=reason_phrase(status),
            headers=[(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())],
        ),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]
