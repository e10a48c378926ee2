"""Caller headers apps trust, and requests that loop back into the platform, replayed
against a real gateway.

Spoofed ``SSL-Client-Verify``, ``X-Forwarded-Host``, ``Forwarded``, ``True-Client-IP``
and their kin, in any spelling, once reached the app; now none does (the one list in
`certward.dataplane.caller_headers`). An upstream pointing back into the platform
turned one request into thousands; now a request carrying the platform's ``CDN-Loop``
mark is refused with 508, and every forwarded request carries it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from certward.dataplane.caller_headers import is_stripped
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

SPOOFED = [
    ("SSL-Client-Verify", "SUCCESS"),
    ("ssl_client_verify", "SUCCESS"),
    ("SSL-Client-S-DN", "CN=admin"),
    ("x_ssl_client_s_dn", "CN=admin"),
    ("X-SSL-Client-Cert", "-----BEGIN CERTIFICATE-----"),
    ("X-Client-Cert", "x"),
    ("Client-Cert", ":MIIB:"),
    ("X-Forwarded-Host", "admin.internal"),
    ("X-Forwarded-Port", "8700"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Server", "internal"),
    ("x_forwarded_for", "10.0.0.1"),
    ("Forwarded", "for=10.0.0.1;host=admin.internal"),
    ("X-Client-IP", "10.0.0.1"),
    ("True-Client-IP", "10.0.0.1"),
    ("X-Real-IP", "10.0.0.1"),
    ("X-Original-URL", "/admin"),
]


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.root(name="header CA")


@pytest.fixture
def gateway(ca: TestCA) -> Iterator[tuple[RunningGateway, EchoUpstream]]:
    with EchoUpstream() as upstream:
        state = state_of(site(SHOP, ca.issue_leaf(SHOP), upstream.url))
        with running_gateway(state) as running:
            yield running, upstream


@pytest.fixture
def trust(ca: TestCA, tmp_path: Path) -> ssl.SSLContext:
    return client_context(ca, tmp_path)


def test_spoofed_caller_headers_never_reach_the_app(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, _ = gateway
    answer = raw_request(running.https_port, SHOP, trust, "GET /x HTTP/1.1", SPOOFED)
    assert answer.status == 200
    received = answer.json()["headers"]
    own = {"X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto", "SSL-Protocol", "SSL-Cipher"}
    leaked = [(n, v) for n, v in received if is_stripped(n) and n not in own]
    assert not leaked, leaked
    assert answer.forwarded("X-Real-IP") == ["127.0.0.1"]
    assert answer.forwarded("X-Forwarded-For") == ["127.0.0.1"]
    values = {v for _, v in received}
    assert not values & {"SUCCESS", "CN=admin", "admin.internal", "10.0.0.1", "/admin"}
    assert answer.forwarded("SSL-Client-S-DN") == []  # no client certificate at all


def test_a_request_carrying_the_hop_mark_is_refused(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, upstream = gateway
    port = running.https_port
    before = upstream.requests
    for headers in (
        [("CDN-Loop", "certward")],
        [("cdn-loop", "other-cdn, CertWard; v=1")],
        [("CDN-Loop", "other-cdn"), ("CDN-Loop", "certward")],
    ):
        answer = raw_request(port, SHOP, trust, "GET / HTTP/1.1", headers)
        assert answer.status == 508, headers
        assert b"508 Loop Detected" in answer.body
    assert upstream.requests == before


def test_every_forwarded_request_carries_the_hop_mark(
    gateway: tuple[RunningGateway, EchoUpstream], trust: ssl.SSLContext
) -> None:
    running, _ = gateway
    port = running.https_port
    plain = raw_request(port, SHOP, trust, "GET / HTTP/1.1")
    assert plain.forwarded("CDN-Loop") == ["certward"]
    chained = raw_request(
        port,
        SHOP,
        trust,
        "GET / HTTP/1.1",
        [("CDN-Loop", "fastly"), ("CDN-Loop", "cloudflare; v=2")],
    )
    assert chained.status == 200
    assert chained.forwarded("CDN-Loop") == ["fastly, cloudflare; v=2, certward"]
    # What the upstream sent back, sent in again, is refused: no loop survives one turn.
    again = raw_request(
        port, SHOP, trust, "GET / HTTP/1.1", [("CDN-Loop", chained.forwarded("CDN-Loop")[0])]
    )
    assert again.status == 508
