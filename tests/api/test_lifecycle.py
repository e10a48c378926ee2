"""The control plane's REST API end to end, on SQLite and PostgreSQL (the contract clients rely on).

Apps and environments, outgoing client certificates (PKCS12 made by the real
``openssl``, PEM and DER), certificate authorities, staged changes, restart, rollback,
the audit log and tokens of every role.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from certward.model import EnvironmentVersion
from tests.api.conftest import API, Api, Token, bearer, client_leaf, expect
from tests.material.factory import NOW, IssuedCert, TestCA, pem_certificates
from tests.material.openssl_cli import (
    COMMA_PASSWORD,
    UNICODE_PASSWORD,
    OpenSSLCli,
    Pkcs12Variant,
)

DOCUMENTED_FIELDS = {
    "id",
    "subject",
    "issuer",
    "not_before",
    "not_after",
    "sha256_fingerprint",
    "pins",
    "call_name",
    "state",
}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _fingerprint(leaf: IssuedCert) -> str:
    return leaf.certificate.fingerprint(hashes.SHA256()).hex()


def _upload(
    api: Api,
    leaf: IssuedCert,
    *,
    app: str = "shop",
    env: str = "prod",
    pins: list[str] | None = None,
    call_name: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Upload ``leaf`` as a modern PKCS12 and return the 201 body."""
    response = api.upload_client_certificate(
        app,
        env,
        leaf.pkcs12("upload-password"),
        password="upload-password",
        pins=pins or [],
        call_name=call_name,
        headers=headers,
    )
    body: dict[str, Any] = expect(response, 201)
    return body


def _codes(body: dict[str, Any]) -> list[str]:
    return [problem["code"] for problem in body["problems"]]


# -- apps and environments ------------------------------------------------------------------


def test_environment_gets_default_hostname_under_platform_domain(api: Api) -> None:
    """A licensed app's new environment answers 201 with ``<env>-<app>.apps.localhost``."""
    app = api.create_app("shop", "licensed")
    assert app["name"] == "shop"
    assert app["plan"] == "licensed"

    env = api.create_environment("shop", "prod", "https://10.1.2.3:8443")
    assert env["hostname"] == "prod-shop.apps.localhost"
    assert env["upstream"] == "https://10.1.2.3:8443"
    assert env["applied_version"] is None

    fetched = expect(api.client.get(api.env_url("shop", "prod"), headers=api.admin_headers), 200)
    assert fetched == env
    assert expect(api.client.get(api.app_url("shop"), headers=api.admin_headers), 200)[
        "environments"
    ] == ["prod"]
    listed = expect(api.client.get(f"{API}/apps", headers=api.admin_headers), 200)
    assert [a["name"] for a in listed] == ["shop"]


# -- client certificate uploads -------------------------------------------------------------


def test_openssl_legacy_and_modern_pkcs12_with_awkward_passwords_are_staged(
    api: Api, client_ca: TestCA, openssl_cli: OpenSSLCli
) -> None:
    """PKCS12 files from ``openssl pkcs12 -export`` (-legacy and OpenSSL 3 default) with comma and
    unicode passwords upload with the documented fields.
    """
    api.create_app_and_environment("shop", "prod")
    cases = [
        (Pkcs12Variant.LEGACY, COMMA_PASSWORD + ",ü", "legacy.client.example.test"),
        (Pkcs12Variant.DEFAULT, UNICODE_PASSWORD + ",x", "modern.client.example.test"),
    ]
    uploaded = []
    for index, (variant, password, name) in enumerate(cases):
        leaf = client_leaf(client_ca, name)
        p12 = openssl_cli.pkcs12(leaf, variant=variant, password=password)
        body = expect(
            api.upload_client_certificate(
                "shop",
                "prod",
                p12,
                filename=f"{variant.name.lower()}.p12",
                password=password,
                pins=[f"api{index}.partner.example", f"Billing.Service{index}"],
                call_name=f"partner-{index}",
                description=f"made by openssl ({variant.name})",
            ),
            201,
        )
        assert body.keys() >= DOCUMENTED_FIELDS
        assert body["subject"] == f"CN={name}"
        assert body["issuer"] == client_ca.certificate.subject.rfc4514_string()
        assert _instant(body["not_before"]) == leaf.certificate.not_valid_before_utc
        assert _instant(body["not_after"]) == leaf.certificate.not_valid_after_utc
        assert body["sha256_fingerprint"] == _fingerprint(leaf)
        assert body["pins"] == sorted([f"Billing.Service{index}", f"api{index}.partner.example"])
        assert body["call_name"] == f"partner-{index}"
        assert body["state"] == "staged"
        uploaded.append(body)

    listed = expect(
        api.client.get(
            api.env_url("shop", "prod", "/client-certificates"), headers=api.admin_headers
        ),
        200,
    )
    assert sorted(c["id"] for c in listed) == sorted(c["id"] for c in uploaded)
    for body in uploaded:
        fetched = expect(
            api.client.get(
                api.env_url("shop", "prod", f"/client-certificates/{body['id']}"),
                headers=api.admin_headers,
            ),
            200,
        )
        assert fetched == {**body, "problems": []}


