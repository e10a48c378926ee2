"""ACME renewal information (RFC 9773) and profiles (draft-ietf-acme-profiles), through
pebble. Debian's pebble 2.4 offers neither in its directory, so a loopback HTTPS front
(`tests.material.acme_front`) adds ``renewalInfo`` and ``meta.profiles`` to pebble's
directory and answers the renewal information itself; everything else (accounts,
orders, HTTP-01 validation against certward's API, issuance) is pebble's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from acme.client import _renewal_info_path_component
from cryptography import x509
from sqlalchemy import select

from certward.errors import ConfigurationError
from certward.issuing.renewal import (
    CUSTOM_DOMAIN_RENEWAL_MIN_DELAY,
    DEFAULT_JITTER,
    RENEWAL_FRACTION,
)
from certward.model import ManagedCertificate, TlsCertificate
from certward.services.acme_issuing import check_acme_profile, close_acme
from certward.services.managed import renew_due
from certward.services.tls_acme import renew_due_acme
from tests.api.conftest import Api, expect
from tests.material.acme_front import Front, run_front
from tests.material.pebble import Pebble, Served, free_port, run_pebble, serve_http

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

pytestmark = [
    pytest.mark.external("pebble"),
    pytest.mark.slow,
    pytest.mark.parametrize("api", ["sqlite"], indirect=True),
]


@pytest.fixture
def http_port() -> int:
    return free_port()


@pytest.fixture
def pebble(tmp_path: Path, http_port: int) -> Iterator[Pebble]:
    with run_pebble(tmp_path / "pebble", http_port=http_port) as running:
        yield running


@pytest.fixture
def front(pebble: Pebble) -> Iterator[Front]:
    with run_front(pebble) as running:
        yield running


@pytest.fixture
def profile() -> str | None:
    """CERTWARD_ACME_PROFILE of the installation (a test overrides it)."""
    return None


@pytest.fixture
def api_environ(front: Front, pebble: Pebble, profile: str | None) -> Iterator[dict[str, str]]:
    environ = {
        "CERTWARD_PLATFORM_DOMAIN": "apps.test",
        "CERTWARD_ACME_DIRECTORY": front.directory_url,
        "CERTWARD_ACME_CA_BUNDLE": str(pebble.ca_bundle),
    }
    if profile is not None:
        environ["CERTWARD_ACME_PROFILE"] = profile
    yield environ
    close_acme()


@pytest.fixture
def served(api: Api, http_port: int) -> Iterator[Served]:
    with serve_http(api.app, http_port) as running:
        yield running


def active(api: Api) -> ManagedCertificate:
    with api.context.database.reading() as session:
        row = session.scalars(
            select(ManagedCertificate).where(ManagedCertificate.state == "active")
        ).one()
        session.expunge_all()
        return row


def leaf_of(row: ManagedCertificate | TlsCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(row.certificate_pem.encode())


def test_managed_renewal_follows_the_window_retry_after_and_names_what_it_replaces(
    api: Api, front: Front, served: Served
) -> None:
    """The renewal information of the new certificate is asked for (by its AKI.serial
    id); with Retry-After sooner than the window, renew_after is that; a pass then only
    reschedules while the window is ahead; once the window is over the renewal is
    ordered at once with ``replaces`` naming the old certificate, and no profile."""
    now = api.clock.now()
    front.window = (now + 2 * DAY, now + 3 * DAY)
    front.retry_after = "3600"
    api.create_app_and_environment("shop", "prod")
    first = active(api)
    first_id = _renewal_info_path_component(leaf_of(first))
    assert front.renewal_info_requests == [first_id]
    assert first.renew_after == now + HOUR  # ask again before the window opens

    api.clock.set(first.renew_after)
    report = renew_due(api.context, worker="w", limit=10)
    assert (report.claimed, report.rescheduled, report.renewed, report.lost) == (1, 1, 0, 0)
    assert active(api).id == first.id
    assert active(api).renew_after == api.clock.now() + HOUR
    assert active(api).claimed_by is None

    front.retry_after = "999999"  # held to a day: the window's moment comes first
    api.clock.set(active(api).renew_after)
    front.window = (api.clock.now() + 2 * HOUR, api.clock.now() + 3 * HOUR)
    renew_due(api.context, worker="w", limit=10)
    scheduled = active(api).renew_after
    assert front.window[0] <= scheduled <= front.window[1]
    front.window = (api.clock.now() + 2 * DAY, api.clock.now() + 3 * DAY)
    renew_due(api.context, worker="w", limit=10)  # not due yet: nothing claimed
    assert active(api).renew_after == scheduled
    api.clock.set(scheduled)
    renew_due(api.context, worker="w", limit=10)  # the CA moved its window: ask in a day
    assert active(api).renew_after == scheduled + DAY
    scheduled = active(api).renew_after

    front.window = (now - 2 * HOUR, now - HOUR)  # the CA wants it renewed now
    api.clock.set(scheduled)
    report = renew_due(api.context, worker="w", limit=10)
    assert (report.renewed, report.failed, report.rescheduled) == (1, 0, 0)
    second = active(api)
    assert second.id != first.id
    assert front.orders[-1]["replaces"] == first_id
    assert "replaces" not in front.orders[0]  # the first order replaced nothing
    assert all("profile" not in order for order in front.orders)
    # The window is over for the new certificate too: not in a loop, a minute later.
    assert second.renew_after == api.clock.now() + timedelta(minutes=1)


def test_without_a_readable_window_the_lifetime_rule_applies(
    api: Api, front: Front, served: Served
) -> None:
    """An inverted window, and renewal information that fails, both leave the
    2/3-of-lifetime rule (bounded by Retry-After while the CA answers)."""
    now = api.clock.now()
    front.window = (now + 3 * DAY, now + DAY)  # inverted
    front.retry_after = None  # six hours by default
    api.create_app_and_environment("shop", "prod")
    row = active(api)
    assert row.renew_after == now + timedelta(hours=6)

    front.renewal_info_status = 500
    api.clock.set(row.renew_after)
    report = renew_due(api.context, worker="w", limit=10)
    assert report.renewed == 1  # the CA gave no window: due by the stored schedule
    renewed = active(api)
    lifetime = renewed.not_after - renewed.not_before
    assert (
        renewed.not_before + lifetime * RENEWAL_FRACTION
        <= renewed.renew_after
        <= renewed.not_before + lifetime * (RENEWAL_FRACTION + DEFAULT_JITTER)
    )


def test_a_directory_without_renewal_information_gets_no_replaces(
    api: Api, front: Front, served: Served
) -> None:
    """What pebble 2.4 offers by itself: no renewalInfo, so none is asked for and the
    renewal's order names nothing it replaces."""
    front.offer_renewal_info = False
    api.create_app_and_environment("shop", "prod")
    first = active(api)
    api.clock.set(first.renew_after)
    assert renew_due(api.context, worker="w", limit=10).renewed == 1
    assert front.renewal_info_requests == []
    assert [("replaces" in order) for order in front.orders] == [False, False]


