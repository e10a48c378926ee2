"""Request smuggling and malformed heads, sent raw to the gateway over TLS.

Whatever the gateway cannot frame exactly one way — two ``Content-Length`` headers,
``Content-Length`` with ``Transfer-Encoding``, a coding other than ``chunked``,
obs-fold, bare LF line ends, a space before the colon, a malformed chunk size, a
second ``Host``, none on HTTP/1.1, a body on an ``Upgrade`` request, a head over
64 KB — is answered 400 and the connection closed, and the app sees nothing: no
request smuggled behind another, none forwarded at all.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.harness import (
    EchoUpstream,
    RunningGateway,
    client_context,
    running_gateway,
    site,
    state_of,
)
from tests.material.factory import TestCA
from tests.security.gateway_clients import parse_answer, tls_socket

SHOP = "shop.test"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.root(name="smuggling CA")


@pytest.fixture(scope="module")
def gateway(ca: TestCA) -> Iterator[tuple[RunningGateway, EchoUpstream]]:
    with EchoUpstream() as upstream:
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), upstream.url))
        with running_gateway(state) as running:
            yield running, upstream


@pytest.fixture(scope="module")
def trust(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return client_context(ca, Path(tmp_path_factory.mktemp("trust")))


def exchange(port: int, trust: ssl.SSLContext, data: bytes) -> bytes:
    """Send ``data`` raw and read until the gateway closes the connection."""
    with tls_socket(port, SHOP, trust) as tls:
        tls.sendall(data)
        received = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            received += chunk
    return received


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


MALFORMED = {
    "two Content-Length": head(
        "POST /x HTTP/1.1", "Host: shop.test", "Content-Length: 0", "Content-Length: 45"
    )
    + SMUGGLED,
    "Content-Length and Transfer-Encoding": head(
        "POST /x HTTP/1.1", "Host: shop.test", "Content-Length: 4", "Transfer-Encoding: chunked"
    )
    + b"0\r\n\r\n"
    + SMUGGLED,
    "a coding other than chunked": head(
        "POST /x HTTP/1.1", "Host: shop.test", "Transfer-Encoding: gzip, chunked"
    )
    + b"0\r\n\r\n",
    "Transfer-Encoding twice": head(
        "POST /x HTTP/1.1",
        "Host: shop.test",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: identity",
    )
    + b"0\r\n\r\n",
    "obs-fold": head("GET /x HTTP/1.1", "Host: shop.test", "X-A: b", " Transfer-Encoding: x"),
    "a space before the colon": head(
        "POST /x HTTP/1.1", "Host: shop.test", "Transfer-Encoding : chunked"
    )
    + b"0\r\n\r\n",
    "bare LF line ends": b"GET /x HTTP/1.1\nHost: shop.test\n\n",
    "a malformed chunk size": head(
        "POST /x HTTP/1.1", "Host: shop.test", "Transfer-Encoding: chunked"
    )
    + b"0x2d\r\n"
    + SMUGGLED,
    "a second Host": head("GET /x HTTP/1.1", "Host: shop.test", "Host: other.test"),
    "no Host on HTTP/1.1": head("GET /x HTTP/1.1"),
    "HTTP/2.0 in the request line": head("GET /x HTTP/2.0", "Host: shop.test"),
    "a body on an Upgrade request": head(
        "POST /x HTTP/1.1",
        "Host: shop.test",
        "Connection: Upgrade",
        "Upgrade: h2c",
        f"Content-Length: {len(SMUGGLED)}",
    )
    + SMUGGLED,
    "a head over 64 KB": head(
        "GET /x HTTP/1.1", "Host: shop.test", *(f"X-Pad-{n}: {'a' * 1000}" for n in range(70))
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_request_framed_more_than_one_way_is_refused_and_nothing_is_forwarded(
    case: str, gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, upstream = gateway
    before = upstream.requests
    received = exchange(running.https_port, trust, MALFORMED[case])
    assert parse_answer(received).status == 400, case
    assert received.count(b"HTTP/1.1 ") == 1, case  # the connection ended after the 400
    assert upstream.requests == before, case


def test_a_body_that_looks_like_a_request_is_forwarded_as_a_body(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, upstream = gateway
    before = upstream.requests
    received = exchange(
        running.https_port,
        trust,
        head("POST /x HTTP/1.1", "Host: shop.test", f"Content-Length: {len(SMUGGLED)}")
        + SMUGGLED
        + head("GET /last HTTP/1.1", "Host: shop.test", "Connection: close"),
    )
    assert received.count(b"HTTP/1.1 200 ") == 2
    assert b"/smuggled" not in received
    assert f'"body_length": {len(SMUGGLED)}'.encode() in received
    assert upstream.requests == before + 2


def test_pipelined_requests_are_answered_in_order(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, _ = gateway
    paths = ["/one", "/two?x=1", "/three"]
    data = b"".join(head(f"GET {path} HTTP/1.1", "Host: shop.test") for path in paths)
    received = exchange(
        running.https_port, trust, data + head("GET /four HTTP/1.1", "Host: x", "Host: y")
    )
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [answer.split(b" ", 1)[0] for answer in answers] == [b"200", b"200", b"200", b"400"]
    for path, answer in zip(paths, answers, strict=False):
        assert f'"path": "{path}"'.encode() in answer