def test_pem_and_der_certificate_with_key_and_chain_files_are_staged(
    api: Api, client_ca: TestCA
) -> None:
    """A PEM certificate with ``key`` and ``chain`` files, and the DER forms, upload as client
    certificates.
    """
    api.create_app_and_environment("shop", "prod")
    pem_leaf = client_leaf(client_ca, "pem.client.example.test")
    body = expect(
        api.upload_client_certificate(
            "shop",
            "prod",
            pem_leaf.cert_pem(),
            filename="client.pem",
            key=pem_leaf.key_pem(),
            chain=pem_leaf.chain_pem(),
            pins=["pem.partner.example"],
        ),
        201,
    )
    assert body["subject"] == "CN=pem.client.example.test"
    assert body["sha256_fingerprint"] == _fingerprint(pem_leaf)
    assert body["pins"] == ["pem.partner.example"]
    assert body["state"] == "staged"
    # The uploaded chain is the root itself: it is checked, but never stored to be sent.
    assert body["chain"] == []
    assert [p["certificate"] for p in body["problems"] if p["code"] == "root-not-served"] == [
        client_ca.certificate.subject.rfc4514_string()
    ]

    der_leaf = client_leaf(client_ca, "der.client.example.test")
    body = expect(
        api.upload_client_certificate(
            "shop",
            "prod",
            der_leaf.cert_der(),
            filename="client.der",
            key=der_leaf.key_der(),
            chain=der_leaf.chain_pem(),
        ),
        201,
    )
    assert body["sha256_fingerprint"] == _fingerprint(der_leaf)


def test_an_expired_intermediate_beside_its_renewal_is_passed_over(
    api: Api, client_ca: TestCA
) -> None:
    """Clients build the valid path; the upload is staged with it, not refused as expired."""
    api.create_app_and_environment("shop", "prod")
    issuing = client_ca.intermediate(name="certward API renewed intermediate")
    expired = issuing.recertified(
        client_ca, not_before=NOW - timedelta(days=800), not_after=NOW - timedelta(days=2)
    )
    leaf = client_leaf(issuing, "renewed.client.example.test")
    body = expect(
        api.upload_client_certificate(
            "shop",
            "prod",
            leaf.cert_pem(),
            filename="client.pem",
            key=leaf.key_pem(),
            chain=pem_certificates([expired.certificate, issuing.certificate]),
        ),
        201,
    )
    assert [c["sha256_fingerprint"] for c in body["chain"]] == [
        issuing.certificate.fingerprint(hashes.SHA256()).hex()
    ]
    (notice,) = [p for p in body["problems"] if p["code"] == "path-passed-over"]
    assert "an expired intermediate CN=certward API renewed intermediate" in notice["message"]


def test_wrong_password_is_refused_with_wrong_password_code(api: Api, client_ca: TestCA) -> None:
    """A PKCS12 upload with the wrong password answers 422 ``wrong-password`` and stores nothing."""
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(client_ca, "client.example.test")
    response = api.upload_client_certificate(
        "shop", "prod", leaf.pkcs12("right, password"), password="wrong, password"
    )
    body = expect(response, 422)
    assert response.headers["content-type"] == "application/problem+json"
    assert body["code"] == "wrong-password"
    assert "wrong-password" in _codes(body)
    assert all({"code", "severity", "message"} <= p.keys() for p in body["problems"])
    assert api.changes("shop", "prod") == []


def test_pem_file_named_p12_is_refused_as_not_pkcs12(api: Api, client_ca: TestCA) -> None:
    """A PEM file uploaded under a ``.p12`` name answers 422 ``not-pkcs12``."""
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(client_ca, "client.example.test")
    response = api.upload_client_certificate(
        "shop", "prod", leaf.full_chain_pem() + leaf.key_pem(), filename="client.p12", password="x"
    )
    body = expect(response, 422)
    assert body["code"] == "not-pkcs12"
    assert "not-pkcs12" in _codes(body)
    assert api.changes("shop", "prod") == []


def test_pin_or_call_name_taken_by_another_certificate_is_a_conflict_naming_both(
    api: Api, client_ca: TestCA
) -> None:
    """A pin or call name already used by another certificate answers 409 naming both, on upload and
    on PATCH.
    """
    api.create_app_and_environment("shop", "prod")
    first_leaf = client_leaf(client_ca, "first.client.example.test")
    first = _upload(
        api, first_leaf, pins=["api.partner.example", "Billing.Invoices"], call_name="billing"
    )
    second_leaf = client_leaf(client_ca, "second.client.example.test")

    def assert_names_both(body: dict[str, Any], uploaded_subject: str) -> None:
        assert body["code"] == "pin-conflict"
        assert first["id"] in body["detail"]
        assert first["subject"] in body["detail"]
        assert uploaded_subject in body["detail"]
        assert body["conflicts"][0]["client_certificate_id"] == first["id"]
        assert body["conflicts"][0]["client_certificate_subject"] == first["subject"]

    for pins, call_name in [
        (["api.partner.example"], None),  # a host name pin
        (["other.partner.example", "Billing.Invoices"], None),  # a service pin
        ([], "BILLING"),  # a call name, compared case-insensitively
        (["billing"], None),  # a pin equal to the other's call name
    ]:
        response = api.upload_client_certificate(
            "shop",
            "prod",
            second_leaf.pkcs12("pw"),
            password="pw",
            pins=pins,
            call_name=call_name,
        )
        assert_names_both(expect(response, 409), "CN=second.client.example.test")

    second = _upload(api, second_leaf, pins=["other.partner.example"], call_name="second")
    url = api.env_url("shop", "prod", f"/client-certificates/{second['id']}")
    for patch in [
        {"pins": ["other.partner.example", "API.partner.example"]},
        {"call_name": "billing"},
    ]:
        body = expect(api.client.patch(url, json=patch, headers=api.admin_headers), 409)
        assert_names_both(body, second["subject"])
        assert second["id"] in body["detail"]

    unchanged = expect(api.client.get(url, headers=api.admin_headers), 200)
    assert unchanged["pins"] == ["other.partner.example"]
    assert unchanged["call_name"] == "second"
    patched = expect(
        api.client.patch(
            url,
            json={"pins": ["other.partner.example", "Fresh.Service"]},
            headers=api.admin_headers,
        ),
        200,
    )
    assert patched["pins"] == ["Fresh.Service", "other.partner.example"]


