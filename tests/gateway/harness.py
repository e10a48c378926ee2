"""A gateway in a background thread, an upstream app that echoes, and TLS clients.

`RunningGateway` serves a `MutableSource` (tests swap the state and wait for the
gateway to pick it up through its own refresh loop). `EchoUpstream` answers every
request with JSON describing it (method, path, headers, body length); ``/stream``
answers with chunks sent 50 ms apart, ``/ws`` accepts a WebSocket upgrade and then
echoes raw bytes. `https_request` makes one request with SNI, an optional client
certificate and a chosen loopback source address.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from certward.dataplane.gateway import Gateway
from certward.dataplane.http_request import ConnectionLimits
from certward.dataplane.state import (
    AccessProfile,
    ClientCa,
    ClientCrl,
    DataPlaneState,
    PathRule,
    RuleKind,
    ServedCertificate,
    Site,
    state_version,
)
from certward.dataplane.tls_policy import INTERMEDIATE, TlsPolicy
from certward.egress import EgressPolicy
from tests.material.factory import IssuedCert, TestCA

WAIT_SECONDS = 10.0
LOOPBACK_ALLOWED = EgressPolicy(allowed_networks=(ip_network("127.0.0.0/8"),))
"""The test upstreams listen on loopback, which the default egress policy refuses."""


class MutableSource:
    """A `StateSource` whose state the test replaces."""

    def __init__(self, state: DataPlaneState) -> None:
        self.state = state
        self.challenges: dict[str, str] = {}

    def load(self) -> DataPlaneState:
        return self.state

    def challenge(self, token: str) -> str | None:
        return self.challenges.get(token)


@dataclass
class RunningGateway:
    source: MutableSource
    https_port: int = 0
    http_port: int = 0
    gateway: Gateway | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def update(self, state: DataPlaneState) -> None:
        """Give the gateway ``state`` and wait until it serves it."""
        self.source.state = state
        done = threading.Event()
        for _ in range(int(WAIT_SECONDS / 0.02)):
            if self.gateway is not None and self.gateway.state.version == state.version:
                done.set()
                break
            threading.Event().wait(0.02)
        if not done.is_set():
            raise AssertionError("the gateway did not pick up the new state")


@contextmanager
def running_gateway(
    state: DataPlaneState, *, refresh: float = 0.05, **options: Any
) -> Iterator[RunningGateway]:
    """A gateway on free loopback ports in a thread of its own, stopped at the end;
    ``options`` go to `Gateway` (``egress``, ``upstream_tls``, ``limits``)."""
    with running_gateway_on(MutableSource(state), refresh=refresh, **options) as running:
        yield running


@contextmanager
def running_gateway_on(
    source: Any,
    *,
    refresh: float = 0.05,
    egress: EgressPolicy = LOOPBACK_ALLOWED,
    upstream_tls: ssl.SSLContext | None = None,
    limits: ConnectionLimits | None = None,
    tls: TlsPolicy = INTERMEDIATE,
) -> Iterator[RunningGateway]:
    """A gateway serving any `StateSource` (a `DataPlaneFeed` over a real database)."""
    running = RunningGateway(source=source)
    started = threading.Event()
    stop: dict[str, Any] = {}

    async def main() -> None:
        gateway = Gateway(
            running.source,
            refresh_seconds=refresh,
            egress=egress,
            upstream_tls=upstream_tls,
            limits=limits,
            tls=tls,
        )
        await gateway.start(("127.0.0.1", 0), ("127.0.0.1", 0))
        running.gateway = gateway
        running.loop = asyncio.get_running_loop()
        running.https_port, running.http_port = gateway.ports
        stopped = asyncio.Event()
        stop["event"] = stopped
        started.set()
        await stopped.wait()
        await gateway.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(WAIT_SECONDS):
        raise AssertionError("the gateway did not start")
    try:
        yield running
    finally:
        assert running.loop is not None
        running.loop.call_soon_threadsafe(stop["event"].set)
        thread.join(WAIT_SECONDS)


class EchoUpstream:
    """An app behind the gateway (plain HTTP on loopback) that describes each request."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EchoUpstream:
        started = threading.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started.set()
            await self._stop.wait()
            server.close()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        started.wait(WAIT_SECONDS)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(WAIT_SECONDS)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: list[tuple[str, str]] = []
                for line in lines[1:]:
                    if line:
                        name, value = line.split(":", 1)
                        headers.append((name.strip(), value.strip()))
                lower = {n.lower(): v for n, v in headers}
                body = await _read_body(reader, lower)
                if target == "/ws" and lower.get("upgrade", "").lower() == "websocket":
                    accept = base64.b64encode(
                        hashlib.sha1(  # noqa: S324 - the WebSocket handshake's own digest
                            lower["sec-websocket-key"].encode()
                            + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                        ).digest()
                    )
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                    )
                    while data := await reader.read(65536):
                        writer.write(data)
                        await writer.drain()
                    writer.close()
                    return
                if target == "/stream":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for number in range(5):
                        chunk = f"part {number}\n".encode()
                        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.05)
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    continue
                payload = json.dumps(
                    {
                        "method": method,
                        "path": target,
                        "headers": headers,
                        "body_length": len(body),
                        "body_sha256": hashlib.sha256(body).hexdigest(),
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        finally:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return b""


# -- states ---------------------------------------------------------------------------------


def served(cert: IssuedCert, *, key: str | None = None) -> ServedCertificate:
    return ServedCertificate(
        id=key or f"{cert.certificate.serial_number:x}",
        chain_pem=cert.cert_pem() + cert.chain_pem(),
        key_pem=cert.key_pem(),
    )


def profile(
    name: str,
    *,
    ranges: tuple[str, ...] = (),
    cas: tuple[TestCA, ...] = (),
    crls: tuple[bytes, ...] = (),
) -> AccessProfile:
    """An access profile accepting ``cas``, with the CRLs (DER) ``crls``."""
    return AccessProfile(
        name=name,
        ip_ranges=tuple(ip_network(r) for r in ranges),
        client_cas=tuple(
            ClientCa(
                sha256_fingerprint=ca.certificate.fingerprint(hashes.SHA256()).hex(),
                subject=ca.certificate.subject.rfc4514_string(),
                certificate_pem=ca.cert_pem(),
            )
            for ca in cas
        ),
        accepted_issuers=frozenset(ca.certificate.subject.rfc4514_string() for ca in cas),
        crls=tuple(ClientCrl(id=hashlib.sha256(c).hexdigest(), der=c) for c in crls),
    )


def site(
    hostname: str,
    cert: IssuedCert | ServedCertificate,
    upstream: str,
    *,
    rules: dict[str, tuple[str, str | None]] | None = None,
    profiles: tuple[AccessProfile, ...] = (),
    deny: tuple[str, ...] = (),
) -> Site:
    return Site(
        hostname=hostname,
        kind="custom",
        app="shop",
        environment="production",
        environment_id="env-" + hostname,
        upstream=upstream,
        certificate=cert if isinstance(cert, ServedCertificate) else served(cert),
        path_rules=tuple(
            PathRule(prefix=prefix, rule=RuleKind(rule), profile=name)
            for prefix, (rule, name) in (rules or {}).items()
        ),
        profiles={p.name: p for p in profiles},
        deny_ranges=tuple(ip_network(r) for r in deny),
    )


def state_of(*sites: Site) -> DataPlaneState:
    parts = [repr(s) for s in sites]
    return DataPlaneState(sites={s.hostname: s for s in sites}, version=state_version(parts))


# -- clients --------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    peer_certificate: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def forwarded(self, name: str) -> list[str]:
        """Values of header ``name`` as the upstream received them."""
        return [v for n, v in self.json()["headers"] if n.lower() == name.lower()]


def client_context(trust: TestCA, tmp: Path, client: IssuedCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=trust.cert_pem().decode())
    if client is not None:
        path = tmp / f"client-{client.certificate.serial_number:x}.pem"
        path.write_bytes(client.cert_pem() + client.chain_pem() + client.key_pem())
        context.load_cert_chain(path)
    return context


def https_request(
    port: int,
    host: str,
    context: ssl.SSLContext,
    *,
    path: str = "/",
    method: str = "GET",
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=WAIT_SECONDS, source_address=(source, 0)
    )
    try:
        tls = context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    connection = http.client.HTTPConnection(host, port, timeout=WAIT_SECONDS)
    connection.sock = tls
    try:
        connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        data = response.read()
        return Answer(
            status=response.status,
            body=data,
            peer_certificate=tls.getpeercert(binary_form=True),
            headers={k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()
