"""One inventory for every certificate, Prometheus metrics, and expiry webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from certward.authorization import Principal
from certward.cli.app import main
from certward.model import Environment, ManagedCertificate, TlsCertificate, WebhookDelivery
from certward.services import notifications
from certward.vocabulary import Role
from certward.worker import RenewalWorker
from tests.api.conftest import API, Api, client_leaf, expect
from tests.material.factory import NOW, TestCA

ADMIN = Principal(token_id=None, role=Role.ADMIN)


def stage(api: Api, ca: TestCA) -> dict[str, str]:
    """App ``shop``: a client certificate expiring in 10 days, one in a year, and a CA."""
    api.create_app_and_environment("shop", "production")
    soon = client_leaf(ca, "soon-client", not_after=NOW + timedelta(days=10))
    later = client_leaf(ca, "later-client")
    ids = {}
    for name, leaf in (("soon", soon), ("later", later)):
        response = api.upload_client_certificate(
            "shop", "production", leaf.pkcs12("pw"), password="pw", pins=[f"{name}.example.com"]
        )
        ids[name] = expect(response, 201)["id"]
    expect(api.upload_authority("shop", "production", ca.cert_pem()), 201)
    return ids


def test_the_inventory_lists_every_kind_soonest_expiry_first(api: Api, client_ca: TestCA) -> None:
    """Client and CA certificates of every app, sorted by expiry, with computed statuses."""
    ids = stage(api, client_ca)
    items = expect(api.client.get(f"{API}/certificates", headers=api.admin_headers), 200)
    expiries = [i["not_after"] for i in items]
    assert expiries == sorted(expiries)
    by_id = {i["id"]: i for i in items}
    assert by_id[ids["soon"]]["status"] == "expires-soon"
    assert by_id[ids["soon"]]["kind"] == "client"
    assert by_id[ids["later"]]["status"] == "valid"
    assert any(i["kind"] == "authority" for i in items)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=expires-soon", {"soon"}),
        ("status=valid&kind=client", {"later"}),
        ("status=expired", set()),
        ("kind=client", {"soon", "later"}),
    ],
)
def test_filters_select_by_status_and_kind(
    api: Api, client_ca: TestCA, query: str, expected: set[str]
) -> None:
    """status and kind narrow the list in the database, not after the fact."""
    ids = stage(api, client_ca)
    items = expect(api.client.get(f"{API}/certificates?{query}", headers=api.admin_headers), 200)
    names = {name for name, id_ in ids.items() if id_ in {i["id"] for i in items}}
    assert names == expected


def test_statuses_follow_the_clock(api: Api, client_ca: TestCA) -> None:
    """Eleven days on, the soon-expiring client certificate is listed as expired."""
    ids = stage(api, client_ca)
    api.clock.advance(timedelta(days=11))
    items = expect(
        api.client.get(f"{API}/certificates?status=expired&kind=client", headers=api.admin_headers),
        200,
    )
    assert [i["id"] for i in items] == [ids["soon"]]


def test_app_tokens_see_only_their_app(api: Api, client_ca: TestCA) -> None:
    """A member of another app sees none of shop's certificates; asking for shop is a 404."""
    stage(api, client_ca)
    api.create_app_and_environment("other", "production")
    member = api.create_token("member", app="other")
    theirs = expect(api.client.get(f"{API}/certificates", headers=member.headers), 200)
    assert {i["app"] for i in theirs} <= {"other"}
    assert api.client.get(f"{API}/certificates?app=shop", headers=member.headers).status_code == 404
    shop_viewer = api.create_token("viewer", app="shop")
    mine = expect(api.client.get(f"{API}/certificates", headers=shop_viewer.headers), 200)
    assert mine
    assert {i["app"] for i in mine} == {"shop"}


def test_metrics_give_each_certificate_its_expiry(api: Api, client_ca: TestCA) -> None:
    """Prometheus text with an expiry gauge per certificate, for admins only."""
    ids = stage(api, client_ca)
    response = api.client.get("/metrics", headers=api.admin_headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("certward_certificate_expiry_timestamp_seconds") and ids["soon"] in line
    )
    assert 'app="shop"' in line
    assert 'env="production"' in line
    assert 'kind="client"' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx((NOW + timedelta(days=10)).timestamp())
    assert "certward_renewal_failures_total" in text
    viewer = api.create_token("viewer", app="shop")
    assert api.client.get("/metrics", headers=viewer.headers).status_code == 403