def test_free_plan_refuses_custom_certificates_saying_a_licensed_plan_is_needed(
    api: Api, client_ca: TestCA
) -> None:
    """On a free app every client-certificate and authority operation answers 403 naming the
    licensed plan.
    """
    api.create_app_and_environment("hobby", "prod", plan="free")
    leaf = client_leaf(client_ca, "client.example.test")
    refused = [
        api.upload_client_certificate("hobby", "prod", leaf.pkcs12("pw"), password="pw"),
        api.client.get(
            api.env_url("hobby", "prod", "/client-certificates"), headers=api.admin_headers
        ),
        api.upload_authority("hobby", "prod", client_ca.cert_pem()),
        api.client.get(
            api.env_url("hobby", "prod", "/certificate-authorities"), headers=api.admin_headers
        ),
    ]
    for response in refused:
        body = expect(response, 403)
        assert body["code"] == "plan-required"
        assert "custom certificates" in body["detail"]
        assert "licensed plan" in body["detail"]

    expect(
        api.client.patch(
            api.app_url("hobby"), json={"plan": "licensed"}, headers=api.admin_headers
        ),
        200,
    )
    expect(api.upload_client_certificate("hobby", "prod", leaf.pkcs12("pw"), password="pw"), 201)


# -- certificate authorities ----------------------------------------------------------------


def test_authority_upload_lists_its_certificates_and_a_leaf_is_not_a_ca(
    api: Api, client_ca: TestCA
) -> None:
    """CA PEM uploads answer 201 with their certificates; a leaf uploaded as a CA answers 422
    ``not-a-ca``.
    """
    api.create_app_and_environment("shop", "prod")
    intermediate = client_ca.intermediate(name="partner issuing CA")
    root = expect(api.upload_authority("shop", "prod", client_ca.cert_pem()), 201)
    api.clock.advance(timedelta(seconds=1))  # listed by upload time
    assert root["state"] == "staged"
    assert [c["subject"] for c in root["certificates"]] == ["CN=certward API test client CA"]
    assert root["certificates"][0]["sha256_fingerprint"] == (
        client_ca.certificate.fingerprint(hashes.SHA256()).hex()
    )
    both = expect(
        api.upload_authority("shop", "prod", intermediate.cert_pem() + client_ca.cert_pem()), 201
    )
    assert [c["subject"] for c in both["certificates"]] == [
        "CN=partner issuing CA",
        "CN=certward API test client CA",
    ]

    leaf = client_leaf(client_ca, "leaf.example.test")
    body = expect(api.upload_authority("shop", "prod", leaf.cert_pem()), 422)
    assert body["code"] == "not-a-ca"
    assert "not-a-ca" in _codes(body)

    authorities = api.env_url("shop", "prod", "/certificate-authorities")
    listed = expect(api.client.get(authorities, headers=api.admin_headers), 200)
    assert [a["id"] for a in listed] == [root["id"], both["id"]]
    fetched = expect(api.client.get(f"{authorities}/{root['id']}", headers=api.admin_headers), 200)
    assert fetched["certificates"] == root["certificates"]
    assert [(c["object_type"], c["change"]) for c in api.changes("shop", "prod")] == [
        ("certificate_authority", "added"),
        ("certificate_authority", "added"),
    ]
    expect(api.client.delete(f"{authorities}/{both['id']}", headers=api.admin_headers), 204)
    expect(api.client.get(f"{authorities}/{both['id']}", headers=api.admin_headers), 404)
    assert [c["object_id"] for c in api.changes("shop", "prod")] == [root["id"]]


# -- staged changes, restart, rollback ------------------------------------------------------


