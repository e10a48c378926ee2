"""ACME HTTP-01 answered by the data plane: `certward serve` with an ACME directory
(Debian's pebble on loopback), pebble validating on the gateway's plain-HTTP port. The
environment's managed certificate comes from pebble and is then served by the gateway.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.gateway.harness import EchoUpstream, https_request
from tests.material.pebble import free_port, pebble_root, run_pebble
from tests.test_serve import ADMIN_TOKEN, ServerLauncher, servers  # noqa: F401 - fixture

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ISSUANCE_SECONDS = 60.0


def wait_for_listener(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_pebble_validates_through_the_gateway_and_the_gateway_serves_the_result(
    servers: ServerLauncher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    http_port = free_port()
    with run_pebble(tmp_path / "pebble", http_port=http_port) as pebble:
        server = servers.start(
            {
                "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
                "CERTWARD_PLATFORM_DOMAIN": "apps.test",
                "CERTWARD_ACME_DIRECTORY": pebble.directory_url,
                "CERTWARD_ACME_CA_BUNDLE": str(pebble.ca_bundle),
                "CERTWARD_GATEWAY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
                "CERTWARD_GATEWAY_REFRESH": "1",
                "CERTWARD_EGRESS_ALLOW": "127.0.0.0/8",  # the test backend is local
            },
            cwd=tmp_path,
        )
        server.wait_until_healthy()
        wait_for_listener(http_port)  # the gateway is a child process of its own
        with (
            httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=90) as api,
            EchoUpstream() as upstream,
        ):
            assert api.post("/apps", json={"name": "shop", "plan": "licensed"}).status_code == 201
            created = api.post(
                "/apps/shop/environments", json={"name": "production", "upstream": upstream.url}
            )
            assert created.status_code == 201, created.text
            hostname = created.json()["hostname"]
            deadline = time.monotonic() + ISSUANCE_SECONDS
            managed: dict[str, object] = {}
            while time.monotonic() < deadline:
                answer = api.get("/apps/shop/environments/production/managed-certificate")
                if answer.status_code == 200 and answer.json().get("certificate_pem"):
                    managed = answer.json()
                    break
                time.sleep(0.5)
            assert managed, "no certificate from pebble"
            assert "Pebble" in str(managed["issuer"])  # issued by the ACME CA
            issued = x509.load_pem_x509_certificate(str(managed["certificate_pem"]).encode())
            # The gateway serves it, verified up to pebble's root.
            root = pebble_root(pebble).public_bytes(serialization.Encoding.PEM).decode()
            trust = ssl.create_default_context(cadata=root)
            deadline = time.monotonic() + 20
            served = None
            while time.monotonic() < deadline:
                try:
                    answer = https_request(server.gateway_port, hostname, trust)
                    served = x509.load_der_x509_certificate(answer.peer_certificate or b"")
                    if served == issued:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            assert served == issued
            assert answer.status == 200
        # pebble fetched the challenge from the gateway's plain-HTTP port: it logged it.
        log = (tmp_path / "pebble" / "pebble.log").read_text(errors="replace")
        assert f"{hostname}" in log
