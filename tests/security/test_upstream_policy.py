"""Upstreams and webhook URLs under the operator's egress policy, on a real ``certward serve``.

Replays: a member of one licensed app set its environment's upstream to certward's own
API port, the gateway's ports, ``0.0.0.0``, ``[::1]``, ``[::ffff:127.0.0.1]``,
``localhost``, ``2130706433``, ``0x7f000001``, link-local and metadata addresses, with
``user:pass@`` in front, or to ``http://[fe80::1%;}x]/`` (rendered into nginx as
``server [fe80::1%;}x]:80;``); a custom domain's upstream could be the platform's own
hostname (one request became thousands); and app A could point at app B's backend and
send it verified client-certificate headers. Every one of them is now refused when it
is written, with a code saying which rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certward.cli.app import main
from certward.egress import EgressPolicy, EgressRefused
from certward.services.notifications import checked_request
from tests.test_serve import ADMIN_TOKEN, ServerLauncher, ServerProcess, servers

__all__ = ["servers"]

pytestmark = pytest.mark.slow

API = "/api/v1"

REFUSED_SPELLINGS = (
    "http://0.0.0.0:9000/",
    "http://[::]:9000/",
    "http://[::1]:9000/",
    "http://[::ffff:127.0.0.1]:9000/",
    "http://[::ffff:7f00:1]:9000/",
    "http://[::127.0.0.1]:9000/",
    "http://localhost:9000/",
    "http://app.localhost:9000/",
    "http://2130706433:9000/",
    "http://0x7f000001:9000/",
    "http://0177.0.0.1:9000/",
    "http://127.1:9000/",
    "http://0x7f.0.0.1:9000/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://169.254.10.1:8080/",
    "http://[fe80::1]:8080/",
    "http://[fe80::1%eth0]:8080/",
    "http://[fe80::1%25eth0]:8080/",
    "http://[fe80::1%;}x]/",
    "http://user:pass@10.20.0.5:8080/",
    "http://user@10.20.0.5:8080/",
    "http://10.20.0.5:8080/;}server{",
    "http://10.20.0.5:8080/{x}",
    "http://224.0.0.1:8080/",
    "http://255.255.255.255:8080/",
)


class Tenant:
    """An app's member token against a real server."""

    def __init__(
        self, server: ServerProcess, admin: httpx.Client, app: str, opened: list[httpx.Client]
    ) -> None:
        assert admin.post("/apps", json={"name": app, "plan": "licensed"}).status_code == 201
        created = admin.post("/tokens", json={"role": "member", "app": app})
        assert created.status_code == 201, created.text
        self.app = app
        self.client = httpx.Client(
            base_url=f"{server.base_url}{API}",
            headers={"Authorization": f"Bearer {created.json()['token']}"},
            timeout=30,
        )
        opened.append(self.client)

    def create(self, env: str, upstream: str) -> httpx.Response:
        return self.client.post(
            f"/apps/{self.app}/environments", json={"name": env, "upstream": upstream}
        )

    def update(self, env: str, upstream: str) -> httpx.Response:
        return self.client.patch(
            f"/apps/{self.app}/environments/{env}", json={"upstream": upstream}
        )


def _start(servers: ServerLauncher, tmp_path: Path, **extra: str) -> ServerProcess:
    server = servers.start(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "data"),
            "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "CERTWARD_PLATFORM_DOMAIN": "apps.example",
            **extra,
        },
        cwd=tmp_path,
    )
    server.wait_until_healthy()
    return server