def test_restart_applies_staged_changes_and_rollback_brings_back_a_deleted_certificate(
    api: Api, client_ca: TestCA
) -> None:
    """Changes stay pending until restart makes numbered versions, and rolling back to version 1
    restores its content and digest.
    """
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(client_ca, "partner.client.example.test")
    certificate = _upload(api, leaf, pins=["api.partner.example"], call_name="partner")
    authority = expect(api.upload_authority("shop", "prod", client_ca.cert_pem()), 201)
    certificate_url = api.env_url("shop", "prod", f"/client-certificates/{certificate['id']}")

    pending = api.changes("shop", "prod")
    assert {(c["object_type"], c["object_id"], c["change"]) for c in pending} == {
        ("client_certificate", certificate["id"], "added"),
        ("certificate_authority", authority["id"], "added"),
    }

    first = api.restart("shop", "prod")
    assert first["version"] == 1
    assert len(first["digest"]) == 64
    assert _instant(first["applied_at"]) == NOW
    assert api.changes("shop", "prod") == []
    assert expect(api.client.get(certificate_url, headers=api.admin_headers), 200)["state"] == (
        "applied"
    )
    listed = expect(
        api.client.get(
            api.env_url("shop", "prod", "/client-certificates"), headers=api.admin_headers
        ),
        200,
    )
    assert [c["state"] for c in listed] == ["applied"]
    environment = expect(
        api.client.get(api.env_url("shop", "prod"), headers=api.admin_headers), 200
    )
    assert environment["applied_version"] == 1

    api.clock.advance(timedelta(hours=1))
    patched = expect(
        api.client.patch(
            certificate_url,
            json={"pins": ["api.partner.example", "Partner.Orders"]},
            headers=api.admin_headers,
        ),
        200,
    )
    assert patched["state"] == "staged"
    [modified] = api.changes("shop", "prod")
    assert modified["change"] == "modified"
    assert modified["object_id"] == certificate["id"]
    assert modified["before"]["pins"] == ["api.partner.example"]
    assert modified["after"]["pins"] == ["Partner.Orders", "api.partner.example"]

    expect(api.client.delete(certificate_url, headers=api.admin_headers), 204)
    [removed] = api.changes("shop", "prod")
    assert removed["change"] == "removed"
    assert removed["before"]["pins"] == ["api.partner.example"]
    assert removed["after"] is None
    second = api.restart("shop", "prod")
    assert second["version"] == 2
    assert second["digest"] != first["digest"]
    expect(api.client.get(certificate_url, headers=api.admin_headers), 404)

    api.clock.advance(timedelta(hours=1))
    third = expect(
        api.client.post(
            api.env_url("shop", "prod", "/rollback"), json={"version": 1}, headers=api.admin_headers
        ),
        200,
    )
    assert third["version"] == 3
    assert third["digest"] == first["digest"]
    restored = expect(api.client.get(certificate_url, headers=api.admin_headers), 200)
    assert restored["pins"] == ["api.partner.example"]
    assert restored["call_name"] == "partner"
    assert restored["state"] == "applied"
    assert api.changes("shop", "prod") == []

    versions = expect(
        api.client.get(api.env_url("shop", "prod", "/versions"), headers=api.admin_headers), 200
    )
    assert [(v["version"], v["digest"], v["current"]) for v in versions] == [
        (3, first["digest"], True),
        (2, second["digest"], False),
        (1, first["digest"], False),
    ]
    missing = expect(
        api.client.post(
            api.env_url("shop", "prod", "/rollback"), json={"version": 9}, headers=api.admin_headers
        ),
        404,
    )
    assert missing["code"] == "version-not-found"


def test_expired_certificate_blocks_restart_and_changes_nothing(
    api: Api, client_ca: TestCA
) -> None:
    """A staged certificate that expired before the restart answers 422 ``apply-refused`` listing
    ``expired``, leaving version and rows as they were.
    """
    api.create_app_and_environment("shop", "prod")
    _upload(api, client_leaf(client_ca, "long.client.example.test"), pins=["long.example"])
    first = api.restart("shop", "prod")
    short = _upload(
        api,
        client_leaf(client_ca, "short.client.example.test", not_after=NOW + timedelta(days=10)),
        pins=["short.example"],
    )
    certificates_url = api.env_url("shop", "prod", "/client-certificates")
    rows_before = expect(api.client.get(certificates_url, headers=api.admin_headers), 200)
    changes_before = api.changes("shop", "prod")

    api.clock.advance(timedelta(days=11))
    body = expect(
        api.client.post(api.env_url("shop", "prod", "/restart"), headers=api.admin_headers), 422
    )
    assert body["code"] == "apply-refused"
    expired = [p for p in body["problems"] if p["code"] == "expired"]
    assert expired
    assert expired[0]["severity"] == "error"
    assert "CN=short.client.example.test" in str(expired)

    assert expect(api.client.get(certificates_url, headers=api.admin_headers), 200) == rows_before
    assert api.changes("shop", "prod") == changes_before
    versions = expect(
        api.client.get(api.env_url("shop", "prod", "/versions"), headers=api.admin_headers), 200
    )
    assert [(v["version"], v["digest"]) for v in versions] == [(1, first["digest"])]
    environment = expect(
        api.client.get(api.env_url("shop", "prod"), headers=api.admin_headers), 200
    )
    assert environment["applied_version"] == 1
    with api.context.database.reading() as session:
        assert session.scalar(select(func.count()).select_from(EnvironmentVersion)) == 1

    expect(api.client.delete(f"{certificates_url}/{short['id']}", headers=api.admin_headers), 204)
    unchanged = api.restart("shop", "prod")  # nothing left to apply: still version 1
    assert (unchanged["version"], unchanged["changed"]) == (1, False)


