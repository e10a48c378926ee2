"""``certward serve`` as a user runs it: the API and the HTTPS gateway together.

Everything goes through the REST API; what the gateway serves is checked with real TLS
clients trusting only the platform CA's published root (and a test CA for the custom
domain): the managed default hostname, a custom domain added live, a staged path rule
that takes effect only at restart, and a client-CA profile.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography import x509

from tests.gateway.harness import Answer, EchoUpstream, https_request
from tests.material.factory import TestCA
from tests.test_serve import ADMIN_TOKEN, ServerLauncher, servers  # noqa: F401 - fixture

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PICKUP_SECONDS = 20.0
REFRESH_SECONDS = 1.0


def eventually(check: Callable[[], bool], what: str) -> None:
    """Until ``check`` holds, then a little longer: each gateway worker refreshes on its
    own, so one worker serving the change does not mean all do yet."""
    deadline = time.monotonic() + PICKUP_SECONDS
    while time.monotonic() < deadline:
        if check():
            time.sleep(REFRESH_SECONDS * 2.5)
            if all(check() for _ in range(6)):  # connections spread over the workers
                return
        time.sleep(0.1)
    raise AssertionError(f"the gateway never served {what}")


def test_serve_runs_the_gateway_for_managed_and_custom_hostnames(
    servers: ServerLauncher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    server = servers.start(
        {
            "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "CERTWARD_GATEWAY_REFRESH": "1",
            "CERTWARD_GATEWAY_WORKERS": "2",
            # The test backends run on this machine: the operator opens loopback.
            "CERTWARD_EGRESS_ALLOW": "127.0.0.0/8",
        },
        cwd=tmp_path,
    )
    server.wait_until_healthy()
    api = httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=30)
    with api, EchoUpstream() as upstream:
        assert api.post("/apps", json={"name": "shop", "plan": "licensed"}).status_code == 201
        created = api.post(
            "/apps/shop/environments", json={"name": "production", "upstream": upstream.url}
        )
        assert created.status_code == 201, created.text
        hostname = created.json()["hostname"]
        root_pem = api.get("/platform/ca").text
        platform_trust = ssl.create_default_context(cadata=root_pem)

        def managed(path: str = "/") -> Answer:
            return https_request(server.gateway_port, hostname, platform_trust, path=path)

        def serves_managed() -> bool:
            try:
                return managed().status == 200
            except OSError:
                return False

        eventually(serves_managed, hostname)
        answer = managed("/hello?x=1")
        assert answer.json()["path"] == "/hello?x=1"
        served = x509.load_der_x509_certificate(answer.peer_certificate or b"")
        assert hostname in str(
            served.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName)
        )

        # A staged path rule is not active before the restart, and is after it.
        staged = api.put(
            "/apps/shop/environments/production/path-rules",
            json={"/closed": {"rule": "deny-all"}},
        )
        assert staged.status_code == 200, staged.text
        time.sleep(2.5)  # more than one refresh: nothing may change yet
        assert managed("/closed").status == 200
        assert api.post("/apps/shop/environments/production/restart").status_code == 200
        eventually(lambda: managed("/closed").status == 403, "the applied path rule")
        assert managed("/open").status == 200

        # A custom domain with an uploaded certificate is served live.
        ca = TestCA.root(name="shop CA")
        leaf = ca.issue_leaf("www.shop.test")
        uploaded = api.post(
            "/apps/shop/tls-certificates",
            files={
                "certificate": ("cert.pem", leaf.cert_pem()),
                "chain": ("chain.pem", leaf.chain_pem()),
                "private_key": ("key.pem", leaf.key_pem()),
            },
        )
        assert uploaded.status_code == 201, uploaded.text
        domain = api.post(
            "/apps/shop/environments/production/custom-domains",
            json={"hostname": "www.shop.test", "certificate_id": uploaded.json()["id"]},
        )
        assert domain.status_code == 201, domain.text
        shop_trust = ssl.create_default_context(cadata=ca.cert_pem().decode())

        def serves_custom() -> bool:
            try:
                return https_request(server.gateway_port, "www.shop.test", shop_trust).status == 200
            except OSError:
                return False

        eventually(serves_custom, "the custom domain")
        custom = https_request(server.gateway_port, "www.shop.test", shop_trust)
        assert x509.load_der_x509_certificate(custom.peer_certificate or b"") == leaf.certificate

        # Replacing the domain's certificate is live too.
        second = ca.issue_leaf("www.shop.test")
        second_upload = api.post(
            "/apps/shop/tls-certificates",
            files={
                "certificate": ("cert.pem", second.cert_pem()),
                "chain": ("chain.pem", second.chain_pem()),
                "private_key": ("key.pem", second.key_pem()),
            },
        )
        assert second_upload.status_code == 201, second_upload.text
        replaced = api.post(
            f"/apps/shop/tls-certificates/{uploaded.json()['id']}/replace",
            json={"replacement_id": second_upload.json()["id"]},
        )
        assert replaced.status_code == 200, replaced.text

        def serves_replacement() -> bool:
            answer = https_request(server.gateway_port, "www.shop.test", shop_trust)
            return x509.load_der_x509_certificate(answer.peer_certificate or b"") == (
                second.certificate
            )

        eventually(serves_replacement, "the replacement certificate")

        # A client-CA profile on a path: live profile, rule applied at restart.
        client_root = TestCA.root(name="partner root")
        assert (
            api.post(
                "/apps/shop/access-profiles", json={"name": "partners", "ip_ranges": []}
            ).status_code
            == 201
        )
        cas = api.post(
            "/apps/shop/access-profiles/partners/client-cas",
            files={"certificates": ("root.pem", client_root.cert_pem())},
        )
        assert cas.status_code in (200, 201), cas.text
        assert (
            api.put(
                "/apps/shop/environments/production/path-rules",
                json={
                    "/closed": {"rule": "deny-all"},
                    "/partner/": {"rule": "profile", "profile": "partners"},
                },
            ).status_code
            == 200
        )
        assert api.post("/apps/shop/environments/production/restart").status_code == 200
        eventually(lambda: managed("/partner/x").status == 403, "the profile rule")
        client = client_root.issue_leaf("partner-app", eku=("clientAuth",))
        key_file = tmp_path / "client.pem"
        key_file.write_bytes(client.cert_pem() + client.key_pem())
        with_cert = ssl.create_default_context(cadata=root_pem)
        with_cert.load_cert_chain(key_file)
        allowed = https_request(server.gateway_port, hostname, with_cert, path="/partner/x")
        assert allowed.status == 200
        assert allowed.forwarded("SSL-Client-S-DN") == ["CN=partner-app"]

    # Plain HTTP redirects to HTTPS for known hostnames.
    redirect = httpx.get(
        f"http://127.0.0.1:{server.gateway_http_port}/x", headers={"Host": hostname}, timeout=10
    )
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://{hostname}:{server.gateway_port}/x"
