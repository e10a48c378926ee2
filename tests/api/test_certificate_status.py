"""One status per certificate, the same on every surface: the inventory (JSON), the
console, the metrics and the webhooks.

A managed certificate (7 days, renewed by certward) is valid while its renewal is on
time, and expires-soon with the reason once the renewal is overdue; an uploaded client
certificate 20 days from expiry is expires-soon under the 30-day rule.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from certward.authorization import Principal
from certward.expiry import NO_RENEWAL_ATTEMPTED, renewal_overdue_at
from certward.model import ManagedCertificate, TlsCertificate, WebhookDelivery
from certward.services import notifications
from certward.vocabulary import Role
from tests.api.conftest import ADMIN_TOKEN, API, Api, client_leaf, expect
from tests.material.factory import NOW, TestCA

ADMIN = Principal(token_id=None, role=Role.ADMIN)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_ROW = re.compile(r"<tr>(.*?)</tr>", re.DOTALL)
_BADGE = re.compile(r'<span class="status status-([a-z-]+)">')


@pytest.fixture
def api_environ() -> dict[str, str]:
    """Webhooks go to loopback here (never reached: the deliveries are only read)."""
    return {"CERTWARD_EGRESS_ALLOW": "127.0.0.0/8"}


def stage(api: Api, ca: TestCA) -> dict[str, str]:
    """shop/prod with its managed certificate, and a client certificate 20 days from expiry."""
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(ca, "uploaded-client", not_after=NOW + timedelta(days=20))
    client_id = expect(
        api.upload_client_certificate("shop", "prod", leaf.pkcs12("pw"), password="pw"), 201
    )["id"]
    with api.context.database.reading() as session:
        managed = session.scalars(select(ManagedCertificate)).one()
    notifications.add_webhook(api.context, ADMIN, "http://127.0.0.1:9/hook")
    return {"managed": managed.id, "hostname": managed.hostname, "client": client_id}


def inventory(api: Api) -> dict[str, tuple[str, str | None]]:
    """(status, status_reason) by id, from GET /api/v1/certificates."""
    items = expect(api.client.get(f"{API}/certificates", headers=api.admin_headers), 200)
    return {i["id"]: (i["status"], i["status_reason"]) for i in items}


def metrics(api: Api) -> dict[str, str]:
    """The status label of certward_certificate_status by id, from /metrics."""
    found: dict[str, str] = {}
    text = expect(api.client.get("/metrics", headers=api.admin_headers), 200).decode()
    for line in text.splitlines():
        if line.startswith("certward_certificate_status{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            assert line.endswith(" 1.0")
            assert labels["id"] not in found  # one status per certificate
            found[labels["id"]] = labels["status"]
    return found


def console(api: Api, *texts: str) -> list[tuple[str, str]]:
    """(badge, row text) of the console inventory's row naming each of ``texts``."""
    page = api.client.get("/sign-in")
    csrf = _CSRF.search(page.text)
    assert csrf is not None
    signed_in = api.client.post(
        "/sign-in", data={"csrf": csrf.group(1), "token": ADMIN_TOKEN, "next": "/apps"}
    )
    assert signed_in.status_code == 200
    body = api.client.get("/platform/certificates")
    assert body.status_code == 200
    rows = _ROW.findall(body.text)
    found = []
    for text in texts:
        (row,) = [r for r in rows if text in r]
        badge = _BADGE.search(row)
        assert badge is not None
        found.append((badge.group(1), html.unescape(re.sub(r"<[^>]+>", " ", row))))
    return found


def webhooks(api: Api) -> dict[tuple[str, str], dict[str, Any]]:
    """Queued notices (after a scan) by (event, certificate id)."""
    notifications.scan(api.context)
    with api.context.database.reading() as session:
        return {
            (row.event, row.payload["certificate"]["id"]): row.payload["certificate"]
            for row in session.scalars(select(WebhookDelivery))
        }