@pytest.fixture
def api_environ() -> dict[str, str]:
    """The webhook receivers of these tests listen on loopback: the operator opens it."""
    return {"CERTWARD_EGRESS_ALLOW": "127.0.0.0/8"}


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails its first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(500)
                else:
                    receiver.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=1)
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_webhooks_are_told_once_and_retried_until_delivered(
    api: Api, client_ca: TestCA, receiver: Receiver
) -> None:
    """An expiring certificate queues one notice; a 500 is retried after backoff; a rescan
    queues nothing new."""
    ids = stage(api, client_ca)
    ctx = api.context
    notifications.add_webhook(ctx, ADMIN, receiver.url)
    assert notifications.scan(ctx) == 1
    assert notifications.scan(ctx) == 0
    with httpx.Client() as client:
        first = notifications.deliver_due(ctx, client)
        assert (first.delivered, first.failed) == (0, 1)
        assert notifications.deliver_due(ctx, client).failed == 0  # not due again yet
        api.clock.advance(timedelta(minutes=1))
        second = notifications.deliver_due(ctx, client)
    assert (second.delivered, second.failed) == (1, 0)
    (notice,) = receiver.received
    assert notice["event"] == "certificate.expires-soon"
    assert notice["certificate"]["id"] == ids["soon"]
    api.clock.advance(timedelta(days=11))
    # Now it expired (a new event), and so did the managed certificate nobody renewed.
    assert notifications.scan(ctx) == 2


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_the_worker_pass_sends_the_notices(api: Api, client_ca: TestCA, receiver: Receiver) -> None:
    """The renewal worker's pass queues and delivers webhooks too (retrying the 500)."""
    stage(api, client_ca)
    notifications.add_webhook(api.context, ADMIN, receiver.url)
    worker = RenewalWorker(api.context, name="test-worker")
    with httpx.Client() as client:
        worker.notify(client)
        api.clock.advance(timedelta(minutes=1))
        worker.notify(client)
    assert [n["event"] for n in receiver.received] == ["certificate.expires-soon"]


def test_webhook_commands_add_list_and_remove(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """certward webhook add/list/remove manage the registrations; a bad URL is a usage error."""
    monkeypatch.setenv("CERTWARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["webhook", "add", "ftp://nope"]) == 2
    assert main(["webhook", "add", "http://127.0.0.1:9/hook"]) == 2  # loopback: closed
    monkeypatch.setenv("CERTWARD_EGRESS_ALLOW", "127.0.0.0/8")
    assert main(["webhook", "add", "http://127.0.0.1:9/hook"]) == 0
    capsys.readouterr()
    assert main(["webhook", "list", "--json"]) == 0
    (hook,) = json.loads(capsys.readouterr().out)
    assert hook["url"] == "http://127.0.0.1:9/hook"
    assert main(["webhook", "remove", hook["id"]]) == 0
    assert main(["webhook", "remove", hook["id"]]) == 1


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_failing_renewals_and_first_issuances_are_told(api: Api) -> None:
    """A managed certificate failing to renew, one whose first issuance keeps failing, and
    an ACME custom-domain certificate failing to renew: one notice each per attempt."""
    ctx = api.context
    api.create_app_and_environment("shop", "production")
    api.create_environment("shop", "staging")
    notifications.add_webhook(ctx, ADMIN, "http://127.0.0.1:9/hook")
    assert notifications.scan(ctx) == 0
    leaf = TestCA.root(name="acme-like CA").issue_leaf("www.shop.test")
    tls_id = expect(
        api.client.post(
            f"{API}/apps/shop/tls-certificates",
            files={
                "certificate": ("c.pem", leaf.cert_pem()),
                "chain": ("chain.pem", leaf.chain_pem()),
                "private_key": ("k.pem", leaf.key_pem()),
            },
            headers=api.admin_headers,
        ),
        201,
    )["id"]
    with ctx.database.transaction() as session:
        production, staging = (
            session.scalars(
                select(ManagedCertificate)
                .join(Environment, Environment.id == ManagedCertificate.environment_id)
                .where(Environment.name == name)
            ).one()
            for name in ("production", "staging")
        )
        production.attempts, production.last_error = 2, "the CA said no"
        staging.state, staging.attempts, staging.last_error = "pending", 1, "unreachable"
        tls = session.get(TlsCertificate, tls_id)
        assert tls is not None
        tls.renew_after = api.clock.now()
        tls.attempts, tls.last_error = 1, "validation failed"
    assert notifications.scan(ctx) == 3
    assert notifications.scan(ctx) == 0  # once per attempt
    with ctx.database.reading() as session:
        notices = {
            row.payload["certificate"]["id"]: row.payload
            for row in session.scalars(select(WebhookDelivery))
        }
    assert {n["event"] for n in notices.values()} == {"certificate.renewal-failed"}
    assert notices[production.id]["certificate"]["error"] == "the CA said no"
    assert notices[staging.id]["certificate"]["first_issuance"] is True
    assert notices[staging.id]["certificate"]["not_after"] is None
    assert notices[tls_id]["certificate"]["kind"] == "custom"
    assert notices[tls_id]["certificate"]["hostnames"] == ["www.shop.test"]
