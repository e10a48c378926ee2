"""TLS certificates for custom domains ordered from the ACME CA on request
(``POST …/tls-certificates/acme``), against Debian's pebble on loopback: validated by
pebble fetching the challenges from certward's API over HTTP, renewed by the worker into
a new certificate that takes over the domains, failures retried with backoff; and the
refusals (plan, configuration, names, an unreachable CA) on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from sqlalchemy import func, select

from certward.clock import SystemClock
from certward.model import AcmeChallenge, AuditEvent, TlsCertificate
from certward.services.acme_issuing import close_acme
from certward.services.tls_acme import renew_due_acme
from tests.api.conftest import Api, expect
from tests.material.factory import TestCA, pem_certificates
from tests.material.pebble import Pebble, Served, free_port, pebble_root, run_pebble, serve_http

SHOP = "shop.example.com"
WWW = "www.shop.example.com"
UNREACHABLE_DIRECTORY = "https://127.0.0.1:9/dir"  # nothing listens on the discard port


@pytest.fixture
def http_port() -> int:
    """Where certward's API listens over HTTP and pebble validates HTTP-01 challenges."""
    return free_port()


@pytest.fixture
def pebble(tmp_path: Path, http_port: int) -> Iterator[Pebble]:
    with run_pebble(tmp_path / "pebble", http_port=http_port) as running:
        yield running


@pytest.fixture
def unreachable_acme() -> str:
    """An ACME directory nobody answers (for tests that never reach the CA, or fail to)."""
    return UNREACHABLE_DIRECTORY


@pytest.fixture
def api_environ(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """ACME through pebble, or through an unreachable directory, when the test asks for
    one of them; otherwise no ACME CA at all."""
    environ = {"CERTWARD_PLATFORM_DOMAIN": "apps.test"}
    if "pebble" in request.fixturenames:
        pebble: Pebble = request.getfixturevalue("pebble")
        environ["CERTWARD_ACME_DIRECTORY"] = pebble.directory_url
        environ["CERTWARD_ACME_CA_BUNDLE"] = str(pebble.ca_bundle)
    elif "unreachable_acme" in request.fixturenames:
        environ["CERTWARD_ACME_DIRECTORY"] = request.getfixturevalue("unreachable_acme")
    yield environ
    close_acme()


@pytest.fixture
def served(api: Api, http_port: int) -> Iterator[Served]:
    """The installation's API over real HTTP on the port pebble validates against."""
    with serve_http(api.app, http_port) as running:
        yield running


def order(api: Api, app: str, sans: list[str], description: str = "") -> httpx.Response:
    return api.client.post(
        api.app_url(app, "/tls-certificates/acme"),
        json={"sans": sans, "description": description},
        headers=api.admin_headers,
    )


def certificates(api: Api, app: str) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = expect(
        api.client.get(api.app_url(app, "/tls-certificates"), headers=api.admin_headers), 200
    )
    return body


def stored(api: Api, certificate_id: str) -> TlsCertificate:
    with api.context.database.reading() as session:
        row = session.get(TlsCertificate, certificate_id)
        assert row is not None
        session.expunge(row)
        return row


def assert_from_pebble(row: TlsCertificate, pebble: Pebble, names: list[str]) -> None:
    assert row.certificate_pem is not None
    leaf = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    chain = x509.load_pem_x509_certificates(row.chain_pem.encode())
    for child, parent in itertools.pairwise([leaf, *chain, pebble_root(pebble)]):
        child.verify_directly_issued_by(parent)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)


