"""Request targets that once slipped past path rules on the gateway, replayed.

``GET https://shop/admin/users HTTP/1.1`` with a deny-all rule on ``/admin`` was served
(200): the gateway decided on ``/https:/shop/admin/users``. The implicit ``-doc`` deny
fell the same way, and so did a fragment (``/api-doc#x``). A prefix written
percent-encoded (``/files/a%20b``) never matched the decoded request path, so its
deny rule failed open. Now: absolute-form is translated to origin-form once its
authority is checked against ``Host`` and SNI (400 otherwise), asterisk-form is refused
except ``OPTIONS *``, CONNECT is refused, and every decision is made on nginx's
normalised path; prefixes are stored decoded.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certward.dataplane.http_request import ConnectionLimits
from certward.dataplane.request_target import canonical_prefix
from tests.gateway.harness import (
    EchoUpstream,
    RunningGateway,
    client_context,
    running_gateway,
    site,
    state_of,
)
from tests.material.factory import TestCA
from tests.security.gateway_clients import raw_request

SHOP = "shop.test"
OTHER = "other.test"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.root(name="request target CA")


@pytest.fixture
def gateway(ca: TestCA) -> Iterator[tuple[RunningGateway, EchoUpstream]]:
    with EchoUpstream() as upstream:
        rules = {
            "/admin": ("deny-all", None),
            canonical_prefix("/files/a%20b"): ("deny-all", None),
        }
        state = state_of(
            site(SHOP, ca.issue_leaf(SHOP), upstream.url, rules=rules),
            site(OTHER, ca.issue_leaf(OTHER), upstream.url),
        )
        with running_gateway(state) as running:
            yield running, upstream


@pytest.fixture
def trust(ca: TestCA, tmp_path: Path) -> ssl.SSLContext:
    return client_context(ca, tmp_path)


def test_absolute_form_is_decided_on_its_path(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, _ = gateway
    port = running.https_port
    for line in (
        f"GET https://{SHOP}/admin/users HTTP/1.1",
        "GET HTTPS://Shop.Test:443/admin HTTP/1.1",
        f"GET https://{SHOP}/x/../admin/users HTTP/1.1",
        f"GET https://{SHOP}/api-doc/ HTTP/1.1",
        f"GET http://{SHOP}/api%2Ddoc HTTP/1.1",
    ):
        assert raw_request(port, SHOP, trust, line).status == 403, line
    served = raw_request(port, SHOP, trust, f"GET https://{SHOP}/open?q=1 HTTP/1.1")
    assert served.status == 200
    assert served.json()["path"] == "/open?q=1"  # origin-form upstream


def test_absolute_form_naming_another_host_is_refused(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, upstream = gateway
    port = running.https_port
    before = upstream.requests
    # the authority differs from Host and SNI; from Host only; from SNI only
    assert raw_request(port, SHOP, trust, f"GET https://{OTHER}/admin HTTP/1.1").status == 400
    assert (
        raw_request(port, SHOP, trust, f"GET https://{SHOP}/x HTTP/1.1", host=OTHER).status == 400
    )
    assert (
        raw_request(port, SHOP, trust, f"GET https://{OTHER}/x HTTP/1.1", host=OTHER).status == 400
    )
    assert raw_request(port, SHOP, trust, "GET https://user@shop.test/x HTTP/1.1").status == 400
    assert upstream.requests == before


def test_asterisk_and_authority_forms(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, upstream = gateway
    port = running.https_port
    before = upstream.requests
    for line in ("GET * HTTP/1.1", "POST * HTTP/1.1", f"CONNECT {SHOP}:443 HTTP/1.1"):
        assert raw_request(port, SHOP, trust, line).status == 400, line
    options = raw_request(port, SHOP, trust, "OPTIONS * HTTP/1.1")
    assert options.status == 200
    assert ("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS") in options.headers
    assert upstream.requests == before  # none of them reached the app


def test_paths_nginx_refuses_and_fragments(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, _ = gateway
    port = running.https_port
    for path in ("/../admin", "/%2e%2e/admin", "/a%00", "/a%zz"):
        assert raw_request(port, SHOP, trust, f"GET {path} HTTP/1.1").status == 400, path
    assert raw_request(port, SHOP, trust, "GET /api-doc#x HTTP/1.1").status == 403
    assert raw_request(port, SHOP, trust, "GET /admin#x HTTP/1.1").status == 403


def test_a_percent_encoded_prefix_denies_what_it_names(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, _ = gateway
    port = running.https_port
    assert raw_request(port, SHOP, trust, "GET /files/a%20b HTTP/1.1").status == 403
    assert raw_request(port, SHOP, trust, "GET /files/a%20b/c.txt HTTP/1.1").status == 403
    assert raw_request(port, SHOP, trust, "GET /files//a%20b/ HTTP/1.1").status == 403
    assert raw_request(port, SHOP, trust, "GET /files/a%2520b HTTP/1.1").status == 200
    assert raw_request(port, SHOP, trust, "GET /files/ab HTTP/1.1").status == 200


def _plain(port: int, request_line: str, host: str) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{request_line}\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split(" ")[1]), headers, body


def test_the_plain_port_decides_on_the_translated_normalised_path(
    gateway: tuple[RunningGateway, EchoUpstream],
) -> None:
    running, _ = gateway
    running.source.challenges["tok-1"] = "tok-1.thumbprint"
    port = running.http_port
    for line in (
        "GET /.well-known/acme-challenge/tok-1 HTTP/1.1",
        "GET /.well-known/./acme-challenge//tok-1 HTTP/1.1",
        "GET /.well-known/acme-challenge/tok%2D1 HTTP/1.1",
        f"GET http://{SHOP}/.well-known/acme-challenge/tok-1 HTTP/1.1",
    ):
        status, _, body = _plain(port, line, SHOP)
        assert (status, body) == (200, b"tok-1.thumbprint"), line
    assert _plain(port, "GET /.well-known/acme-challenge/tok-1%0A HTTP/1.1", SHOP)[0] == 404
    assert _plain(port, f"GET http://{OTHER}/x HTTP/1.1", SHOP)[0] == 400
    assert _plain(port, "GET /../x HTTP/1.1", SHOP)[0] == 400
    assert _plain(port, "OPTIONS * HTTP/1.1", SHOP)[0] == 400
    status, headers, _ = _plain(port, f"GET http://{SHOP}/a?b=1 HTTP/1.1", SHOP)
    location = f"https://{SHOP}:{running.https_port}/a?b=1"  # a non-default port is kept
    assert (status, headers["location"]) == (301, location)


@pytest.mark.slow
def test_the_plain_port_cuts_a_slow_client() -> None:
    with (
        EchoUpstream() as upstream,
        running_gateway(
            state_of(site(SHOP, TestCA.root().issue_leaf(SHOP), upstream.url)),
            limits=ConnectionLimits(header_seconds=1.0),
        ) as running,
        socket.create_connection(("127.0.0.1", running.http_port), timeout=10) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Slow: ")
        start = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.8 <= time.monotonic() - start <= 2.5