@pytest.mark.parametrize("profile", ["shortlived"])
def test_the_configured_profile_is_sent_in_every_new_order(
    api: Api, front: Front, served: Served, profile: str
) -> None:
    check_acme_profile(api.context)  # listed: starts
    api.create_app_and_environment("shop", "prod")
    assert [order["profile"] for order in front.orders] == ["shortlived"]


@pytest.mark.parametrize("profile", ["tlsserver"])
def test_a_profile_the_directory_does_not_list_refuses_to_start(
    api: Api, front: Front, profile: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"does not offer it.*classic, shortlived"):
        check_acme_profile(api.context)
    api.create_app_and_environment("shop", "prod")
    assert front.orders == []  # nothing ordered: the order refuses with the same reason
    with api.context.database.reading() as session:
        pending = session.scalars(select(ManagedCertificate)).one()
    assert pending.state == "pending"
    assert "does not offer the profile 'tlsserver'" in (pending.last_error or "")


def test_custom_domain_renewal_follows_the_window_and_names_what_it_replaces(
    api: Api, front: Front, served: Served
) -> None:
    """The same for an app's ACME certificate of custom domains."""
    now = api.clock.now()
    front.window = (now + 2 * HOUR, now + 3 * HOUR)
    front.retry_after = "86400"
    api.create_app("shop")
    expect(
        api.client.post(
            api.app_url("shop", "/tls-certificates/acme"),
            json={"sans": ["www.shop.example"]},
            headers=api.admin_headers,
        ),
        201,
    )
    with api.context.database.reading() as session:
        first = session.scalars(select(TlsCertificate)).one()
        session.expunge_all()
    assert now + 2 * HOUR <= first.renew_after <= now + 3 * HOUR
    assert first.renew_after >= now + CUSTOM_DOMAIN_RENEWAL_MIN_DELAY

    front.window = (now + 2 * DAY, now + 3 * DAY)  # moved later: only rescheduled
    api.clock.set(first.renew_after)
    report = renew_due_acme(api.context, worker="w", limit=10)
    assert (report.renewed, report.rescheduled) == (0, 1)
    with api.context.database.reading() as session:
        kept = session.scalars(select(TlsCertificate)).one()
    assert (kept.id, kept.renew_after, kept.claimed_by) == (first.id, api.clock.now() + DAY, None)

    front.window = (now - 2 * HOUR, now - HOUR)
    api.clock.set(kept.renew_after)
    report = renew_due_acme(api.context, worker="w", limit=10)
    assert (report.renewed, report.rescheduled) == (1, 0)
    assert front.orders[-1]["replaces"] == _renewal_info_path_component(leaf_of(first))


@pytest.mark.parametrize("profile", ["shortlived"])
def test_a_ca_unreachable_at_start_does_not_stop_it(
    api: Api, pebble: Pebble, profile: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The profile cannot be checked: logged, and the orders check it later."""
    pebble.stop()
    check_acme_profile(api.context)
    assert "the ACME profile 'shortlived' cannot be checked now" in caplog.text