def test_rollback_to_a_version_with_an_expired_certificate_is_refused_and_changes_nothing(
    api: Api, client_ca: TestCA
) -> None:
    """Rolling back to a version whose certificate has expired since answers 422
    ``apply-refused`` and leaves the rows, the pending list and the versions as they were."""
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(client_ca, "short.client.example.test", not_after=NOW + timedelta(days=10))
    short = _upload(api, leaf, pins=["short.example"], call_name="short")
    with_short = api.restart("shop", "prod")
    short_url = api.env_url("shop", "prod", f"/client-certificates/{short['id']}")
    expect(api.client.delete(short_url, headers=api.admin_headers), 204)
    _upload(api, client_leaf(client_ca, "long.client.example.test"), pins=["short.example"])
    without_short = api.restart("shop", "prod")
    certificates_url = api.env_url("shop", "prod", "/client-certificates")
    rows_before = expect(api.client.get(certificates_url, headers=api.admin_headers), 200)

    api.clock.advance(timedelta(days=11))
    body = expect(
        api.client.post(
            api.env_url("shop", "prod", "/rollback"),
            json={"version": with_short["version"]},
            headers=api.admin_headers,
        ),
        422,
    )
    assert body["code"] == "apply-refused"
    assert "expired" in _codes(body)
    expect(api.client.get(short_url, headers=api.admin_headers), 404)
    assert expect(api.client.get(certificates_url, headers=api.admin_headers), 200) == rows_before
    assert api.changes("shop", "prod") == []
    versions = expect(
        api.client.get(api.env_url("shop", "prod", "/versions"), headers=api.admin_headers), 200
    )
    assert [(v["version"], v["current"]) for v in versions] == [
        (without_short["version"], True),
        (with_short["version"], False),
    ]


@pytest.mark.parametrize("profile", ["legacy", "modern2026"])
def test_pkcs12_profile_change_is_staged_until_restart(api: Api, profile: str) -> None:
    """PATCHing the environment's ``pkcs12_profile`` shows as a pending change until restart."""
    api.create_app_and_environment("shop", "prod")
    api.restart("shop", "prod")
    environment = expect(
        api.client.patch(
            api.env_url("shop", "prod"),
            json={"pkcs12_profile": profile},
            headers=api.admin_headers,
        ),
        200,
    )
    assert environment["pkcs12_profile"] == profile
    assert api.changes("shop", "prod") == [
        {
            "object_type": "environment",
            "object_id": "pkcs12_profile",
            "change": "modified",
            "before": {"pkcs12_profile": "modern"},
            "after": {"pkcs12_profile": profile},
        }
    ]
    assert api.restart("shop", "prod")["version"] == 2
    assert api.changes("shop", "prod") == []


def _concurrently(
    api: Api, count: int, request: Callable[[TestClient, int], httpx.Response]
) -> list[httpx.Response]:
    """Send ``count`` requests at once, each from its own client and thread."""
    barrier = threading.Barrier(count)

    def send(index: int) -> httpx.Response:
        with TestClient(api.app, raise_server_exceptions=False) as client:
            barrier.wait(timeout=30)
            return request(client, index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def _statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


def test_simultaneous_changes_to_one_environment_take_turns(api: Api, client_ca: TestCA) -> None:
    """Simultaneous restarts, edits, uploads and deletions in one environment each get a
    clean answer, never a 500, and take effect once."""
    api.create_app_and_environment("shop", "prod")
    certificate = _upload(api, client_leaf(client_ca, "shared.example.test"), pins=["a.example"])
    url = api.env_url("shop", "prod", f"/client-certificates/{certificate['id']}")
    count = 6

    restarts = _concurrently(
        api,
        count,
        lambda c, _: c.post(api.env_url("shop", "prod", "/restart"), headers=api.admin_headers),
    )
    assert _statuses(restarts) == [200] * count, [r.text for r in restarts]
    assert sorted(r.json()["changed"] for r in restarts) == [False] * (count - 1) + [True]
    assert {r.json()["version"] for r in restarts} == {1}

    wanted = [["a.example", f"p{i}.example"] for i in range(count)]
    edits = _concurrently(
        api, count, lambda c, i: c.patch(url, json={"pins": wanted[i]}, headers=api.admin_headers)
    )
    assert _statuses(edits) == [200] * count, [r.text for r in edits]
    assert expect(api.client.get(url, headers=api.admin_headers), 200)["pins"] in wanted

    files = [client_leaf(client_ca, f"rival{i}.example.test").pkcs12("pw") for i in range(count)]
    uploads = _concurrently(
        api,
        count,
        lambda c, i: c.post(
            api.env_url("shop", "prod", "/client-certificates"),
            files={"file": ("rival.p12", files[i])},
            data={"password": "pw", "pins": ["rival.example"]},
            headers=api.admin_headers,
        ),
    )
    assert _statuses(uploads) == [201] + [409] * (count - 1), [r.text for r in uploads]
    [winner] = [r.json()["id"] for r in uploads if r.status_code == 201]
    for response in uploads:
        if response.status_code == 409:
            assert response.json()["conflicts"][0]["client_certificate_id"] == winner

    deletions = _concurrently(api, count, lambda c, _: c.delete(url, headers=api.admin_headers))
    assert _statuses(deletions) == [204] + [404] * (count - 1), [r.text for r in deletions]
    audited = expect(api.client.get(f"{API}/audit", headers=api.admin_headers), 200)
    actions = [e["action"] for e in audited]
    assert actions.count("environment.restart") == 1
    assert actions.count("client_certificate.delete") == 1


# -- audit ----------------------------------------------------------------------------------


def test_audit_log_records_every_change_with_actor_and_digests(api: Api, client_ca: TestCA) -> None:
    """Each change is audited with the acting token's id and before/after digests; a member sees
    only its app's events.
    """
    api.create_app_and_environment("alpha", "prod")
    api.create_app_and_environment("bravo", "prod")
    member = api.create_token("member", app="alpha")
    leaf = client_leaf(client_ca, "audited.client.example.test")
    certificate = _upload(api, leaf, app="alpha", pins=["one.example"], headers=member.headers)
    url = api.env_url("alpha", "prod", f"/client-certificates/{certificate['id']}")
    expect(api.client.patch(url, json={"pins": ["two.example"]}, headers=member.headers), 200)
    api.restart("alpha", "prod", headers=member.headers)
    expect(api.client.delete(url, headers=member.headers), 204)

    events = expect(api.client.get(f"{API}/audit", headers=api.admin_headers), 200)
    admin_id = _bootstrap_token_id(api)
    by_action = {(e["action"], e["app"]): e for e in events}
    assert by_action["app.create", "alpha"]["actor_token_id"] == admin_id
    assert by_action["app.create", "bravo"]["actor_token_id"] == admin_id
    assert by_action["token.create", "alpha"]["object_id"] == member.id

    upload = by_action["client_certificate.upload", "alpha"]
    update = by_action["client_certificate.update", "alpha"]
    restart = by_action["environment.restart", "alpha"]
    delete = by_action["client_certificate.delete", "alpha"]
    for event in (upload, update, restart, delete):
        assert event["actor_token_id"] == member.id
    for event in (upload, update, delete):
        assert event["object_type"] == "client_certificate"
        assert event["object_id"] == certificate["id"]
    assert upload["before_digest"] is None
    assert len(upload["after_digest"]) == 64
    assert update["before_digest"] == upload["after_digest"]
    assert update["after_digest"] not in (None, update["before_digest"])
    assert delete["before_digest"] == update["after_digest"]
    assert delete["after_digest"] is None
    assert restart["detail"]["version"] == 1
    assert restart["after_digest"] is not None
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)

    own = expect(api.client.get(f"{API}/audit", headers=member.headers), 200)
    assert own
    assert {e["app"] for e in own} == {"alpha"}
    assert {e["id"] for e in own} == {e["id"] for e in events if e["app"] == "alpha"}
    expect(api.client.get(f"{API}/audit?app=bravo", headers=member.headers), 404)
    viewer = api.create_token("viewer", app="alpha")
    expect(api.client.get(f"{API}/audit", headers=viewer.headers), 403)