def test_every_surface_shows_the_same_status(api: Api, client_ca: TestCA) -> None:
    """Fresh: the managed certificate is valid on all four surfaces, the uploaded one
    expires-soon. Renewal overdue: the managed one is expires-soon on all four, with the
    reason (no attempt yet, then the last failure)."""
    ids = stage(api, client_ca)
    managed, client, hostname = ids["managed"], ids["client"], ids["hostname"]

    listed = inventory(api)
    assert listed[managed] == ("valid", None)
    assert listed[client] == (
        "expires-soon",
        "expires within 30 days and is not renewed by certward",
    )
    assert {k: v for k, v in metrics(api).items() if k in (managed, client)} == {
        managed: "valid",
        client: "expires-soon",
    }
    (managed_row, client_row) = console(api, hostname, "uploaded-client")
    assert managed_row[0] == "valid"
    assert (client_row[0], "not renewed by certward" in client_row[1]) == ("expires-soon", True)
    told = webhooks(api)
    assert ("certificate.expires-soon", managed) not in told
    assert told[("certificate.expires-soon", client)]["status"] == "expires-soon"
    valid = expect(
        api.client.get(f"{API}/certificates?status=valid", headers=api.admin_headers), 200
    )
    assert {i["id"] for i in valid} == {managed}

    # Nobody renewed it (no worker ran): past renew_after and the grace it is overdue.
    with api.context.database.reading() as session:
        row = session.get(ManagedCertificate, managed)
        assert row is not None
        overdue = renewal_overdue_at(row.not_before, row.not_after, row.renew_after)
    api.clock.set(overdue + timedelta(minutes=1))
    assert api.clock.now() < row.not_after
    reason = f"renewal overdue: {NO_RENEWAL_ATTEMPTED}"
    assert inventory(api)[managed] == ("expires-soon", reason)
    assert metrics(api)[managed] == "expires-soon"
    (managed_row,) = console(api, hostname)
    assert managed_row[0] == "expires-soon"
    assert reason in managed_row[1]
    notice = webhooks(api)[("certificate.expires-soon", managed)]
    assert (notice["status"], notice["status_reason"]) == ("expires-soon", reason)
    soon = expect(
        api.client.get(
            f"{API}/certificates?status=expires-soon&kind=managed", headers=api.admin_headers
        ),
        200,
    )
    assert [i["id"] for i in soon] == [managed]

    # The worker tried and failed: the reason says so, everywhere it is shown.
    with api.context.database.transaction() as session:
        stored = session.get(ManagedCertificate, managed)
        assert stored is not None
        stored.attempts, stored.last_error = 3, "the CA said no"
    failed = "renewal overdue: 3 failed attempt(s), last: the CA said no"
    assert inventory(api)[managed] == ("expires-soon", failed)
    assert metrics(api)[managed] == "expires-soon"
    (managed_row,) = console(api, hostname)
    assert failed in managed_row[1]
    environment = expect(
        api.client.get(api.env_url("shop", "prod", "/domains"), headers=api.admin_headers), 200
    )
    default = next(d for d in environment if d["kind"] == "managed")
    assert (default["certificate"]["status"], default["certificate"]["status_reason"]) == (
        "expires-soon",
        failed,
    )


def test_a_custom_domain_certificate_follows_who_renews_it(api: Api) -> None:
    """Two custom-domain certificates 20 days from expiry: the uploaded one is
    expires-soon (30-day rule); one certward renews (a renew_after stored, as for an ACME
    certificate) is valid until that renewal is overdue. The status filters agree."""
    api.create_app_and_environment("shop", "prod")
    ca = TestCA.root(name="custom-domain CA")
    ids = []
    for name in ("uploaded.shop.test", "renewed.shop.test"):
        leaf = ca.issue_leaf(name, not_after=NOW + timedelta(days=20))
        response = api.client.post(
            f"{API}/apps/shop/tls-certificates",
            files={
                "certificate": ("c.pem", leaf.cert_pem()),
                "chain": ("chain.pem", leaf.chain_pem()),
                "private_key": ("k.pem", leaf.key_pem()),
            },
            headers=api.admin_headers,
        )
        ids.append(expect(response, 201)["id"])
    uploaded, renewed = ids
    with api.context.database.transaction() as session:
        row = session.get(TlsCertificate, renewed)
        assert row is not None
        row.renew_after = NOW + timedelta(days=1)
        grace = renewal_overdue_at(row.not_before, row.not_after, row.renew_after)

    def listed(status: str) -> set[str]:
        items = expect(
            api.client.get(
                f"{API}/certificates?kind=custom-domain&status={status}",
                headers=api.admin_headers,
            ),
            200,
        )
        return {i["id"] for i in items}

    assert inventory(api)[uploaded][0] == "expires-soon"
    assert inventory(api)[renewed] == ("valid", None)
    assert (listed("expires-soon"), listed("valid")) == ({uploaded}, {renewed})
    assert metrics(api)[renewed] == "valid"
    tls = expect(
        api.client.get(f"{API}/apps/shop/tls-certificates/{renewed}", headers=api.admin_headers),
        200,
    )
    assert (tls["status"], tls["status_reason"]) == ("valid", None)
    valid_only = expect(
        api.client.get(f"{API}/apps/shop/tls-certificates?status=valid", headers=api.admin_headers),
        200,
    )
    assert [c["id"] for c in valid_only] == [renewed]

    api.clock.set(grace + timedelta(minutes=1))
    reason = f"renewal overdue: {NO_RENEWAL_ATTEMPTED}"
    assert inventory(api)[renewed] == ("expires-soon", reason)
    assert listed("expires-soon") == {uploaded, renewed}
    assert listed("valid") == set()
    assert metrics(api)[renewed] == "expires-soon"


@pytest.mark.parametrize(
    "api_environ",
    [
        {
            "CERTWARD_EGRESS_ALLOW": "127.0.0.0/8",
            "CERTWARD_EXPIRES_SOON_DAYS_CLIENT_CERTIFICATE": "14",
        }
    ],
)
def test_the_window_of_uploaded_client_certificates_is_configured(
    api: Api, client_ca: TestCA
) -> None:
    """With a 14-day window the client certificate 20 days from expiry is valid, in the
    list and in the filters; 7 days on it is expires-soon, with that window in the reason."""
    client = stage(api, client_ca)["client"]
    assert inventory(api)[client] == ("valid", None)
    assert metrics(api)[client] == "valid"
    valid = expect(
        api.client.get(f"{API}/certificates?status=valid&kind=client", headers=api.admin_headers),
        200,
    )
    assert [i["id"] for i in valid] == [client]
    api.clock.advance(timedelta(days=7))
    assert inventory(api)[client] == (
        "expires-soon",
        "expires within 14 days and is not renewed by certward",
    )
    soon = expect(
        api.client.get(
            f"{API}/certificates?status=expires-soon&kind=client", headers=api.admin_headers
        ),
        200,
    )
    assert [i["id"] for i in soon] == [client]
