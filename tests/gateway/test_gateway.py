"""The embedded gateway over real TLS on loopback: SNI, per-host client-certificate
requests, access decisions, forwarded headers, streaming, WebSocket and live reloads."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509

from certward.dataplane.tls_contexts import ContextCache
from tests.gateway.harness import (
    EchoUpstream,
    client_context,
    https_request,
    profile,
    running_gateway,
    served,
    site,
    state_of,
)
from tests.material.factory import TestCA
from tests.material.tools import require_tool


@pytest.fixture(scope="module")
def server_ca() -> TestCA:
    return TestCA.root(name="gateway test server root")


@pytest.fixture(scope="module")
def client_root() -> TestCA:
    return TestCA.root(name="partner client root")


@pytest.fixture
def upstream() -> EchoUpstream:
    with EchoUpstream() as echo:
        yield echo  # type: ignore[misc]


def test_each_hostname_gets_its_own_certificate_and_unknown_names_are_refused(
    server_ca: TestCA, upstream: EchoUpstream, tmp_path: Path
) -> None:
    certs = {f"h{i}.shop.test": server_ca.issue_leaf(f"h{i}.shop.test") for i in range(25)}
    state = state_of(*(site(h, c, upstream.url) for h, c in certs.items()))
    with running_gateway(state) as gw:
        context = client_context(server_ca, tmp_path)
        for host in ("h0.shop.test", "h13.shop.test", "h24.shop.test"):
            answer = https_request(gw.https_port, host, context)
            assert answer.status == 200
            served_cert = x509.load_der_x509_certificate(answer.peer_certificate or b"")
            assert served_cert == certs[host].certificate
        with pytest.raises(ssl.SSLError):
            https_request(gw.https_port, "unknown.shop.test", context)
        plain = ssl.create_default_context()
        plain.check_hostname = False
        plain.verify_mode = ssl.CERT_NONE
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", gw.https_port), timeout=5) as sock,
        ):
            plain.wrap_socket(sock)  # no SNI at all


def test_client_certificates_are_requested_only_where_rules_need_them(
    server_ca: TestCA, client_root: TestCA, upstream: EchoUpstream
) -> None:
    openssl = require_tool("openssl")
    office = profile("office", cas=(client_root,))
    state = state_of(
        site("open.shop.test", server_ca.issue_leaf("open.shop.test"), upstream.url),
        site(
            "mtls.shop.test",
            server_ca.issue_leaf("mtls.shop.test"),
            upstream.url,
            rules={"/": ("profile", "office")},
            profiles=(office,),
        ),
    )
    with running_gateway(state) as gw:
        for version in ("-tls1_2", "-tls1_3"):
            outputs = {
                host: subprocess.run(
                    [
                        openssl,
                        "s_client",
                        "-connect",
                        f"127.0.0.1:{gw.https_port}",
                        "-servername",
                        host,
                        version,
                    ],
                    input=b"",
                    capture_output=True,
                    timeout=20,
                    check=False,
                ).stdout.decode()
                for host in ("open.shop.test", "mtls.shop.test")
            }
            assert "No client certificate CA names sent" in outputs["open.shop.test"]
            mtls = outputs["mtls.shop.test"]
            assert "Acceptable client certificate CA names" in mtls
            assert "CN = partner client root" in mtls


def test_profile_paths_admit_by_address_or_verified_certificate(
    server_ca: TestCA, client_root: TestCA, upstream: EchoUpstream, tmp_path: Path
) -> None:
    other_root = TestCA.root(name="unselected root")
    office = profile("office", ranges=("127.0.0.2/32",), cas=(client_root,))
    state = state_of(
        site(
            "mtls.shop.test",
            server_ca.issue_leaf("mtls.shop.test"),
            upstream.url,
            rules={
                "/": ("profile", "office"),
                "/public/": ("allow-all", None),
                "/public/secret": ("deny-all", None),
                "/public/secret/inner": ("inherit", None),
            },
            profiles=(office,),
            deny=("127.0.0.9/32",),
        ),
    )
    no_san = client_root.issue_leaf("alice", eku=("clientAuth",), no_san=True)
    expired = client_root.issue_leaf(
        "old",
        eku=("clientAuth",),
        not_before=no_san.certificate.not_valid_before_utc.replace(year=2001),
        not_after=no_san.certificate.not_valid_before_utc.replace(year=2002),
    )
    server_only = client_root.issue_leaf("server-eku", eku=("serverAuth",))
    stranger = other_root.issue_leaf("mallory", eku=("clientAuth",))
    port_host = "mtls.shop.test"

    def get(path: str = "/", *, client=None, source: str = "127.0.0.1") -> int:  # type: ignore[no-untyped-def]
        context = client_context(server_ca, tmp_path, client)
        return https_request(gw.https_port, port_host, context, path=path, source=source).status

    with running_gateway(state) as gw:
        assert get() == 403  # no certificate, address not in range
        assert get(source="127.0.0.2") == 200  # address in range
        assert get(client=no_san) == 200  # verified, no SAN is fine
        assert get(client=expired) == 403
        assert get(client=server_only) == 403  # no clientAuth EKU
        assert get(client=stranger) == 403  # from a CA the profile does not accept
        assert get("/public/page") == 200
        assert get("/public/secret") == 403
        assert get("/public/secret/inner/x") == 403  # inherit takes the deny
        assert get("/api-doc/") == 403  # -doc default
        assert get("/api%2Ddoc/") == 403  # decided on the decoded, normalized path
        assert get("/public/../api-doc") == 403
        assert get("//public//page") == 200
        assert get("/api-doc/", source="127.0.0.2") == 403
        assert get(source="127.0.0.9", client=no_san) == 403  # deny ranges come first


def test_forwarded_headers_are_the_gateways_own(
    server_ca: TestCA, client_root: TestCA, upstream: EchoUpstream, tmp_path: Path
) -> None:
    office = profile("office", cas=(client_root,))
    client = client_root.issue_leaf("alice", eku=("clientAuth",))
    state = state_of(
        site(
            "mtls.shop.test",
            server_ca.issue_leaf("mtls.shop.test"),
            upstream.url,
            rules={"/": ("profile", "office")},
            profiles=(office,),
        ),
        site("open.shop.test", server_ca.issue_leaf("open.shop.test"), upstream.url),
    )
    spoofed = {
        "SSL-Client-S-DN": "CN=admin",
        "ssl_client_i_dn": "CN=evil",
        "X-Forwarded-For": "10.9.9.9",
        "X-Real-IP": "10.9.9.9",
        "SSL-Client-Fingerprint": "00",
        "X-Forwarded-Proto": "http",
    }
    with running_gateway(state) as gw:
        answer = https_request(
            gw.https_port,
            "mtls.shop.test",
            client_context(server_ca, tmp_path, client),
            headers=spoofed,
            source="127.0.0.3",
        )
        assert answer.status == 200
        assert answer.forwarded("X-Forwarded-For") == ["127.0.0.3"]
        assert answer.forwarded("X-Real-IP") == ["127.0.0.3"]
        assert answer.forwarded("X-Forwarded-Proto") == ["https"]
        assert answer.forwarded("SSL-Client-S-DN") == ["CN=alice"]
        assert answer.forwarded("SSL-Client-I-DN") == ["CN=partner client root"]
        assert answer.forwarded("ssl_client_i_dn") == []
        fingerprint = client.certificate.fingerprint(
            __import__("cryptography").hazmat.primitives.hashes.SHA1()
        ).hex()
        assert answer.forwarded("SSL-Client-Fingerprint") == [fingerprint]
        serial = f"{client.certificate.serial_number:X}"
        assert answer.forwarded("SSL-Client-Serial") == [
            serial.zfill(len(serial) + len(serial) % 2)
        ]
        assert answer.forwarded("SSL-Protocol") == ["TLSv1.3"]
        assert answer.forwarded("SSL-Cipher")[0].startswith("TLS_")
        open_answer = https_request(
            gw.https_port, "open.shop.test", client_context(server_ca, tmp_path), headers=spoofed
        )
        assert open_answer.forwarded("SSL-Client-S-DN") == []
        assert open_answer.forwarded("X-Forwarded-For") == ["127.0.0.1"]


def test_bodies_stream_both_ways_and_keep_alive_reuses_the_connection(
    server_ca: TestCA, upstream: EchoUpstream, tmp_path: Path
) -> None:

    state = state_of(site("open.shop.test", server_ca.issue_leaf("open.shop.test"), upstream.url))
    with running_gateway(state) as gw:
        context = client_context(server_ca, tmp_path)
        sock = socket.create_connection(("127.0.0.1", gw.https_port), timeout=10)
        connection = http.client.HTTPConnection("open.shop.test", gw.https_port, timeout=10)
        connection.sock = context.wrap_socket(sock, server_hostname="open.shop.test")
        body = bytes(range(256)) * 4096  # 1 MiB
        connection.request("POST", "/upload", body=body)
        answer = connection.getresponse()
        described = json.loads(answer.read())
        assert described["body_length"] == len(body)
        assert described["body_sha256"] == hashlib.sha256(body).hexdigest()

        def chunks():  # type: ignore[no-untyped-def]
            yield b"a" * 1000
            yield b"b" * 1000

        connection.request("PUT", "/chunked", body=chunks(), encode_chunked=True)
        described = json.loads(connection.getresponse().read())
        assert described["body_length"] == 2000
        connection.request("GET", "/stream")
        streamed = connection.getresponse()
        assert streamed.read() == b"".join(f"part {n}\n".encode() for n in range(5))
        connection.request("HEAD", "/")
        head = connection.getresponse()
        assert head.status == 200
        assert head.read() == b""
        connection.request("GET", "/again")
        assert json.loads(connection.getresponse().read())["path"] == "/again"
        connection.close()
    assert upstream.requests == 5


def test_websocket_upgrade_pipes_bytes(
    server_ca: TestCA, upstream: EchoUpstream, tmp_path: Path
) -> None:
    state = state_of(site("open.shop.test", server_ca.issue_leaf("open.shop.test"), upstream.url))
    with running_gateway(state) as gw:
        context = client_context(server_ca, tmp_path)
        raw = socket.create_connection(("127.0.0.1", gw.https_port), timeout=10)
        tls = context.wrap_socket(raw, server_hostname="open.shop.test")
        tls.sendall(
            b"GET /ws HTTP/1.1\r\nHost: open.shop.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        tls.sendall(b"hello over the pipe")
        echoed = b""
        while len(echoed) < len(b"hello over the pipe"):
            echoed += tls.recv(4096)
        assert echoed == b"hello over the pipe"
        tls.close()


def test_new_certificates_and_rules_are_served_live_without_dropping_connections(
    server_ca: TestCA, upstream: EchoUpstream, tmp_path: Path
) -> None:

    first = server_ca.issue_leaf("live.shop.test")
    second = server_ca.issue_leaf("live.shop.test")
    state = state_of(site("live.shop.test", first, upstream.url))
    with running_gateway(state) as gw:
        context = client_context(server_ca, tmp_path)
        sock = socket.create_connection(("127.0.0.1", gw.https_port), timeout=10)
        kept = http.client.HTTPConnection("live.shop.test", gw.https_port, timeout=10)
        kept.sock = context.wrap_socket(sock, server_hostname="live.shop.test")
        kept.request("GET", "/before")
        assert kept.getresponse().read()
        gw.update(
            state_of(
                site(
                    "live.shop.test",
                    served(second),
                    upstream.url,
                    rules={"/closed": ("deny-all", None)},
                )
            )
        )
        answer = https_request(gw.https_port, "live.shop.test", context)
        assert x509.load_der_x509_certificate(answer.peer_certificate or b"") == second.certificate
        assert https_request(gw.https_port, "live.shop.test", context, path="/closed").status == 403
        kept.request("GET", "/after")  # the connection opened before the change still works
        assert json.loads(kept.getresponse().read())["path"] == "/after"
        kept.close()


def test_plain_http_answers_challenges_and_redirects(
    server_ca: TestCA, upstream: EchoUpstream
) -> None:

    state = state_of(site("open.shop.test", server_ca.issue_leaf("open.shop.test"), upstream.url))
    with running_gateway(state) as gw:
        gw.source.challenges["tok_EN-1"] = "tok_EN-1.thumbprint"

        def get(path: str, host: str) -> tuple[int, bytes, str | None]:
            connection = http.client.HTTPConnection("127.0.0.1", gw.http_port, timeout=10)
            try:
                connection.request("GET", path, headers={"Host": host})
                answer = connection.getresponse()
                return answer.status, answer.read(), answer.getheader("Location")
            finally:
                connection.close()

        assert get("/.well-known/acme-challenge/tok_EN-1", "x.test")[:2] == (
            200,
            b"tok_EN-1.thumbprint",
        )
        assert get("/.well-known/acme-challenge/unknown", "x.test")[0] == 404
        assert get("/.well-known/acme-challenge/bad%20token", "x.test")[0] == 404
        status, _, location = get("/shop?a=1", "open.shop.test")
        # The HTTPS port is not 443 here: the redirect keeps it.
        assert (status, location) == (301, f"https://open.shop.test:{gw.https_port}/shop?a=1")
        assert get("/", "elsewhere.test")[0] == 404


def test_an_upstream_that_is_down_gives_502(server_ca: TestCA, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    state = state_of(
        site("down.shop.test", server_ca.issue_leaf("down.shop.test"), f"http://127.0.0.1:{dead}")
    )
    with running_gateway(state) as gw:
        answer = https_request(gw.https_port, "down.shop.test", client_context(server_ca, tmp_path))
        assert answer.status == 502


def test_many_concurrent_clients(server_ca: TestCA, upstream: EchoUpstream, tmp_path: Path) -> None:
    state = state_of(site("open.shop.test", server_ca.issue_leaf("open.shop.test"), upstream.url))
    failures: list[BaseException] = []
    with running_gateway(state) as gw:
        context = client_context(server_ca, tmp_path)

        def client() -> None:
            try:
                for _ in range(10):
                    assert https_request(gw.https_port, "open.shop.test", context).status == 200
            except BaseException as exc:  # collected, reported below
                failures.append(exc)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not failures


def test_tls_contexts_are_kept_for_the_most_recently_used_hostnames(server_ca: TestCA) -> None:
    """Memory stays bounded with many hostnames: the least recently used context goes, and
    comes back built anew when its hostname is asked for again."""
    cache = ContextCache(capacity=2)
    sites = [
        site(f"c{n}.shop.test", server_ca.issue_leaf(f"c{n}.shop.test"), "http://127.0.0.1:9")
        for n in range(3)
    ]
    first, _ = cache.get(sites[0])
    cache.get(sites[1])
    assert cache.get(sites[0])[0] is first  # used again: now the most recent
    cache.get(sites[2])  # drops c1, the least recently used
    assert len(cache) == 2
    assert cache.get(sites[0])[0] is first
    rebuilt, wants = cache.get(sites[1])
    assert rebuilt is not None
    assert wants is False
    assert len(cache) == 2