def test_every_change_adds_exactly_one_audit_event(api: Api, client_ca: TestCA) -> None:
    """Each successful change through the API adds one audit event naming its action, and
    refused requests add none."""
    api.create_app_and_environment("shop", "prod")
    certificate = _upload(api, client_leaf(client_ca, "client.example.test"))
    certificate_url = api.env_url("shop", "prod", f"/client-certificates/{certificate['id']}")
    authority = expect(api.upload_authority("shop", "prod", client_ca.cert_pem()), 201)
    viewer = api.create_token("viewer", app="shop")
    admin = api.admin_headers
    leaf = client_leaf(client_ca, "second.example.test")

    def count() -> int:
        return len(expect(api.client.get(f"{API}/audit?limit=500", headers=admin), 200))

    changes: list[tuple[str, Callable[[], httpx.Response]]] = [
        (
            "app.create",
            lambda: api.client.post(
                f"{API}/apps", json={"name": "other", "plan": "free"}, headers=admin
            ),
        ),
        (
            "app.update",
            lambda: api.client.patch(
                api.app_url("other"), json={"plan": "licensed"}, headers=admin
            ),
        ),
        (
            "environment.create",
            lambda: api.client.post(
                api.app_url("shop", "/environments"),
                json={"name": "qa", "upstream": "http://10.0.0.2"},
                headers=admin,
            ),
        ),
        (
            "environment.update",
            lambda: api.client.patch(
                api.env_url("shop", "qa"), json={"upstream": "http://10.0.0.3"}, headers=admin
            ),
        ),
        (
            "client_certificate.upload",
            lambda: api.upload_client_certificate("shop", "prod", leaf.pkcs12("pw"), password="pw"),
        ),
        (
            "client_certificate.update",
            lambda: api.client.patch(
                certificate_url, json={"description": "edited"}, headers=admin
            ),
        ),
        ("client_certificate.delete", lambda: api.client.delete(certificate_url, headers=admin)),
        (
            "certificate_authority.delete",
            lambda: api.client.delete(
                api.env_url("shop", "prod", f"/certificate-authorities/{authority['id']}"),
                headers=admin,
            ),
        ),
        (
            "certificate_authority.upload",
            lambda: api.upload_authority("shop", "prod", client_ca.cert_pem()),
        ),
        (
            "environment.restart",
            lambda: api.client.post(api.env_url("shop", "prod", "/restart"), headers=admin),
        ),
        (
            "environment.rollback",
            lambda: api.client.post(
                api.env_url("shop", "prod", "/rollback"), json={"version": 1}, headers=admin
            ),
        ),
        (
            "token.create",
            lambda: api.client.post(
                f"{API}/tokens", json={"role": "viewer", "app": "shop"}, headers=admin
            ),
        ),
        ("token.revoke", lambda: api.client.delete(f"{API}/tokens/{viewer.id}", headers=admin)),
        ("environment.delete", lambda: api.client.delete(api.env_url("shop", "qa"), headers=admin)),
        ("app.delete", lambda: api.client.delete(api.app_url("other"), headers=admin)),
    ]
    refusals: list[Callable[[], httpx.Response]] = [
        lambda: api.upload_client_certificate("shop", "prod", leaf.pkcs12("pw"), password="no"),
        lambda: api.client.post(
            f"{API}/apps", json={"name": "shop", "plan": "free"}, headers=admin
        ),
        lambda: api.client.post(
            api.env_url("shop", "prod", "/rollback"), json={"version": 7}, headers=admin
        ),
    ]
    before = count()
    for action, change in changes:
        response = change()
        assert response.status_code < 300, f"{action}: {response.status_code} {response.text}"
        newest = expect(api.client.get(f"{API}/audit?limit=1", headers=admin), 200)[0]
        assert newest["action"] == action
        before += 1
        assert count() == before, f"{action} did not add exactly one audit event"
    for refusal in refusals:
        assert refusal().status_code >= 400
        assert count() == before


