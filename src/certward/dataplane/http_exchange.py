"""HTTP/1.1 over one client connection of the gateway: decide, then proxy.

Requests are parsed by httptools (llhttp, in C, strict: a duplicate or malformed
``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``, obs-fold, a bare CR
or LF, NUL or control characters in a header, a malformed chunk — each ends the
connection with a 400 before anything is forwarded). On top of it: a request head
over `MAX_HEAD_BYTES`, an HTTP version other than 1.0 and 1.1, a
``Transfer-Encoding`` other than ``chunked``, a second ``Host``, a missing ``Host`` on
HTTP/1.1 and a body on an ``Upgrade`` request are 400 too, and the connection ends.

Each request, in order: its target is translated to origin-form
(`certward.dataplane.request_target.parse_target`: 400 for a form the gateway refuses,
and for an absolute-form authority other than ``Host`` and the TLS server name); a
``Host`` naming another site than the connection's is 421; a request whose
``CDN-Loop`` already carries the platform's mark is 508 (it came back round through
an upstream that points into the platform); ``OPTIONS *`` is answered by the gateway;
then `decide` on the normalised path, and a 403 page or the request proxied to the
site's upstream over a pooled keep-alive connection
(`certward.dataplane.upstream_connection`). A refused request's body is read and
dropped before the answer, so the connection stays usable.

The exchange is driven by callbacks, not a coroutine per request: the TLS protocol
feeds it plaintext, the parser calls back, the request head is built once and written
to the upstream, and the response relayed as the upstream connection reads it.
Pipelined requests wait (their bytes unparsed) until the response before them is
complete. A request that failed on a reused upstream connection before any byte of
its answer, and has no body, is sent once more on a new connection.

Deadlines (`ConnectionLimits`): a request's head (request line and headers) must be
complete within ``header_seconds`` of the handshake (first request) or of its first
byte (later ones) — a client sending its headers a byte at a time is cut off then;
between requests a connection may stay idle ``idle_seconds``, and so may a request
body between two reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import httptools

from certward.dataplane.access import Address, ClientIdentity, decide
from certward.dataplane.caller_headers import HOP_MARK_HEADER, carries_hop_mark
from certward.dataplane.gateway_pages import (
    BAD_GATEWAY_PAGE,
    BAD_REQUEST_PAGE,
    FORBIDDEN_PAGE,
    LOOP_DETECTED_PAGE,
    MALFORMED_PAGE,
    MISDIRECTED_PAGE,
    own_answer,
)
from certward.dataplane.http_request import (
    MAX_HEAD_BYTES,
    ClientConnection,
    ClientRequest,
    ConnectionLimits,
    MalformedRequest,
    RequestLog,
    host_header,
)
from certward.dataplane.request_target import TargetRefused, parse_target
from certward.dataplane.state import Site
from certward.dataplane.upstream import (
    UpstreamRefused,
    fixed_request_headers,
    response_head,
    upstream_head,
)
from certward.dataplane.upstream_connection import Framing, UpstreamConnection, UpstreamPool

log = logging.getLogger("certward.gateway")

READ_CHUNK = 64 * 1024
PENDING_BYTES = 256 * 1024  # pipelined bytes held before the client's reading is paused
FLUSH_BYTES = 64 * 1024
_HOP_MARK_HEADER = HOP_MARK_HEADER.lower().encode()
_NEVER = float("inf")


class HttpExchange:
    """Every request of one client connection, proxied to the site's upstream."""

    def __init__(
        self,
        client: ClientConnection,
        *,
        site: Site,
        peer: Address,
        identity: ClientIdentity | None,
        tls_headers: list[tuple[bytes, bytes]],
        pool: UpstreamPool,
        limits: ConnectionLimits,
        log_request: RequestLog,
        log_allowed: bool,
        head_started: float,
    ) -> None:
        self.client = client
        self.site = site
        self.peer = peer
        self.identity = identity
        self.pool = pool
        self.limits = limits
        self.log_request = log_request
        self.log_allowed = log_allowed
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._fixed = fixed_request_headers(str(peer), tls_headers)
        self._current: ClientRequest | None = None
        self._parsing: ClientRequest | None = None
        self._queue: deque[ClientRequest] = deque()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._pumping = False
        self._stopped = False  # the parser is done with this connection (error, upgrade)
        self._bad_request = False  # a 400 is due once the requests before it are answered
        self._closed = False
        self._eof = False
        self._piping = False
        self._after_upgrade = b""
        self._upstream: UpstreamConnection | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._chunked_out = False
        self._close_after = False
        self._paused: set[str] = set()
        self._head_open = False
        self._head_size = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._deadline = head_started + limits.header_seconds
        self._head_deadline = True
        self._timer_at = self._deadline
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(self._deadline, self._on_timer)

    # the client's bytes --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Plaintext from the client."""
        if self._piping:
            if self._upstream is not None:
                self._upstream.write(data)
            return
        if self._closed:
            return
        current = self._current
        if self._stopped:
            if current is not None and current.websocket:
                self._hold(data)  # sent upstream after the 101, if it comes
            return
        if (current is not None and current.complete) or self._pending:
            self._hold(data)
            return
        if current is not None:  # its body is arriving
            self._push_deadline(self._loop.time() + self.limits.idle_seconds)
        self._parse(data)
        self._pump()

    def feed_eof(self) -> None:
        """The client closed its side."""
        self._eof = True
        if self._piping:
            if self._upstream is not None:
                self._upstream.write_eof()
            return
        if self._current is None and not self._queue:
            self.client.close()
        elif self._current is not None and not self._current.complete:
            self.connection_lost()
            self.client.abort()

    def connection_lost(self) -> None:
        """The client connection is gone: let go of everything."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._upstream is not None:
            self._upstream.close()  # mid-answer or piping: not reusable
            self._upstream = None
        self._queue.clear()
        self._pending.clear()

    def client_writable(self, writable: bool) -> None:
        """The client's transport buffer crossed its high (or low) water mark."""
        if self._upstream is not None:
            if writable:
                self._upstream.resume_reading()
            else:
                self._upstream.pause_reading()

    def _hold(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > PENDING_BYTES:
            self._pause("pending")

    def _pause(self, why: str) -> None:
        if not self._paused:
            self.client.pause_reading()
        self._paused.add(why)

    def _resume(self, why: str) -> None:
        if why in self._paused:
            self._paused.discard(why)
            if not self._paused:
                self.client.resume_reading()

    def _parse(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._stopped = True
            self._after_upgrade = data[upgrade.args[0] :]
        except httptools.HttpParserError:
            self._malformed()
            return
        if self._head_open and not self._head_deadline:
            self._set_deadline(self._loop.time() + self.limits.header_seconds, head=True)

    def _pump(self) -> None:
        """Serve queued requests and parse held bytes, as far as the order allows."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self._closed:
                if self._current is None and self._queue:
                    self._start(self._queue.popleft())
                    continue
                current = self._current
                if (
                    self._pending
                    and not self._stopped
                    and (current is None or not current.complete)
                ):
                    data = b"".join(self._pending)
                    self._pending.clear()
                    self._pending_size = 0
                    self._resume("pending")
                    self._parse(data)
                    continue
                break
            if self._current is None and not self._closed:
                if self._bad_request and not self._queue:
                    self._send_bad_request()
                elif self._stopped or self._eof:
                    self.client.close()
                    self._closed = True
                elif not self._head_open:
                    self._set_deadline(self._loop.time() + self.limits.idle_seconds, head=False)
        finally:
            self._pumping = False

    # request parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_open = True
        self._head_size = 0
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_open:
            return  # a trailer field of a chunked body: dropped
        self._head_size += len(name) + len(value) + 4
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._head_open = False
        parser = self._parser
        version = parser.get_http_version()
        headers = self._headers
        if self._head_size > MAX_HEAD_BYTES or version not in ("1.1", "1.0"):
            raise MalformedRequest
        hosts = 0
        framed = chunked = False
        for name, value in headers:
            if name == b"host":
                hosts += 1
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked":
                    raise MalformedRequest
                framed = chunked = True
            elif name == b"content-length" and value != b"0":
                framed = True
        upgrade = parser.should_upgrade()
        if hosts > 1 or (hosts == 0 and version == "1.1") or (upgrade and framed):
            raise MalformedRequest
        method = parser.get_method()
        request = ClientRequest(
            method,
            self._url,
            headers,
            http11=version == "1.1",
            keep_alive=version == "1.1" and parser.should_keep_alive(),
            upgrade=upgrade,
            chunked=chunked,
            head_request=method == b"HEAD",
        )
        self._parsing = request
        self._queue.append(request)
        self._head_deadline = False
        self._push_deadline(self._loop.time() + self.limits.idle_seconds)

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is None or request.refusal is not None:
            return
        if request.body is None:
            if self._upstream is not None:
                self._upstream.write(
                    b"%x\r\n%s\r\n" % (len(body), body) if request.chunked else body
                )
        else:
            request.body.append(body)

    def on_message_complete(self) -> None:
        request = self._parsing
        if request is None:
            return
        request.complete = True
        self._parsing = None
        if request is not self._current:
            return
        if request.refusal is not None:
            self._answer(request, *request.refusal)
            return
        self._deadline = _NEVER  # the answer is the upstream's to give
        if request.body is None and self._upstream is not None and request.chunked:
            self._upstream.write(b"0\r\n\r\n")

    # deciding ------------------------------------------------------------------------------

    def _start(self, request: ClientRequest) -> None:
        """Decide the request at the head of the queue, and answer or forward it."""
        self._current = request
        method = request.method.decode("latin-1")
        try:
            target = parse_target(method, request.target.decode("utf-8", "surrogateescape"))
        except TargetRefused as exc:
            self._refuse(request, 400, BAD_REQUEST_PAGE, "request-target", str(exc))
            return
        request.path = target.path
        host = self.site.hostname
        asked = host_header(request.headers)
        if target.authority is not None and (target.authority != asked or asked != host):
            self._refuse(
                request,
                400,
                BAD_REQUEST_PAGE,
                "request-target",
                "the absolute URI names another host than Host and the TLS server name",
            )
            return
        if asked != host:
            # A connection serves the host it was opened for: its client certificate was
            # verified against that host's CAs, not the other one's.
            self._refuse(request, 421, MISDIRECTED_PAGE, None, "")
            return
        for name, value in request.headers:
            if name == _HOP_MARK_HEADER and carries_hop_mark(value.decode("latin-1")):
                self._refuse(
                    request,
                    508,
                    LOOP_DETECTED_PAGE,
                    "hop-loop",
                    "CDN-Loop carries the platform's mark",
                )
                return
        if target.asterisk:
            self._refuse(request, 200, b"", None, "")
            return
        decision = decide(self.site, target.path, self.peer, self.identity)
        request.decision = decision
        if not decision.allowed:
            self._refuse(request, 403, FORBIDDEN_PAGE, decision.rule, decision.reason)
            return
        request.head, request.websocket = upstream_head(
            request.method,
            target.origin.encode("utf-8", "surrogateescape"),
            request.headers,
            fixed=self._fixed,
            chunked=request.chunked,
        )
        if request.upgrade and not request.websocket:
            self._stopped = True  # an Upgrade other than WebSocket: served, then closed
        connection = self.pool.take(self.site.upstream)
        if connection is not None:
            self._forward(request, connection)
        else:
            self._pause("connect")  # hold the body back until there is somewhere to send it
            self._loop.create_task(self._connect(request))

    def _refuse(
        self, request: ClientRequest, status: int, page: bytes, rule: str | None, reason: str
    ) -> None:
        if rule is not None:
            record = request.record(self.site.hostname, self.peer, self.identity)
            if request.decision is None:
                record |= {"decision": "deny", "rule": rule, "reason": reason}
            record["status"] = status
            self.log_request(record, False)
        if request.complete:
            self._answer(request, status, page)
        else:
            request.refusal = (status, page)  # answered once its body is read and dropped
            request.body = None

    def _answer(self, request: ClientRequest, status: int, page: bytes) -> None:
        """The gateway's own answer (a refusal, ``OPTIONS *``, a 502)."""
        close = not request.keep_alive or self._last_request()
        request.status = status
        self.client.send(own_answer(status, page, close=close, hsts=self.site.hsts_header))
        self._finish(request, close=close)

    def _malformed(self) -> None:
        """The parser refused the bytes: answered 400 once the requests before them are
        (the connection ends then), unless the bytes were the body of the request being
        forwarded — that connection is cut at once."""
        self._stopped = True
        broken = self._parsing
        self._parsing = None
        if broken is not None and broken is self._current:
            self.connection_lost()
            self.client.abort()
            return
        if broken is not None and broken in self._queue:
            self._queue.remove(broken)
        self._bad_request = True
        if self._current is None and not self._queue:
            self._send_bad_request()

    def _last_request(self) -> bool:
        """Whether the parser stopped with no request (nor 400) due after this one."""
        return self._stopped and not self._queue and not self._bad_request

    def _send_bad_request(self) -> None:
        self.client.send(own_answer(400, MALFORMED_PAGE, close=True, hsts=self.site.hsts_header))
        self._closed = True
        self.connection_lost()
        self.client.close()

    def _finish(self, request: ClientRequest, *, close: bool) -> None:
        if self._current is request:
            self._current = None
        decision = request.decision
        if decision is not None and decision.allowed and self.log_allowed:
            record = request.record(self.site.hostname, self.peer, self.identity)
            record["status"] = request.status
            self.log_request(record, True)
        if close or not request.complete or self._eof:
            self._closed = True
            self.connection_lost()
            self.client.close()
            return
        if self._queue or self._pending or self._bad_request:
            self._loop.call_soon(self._pump)
        elif not self._head_open:
            self._set_deadline(self._loop.time() + self.limits.idle_seconds, head=False)

    # proxying ------------------------------------------------------------------------------

    async def _connect(self, request: ClientRequest) -> None:
        try:
            connection = await self.pool.open(self.site.upstream)
        except UpstreamRefused as exc:
            log.warning(
                "refused to connect to the upstream of %s (%s/%s): %s",
                self.site.hostname,
                self.site.app,
                self.site.environment,
                exc,
            )
            self._bad_gateway(request)
            return
        except (OSError, TimeoutError) as exc:
            log.warning(
                "the upstream %s of %s is unreachable: %s",
                self._describe_upstream(),
                self.site.hostname,
                exc or "timed out",
            )
            self._bad_gateway(request)
            return
        if self._closed or self._current is not request:
            connection.close()
            return
        self._forward(request, connection)

    def _describe_upstream(self) -> str:
        try:
            return self.pool.connector.destination(self.site.upstream).authority
        except UpstreamRefused:
            return "?"

    def _forward(self, request: ClientRequest, connection: UpstreamConnection) -> None:
        self._resume("connect")
        self._upstream = connection
        self._chunked_out = False
        self._close_after = False
        connection.send_request(self, request.head, head_request=request.head_request)
        held = request.body
        request.body = None  # from now on the body goes straight upstream
        chunked = request.chunked
        if held:
            if chunked:
                connection.write(b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in held))
            else:
                connection.write(b"".join(held))
        if request.complete:
            if chunked:
                connection.write(b"0\r\n\r\n")
            self._deadline = _NEVER

    def _bad_gateway(self, request: ClientRequest) -> None:
        self._resume("connect")
        request.status = 502
        if self._current is not request or self._closed:
            return
        if request.complete:
            self._answer(request, 502, BAD_GATEWAY_PAGE)
        else:
            request.refusal = (502, BAD_GATEWAY_PAGE)
            request.body = None

    # upstream callbacks (`certward.dataplane.upstream_connection.ResponseSink`) ----------

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: Framing
    ) -> None:
        request = self._current
        if request is None:
            return
        request.status = status
        close = not request.keep_alive or self._last_request()
        extra = b""
        if framing is Framing.CHUNKED or framing is Framing.CLOSE:
            if request.http11:
                self._chunked_out = True
                extra = b"Transfer-Encoding: chunked\r\n"
            else:
                close = True  # an HTTP/1.0 client: the body ends with the connection
        if close:
            extra += b"Connection: close\r\n"
        self._close_after = close
        self._out.append(
            response_head(status, reason, headers, framing=extra, hsts=self.site.hsts_header)
        )

    def response_body(self, data: bytes) -> None:
        if self._chunked_out:
            self._out.append(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_BYTES:
            self.flush()

    def response_end(self, reusable: bool) -> None:
        request = self._current
        self._upstream = None
        if self._chunked_out:
            self._out.append(b"0\r\n\r\n")
            self._chunked_out = False
        self.flush()
        if request is not None:
            self._finish(request, close=self._close_after)

    def flush(self) -> None:
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            if not self._closed:
                self.client.send(data)

    def upgraded(self, reason: bytes, headers: list[tuple[bytes, bytes]], rest: bytes) -> None:
        request = self._current
        upstream = self._upstream
        if request is None or upstream is None or not request.websocket:
            self.upstream_failed("a 101 answer to a request that asked no WebSocket", False)
            return
        request.status = 101
        self._piping = True
        self.client.send(
            response_head(101, reason, headers, upgrade=True, hsts=self.site.hsts_header) + rest
        )
        after = self._after_upgrade + b"".join(self._pending)
        self._pending.clear()
        if after:
            upstream.write(after)
        if request.decision is not None and self.log_allowed:
            record = request.record(self.site.hostname, self.peer, self.identity)
            record["status"] = 101
            self.log_request(record, True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def upstream_data(self, data: bytes) -> None:
        if not self._closed:
            self.client.send(data)

    def upstream_failed(self, reason: str, responded: bool) -> None:
        request = self._current
        connection = self._upstream
        self._upstream = None
        if connection is not None:
            connection.close()
        if self._piping or request is None or self._closed:
            self.flush()
            self.client.close()
            return
        if (
            not responded
            and connection is not None
            and connection.reused
            and not request.retried
            and not request.chunked
            and not any(name == b"content-length" for name, _ in request.headers)
        ):
            request.retried = True  # the upstream had closed the idle connection
            self._loop.create_task(self._connect(request))
            return
        if responded or request.status:
            self.flush()
            self.client.abort()
            return
        log.warning(
            "the upstream %s of %s failed: %s",
            self._describe_upstream(),
            self.site.hostname,
            reason,
        )
        self._bad_gateway(request)

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self._resume("upstream")
        else:
            self._pause("upstream")

    # deadlines -----------------------------------------------------------------------------

    def _push_deadline(self, when: float) -> None:
        """The body's (or the idle connection's) deadline; the timer re-arms itself when
        it fires before it."""
        self._set_deadline(when, head=False)

    def _set_deadline(self, when: float, *, head: bool) -> None:
        self._deadline = when
        self._head_deadline = head
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        if now < self._deadline:
            if self._deadline != _NEVER:
                self._timer_at = self._deadline
                self._timer = self._loop.call_at(self._deadline, self._on_timer)
            else:
                self._timer_at = _NEVER
            return
        if self._head_deadline:
            log.info(
                "closed a connection to %s from %s: no request headers within %g s",
                self.site.hostname,
                self.peer,
                self.limits.header_seconds,
            )
        self.connection_lost()
        self.client.abort()
