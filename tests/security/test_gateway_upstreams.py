"""Where and how the gateway connects to apps, and how long a client may take, replayed.

* An ``https://`` upstream was proxied in cleartext on port 80. Now it is TLS with
  verification and SNI: a backend whose certificate the gateway does not trust gets
  502 (never a cleartext retry), one issued by a CA of ``CERTWARD_UPSTREAM_CA_BUNDLE``
  is served, and it sees the upstream's host name as SNI.
* An upstream naming loopback — by address, or by a name that resolves there — was
  reached. Now the egress policy is checked at connect time on every address: 502 and
  a log line naming the reason.
* A client sending its request headers a byte at a time held its connection open
  forever; now the head deadline cuts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
import time
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from certward.dataplane.http_request import ConnectionLimits
from certward.dataplane.upstream import upstream_tls_context
from certward.egress import EgressPolicy, Listener
from tests.gateway.harness import EchoUpstream, client_context, running_gateway, site, state_of
from tests.material.factory import IssuedCert, TestCA
from tests.security.gateway_clients import raw_request, tls_socket

SHOP = "shop.test"
WAIT_SECONDS = 10.0


def loopback_name() -> str:
    """A name other than ``localhost`` that resolves to loopback here (the machine's own)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip(f"the host name {name!r} does not resolve")
    if not addresses or not all(ip_address(a).is_loopback for a in addresses):
        pytest.skip(f"the host name {name!r} does not resolve to loopback only")
    return name


class TlsBackend:
    """An HTTPS app on loopback that answers JSON naming the SNI it was offered."""

    def __init__(self, certificate: IssuedCert, directory: Path) -> None:
        path = directory / "backend.pem"
        path.write_bytes(certificate.cert_pem() + certificate.chain_pem() + certificate.key_pem())
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(path)
        self.server_names: list[str | None] = []
        self.context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.port = 0
        self.plain_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TlsBackend:
        started = threading.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.context)
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
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        body = json.dumps(
            {
                "tls": writer.get_extra_info("ssl_object") is not None,
                "sni": self.server_names[-1] if self.server_names else None,
                "request_line": head.split(b"\r\n", 1)[0].decode("latin-1"),
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.root(name="upstream test CA")


@pytest.fixture
def trust(ca: TestCA, tmp_path: Path) -> ssl.SSLContext:
    return client_context(ca, tmp_path)


def test_an_https_upstream_is_verified_tls_with_sni(
    ca: TestCA, trust: ssl.SSLContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = loopback_name()
    backend_ca = TestCA.root(name="backend private CA")
    bundle = tmp_path / "upstream-ca.pem"
    bundle.write_bytes(backend_ca.cert_pem())
    with TlsBackend(backend_ca.issue_leaf(name), tmp_path) as backend:
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), f"https://{name}:{backend.port}"))
        # Public roots only: the backend's private CA is not trusted.
        with caplog.at_level(logging.WARNING, "certward.gateway"), running_gateway(state) as gw:
            refused = raw_request(gw.https_port, SHOP, trust, "GET /x HTTP/1.1")
        assert refused.status == 502
        assert "certificate verify failed" in caplog.text
        # Trusted through the operator's upstream CA bundle.
        tls = upstream_tls_context(ca_bundle=bundle)
        with running_gateway(state, upstream_tls=tls) as gw:
            served = raw_request(gw.https_port, SHOP, trust, "GET /x?y=1 HTTP/1.1")
        assert served.status == 200, served.body
        assert served.json() == {"tls": True, "sni": name, "request_line": "GET /x?y=1 HTTP/1.1"}


def test_an_https_upstream_with_a_certificate_for_another_name_is_refused(
    ca: TestCA, trust: ssl.SSLContext, tmp_path: Path
) -> None:
    name = loopback_name()
    backend_ca = TestCA.root(name="backend private CA")
    bundle = tmp_path / "upstream-ca.pem"
    bundle.write_bytes(backend_ca.cert_pem())
    with TlsBackend(backend_ca.issue_leaf("someone-else.test"), tmp_path) as backend:
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), f"https://{name}:{backend.port}"))
        with running_gateway(state, upstream_tls=upstream_tls_context(ca_bundle=bundle)) as gw:
            assert raw_request(gw.https_port, SHOP, trust, "GET / HTTP/1.1").status == 502


