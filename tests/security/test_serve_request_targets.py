"""The path-rule bypasses replayed end to end: a tenant's rules set through the API of
a real ``certward serve``, attacked through the gateway it runs.

Before: ``GET https://<host>/admin/users`` answered 200 despite a deny-all rule on
``/admin`` (and the ``-doc`` deny fell the same way); a rule on ``/files/a%20b`` never
matched; ``SSL-Client-Verify`` and ``X-Forwarded-Host`` from the caller reached the
app; nothing stopped a request that had already been through the platform.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.harness import EchoUpstream
from tests.gateway.test_serve_gateway import eventually
from tests.security.gateway_clients import raw_request
from tests.test_serve import ADMIN_TOKEN, ServerLauncher, servers

__all__ = ["servers"]

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

pytestmark = pytest.mark.slow


def test_request_target_and_header_attacks_through_certward_serve(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    server = servers.start(
        {"CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN, "CERTWARD_GATEWAY_REFRESH": "1"}, cwd=tmp_path
    )
    server.wait_until_healthy()
    api = httpx.Client(base_url=f"{server.base_url}/api/v1", headers=HEADERS, timeout=30)
    with api, EchoUpstream() as upstream:
        assert api.post("/apps", json={"name": "shop", "plan": "licensed"}).status_code == 201
        created = api.post(
            "/apps/shop/environments", json={"name": "production", "upstream": upstream.url}
        )
        assert created.status_code == 201, created.text
        host = created.json()["hostname"]
        staged = api.put(
            "/apps/shop/environments/production/path-rules",
            json={"/admin": {"rule": "deny-all"}, "/files/a%20b": {"rule": "deny-all"}},
        )
        assert staged.status_code == 200, staged.text
        assert set(staged.json()["staged"]) == {"/admin", "/files/a b"}
        refused = api.put(
            "/apps/shop/environments/production/path-rules",
            json={"/a%2Fb": {"rule": "deny-all"}},
        )
        assert refused.status_code == 422
        assert refused.json()["code"] == "invalid-path-prefix"
        assert api.post("/apps/shop/environments/production/restart").status_code == 200
        trust = ssl.create_default_context(cadata=api.get("/platform/ca").text)
        port = server.gateway_port

        def get(line: str, headers: list[tuple[str, str]] | None = None) -> int:
            try:
                return raw_request(port, host, trust, line, headers).status
            except OSError:
                return 0

        eventually(lambda: get("GET /admin HTTP/1.1") == 403, "the applied path rules")
        time.sleep(0.1)
        before = upstream.requests
        assert get(f"GET https://{host}/admin/users HTTP/1.1") == 403
        assert get(f"GET https://{host}/api-doc/ HTTP/1.1") == 403
        assert get("GET https://elsewhere.example/admin HTTP/1.1") == 400
        assert get("GET * HTTP/1.1") == 400
        assert get("GET /files/a%20b/report.pdf HTTP/1.1") == 403
        assert get("GET / HTTP/1.1", [("CDN-Loop", "certward")]) == 508
        assert upstream.requests == before
        answer = raw_request(
            port,
            host,
            trust,
            "GET /open HTTP/1.1",
            [
                ("SSL-Client-Verify", "SUCCESS"),
                ("X-Forwarded-Host", "admin.internal"),
                ("Forwarded", "for=10.0.0.1"),
                ("True-Client-IP", "10.0.0.1"),
                ("x_ssl_client_s_dn", "CN=admin"),
            ],
        )
        assert answer.status == 200
        names = {n.lower() for n, _ in answer.json()["headers"]}
        assert not names & {
            "ssl-client-verify",
            "x-forwarded-host",
            "forwarded",
            "true-client-ip",
            "x_ssl_client_s_dn",
        }
        assert answer.forwarded("CDN-Loop") == ["certward"]
