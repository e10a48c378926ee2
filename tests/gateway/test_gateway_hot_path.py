"""The gateway's request path as a proxy: pooled upstream connections, the framing of
answers (HEAD, bodies that end with the connection, HTTP/1.0 clients), an upstream
that drops an idle connection, and TLS contexts shared and evicted."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from certward.dataplane.tls_contexts import ContextCache
from tests.gateway.harness import (
    EchoUpstream,
    client_context,
    https_request,
    running_gateway,
    served,
    site,
    state_of,
)
from tests.material.factory import TestCA
from tests.security.gateway_clients import parse_answer, tls_socket

SHOP = "shop.test"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.root(name="hot path CA")


@pytest.fixture
def trust(ca: TestCA, tmp_path: Path) -> ssl.SSLContext:
    return client_context(ca, tmp_path)


@contextmanager
def raw_upstream(answer: bytes, *, close_after: float | None = None) -> Iterator[str]:
    """An upstream that answers every request head with ``answer``; it closes the
    connection after each answer when ``close_after`` is None, else that many seconds
    later (an idle keep-alive connection dropped)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                data += chunk
            connection.sendall(answer)
            if close_after is not None:
                time.sleep(close_after)

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def read_all(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except (ssl.SSLError, ConnectionError):
            return data
        if not chunk:
            return data
        data += chunk


def test_client_connections_share_kept_alive_upstream_connections(
    ca: TestCA, trust: ssl.SSLContext
) -> None:
    with (
        EchoUpstream() as upstream,
        running_gateway(state_of(site(SHOP, ca.issue_leaf(SHOP), upstream.url))) as running,
    ):
        for number in range(4):  # a new client connection each time
            answer = https_request(running.https_port, SHOP, trust, path=f"/n{number}")
            assert answer.status == 200
            assert answer.json()["path"] == f"/n{number}"
        assert upstream.requests == 4
        assert upstream.connections == 1


def test_head_answers_keep_their_length_and_no_body(ca: TestCA, trust: ssl.SSLContext) -> None:
    with (
        EchoUpstream() as upstream,
        running_gateway(state_of(site(SHOP, ca.issue_leaf(SHOP), upstream.url))) as running,
    ):
        connection = http.client.HTTPConnection(SHOP, running.https_port, timeout=10)
        connection.sock = tls_socket(running.https_port, SHOP, trust)
        connection.request("HEAD", "/h", headers={"Host": SHOP})
        head = connection.getresponse()
        assert head.status == 200
        assert int(head.getheader("Content-Length") or 0) > 0
        assert head.read() == b""
        connection.request("GET", "/after", headers={"Host": SHOP})  # the same connection
        after = connection.getresponse()
        assert b'"path": "/after"' in after.read()
        connection.close()


def test_a_body_that_ends_with_the_upstream_connection(ca: TestCA, trust: ssl.SSLContext) -> None:
    body = b"until the end " * 1000
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body
    with (
        raw_upstream(answer) as url,
        running_gateway(state_of(site(SHOP, ca.issue_leaf(SHOP), url))) as running,
    ):
        # an HTTP/1.1 client gets it chunked, on a connection that stays usable
        connection = http.client.HTTPConnection(SHOP, running.https_port, timeout=10)
        connection.sock = tls_socket(running.https_port, SHOP, trust)
        for _ in range(2):
            connection.request("GET", "/", headers={"Host": SHOP})
            response = connection.getresponse()
            assert response.getheader("Transfer-Encoding") == "chunked"
            assert response.read() == body
        connection.close()
        # an HTTP/1.0 client gets the bytes as they are, and the connection ends
        with tls_socket(running.https_port, SHOP, trust) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\nHost: shop.test\r\n\r\n")
            received = parse_answer(read_all(tls))
        assert received.status == 200
        assert ("Connection", "close") in received.headers
        assert received.body == body


def test_an_upstream_that_drops_an_idle_connection(ca: TestCA, trust: ssl.SSLContext) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with (
        raw_upstream(answer, close_after=0.1) as url,
        running_gateway(state_of(site(SHOP, ca.issue_leaf(SHOP), url))) as running,
    ):
        for _ in range(3):
            assert https_request(running.https_port, SHOP, trust).body == b"ok"
            time.sleep(0.3)  # the upstream has closed the kept connection by now


def test_hostnames_of_one_certificate_share_a_context(ca: TestCA) -> None:
    leaf = ca.issue_leaf("a.shop.test", sans=["a.shop.test", "b.shop.test"])
    certificate = served(leaf)
    first = site("a.shop.test", certificate, "http://127.0.0.1:9")
    second = site("b.shop.test", certificate, "http://127.0.0.1:9")
    other = site("c.shop.test", ca.issue_leaf("c.shop.test"), "http://127.0.0.1:9")
    cache = ContextCache(capacity=4)
    assert cache.get(first)[0] is cache.get(second)[0]
    assert cache.get(other)[0] is not cache.get(first)[0]
    assert len(cache) == 2
    cache.retain(state_of(second, other))  # a.shop.test gone: b.shop.test still uses it
    assert len(cache) == 2
    cache.retain(state_of(other))
    assert len(cache) == 1


def test_an_evicted_context_serves_its_hostname_at_the_next_handshake(
    ca: TestCA, trust: ssl.SSLContext
) -> None:
    names = [f"e{n}.shop.test" for n in range(3)]
    leaves = {name: ca.issue_leaf(name) for name in names}
    with (
        EchoUpstream() as upstream,
        running_gateway(
            state_of(*(site(name, leaves[name], upstream.url) for name in names))
        ) as running,
    ):
        assert running.gateway is not None
        running.gateway.contexts.capacity = 1
        for name in names * 2:  # every handshake evicts the context the last one built
            answer = https_request(running.https_port, name, trust)
            assert answer.status == 200
            assert answer.peer_certificate == leaves[name].cert_der()
        assert len(running.gateway.contexts) == 1