def test_a_patch_that_changes_nothing_adds_no_audit_event(api: Api, client_ca: TestCA) -> None:
    """A PATCH with no fields, or with every field as it is, answers 200 and is not audited:
    no event whose before equals its after."""
    api.create_app_and_environment("shop", "prod")
    certificate = _upload(api, client_leaf(client_ca, "client.example.test"))
    admin = api.admin_headers
    expect(
        api.client.post(
            api.app_url("shop", "/access-profiles"),
            json={"name": "partners", "ip_ranges": ["192.0.2.0/24"]},
            headers=admin,
        ),
        201,
    )
    expect(
        api.client.post(
            api.app_url("shop", "/ip-deny-profiles"),
            json={"name": "abuse", "ip_ranges": ["203.0.113.0/24"]},
            headers=admin,
        ),
        201,
    )
    environment = expect(api.client.get(api.env_url("shop", "prod"), headers=admin), 200)
    unchanged: list[tuple[str, dict[str, Any]]] = [
        (api.app_url("shop"), {}),
        (api.app_url("shop"), {"plan": "licensed"}),
        (api.env_url("shop", "prod"), {}),
        (api.env_url("shop", "prod"), {"upstream": environment["upstream"]}),
        (api.env_url("shop", "prod", f"/client-certificates/{certificate['id']}"), {}),
        (api.app_url("shop", "/access-profiles/partners"), {}),
        (api.app_url("shop", "/access-profiles/partners"), {"ip_ranges": ["192.0.2.0/24"]}),
        (api.app_url("shop", "/ip-deny-profiles/abuse"), {}),
        (api.app_url("shop", "/ip-deny-profiles/abuse"), {"ip_ranges": ["203.0.113.0/24"]}),
    ]

    def events() -> list[dict[str, Any]]:
        return expect(api.client.get(f"{API}/audit?limit=500", headers=admin), 200)

    before = events()
    for url, body in unchanged:
        expect(api.client.patch(url, json=body, headers=admin), 200)
        assert events() == before, f"PATCH {url} {body} was audited"
    assert all(e["before_digest"] != e["after_digest"] for e in before if e["before_digest"])

    expect(api.client.patch(api.app_url("shop"), json={"plan": "free"}, headers=admin), 200)
    newest = events()[0]
    assert newest["action"] == "app.update"
    assert newest["before_digest"] != newest["after_digest"]


def _bootstrap_token_id(api: Api) -> str:
    tokens = expect(api.client.get(f"{API}/tokens", headers=api.admin_headers), 200)
    [admin] = [t for t in tokens if t["role"] == "admin"]
    token_id: str = admin["id"]
    return token_id


# -- tokens and roles -----------------------------------------------------------------------


