"""Upload rate limits: per token and per app, on uploads and on failed uploads.

Replays: one tenant's token could send uploads (and wrong-password uploads, the
password-guessing case) without end, each one parsed, on the processes every tenant
shares. Now every endpoint that takes uploaded material answers 429 ``rate-limited``
with ``Retry-After`` once the token or the app is over its rate, before parsing; other
apps are not affected, and ``/metrics`` counts the refusals by limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, client_leaf, expect
from tests.material.factory import TestCA
from tests.web.conftest import console_client

UPLOADS = 3  # per minute
FAILURES = 2  # per minute
GARBAGE = b"this is not certificate material\n"


@pytest.fixture
def api_environ() -> dict[str, str]:
    return {
        "CERTWARD_UPLOAD_RATE": f"{UPLOADS}/minute",
        "CERTWARD_FAILED_UPLOAD_RATE": f"{FAILURES}/minute",
    }


def _refused(response: httpx.Response, limit: str) -> int:
    """Check a 429 of ``limit``; its Retry-After in seconds."""
    body = expect(response, 429)
    assert body["code"] == "rate-limited"
    assert body["limit"] == limit
    assert response.headers["content-type"].startswith("application/problem+json")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["retry_after"] == retry_after
    return retry_after


def _refusals(api: Api) -> dict[str, float]:
    text = expect(api.client.get("/metrics", headers=api.admin_headers), 200).decode()
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(
            r'^certward_rate_limited_total\{limit="([^"]+)"\} (\S+)$', text, re.M
        )
    }


def _authority(api: Api, ca: TestCA, app: str, headers: dict[str, str]) -> httpx.Response:
    return api.upload_authority(app, "prod", ca.cert_pem(), headers=headers)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_uploads_over_the_token_rate_get_429_and_other_apps_go_on(
    api: Api, client_ca: TestCA
) -> None:
    api.create_app_and_environment("shop", "prod")
    api.create_app_and_environment("other", "prod")
    shop = api.create_token("member", app="shop").headers
    other = api.create_token("member", app="other").headers
    for _ in range(UPLOADS):
        expect(_authority(api, client_ca, "shop", shop), 201)
    retry_after = _refused(_authority(api, client_ca, "shop", shop), "upload-token")
    assert _refusals(api)["upload-token"] == 1
    expect(_authority(api, client_ca, "other", other), 201)  # another tenant is not held up

    api.clock.advance(timedelta(seconds=retry_after))
    expect(_authority(api, client_ca, "shop", shop), 201)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_a_second_token_of_the_same_app_shares_the_app_rate(api: Api, client_ca: TestCA) -> None:
    api.create_app_and_environment("shop", "prod")
    api.create_app_and_environment("other", "prod")
    first = api.create_token("member", app="shop").headers
    second = api.create_token("member", app="shop").headers
    for _ in range(UPLOADS):
        expect(_authority(api, client_ca, "shop", first), 201)
    _refused(_authority(api, client_ca, "shop", second), "upload-app")
    assert _refusals(api)["upload-app"] == 1
    expect(_authority(api, client_ca, "other", api.admin_headers), 201)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_wrong_passwords_hit_the_failed_upload_rate(api: Api, client_ca: TestCA) -> None:
    """Password guessing: after FAILURES wrong passwords even the right one waits."""
    api.create_app_and_environment("shop", "prod")
    api.create_app_and_environment("other", "prod")
    token = api.create_token("member", app="shop").headers
    leaf = client_leaf(client_ca, "client.example.test")
    data = leaf.pkcs12("right-password")
    for guess in range(FAILURES):
        refused = api.upload_client_certificate(
            "shop", "prod", data, password=f"guess-{guess}", headers=token
        )
        assert expect(refused, 422)["code"] == "wrong-password"
    right = api.upload_client_certificate(
        "shop", "prod", data, password="right-password", headers=token
    )
    _refused(right, "failed-upload-token")
    assert _refusals(api)["failed-upload-token"] == 1
    expect(api.upload_client_certificate("other", "prod", data, password="right-password"), 201)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_another_apps_token_cannot_spend_this_apps_budget(api: Api, client_ca: TestCA) -> None:
    """Requests of app B's token against app A are 404 and never count against A."""
    api.create_app_and_environment("shop", "prod")
    api.create_app_and_environment("attacker", "prod")
    attacker = api.create_token("member", app="attacker").headers
    for _ in range(UPLOADS + FAILURES + 2):
        response = _authority(api, client_ca, "shop", attacker)
        assert response.status_code in (404, 429)
    shop = api.create_token("member", app="shop").headers
    for _ in range(UPLOADS):
        expect(_authority(api, client_ca, "shop", shop), 201)


def _every_upload_endpoint(api: Api) -> dict[str, Callable[[], httpx.Response]]:
    """Each endpoint that takes uploaded material, sent garbage by an app member."""
    api.create_app_and_environment("shop", "prod")
    expect(
        api.client.post(
            api.app_url("shop", "/access-profiles"),
            json={"name": "partners"},
            headers=api.admin_headers,
        ),
        201,
    )
    pending = expect(
        api.client.post(
            api.app_url("shop", "/tls-certificates/csr"),
            json={"common_name": "shop.example.test", "sans": ["shop.example.test"]},
            headers=api.admin_headers,
        ),
        201,
    )
    token = api.create_token("member", app="shop").headers
    post = api.client.post
    return {
        "client certificate": lambda: api.upload_client_certificate(
            "shop", "prod", GARBAGE, headers=token
        ),
        "authority": lambda: api.upload_authority("shop", "prod", GARBAGE, headers=token),
        "tls certificate": lambda: post(
            api.app_url("shop", "/tls-certificates"),
            files={"certificate": ("c.pem", GARBAGE), "private_key": ("k.pem", GARBAGE)},
            headers=token,
        ),
        "signed certificate": lambda: post(
            api.app_url("shop", f"/tls-certificates/{pending['id']}/signed-certificate"),
            files={"certificate": ("c.pem", GARBAGE)},
            headers=token,
        ),
        "client cas": lambda: post(
            api.app_url("shop", "/access-profiles/partners/client-cas"),
            files={"certificates": ("cas.pem", GARBAGE)},
            headers=token,
        ),
    }


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "endpoint",
    ["client certificate", "authority", "tls certificate", "signed certificate", "client cas"],
)
def test_every_upload_endpoint_is_limited(api: Api, endpoint: str) -> None:
    send = _every_upload_endpoint(api)[endpoint]
    for _ in range(FAILURES):
        refused = send()
        assert 400 <= refused.status_code < 500, refused.text
        assert refused.status_code not in (404, 429), refused.text
    _refused(send(), "failed-upload-token")


def test_the_console_upload_is_limited_too(tmp_path: Path, client_ca: TestCA) -> None:
    environ = {"CERTWARD_UPLOAD_RATE": "2/minute", "CERTWARD_FAILED_UPLOAD_RATE": "50/minute"}
    with console_client(tmp_path / "data", environ) as console:
        console.create_app("shop")
        console.create_environment("shop", "prod")
        console.sign_in()
        url = "/apps/shop/environments/prod/authorities"
        for _ in range(2):
            added = console.post(url, files={"file": ("ca.pem", client_ca.cert_pem())})
            assert added.status_code == 200, added.text
        refused = console.post(url, files={"file": ("ca.pem", client_ca.cert_pem())})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "Too many uploads" in refused.text