@pytest.mark.external("pebble")
@pytest.mark.slow
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_acme_certificate_is_ordered_renewed_into_a_new_one_and_backs_off(
    api: Api, pebble: Pebble, served: Served
) -> None:
    """Ordered on request through pebble (which fetched both challenges from the API);
    renewed when due into a new certificate that takes over its custom domains while
    the old one is deleted; with pebble gone, an order is refused with 503 and a
    renewal backs off, the domains keeping their certificate."""
    api.clock.set(SystemClock().now())  # pebble dates its certificates by the real clock
    api.create_app_and_environment("shop", "prod")

    created = expect(order(api, "shop", ["Shop.Example.com", WWW, SHOP], "storefront"), 201)
    assert created["origin"] == "acme"
    assert created["sans"] == [SHOP, WWW]
    api.clock.set(SystemClock().now() + timedelta(seconds=1))  # pebble does not backdate
    current = expect(
        api.client.get(
            api.app_url("shop", f"/tls-certificates/{created['id']}"), headers=api.admin_headers
        ),
        200,
    )
    assert current["status"] == "valid"
    assert created["key_type"] == "ec-p256"
    assert created["description"] == "storefront"
    assert created["chain"], "pebble's intermediate"
    assert created["renew_after"] is not None
    assert (created["attempts"], created["last_error"]) == (0, None)
    assert "PRIVATE KEY" not in json_text(api)
    first = stored(api, created["id"])
    assert_from_pebble(first, pebble, [SHOP, WWW])
    assert {(SHOP, 200), (WWW, 200)} <= set(served.challenge_fetches), served.challenge_fetches
    with api.context.database.reading() as session:
        assert session.scalar(select(func.count()).select_from(AcmeChallenge)) == 0

    expect(
        api.client.post(
            api.env_url("shop", "prod", "/custom-domains"),
            json={"hostname": SHOP, "certificate_id": created["id"]},
            headers=api.admin_headers,
        ),
        201,
    )
    assert first.renew_after is not None
    api.clock.set(first.renew_after + timedelta(seconds=1))
    report = renew_due_acme(api.context, worker="w", limit=10)
    assert (report.claimed, report.renewed, report.failed) == (1, 1, 0)
    expect(
        api.client.get(
            api.app_url("shop", f"/tls-certificates/{created['id']}"), headers=api.admin_headers
        ),
        404,
    )
    [renewed] = certificates(api, "shop")
    assert renewed["id"] != created["id"]
    assert (renewed["origin"], renewed["sans"]) == ("acme", [SHOP, WWW])
    assert renewed["description"] == "storefront"
    assert renewed["domains"] == [{"hostname": SHOP, "environment": "prod"}]
    assert renewed["sha256_fingerprint"] != created["sha256_fingerprint"]
    second = stored(api, renewed["id"])
    assert_from_pebble(second, pebble, [SHOP, WWW])
    assert second.renew_after is not None
    assert second.renew_after > api.clock.now()
    with api.context.database.reading() as session:
        event = session.scalar(
            select(AuditEvent).where(AuditEvent.action == "tls_certificate.renew")
        )
        assert event is not None
        assert event.object_id == created["id"]
        assert event.detail["replacement_id"] == renewed["id"]
        assert event.detail["hostnames"] == [SHOP]
    assert renew_due_acme(api.context, worker="w", limit=10).claimed == 0, "not due"

    pebble.stop()
    problem = expect(order(api, "shop", ["api.shop.example.com"]), 503)
    assert problem["code"] == "issuer-unavailable"
    assert "unreachable" in problem["detail"]
    assert "api.shop.example.com" in problem["detail"]
    assert len(certificates(api, "shop")) == 1, "nothing stored"

    api.clock.set(second.renew_after + timedelta(seconds=1))
    report = renew_due_acme(api.context, worker="w", limit=10)
    assert (report.claimed, report.renewed, report.failed) == (1, 0, 1)
    [kept] = certificates(api, "shop")
    assert kept["id"] == renewed["id"]
    assert kept["domains"] == [{"hostname": SHOP, "environment": "prod"}]
    assert kept["attempts"] == 1
    assert "ACME renewal failed" in kept["last_error"]
    assert kept["next_attempt_at"] is not None
    assert renew_due_acme(api.context, worker="w", limit=10).claimed == 0, "backing off"


def json_text(api: Api) -> str:
    return "\n".join(r.text for r in api.responses)


def test_without_an_acme_ca_orders_are_refused_with_409(api: Api) -> None:
    """No CERTWARD_ACME_DIRECTORY: 409 ``acme-not-configured``, after the plan check (403
    for free apps, as every TLS-certificate route)."""
    api.create_app("shop")
    problem = expect(order(api, "shop", [SHOP]), 409)
    assert problem["code"] == "acme-not-configured"
    api.create_app("hobby", plan="free")
    assert expect(order(api, "hobby", [SHOP]), 403)["code"] == "plan-required"
    assert certificates(api, "shop") == []


@pytest.mark.parametrize(
    ("sans", "code"),
    [
        ([], "invalid-request"),
        (["*.shop.example.com"], "invalid-hostname"),
        (["192.0.2.10"], "invalid-hostname"),
        (["shop_example!.com"], "invalid-hostname"),
        ([SHOP, "bad name.example.com"], "invalid-hostname"),
        (["prod-shop.apps.test"], "reserved-hostname"),
        (["x.apps.test"], "reserved-hostname"),
    ],
)
def test_names_http01_cannot_prove_are_refused_before_any_order(
    api: Api, unreachable_acme: str, sans: list[str], code: str
) -> None:
    """Names are checked like a CSR's, and wildcards, IP addresses and the platform's own
    names refused with 422: the CA is never contacted (it would be unreachable)."""
    api.create_app("shop")
    problem = expect(order(api, "shop", sans), 422)
    assert problem["code"] == code


def test_a_name_another_app_serves_is_refused(api: Api, unreachable_acme: str) -> None:
    """409 ``hostname-taken`` without naming the app that serves it; the app's own custom
    domain is fine (and then the CA, unreachable here, answers 503)."""
    ca = TestCA.root(name="certward ACME test root").intermediate(name="certward test CA")
    api.create_app_and_environment("bravo", "live")
    leaf = ca.issue_leaf(SHOP, sans=[SHOP])
    uploaded = expect(
        api.client.post(
            api.app_url("bravo", "/tls-certificates"),
            files=[
                ("certificate", ("cert.pem", leaf.cert_pem())),
                ("chain", ("chain.pem", pem_certificates([ca.certificate, *ca.chain]))),
                ("private_key", ("key.pem", leaf.key_pem())),
            ],
            headers=api.admin_headers,
        ),
        201,
    )
    expect(
        api.client.post(
            api.env_url("bravo", "live", "/custom-domains"),
            json={"hostname": SHOP, "certificate_id": uploaded["id"]},
            headers=api.admin_headers,
        ),
        201,
    )
    api.create_app("shop")
    problem = expect(order(api, "shop", [WWW, SHOP]), 409)
    assert problem["code"] == "hostname-taken"
    assert "bravo" not in problem["detail"]
    problem = expect(order(api, "bravo", [SHOP]), 503)
    assert problem["code"] == "issuer-unavailable"
    assert "unreachable" in problem["detail"]
    assert len(certificates(api, "bravo")) == 1, "nothing stored"