def test_tokens_are_shown_once_and_members_grant_only_viewer_and_runtime(api: Api) -> None:
    """Admins create tokens of every role, members only viewer and runtime ones; listings never show
    values; revoked tokens answer 401.
    """
    api.create_app_and_environment("alpha", "prod")
    api.create_app_and_environment("bravo", "prod")
    created: list[Token] = []
    for role, environment in [("member", None), ("viewer", None), ("runtime", "prod")]:
        response = api.client.post(
            f"{API}/tokens",
            json={"role": role, "app": "alpha", "environment": environment, "description": role},
            headers=api.admin_headers,
        )
        body = expect(response, 201)
        assert body["token"].startswith("cw_")
        assert (body["role"], body["app"], body["environment"]) == (role, "alpha", environment)
        created.append(Token(id=body["id"], value=body["token"], role=role))
    member = created[0]
    created.append(api.create_token("admin"))

    by_member = [
        api.create_token("viewer", app="alpha", headers=member.headers),
        api.create_token("runtime", app="alpha", environment="prod", headers=member.headers),
    ]
    for role in ("member", "admin"):
        response = api.client.post(
            f"{API}/tokens",
            json={"role": role, "app": "alpha" if role == "member" else None},
            headers=member.headers,
        )
        assert expect(response, 403)["code"] == "forbidden"

    listing = api.client.get(f"{API}/tokens", headers=api.admin_headers)
    listed = expect(listing, 200)
    assert {t.id for t in created + by_member} <= {t["id"] for t in listed}
    assert all("token" not in t and "token_hash" not in t for t in listed)
    for token in created + by_member:
        assert token.value not in listing.text
    member_listing = expect(api.client.get(f"{API}/tokens", headers=member.headers), 200)
    assert {t["app"] for t in member_listing} == {"alpha"}

    viewer = by_member[0]
    expect(api.client.get(api.app_url("alpha"), headers=viewer.headers), 200)
    revoked = expect(api.client.delete(f"{API}/tokens/{viewer.id}", headers=member.headers), 200)
    assert revoked["revoked_at"] is not None
    response = api.client.get(api.app_url("alpha"), headers=viewer.headers)
    assert expect(response, 401)["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    expect(api.client.get(api.app_url("alpha"), headers=bearer("cw_unknown-token")), 401)
    expect(api.client.get(api.app_url("alpha")), 401)


def test_viewer_reads_everything_of_its_app_but_changes_nothing(
    api: Api, client_ca: TestCA
) -> None:
    """A viewer token reads the app's environments, certificates and versions but every write
    answers 403.
    """
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(client_ca, "client.example.test")
    certificate = _upload(api, leaf, pins=["api.partner.example"])
    authority = expect(api.upload_authority("shop", "prod", client_ca.cert_pem()), 201)
    api.restart("shop", "prod")
    viewer = api.create_token("viewer", app="shop").headers
    certificate_url = api.env_url("shop", "prod", f"/client-certificates/{certificate['id']}")
    authority_url = api.env_url("shop", "prod", f"/certificate-authorities/{authority['id']}")

    for url in [
        f"{API}/apps",
        api.app_url("shop"),
        api.app_url("shop", "/environments"),
        api.env_url("shop", "prod"),
        api.env_url("shop", "prod", "/client-certificates"),
        certificate_url,
        api.env_url("shop", "prod", "/certificate-authorities"),
        authority_url,
        api.env_url("shop", "prod", "/changes"),
        api.env_url("shop", "prod", "/versions"),
    ]:
        expect(api.client.get(url, headers=viewer), 200)

    other = client_leaf(client_ca, "other.example.test")
    writes = [
        api.upload_client_certificate(
            "shop", "prod", other.pkcs12("pw"), password="pw", headers=viewer
        ),
        api.upload_authority("shop", "prod", client_ca.cert_pem(), headers=viewer),
        api.client.patch(certificate_url, json={"pins": []}, headers=viewer),
        api.client.delete(certificate_url, headers=viewer),
        api.client.delete(authority_url, headers=viewer),
        api.client.patch(
            api.env_url("shop", "prod"), json={"pkcs12_profile": "legacy"}, headers=viewer
        ),
        api.client.post(api.env_url("shop", "prod", "/restart"), headers=viewer),
        api.client.post(
            api.env_url("shop", "prod", "/rollback"), json={"version": 1}, headers=viewer
        ),
        api.client.post(
            api.app_url("shop", "/environments"),
            json={"name": "qa", "upstream": "http://q"},
            headers=viewer,
        ),
        api.client.delete(api.env_url("shop", "prod"), headers=viewer),
        api.client.patch(api.app_url("shop"), json={"plan": "free"}, headers=viewer),
        api.client.delete(api.app_url("shop"), headers=viewer),
        api.client.post(f"{API}/apps", json={"name": "mine", "plan": "free"}, headers=viewer),
        api.client.post(f"{API}/tokens", json={"role": "viewer", "app": "shop"}, headers=viewer),
    ]
    for response in writes:
        assert expect(response, 403)["code"] == "forbidden"
    assert api.changes("shop", "prod") == []
    versions = expect(
        api.client.get(api.env_url("shop", "prod", "/versions"), headers=api.admin_headers), 200
    )
    assert [v["version"] for v in versions] == [1]


def test_runtime_token_cannot_read_or_change_the_control_plane(api: Api) -> None:
    """A runtime token (bundle download only) answers 403 on reads and writes of its own
    environment.
    """
    api.create_app_and_environment("shop", "prod")
    runtime = api.create_token("runtime", app="shop", environment="prod").headers
    for response in [
        api.client.get(api.env_url("shop", "prod"), headers=runtime),
        api.client.get(api.env_url("shop", "prod", "/changes"), headers=runtime),
        api.client.post(api.env_url("shop", "prod", "/restart"), headers=runtime),
        api.client.get(f"{API}/audit", headers=runtime),
    ]:
        expect(response, 403)
    assert expect(api.client.get(f"{API}/apps", headers=runtime), 200) == []


# -- unauthenticated endpoints --------------------------------------------------------------


def test_health_and_openapi_need_no_token(api: Api) -> None:
    """``/healthz``, ``/api/v1/healthz`` and ``/api/v1/openapi.json`` answer without a token."""
    for path in ("/healthz", f"{API}/healthz"):
        assert expect(api.client.get(path), 200) == {"status": "ok"}
    schema = expect(api.client.get(f"{API}/openapi.json"), 200)
    assert schema["info"]["title"] == "certward"
    assert f"{API}/apps/{{app}}/environments/{{env}}/client-certificates" in schema["paths"]
    assert f"{API}/apps/{{app}}/environments/{{env}}/restart" in schema["paths"]
