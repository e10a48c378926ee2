"""The data-plane change feed, on SQLite and PostgreSQL.

Every kind of change to what the data plane serves advances the sequence in its own
transaction and lists the right hostname; a rolled-back transaction advances nothing;
a node that follows the changes serves the digest a full load gives; a trimmed log
sends a node back to a full snapshot; two writers on PostgreSQL never share a sequence.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, update

from certward.model import (
    AccessProfile,
    AccessProfileCa,
    App,
    CustomDomain,
    DataPlaneChange,
    Environment,
    EnvironmentIpDeny,
    IpDenyProfile,
    TlsCertificate,
)
from certward.services.dataplane_feed import DataPlaneFeed, trim_changes
from certward.services.dataplane_follower import StateFollower
from certward.services.managed import renew_due
from tests.api.conftest import Api, expect
from tests.api.test_dataplane_feed import upload_tls
from tests.api.test_managed_certificates import make_due
from tests.material.factory import TestCA

WATCHED_TABLES = {
    "environments",
    "apps",
    "managed_certificates",
    "tls_certificates",
    "custom_domains",
    "access_profiles",
    "access_profile_cas",
    "ip_deny_profiles",
    "environment_ip_denies",
    "environment_versions",
    "platform_cas",  # a root's retirement ends the overlap its cross-certificate bridged
}


def _write(api: Api, change: Callable[..., object]) -> None:
    with api.context.database.transaction() as session:
        change(session)


def _environment(api: Api, hostname: str) -> Environment:
    with api.context.database.reading() as session:
        row = session.scalar(select(Environment).where(Environment.hostname == hostname))
        assert row is not None
        return row


def test_every_kind_of_served_change_advances_the_sequence_and_lists_its_site(api: Api) -> None:
    feed = DataPlaneFeed(api.context)
    follower = StateFollower(feed, kind="gateway", node="test/gateway/1")
    follower.load()
    ca = TestCA.root(name="changes test CA")
    seen: list[str] = []

    def expect_change(kind: str, hostname: str, *, removed: bool = False) -> None:
        before = follower.state
        assert before is not None
        assert feed.poll() > before.sequence, f"{kind}: the sequence did not move"
        changes = feed.changes_since(before.sequence)
        assert changes is not None
        if removed:
            assert hostname in changes.removed, kind
        else:
            assert hostname in changes.changed, kind
        state = follower.load()
        full = feed.load()
        assert state.sequence == full.sequence, kind
        assert state.version == full.version, kind  # increments give the full digest
        assert state.sites.keys() == full.sites.keys(), kind
        seen.append(kind)

    environment = api.create_app_and_environment("shop", "prod")
    host = environment["hostname"]
    expect_change("hostname added", host)

    env = _environment(api, host)
    _write(
        api,
        lambda s: s.execute(
            update(Environment)
            .where(Environment.id == env.id)
            .values(upstream="http://other.shop.backend.test:8080")
        ),
    )
    expect_change("upstream", host)

    expect(
        api.client.patch(
            api.app_url("shop"), json={"hsts_max_age": 31536000}, headers=api.admin_headers
        ),
        200,
    )
    expect_change("HSTS max-age", host)
    assert follower.state is not None
    assert follower.state.sites[host].hsts_max_age == 31536000

    make_due(api)
    assert renew_due(api.context, worker="w", limit=10).renewed == 1
    expect_change("managed renewal", host)

    certificate_id = upload_tls(api, "shop", ca.issue_leaf("www.shop.test"))
    expect(
        api.client.post(
            api.env_url("shop", "prod", "/custom-domains"),
            json={"hostname": "www.shop.test", "certificate_id": certificate_id},
            headers=api.admin_headers,
        ),
        201,
    )
    expect_change("custom domain", "www.shop.test")

    replacement = upload_tls(api, "shop", ca.issue_leaf("www.shop.test"))
    _write(
        api,
        lambda s: s.execute(
            update(CustomDomain)
            .where(CustomDomain.hostname == "www.shop.test")
            .values(tls_certificate_id=replacement)
        ),
    )
    expect_change("custom domain certificate replaced", "www.shop.test")

    _write(
        api,
        lambda s: s.execute(
            update(TlsCertificate)
            .where(TlsCertificate.id == replacement)
            .values(chain_pem=ca.cert_pem().decode())
        ),
    )
    expect_change("TLS certificate material", "www.shop.test")

    app_id = env.app_id
    now = api.clock.now()

    def add_profile(session: object) -> None:
        session.add(  # type: ignore[attr-defined]
            AccessProfile(
                id="profile-1",
                app_id=app_id,
                name="office",
                ip_ranges=["192.0.2.0/24"],
                created_at=now,
                updated_at=now,
            )
        )

    _write(api, add_profile)
    expect_change("access profile", "www.shop.test")

    def add_ca(session: object) -> None:
        session.add(  # type: ignore[attr-defined]
            AccessProfileCa(
                profile_id="profile-1",
                sha256_fingerprint="ab" * 32,
                subject="CN=changes test CA",
                issuer="CN=changes test CA",
                not_before=now,
                not_after=now + timedelta(days=1),
                certificate_pem=ca.cert_pem().decode(),
                selected=True,
                created_at=now,
            )
        )

    _write(api, add_ca)
    expect_change("client CA", host)

    def add_deny(session: object) -> None:
        session.add(  # type: ignore[attr-defined]
            IpDenyProfile(
                id="deny-1",
                app_id=app_id,
                name="bad",
                ip_ranges=["198.51.100.0/24"],
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()  # type: ignore[attr-defined]
        session.add(  # type: ignore[attr-defined]
            EnvironmentIpDeny(environment_id=env.id, profile_id="deny-1", created_at=now)
        )

    _write(api, add_deny)
    expect_change("IP deny profile attached", host)
    _write(
        api,
        lambda s: s.execute(
            update(IpDenyProfile)
            .where(IpDenyProfile.id == "deny-1")
            .values(ip_ranges=["203.0.113.0/24"])
        ),
    )
    expect_change("IP deny profile edited", "www.shop.test")

    expect(
        api.client.put(
            api.env_url("shop", "prod", "/path-rules"),
            json={"/admin": {"rule": "deny-all"}},
            headers=api.admin_headers,
        ),
        200,
    )
    expect(api.client.post(api.env_url("shop", "prod", "/restart"), headers=api.admin_headers), 200)
    expect_change("applied path rules", host)

    _write(api, lambda s: s.execute(update(App).where(App.id == app_id).values(name="shop2")))
    expect_change("app renamed", "www.shop.test")

    expect(
        api.client.delete(
            api.env_url("shop2", "prod", "/custom-domains/www.shop.test"),
            headers=api.admin_headers,
        ),
        204,
    )
    expect_change("custom domain removed", "www.shop.test", removed=True)

    expect(api.client.delete(api.app_url("shop2"), headers=api.admin_headers), 204)
    expect_change("app deleted (cascade)", host, removed=True)
    assert len(seen) == 15


def test_a_rolled_back_transaction_advances_nothing(api: Api) -> None:
    environment = api.create_app_and_environment("shop", "prod")
    feed = DataPlaneFeed(api.context)
    before = feed.poll()

    def change_then_fail() -> None:
        with api.context.database.transaction() as session:
            session.execute(
                update(Environment)
                .where(Environment.hostname == environment["hostname"])
                .values(upstream="http://elsewhere.shop.backend.test:8080")
            )
            session.flush()
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert feed.poll() == before
    with api.context.database.reading() as session:
        assert (
            session.scalar(select(DataPlaneChange).where(DataPlaneChange.sequence > before)) is None
        )


def test_a_node_behind_the_trimmed_log_loads_a_full_snapshot(api: Api) -> None:
    api.create_app_and_environment("shop", "prod")
    feed = DataPlaneFeed(api.context)
    follower = StateFollower(feed, kind="nginx", node="test/nginx/1")
    first = follower.load()
    for name in ("a", "b", "c"):
        api.create_environment("shop", name)
    assert trim_changes(api.context, 1) > 0
    assert feed.changes_since(first.sequence) is None
    state = follower.load()
    assert follower.full_loads == 2
    assert state.version == feed.load().version
    assert len(state.sites) == 4


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_randomized_changes_keep_the_followed_digest_equal_to_a_full_load(api: Api) -> None:
    rng = random.Random(12)
    api.create_app("shop")
    feed = DataPlaneFeed(api.context)
    follower = StateFollower(feed, kind="gateway", node="test/gateway/r")
    follower.load()
    names: list[str] = []
    for step in range(30):
        action = rng.choice(["add", "add", "upstream", "delete"] if names else ["add"])
        if action == "add":
            name = f"e{step}"
            api.create_environment("shop", name)
            names.append(name)
        elif action == "upstream":
            name = rng.choice(names)
            _write(
                api,
                lambda s, n=name, port=8000 + step: s.execute(
                    update(Environment)
                    .where(Environment.name == n)
                    .values(upstream=f"http://shop.backend.test:{port}")
                ),
            )
        else:
            name = names.pop(rng.randrange(len(names)))
            expect(api.client.delete(api.env_url("shop", name), headers=api.admin_headers), 204)
        if rng.random() < 0.5:
            state = follower.load()
            assert state.version == feed.load().version, step
    assert follower.load().version == feed.load().version
    assert follower.full_loads == 1


def test_every_served_table_has_its_triggers(api: Api) -> None:
    engine = api.context.database.engine
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger'"
            )
        else:
            rows = connection.exec_driver_sql(
                "SELECT event_object_table FROM information_schema.triggers"
                " WHERE trigger_schema = current_schema()"
            )
        tables = {row[0] for row in rows}
    assert tables >= WATCHED_TABLES
    assert set(inspect(engine).get_table_names()) >= WATCHED_TABLES


@pytest.mark.parametrize("api", ["postgresql"], indirect=True)
def test_concurrent_writers_on_postgresql_never_share_a_sequence(api: Api) -> None:
    api.create_app("shop")
    for index in range(8):
        api.create_environment("shop", f"e{index}")
    feed = DataPlaneFeed(api.context)
    start = feed.poll()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for round_ in range(5):
                with api.context.database.transaction() as session:
                    session.execute(
                        update(Environment)
                        .where(Environment.name == f"e{index}")
                        .values(upstream=f"http://shop.backend.test:{9000 + round_}")
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with api.context.database.reading() as session:
        rows = session.execute(
            select(DataPlaneChange.sequence, DataPlaneChange.hostname).where(
                DataPlaneChange.sequence > start
            )
        ).all()
    sequences = [sequence for sequence, _ in rows]
    assert len(sequences) == len(set(sequences)) == 40  # one row each, none shared, none lost
    assert sorted(sequences) == list(range(start + 1, start + 41))
    assert feed.poll() == start + 40


@pytest.mark.parametrize("api", ["postgresql"], indirect=True)
def test_a_commit_wakes_a_listening_node_on_postgresql(api: Api) -> None:
    api.create_app("shop")
    follower = StateFollower(DataPlaneFeed(api.context), kind="gateway", node="listening")
    follower.load()
    follower.wait_for_change(0.01)  # LISTEN now, before the change
    woke = threading.Event()

    def wait() -> None:
        follower.wait_for_change(120)  # far longer than the test waits below
        woke.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    environment = api.create_environment("shop", "prod")
    assert woke.wait(30), "no notification woke the node"
    assert environment["hostname"] in follower.load().sites
    follower.close()
