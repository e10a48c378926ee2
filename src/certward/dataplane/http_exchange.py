"""HTTP/1.1 over one client connection of the gateway: decide, then proxy.

Each request, in order: its target is translated to origin-form
(`certward.dataplane.request_target.parse_target`: 400 for a form the gateway refuses,
and for an absolute-form authority other than ``Host`` and the TLS server name); a
``Host`` naming another site than the connection's is 421; a request whose
``CDN-Loop`` already carries the platform's mark is 508 (it came back round through
an upstream that points into the platform); ``OPTIONS *`` is answered by the gateway;
then `decide` on the normalised path, and a 403 page or the request proxied to the
site's upstream (`certward.dataplane.upstream`).

Deadlines (`ConnectionLimits`): a request's head (request line and headers) must be
complete within ``header_seconds`` of the handshake (first request) or of its first
byte (later ones) — a client sending its headers a byte at a time is cut off then;
between requests a connection may stay idle ``idle_seconds``, and so may a request
body between two reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import h11

from certward.dataplane.access import Address, ClientIdentity, decide
from certward.dataplane.caller_headers import HOP_MARK_HEADER, carries_hop_mark
from certward.dataplane.request_target import RequestTarget, TargetRefused, parse_target
from certward.dataplane.state import Site
from certward.dataplane.upstream import (
    UpstreamConnector,
    UpstreamRefused,
    response_headers,
    upstream_headers,
)

log = logging.getLogger("certward.gateway")

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_HOP_MARK_HEADER = HOP_MARK_HEADER.lower().encode()


def _page(status: str, message: str) -> bytes:
    return (
        f"<!doctype html><html><head><title>{status}</title></head>"
        f"<body><h1>{status}</h1><p>{message}</p></body></html>\n"
    ).encode()


BAD_REQUEST_PAGE = _page("400 Bad Request", "The request target is not served here.")
FORBIDDEN_PAGE = _page("403 Forbidden", "Access to this path is restricted.")
MISDIRECTED_PAGE = _page("421 Misdirected Request", "This connection serves another host.")
BAD_GATEWAY_PAGE = _page("502 Bad Gateway", "The app did not answer.")
LOOP_DETECTED_PAGE = _page(
    "508 Loop Detected", "This request has already passed through this platform."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """How long a client connection may take: see the module docstring."""

    handshake_seconds: float = 10.0
    header_seconds: float = 10.0
    idle_seconds: float = 75.0


class ClientConnection(Protocol):
    """What an exchange needs of the TLS connection under it."""

    def send(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class Closed(Exception):
    """The client went away, broke the protocol or ran out of time."""


RequestLog = Callable[[dict[str, Any], bool], None]


class HttpExchange:
    """Keep-alive request loop of one client connection, proxied to the site's upstream."""

    def __init__(
        self,
        client: ClientConnection,
        reader: asyncio.StreamReader,
        *,
        site: Site,
        peer: Address,
        identity: ClientIdentity | None,
        tls_headers: list[tuple[bytes, bytes]],
        connector: UpstreamConnector,
        limits: ConnectionLimits,
        log_request: RequestLog,
        head_started: float,
    ) -> None:
        self.client = client
        self.reader = reader
        self.site = site
        self.peer = peer
        self.identity = identity
        self.tls_headers = tls_headers  # the same for every request of the connection
        self.connector = connector
        self.limits = limits
        self.log_request = log_request
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._loop = asyncio.get_running_loop()
        self._head_deadline: float | None = head_started + limits.header_seconds

    # reading -------------------------------------------------------------------------------

    def _read_timeout(self) -> float:
        if self.http.their_state is not h11.IDLE or self._head_deadline is None:
            return self.limits.idle_seconds
        return max(0.0, min(self.limits.idle_seconds, self._head_deadline - self._loop.time()))

    async def _next_client_event(self) -> Any:
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                raise Closed from None
            if event is h11.NEED_DATA:
                try:
                    data = await asyncio.wait_for(
                        self.reader.read(READ_CHUNK), self._read_timeout()
                    )
                except TimeoutError:
                    self._timed_out()
                    raise Closed from None
                if data and self._head_deadline is None and self.http.their_state is h11.IDLE:
                    self._head_deadline = self._loop.time() + self.limits.header_seconds
                self.http.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                self._head_deadline = None
            return event

    def _timed_out(self) -> None:
        if self.http.their_state is h11.IDLE and self._head_deadline is not None:
            log.info(
                "closed a connection to %s from %s: no request headers within %g s",
                self.site.hostname,
                self.peer,
                self.limits.header_seconds,
            )

    def _send(self, event: Any) -> None:
        hsts = self.site.hsts_header
        if hsts is not None and isinstance(event, h11.Response):
            # The app's setting replaces whatever its upstream said.
            headers = [(n, v) for n, v in event.headers if n != b"strict-transport-security"]
            event = h11.Response(
                status_code=event.status_code,
                reason=event.reason,
                headers=[*headers, (b"Strict-Transport-Security", hsts)],
            )
        data = self.http.send(event)
        if data:
            self.client.send(data)

    async def run(self) -> None:
        try:
            while True:
                event = await self._next_client_event()
                if not isinstance(event, h11.Request):
                    return
                keep_going = await self._handle(event)
                if not keep_going or self.http.our_state is h11.MUST_CLOSE:
                    return
                try:
                    self.http.start_next_cycle()
                except h11.LocalProtocolError:
                    return
                if self.http.trailing_data[0]:  # a pipelined request's head is under way
                    self._head_deadline = self._loop.time() + self.limits.header_seconds
        except (Closed, ConnectionError):
            return
        finally:
            if self.upstream is not None:
                self.upstream[1].close()

    # deciding ------------------------------------------------------------------------------

    async def _handle(self, request: h11.Request) -> bool:
        method = request.method.decode("latin-1")
        raw_target = request.target.decode("utf-8", "surrogateescape")
        host = self.site.hostname
        record: dict[str, Any] = {
            "host": host,
            "method": method,
            "ip": str(self.peer),
            "client_subject": self.identity.subject if self.identity else None,
            "client_issuer": self.identity.issuer if self.identity else None,
        }
        try:
            target = parse_target(method, raw_target)
        except TargetRefused as exc:
            return await self._refuse(record, 400, BAD_REQUEST_PAGE, "request-target", str(exc))
        record["path"] = target.path
        host_header = _host_header(request)
        if target.authority is not None and (
            target.authority != host_header or host_header != host
        ):
            return await self._refuse(
                record,
                400,
                BAD_REQUEST_PAGE,
                "request-target",
                "the absolute URI names another host than Host and the TLS server name",
            )
        if host_header != host:
            # A connection serves the host it was opened for: its client certificate was
            # verified against that host's CAs, not the other one's.
            await self._drain_request_body()
            self._respond(421, MISDIRECTED_PAGE)
            return self.http.our_state is not h11.MUST_CLOSE
        if any(
            name == _HOP_MARK_HEADER and carries_hop_mark(value.decode("latin-1"))
            for name, value in request.headers
        ):
            return await self._refuse(
                record, 508, LOOP_DETECTED_PAGE, "hop-loop", "CDN-Loop carries the platform's mark"
            )
        if target.asterisk:
            await self._drain_request_body()
            self._send(
                h11.Response(
                    status_code=200,
                    headers=[(b"Allow", ALLOWED_METHODS), (b"Content-Length", b"0")],
                    reason=b"OK",
                )
            )
            self._send(h11.EndOfMessage())
            return self.http.our_state is not h11.MUST_CLOSE
        decision = decide(self.site, target.path, self.peer, self.identity)
        record |= {
            "decision": decision.verdict.value,
            "rule": decision.rule,
            "reason": decision.reason,
        }
        if not decision.allowed:
            record["status"] = 403
            self.log_request(record, False)
            await self._drain_request_body()
            self._respond(403, FORBIDDEN_PAGE)
            return self.http.our_state is not h11.MUST_CLOSE
        status = await self._proxy(request, target)
        record["status"] = status
        self.log_request(record, True)
        return status not in {0, 101}

    async def _refuse(
        self, record: dict[str, Any], status: int, page: bytes, rule: str, reason: str
    ) -> bool:
        record |= {"decision": "deny", "rule": rule, "reason": reason, "status": status}
        record.setdefault("path", None)
        self.log_request(record, False)
        await self._drain_request_body()
        self._respond(status, page)
        return self.http.our_state is not h11.MUST_CLOSE

    async def _drain_request_body(self) -> None:
        while True:
            event = await self._next_client_event()
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return

    def _respond(self, status: int, body: bytes) -> None:
        self._send(
            h11.Response(
                status_code=status,
                reason=reason_phrase(status),
                headers=[
                    (b"Content-Type", b"text/html; charset=utf-8"),
                    (b"Content-Length", str(len(body)).encode()),
                    (b"Cache-Control", b"no-store"),
                ],
            )
        )
        self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())

    # proxying ------------------------------------------------------------------------------

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream is not None and not self.upstream[1].is_closing():
            return self.upstream
        self.upstream = await self.connector.open(self.site.upstream)
        return self.upstream

    def _describe_upstream(self) -> str:
        with contextlib.suppress(UpstreamRefused):
            return self.connector.destination(self.site.upstream).authority
        return "?"

    async def _proxy(self, request: h11.Request, target: RequestTarget) -> int:
        """Forward one request and its response; the status sent (0: connection dropped)."""
        headers, websocket = upstream_headers(
            request.headers, peer=str(self.peer), tls_headers=self.tls_headers
        )
        try:
            reader, writer = await self._open_upstream()
        except UpstreamRefused as exc:
            log.warning(
                "refused to connect to the upstream of %s (%s/%s): %s",
                self.site.hostname,
                self.site.app,
                self.site.environment,
                exc,
            )
            return await self._bad_gateway()
        except (OSError, TimeoutError) as exc:
            log.warning(
                "the upstream %s of %s is unreachable: %s",
                self._describe_upstream(),
                self.site.hostname,
                exc or "timed out",
            )
            return await self._bad_gateway()
        upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        outgoing = h11.Request(
            method=request.method,
            target=target.origin.encode("utf-8", "surrogateescape"),
            headers=headers,
            http_version="1.1",
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
                    raise Closed
            return await self._relay_response(upstream, reader, writer, websocket)
        except (OSError, h11.ProtocolError) as exc:
            if self.upstream is not None:
                self.upstream[1].close()
                self.upstream = None
            if self.http.our_state is h11.SEND_RESPONSE:
                log.warning(
                    "the upstream %s of %s failed: %s",
                    self._describe_upstream(),
                    self.site.hostname,
                    exc,
                )
                self._respond(502, BAD_GATEWAY_PAGE)
                return 502
            return 0

    async def _bad_gateway(self) -> int:
        await self._drain_request_body()
        self._respond(502, BAD_GATEWAY_PAGE)
        return 502

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
                            status_code=101, headers=response_headers(event.headers, upgrade=True)
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
                        headers=response_headers(event.headers, upgrade=False),
                        reason=event.reason or reason_phrase(status),
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
            if writer.can_write_eof():
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


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (``b""`` for a code without one)."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _host_header(request: h11.Request) -> str:
    """The request's ``Host`` as nginx's ``$host``: lower case, no port, no trailing dot."""
    for name, value in request.headers:
        if name == b"host":
            return strip_port(value.decode("latin-1")).rstrip(".").lower()
    return ""


def strip_port(host: str) -> str:
    """``example.com:8080`` → ``example.com``; ``[::1]:80`` → ``[::1]``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]
