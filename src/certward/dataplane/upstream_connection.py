"""Kept-alive connections from a gateway worker to upstreams, and the responses they carry.

An `UpstreamConnection` is an asyncio protocol serving one request at a time for the
`ResponseSink` (a client connection's exchange) it is lent to. Its response is parsed
by httptools (llhttp, in C) and handed to the sink as it arrives — the head once, the
body as the parser delivers it, without a coroutine or a copy per chunk; the sink
sends what one read produced to the client as one TLS write (`ResponseSink.flush`).

Framing towards the client is decided from the response head (`Framing`): a body with
a ``Content-Length`` is relayed as it is, a chunked one is re-chunked (trailers are
dropped), a body that ends when the upstream closes is re-chunked for an HTTP/1.1
client; ``HEAD`` answers, 1xx, 204 and 304 have none. Interim 1xx answers other than a
WebSocket's 101 are not relayed.

`UpstreamPool` keeps idle connections per upstream URL (at most `POOL_PER_UPSTREAM`,
each for at most `POOL_IDLE_SECONDS`), so keep-alive clients, and clients that open a
connection per request, share warm upstream connections instead of opening one each.
A connection is returned to the pool only after a complete response that left it
reusable; one the upstream closes while idle is forgotten.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum
from http import HTTPStatus
from typing import Protocol, cast

import httptools

from certward.dataplane.upstream import UpstreamConnector

POOL_PER_UPSTREAM = 64
POOL_IDLE_SECONDS = 30.0

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class Framing(Enum):
    """How a response's body ends."""

    NONE = "none"  # HEAD, 1xx, 204, 304
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"  # when the upstream closes the connection


class ResponseSink(Protocol):
    """What an upstream connection tells the exchange it serves."""

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: Framing
    ) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_end(self, reusable: bool) -> None: ...

    def upgraded(self, reason: bytes, headers: list[tuple[bytes, bytes]], rest: bytes) -> None: ...

    def upstream_data(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def upstream_failed(self, reason: str, responded: bool) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream; see the module docstring."""

    def __init__(self, pool: UpstreamPool, upstream: str) -> None:
        self.pool = pool
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._no_body = False
        self._piping = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._framing = Framing.LENGTH
        self._received = False  # a byte of this request's response arrived
        self._done = False
        self._clean = False  # the parser read the last response to its end

    # lending -------------------------------------------------------------------------------

    def send_request(self, sink: ResponseSink, head: bytes, *, head_request: bool) -> None:
        """Lend the connection to ``sink`` and send a request head (its body follows
        through `write`)."""
        self.sink = sink
        if self._parser is None or not self._clean:
            # a parser is reused only after a response it read to its end
            self._parser = httptools.HttpResponseParser(self)
        self._clean = False
        self._no_body = head_request
        self._headers = []
        self._reason = b""
        self._received = False
        self._done = False
        if self.transport is not None:
            self.transport.write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def write_eof(self) -> None:
        if self.transport is not None and not self.closed and self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self) -> None:
        self.sink = None
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    # asyncio -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:  # an idle connection that speaks unasked: not to be trusted
            self.close()
            return
        if self._piping:
            sink.upstream_data(data)
            return
        self._received = True
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._status == 101 and not self._done:
                self._piping = True
                self._done = True
                sink.upgraded(self._reason, self._headers, data[upgrade.args[0] :])
                return
        except httptools.HttpParserError as exc:
            if self.sink is sink and not self._done:
                self._fail(f"the upstream's response is malformed: {exc}")
                return
        sink.flush()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(True)

    def eof_received(self) -> bool | None:
        return None  # close the connection: a half-closed upstream serves nothing more

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        sink = self.sink
        if sink is None:
            return
        if self._piping:
            self.sink = None
            sink.upstream_failed("closed", responded=True)
            return
        if self._framing is Framing.CLOSE and self._status and not self._done:
            self._done = True
            self.sink = None
            sink.response_end(reusable=False)
            sink.flush()
            return
        self._fail(f"the upstream closed the connection: {exc or 'end of stream'}")

    def _fail(self, reason: str) -> None:
        sink = self.sink
        responded = bool(self._status)
        self.close()
        if sink is not None:
            sink.upstream_failed(reason, responded)

    # response parser callbacks -------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        if parser is None or self._done:
            return
        status = parser.get_status_code()
        if status < 200:
            if status != 101:  # an interim answer (100, 103): not relayed
                self._headers = []
                self._reason = b""
            self._status = status
            return
        self._status = status
        if self._no_body or status in (204, 304):
            framing = Framing.NONE
        else:
            framing = Framing.CLOSE
            for name, _value in self._headers:
                if name == b"content-length":
                    framing = Framing.LENGTH
                elif name == b"transfer-encoding":
                    framing = Framing.CHUNKED
                    break
        self._framing = framing
        sink = self.sink
        if sink is None:
            return
        sink.response_head(status, self._reason or REASONS.get(status, b""), self._headers, framing)
        if framing is Framing.NONE:
            self._finish(reusable=parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.sink is not None and not self._done:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        if self._status == 101:
            return  # a WebSocket's answer: the parser stops with an upgrade next
        if self._status < 200 or self._done or parser is None:
            if self._status < 200:
                self._headers = []
                self._reason = b""
                self._status = 0
            return
        self._clean = True
        self._finish(reusable=parser.should_keep_alive() and self._framing is not Framing.CLOSE)

    def _finish(self, *, reusable: bool) -> None:
        self._done = True
        sink = self.sink
        self.sink = None
        self._status = 0
        if reusable:
            self.pool.release(self)
        else:
            self.close()
        if sink is not None:
            sink.response_end(reusable)


class UpstreamPool:
    """Idle upstream connections of one worker, by upstream URL."""

    def __init__(self, connector: UpstreamConnector) -> None:
        self.connector = connector
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self, upstream: str) -> UpstreamConnection | None:
        """An idle connection to ``upstream``, if one is kept."""
        idle = self._idle.get(upstream)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if not connection.closed and transport is not None and not transport.is_closing():
                connection.reused = True
                return connection
        return None

    async def open(self, upstream: str) -> UpstreamConnection:
        """A new connection (`UpstreamConnector.connect`: policy checked, name resolved)."""
        factory: Callable[[], UpstreamConnection] = lambda: UpstreamConnection(self, upstream)  # noqa: E731
        return await self.connector.connect(upstream, factory)

    def release(self, connection: UpstreamConnection) -> None:
        """Keep ``connection`` for the next request to its upstream (or close it)."""
        idle = self._idle.setdefault(connection.upstream, [])
        if connection.closed or len(idle) >= POOL_PER_UPSTREAM:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(POOL_IDLE_SECONDS, self._sweep)

    def forget(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.upstream)
        if idle and connection in idle:
            idle.remove(connection)

    def _sweep(self) -> None:
        """Close connections idle longer than `POOL_IDLE_SECONDS`."""
        loop = asyncio.get_running_loop()
        self._sweeper = None
        oldest = loop.time() - POOL_IDLE_SECONDS
        for upstream, idle in list(self._idle.items()):
            for connection in [c for c in idle if c.idle_since < oldest]:
                idle.remove(connection)
                connection.close()
            if not idle:
                del self._idle[upstream]
        if self._idle:
            self._sweeper = loop.call_later(POOL_IDLE_SECONDS, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def __len__(self) -> int:
        return sum(len(idle) for idle in self._idle.values())