def test_loopback_upstreams_are_refused_at_connect_time_by_default(
    ca: TestCA, trust: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    name = loopback_name()
    with EchoUpstream() as upstream:
        for url in (upstream.url, f"http://{name}:{upstream.port}"):
            state = state_of(site(SHOP, ca.issue_leaf(SHOP), url))
            caplog.clear()
            with (
                caplog.at_level(logging.WARNING, "certward.gateway"),
                running_gateway(state, egress=EgressPolicy()) as gw,
            ):
                answer = raw_request(gw.https_port, SHOP, trust, "GET / HTTP/1.1")
            assert answer.status == 502, url
            assert "loopback" in caplog.text, caplog.text
        assert upstream.requests == 0


def test_credentials_in_an_upstream_url_are_refused_and_never_logged(
    ca: TestCA, trust: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    with EchoUpstream() as upstream:
        url = f"http://svc:hunter2-secret@127.0.0.1:{upstream.port}"
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), url))
        with caplog.at_level(logging.DEBUG, "certward"), running_gateway(state) as gw:
            assert raw_request(gw.https_port, SHOP, trust, "GET / HTTP/1.1").status == 502
        assert "user name or password" in caplog.text
        assert "hunter2" not in caplog.text
        assert upstream.requests == 0


def test_the_platform_own_listeners_are_refused(
    ca: TestCA, trust: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    with EchoUpstream() as upstream:
        # Even where the operator opens loopback, the platform's own ports stay closed.
        policy = EgressPolicy(
            allowed_networks=(ip_network("127.0.0.0/8"),),
            platform_listeners=(Listener(host="0.0.0.0", port=upstream.port),),  # noqa: S104
        )
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), upstream.url))
        with (
            caplog.at_level(logging.WARNING, "certward.gateway"),
            running_gateway(state, egress=policy) as gw,
        ):
            assert raw_request(gw.https_port, SHOP, trust, "GET / HTTP/1.1").status == 502
        assert "where the platform itself listens" in caplog.text
        assert upstream.requests == 0


@pytest.mark.slow
def test_a_client_sending_its_headers_slowly_is_cut_off(ca: TestCA, trust: ssl.SSLContext) -> None:
    limits = ConnectionLimits(header_seconds=1.5, idle_seconds=3.0)
    with EchoUpstream() as upstream:
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), upstream.url))
        with running_gateway(state, limits=limits) as gw:
            # The first request: a byte every 0.2 s, well inside the old per-read limit.
            with tls_socket(gw.https_port, SHOP, trust) as slow:
                elapsed = _trickle_until_closed(slow, f"GET / HTTP/1.1\r\nHost: {SHOP}\r\nX-A: ")
            assert 1.2 <= elapsed <= 1.5 + 1.0, elapsed
            # Others are served meanwhile and after.
            assert raw_request(gw.https_port, SHOP, trust, "GET / HTTP/1.1").status == 200
            # A later request on a kept-alive connection gets the deadline from its first byte.
            with tls_socket(gw.https_port, SHOP, trust) as kept:
                kept.sendall(f"GET / HTTP/1.1\r\nHost: {SHOP}\r\n\r\n".encode())
                _read_one_response(kept)
                time.sleep(1.0)  # idle, within the idle limit
                elapsed = _trickle_until_closed(kept, f"GET / HTTP/1.1\r\nHost: {SHOP}\r\nX-B: ")
            assert 1.2 <= elapsed <= 1.5 + 1.0, elapsed
            # An idle keep-alive connection is closed after the idle limit.
            with tls_socket(gw.https_port, SHOP, trust) as idle:
                idle.sendall(f"GET / HTTP/1.1\r\nHost: {SHOP}\r\n\r\n".encode())
                _read_one_response(idle)
                start = time.monotonic()
                idle.settimeout(WAIT_SECONDS)
                assert _recv_quietly(idle) == b""
                assert 2.5 <= time.monotonic() - start <= 3.0 + 1.5


def _trickle_until_closed(tls: ssl.SSLSocket, head: str) -> float:
    """Send ``head`` then one byte every 0.2 s; seconds until the gateway closed."""
    start = time.monotonic()
    tls.settimeout(0.2)
    data = head.encode() + b"x" * 200
    for byte in data:
        try:
            tls.sendall(bytes([byte]))
        except (OSError, ssl.SSLError):
            return time.monotonic() - start
        try:
            if tls.recv(1) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError):
            return time.monotonic() - start
    raise AssertionError("the gateway never closed the slow connection")


def _read_one_response(tls: ssl.SSLSocket) -> None:
    tls.settimeout(WAIT_SECONDS)
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        body += tls.recv(65536)


def _recv_quietly(tls: ssl.SSLSocket) -> bytes:
    try:
        return tls.recv(1)
    except (OSError, ssl.SSLError):
        return b""