@pytest.fixture
def admin_of() -> Iterator[list[httpx.Client]]:
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def _admin(server: ServerProcess, opened: list[httpx.Client]) -> httpx.Client:
    client = httpx.Client(
        base_url=f"{server.base_url}{API}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    opened.append(client)
    return client


def _problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    return body


def test_every_spelling_of_a_forbidden_upstream_is_refused_at_write(
    servers: ServerLauncher, tmp_path: Path, admin_of: list[httpx.Client]
) -> None:
    server = _start(servers, tmp_path, CERTWARD_EGRESS_ALLOW="")  # the default policy
    tenant = Tenant(server, _admin(server, admin_of), "shop", admin_of)
    assert tenant.create("prod", "http://10.20.0.5:8080/").status_code == 201
    refused: dict[str, str] = {}
    for upstream in REFUSED_SPELLINGS:
        for response in (tenant.create("qa", upstream), tenant.update("prod", upstream)):
            if response.status_code != 422:
                refused[upstream] = f"{response.status_code}: {response.text}"
                continue
            problem = _problem(response)
            if problem["code"] not in ("upstream-not-allowed", "invalid-upstream"):
                refused[upstream] = str(problem)
    assert refused == {}, refused
    # Nothing was stored: the environment still forwards where it did.
    shown = tenant.client.get("/apps/shop/environments/prod").json()
    assert shown["upstream"] == "http://10.20.0.5:8080/"
    assert tenant.client.get("/apps/shop/environments/qa").status_code == 404
    # The messages say which rule.
    says = {
        "http://2130706433:9000/": "unusual spelling",
        "http://user:pass@10.20.0.5:8080/": "user name or password",
        "http://[fe80::1%eth0]:8080/": "scope id",
        "http://169.254.169.254/latest/meta-data/": "metadata",
        "http://[::ffff:127.0.0.1]:9000/": "IPv4 address 127.0.0.1 in IPv6 form",
        "http://[::1]:9000/": "loopback",
    }
    for upstream, words in says.items():
        assert words in _problem(tenant.update("prod", upstream))["detail"], upstream
    # Plain loopback is closed by default too.
    assert _problem(tenant.update("prod", "http://127.0.0.1:9000/"))["code"] == (
        "upstream-not-allowed"
    )


def test_the_platform_listeners_stay_refused_when_the_operator_opens_loopback(
    servers: ServerLauncher, tmp_path: Path, admin_of: list[httpx.Client]
) -> None:
    server = _start(servers, tmp_path, CERTWARD_EGRESS_ALLOW="127.0.0.0/8,10.0.0.0/8")
    admin = _admin(server, admin_of)
    tenant = Tenant(server, admin, "shop", admin_of)
    # The operator opened loopback: a backend on this machine is fine...
    assert tenant.create("prod", "http://127.0.0.1:9000/").status_code == 201
    # ...but not the platform itself, in any spelling of its address.
    listeners = {
        "API": server.port,
        "gateway HTTPS": server.gateway_port,
        "gateway HTTP": server.gateway_http_port,
    }
    for what, port in listeners.items():
        for host in ("127.0.0.1", "127.0.0.2", "localhost"):
            response = tenant.update("prod", f"http://{host}:{port}/")
            assert response.status_code == 422, (what, host, response.text)
            assert _problem(response)["code"] == "upstream-not-allowed"
    detail = _problem(tenant.update("prod", f"http://127.0.0.1:{server.port}/"))["detail"]
    assert "where the platform itself listens" in detail
    # Outside the listed networks: refused, whatever the kind.
    assert _problem(tenant.update("prod", "http://192.168.1.10/"))["code"] == (
        "upstream-not-allowed"
    )


def test_an_upstream_may_not_be_a_hostname_the_platform_serves(
    servers: ServerLauncher, tmp_path: Path, admin_of: list[httpx.Client]
) -> None:
    server = _start(servers, tmp_path)
    admin = _admin(server, admin_of)
    shop = Tenant(server, admin, "shop", admin_of)
    other = Tenant(server, admin, "other", admin_of)
    assert shop.create("prod", "http://10.20.0.5:8080/").status_code == 201
    assert other.create("prod", "http://10.20.0.6:8080/").status_code == 201
    for upstream in (
        "https://prod-shop.apps.example/",  # its own default hostname
        "https://PROD-SHOP.apps.example.:443/",
        "http://prod-other.apps.example/",  # another environment's
        "http://anything.apps.example/",  # anything under the platform domain
        "http://apps.example/",
    ):
        response = shop.update("prod", upstream)
        assert response.status_code == 422, (upstream, response.text)
        assert _problem(response)["code"] == "hostname-is-upstream", upstream


def test_a_backend_belongs_to_one_app(
    servers: ServerLauncher, tmp_path: Path, admin_of: list[httpx.Client]
) -> None:
    server = _start(servers, tmp_path)
    admin = _admin(server, admin_of)
    tenant_a = Tenant(server, admin, "alpha", admin_of)
    tenant_b = Tenant(server, admin, "bravo", admin_of)
    assert tenant_b.create("prod", "http://10.20.0.7:8443/").status_code == 201
    # A points a new environment, then an existing one, at B's backend: 409.
    for response in (
        tenant_a.create("prod", "http://10.20.0.7:8443/api"),
        tenant_a.create("prod", "https://10.20.0.7:8443/"),
    ):
        assert response.status_code == 409, response.text
        assert _problem(response)["code"] == "upstream-taken"
    assert tenant_a.create("prod", "http://10.20.0.8:80/").status_code == 201
    response = tenant_a.update("prod", "http://10.20.0.7:8443")
    assert response.status_code == 409
    assert _problem(response)["code"] == "upstream-taken"
    # B's own environments may share it; once B moves away, the backend is free.
    assert tenant_b.create("qa", "http://10.20.0.7:8443/qa").status_code == 201
    assert tenant_b.update("prod", "http://10.20.0.9:8443").status_code == 200
    assert tenant_a.update("prod", "http://10.20.0.7:8443").status_code == 409  # qa holds it
    assert tenant_b.client.delete("/apps/bravo/environments/qa").status_code == 204
    assert tenant_a.update("prod", "http://10.20.0.7:8443").status_code == 200
    # The backend A moved away from is free; one that a deleted app held is free too.
    assert tenant_b.create("qa", "http://10.20.0.8:80").status_code == 201
    assert tenant_b.update("qa", "http://10.20.0.7:8443").status_code == 409
    assert admin.delete("/apps/alpha").status_code == 204
    assert tenant_b.update("qa", "http://10.20.0.7:8443").status_code == 200


def test_webhook_urls_follow_the_same_policy(tmp_path: Path) -> None:
    """Registration refuses them (the CLI on the server's database); delivery resolves
    the name and refuses an address the policy closes, whatever the name."""
    environ = {"CERTWARD_DATA_DIR": str(tmp_path / "data")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8700/api/v1/apps",
            "http://[::ffff:127.0.0.1]/",
            "http://metadata.google.internal/",
            "http://user:secret@hooks.example.com/",
            "http://0x7f000001/",
        ):
            assert main(["webhook", "add", url]) == 2, url
        assert main(["webhook", "add", "https://hooks.example.com/certward"]) == 0

    def resolves_to(address: str) -> Any:
        return lambda host, port: [(2, 1, 6, "", (address, port))]

    policy = EgressPolicy()
    for address in ("127.0.0.1", "169.254.169.254", "::1", "::ffff:10.0.0.1", "0.0.0.0"):  # noqa: S104
        with pytest.raises(EgressRefused):
            checked_request(policy, "https://hooks.example.com/x", lookup=resolves_to(address))
    request = checked_request(
        policy, "https://hooks.example.com:8443/x?y=1", lookup=resolves_to("203.0.113.9")
    )
    assert request.url == "https://203.0.113.9:8443/x?y=1"
    assert request.host_header == "hooks.example.com:8443"
    assert request.extensions == {"sni_hostname": "hooks.example.com"}
