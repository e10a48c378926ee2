"""Managed certificates from an ACME CA (Debian's pebble on loopback) when
``CERTWARD_ACME_DIRECTORY`` is set: ordered after the environment is created (no
transaction held meanwhile), validated by pebble fetching the challenge from certward's
API over HTTP, renewed through pebble when due, failures (at creation too) retried with
backoff; HTTP-01 challenges published in the database and answered by
``GET /.well-known/acme-challenge/{token}``; and the ACME account key that survives
restarts, sealed in the data directory."""

from __future__ import annotations

import dataclasses
import itertools
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from certward.errors import ConfigurationError
from certward.model import AcmeChallenge, ManagedCertificate
from certward.secrets import Keyring, MasterKey, SecretBox
from certward.services.acme_issuing import (
    ACCOUNT_KEY_FILE,
    CHALLENGE_LIFETIME,
    DatabaseChallengeResponder,
    challenge_response,
    close_acme,
    load_or_create_account_key,
    sweep_challenges,
)
from certward.services.managed import ACME, renew_due
from certward.worker import RenewalWorker
from tests.api.conftest import Api, expect
from tests.material.pebble import Pebble, Served, free_port, pebble_root, run_pebble, serve_http

TOKEN = "Vx3_kq-9" * 5
KEY_AUTHORIZATION = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


@pytest.fixture
def http_port() -> int:
    """Where certward's API listens over HTTP and pebble validates HTTP-01 challenges."""
    return free_port()


@pytest.fixture
def pebble(tmp_path: Path, http_port: int) -> Iterator[Pebble]:
    with run_pebble(tmp_path / "pebble", http_port=http_port) as running:
        yield running


@pytest.fixture
def api_environ(request: pytest.FixtureRequest, http_port: int) -> Iterator[dict[str, str]]:
    """The ``api`` fixture's installation issues through pebble when the test asks for it."""
    environ = {"CERTWARD_PLATFORM_DOMAIN": "apps.test"}
    if "pebble" in request.fixturenames:
        pebble: Pebble = request.getfixturevalue("pebble")
        environ["CERTWARD_ACME_DIRECTORY"] = pebble.directory_url
        environ["CERTWARD_ACME_CA_BUNDLE"] = str(pebble.ca_bundle)
    yield environ
    close_acme()  # the process-wide issuer of this installation


@pytest.fixture
def served(api: Api, http_port: int) -> Iterator[Served]:
    """The installation's API over real HTTP on the port pebble validates against."""
    with serve_http(api.app, http_port) as running:
        yield running


def rows(api: Api, env: str, state: str) -> list[ManagedCertificate]:
    with api.context.database.reading() as session:
        found = session.scalars(
            select(ManagedCertificate).where(
                ManagedCertificate.hostname == f"{env}-shop.apps.test",
                ManagedCertificate.state == state,
            )
        ).all()
        session.expunge_all()
        return list(found)


def active_row(api: Api, env: str = "prod") -> ManagedCertificate:
    found = rows(api, env, "active")
    assert len(found) == 1
    return found[0]


def published_challenges(api: Api) -> int:
    with api.context.database.reading() as session:
        return session.scalar(select(func.count()).select_from(AcmeChallenge)) or 0


def assert_from_pebble(row: ManagedCertificate, pebble: Pebble) -> x509.Certificate:
    leaf = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    chain = x509.load_pem_x509_certificates(row.chain_pem.encode())
    for child, parent in itertools.pairwise([leaf, *chain, pebble_root(pebble)]):
        child.verify_directly_issued_by(parent)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [row.hostname]
    assert row.issuer == ACME
    assert row.issuing_ca_id is None
    assert row.claimed_by is None
    return leaf


def managed_view(api: Api, env: str) -> dict[str, object]:
    url = api.env_url("shop", env, "/managed-certificate")
    body: dict[str, object] = expect(api.client.get(url, headers=api.admin_headers), 200)
    return body


@pytest.mark.external("pebble")
@pytest.mark.slow
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_managed_certificates_come_from_pebble(
    api: Api, pebble: Pebble, served: Served, tmp_path: Path
) -> None:
    """Ordered after the environment commits (on SQLite the challenge rows could not even
    be written if the creation still held its transaction), validated through the API
    route, renewed through pebble; with pebble gone a renewal backs off and a new
    environment is created anyway with a pending certificate, which the worker issues
    once an ACME CA answers again."""
    api.create_app_and_environment("shop", "prod")
    first = active_row(api)
    first_leaf = assert_from_pebble(first, pebble)
    assert ("prod-shop.apps.test", 200) in served.challenge_fetches, served.challenge_fetches
    assert published_challenges(api) == 0, "withdrawn after the order"
    body = managed_view(api, "prod")
    assert body["state"] == "active"
    assert body["certificate_pem"] == first.certificate_pem
    account_key = api.settings.data_dir / ACCOUNT_KEY_FILE
    assert stat.S_IMODE(account_key.stat().st_mode) == 0o600

    api.clock.set(first.renew_after + timedelta(seconds=1))
    report = renew_due(api.context, worker="test", limit=10)
    assert (report.renewed, report.failed) == (1, 0)
    second = active_row(api)
    assert second.id != first.id
    second_leaf = assert_from_pebble(second, pebble)
    assert second_leaf.serial_number != first_leaf.serial_number

    pebble.stop()
    api.clock.set(second.renew_after + timedelta(seconds=1))
    report = renew_due(api.context, worker="test", limit=10)
    assert (report.renewed, report.failed) == (0, 1)
    failed = active_row(api)
    assert failed.id == second.id
    assert failed.attempts == 1
    assert failed.next_attempt_at is not None
    assert failed.next_attempt_at > api.clock.now()
    assert "ACME" in (failed.last_error or "")
    assert renew_due(api.context, worker="test", limit=10).claimed == 0, "backing off"

    staging = api.create_environment("shop", "staging")  # 201 although the CA is away
    assert staging["hostname"] == "staging-shop.apps.test"
    [pending] = rows(api, "staging", "pending")
    assert (pending.attempts, pending.claimed_by) == (1, None)
    assert pending.next_attempt_at is not None
    view = managed_view(api, "staging")
    assert view["state"] == "pending"
    assert view["certificate_pem"] is None
    assert view["attempts"] == 1
    assert "ACME" in str(view["last_error"])
    assert "staging-shop.apps.test" in str(view["last_error"])
    expect(api.client.get(api.env_url("shop", "staging"), headers=api.admin_headers), 200)

    # Another ACME CA answers on the same challenge port: the worker's next attempt issues
    # the pending certificate (and renews the one that failed), through the same API.
    with run_pebble(tmp_path / "pebble-again", http_port=served.port) as again:
        settings = dataclasses.replace(
            api.settings, acme_directory=again.directory_url, acme_ca_bundle=again.ca_bundle
        )
        context = dataclasses.replace(api.context, settings=settings)
        api.clock.set(max(pending.next_attempt_at, failed.next_attempt_at) + timedelta(seconds=1))
        report = renew_due(context, worker="test", limit=10)
        assert (report.renewed, report.failed) == (2, 0)
        issued = active_row(api, "staging")
        assert issued.id == pending.id, "the pending row itself receives its certificate"
        assert (issued.attempts, issued.last_error, issued.next_attempt_at) == (0, None, None)
        assert_from_pebble(issued, again)
        assert_from_pebble(active_row(api, "prod"), again)
    assert ("staging-shop.apps.test", 200) in served.challenge_fetches
    assert managed_view(api, "staging")["state"] == "active"
    assert rows(api, "staging", "pending") == []


def test_challenges_are_answered_from_the_database_without_a_token(api: Api) -> None:
    """Published in a transaction of its own, answered as text/plain to anyone, 404 for
    unknown, withdrawn, expired and malformed tokens; expired rows are swept by the
    worker's pass."""
    responder = DatabaseChallengeResponder(api.context)
    url = f"/.well-known/acme-challenge/{TOKEN}"
    expect(api.client.get(url), 404)

    responder.publish(TOKEN, KEY_AUTHORIZATION)
    response = api.client.get(url)
    assert response.status_code == 200
    assert response.text == KEY_AUTHORIZATION
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    responder.publish(TOKEN, KEY_AUTHORIZATION)  # published again: still one row
    assert published_challenges(api) == 1

    for bad in ("not.a.token", "x" * 256, "%2e%2e", "tok en"):
        assert api.client.get(f"/.well-known/acme-challenge/{bad}").status_code == 404, bad
        with pytest.raises(ValueError, match="token"):
            responder.publish(bad, KEY_AUTHORIZATION)
    with pytest.raises(ValueError, match="key authorization"):
        responder.publish("other", "line\nbreak")

    with api.context.database.reading() as session:
        now = api.clock.now()
        assert challenge_response(session, TOKEN, now) == KEY_AUTHORIZATION
        assert challenge_response(session, TOKEN, now + CHALLENGE_LIFETIME) is None
        assert challenge_response(session, "unknown", now) is None
        assert challenge_response(session, "bad/token", now) is None
    responder.withdraw(TOKEN)
    responder.withdraw(TOKEN)  # nothing to withdraw: no error
    expect(api.client.get(url), 404)

    responder.publish(TOKEN, KEY_AUTHORIZATION)
    responder.publish("another", "another.thumbprint")
    assert sweep_challenges(api.context) == 0
    api.clock.advance(CHALLENGE_LIFETIME)
    expect(api.client.get(url), 404)  # expired: never answered again
    RenewalWorker(api.context).run_pass()
    assert published_challenges(api) == 0


def test_account_key_survives_restarts_and_refuses_another_master_key(tmp_path: Path) -> None:
    """Made once, sealed 0600; read back the same; a wrong master key is an error, not a
    new account."""
    box = SecretBox(Keyring([MasterKey.generate()]))
    key = load_or_create_account_key(tmp_path, box)
    path = tmp_path / ACCOUNT_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert b"PRIVATE KEY" not in path.read_bytes()
    again = load_or_create_account_key(tmp_path, box)
    assert again.public_key().public_bytes(der, public) == key.public_key().public_bytes(
        der, public
    )
    sealed = path.read_bytes()
    with pytest.raises(ConfigurationError, match="does not decrypt"):
        load_or_create_account_key(tmp_path, SecretBox(Keyring([MasterKey.generate()])))
    assert path.read_bytes() == sealed, "never replaced"

    newer = MasterKey.generate()
    rotated = SecretBox(box.keyring.with_active(newer))
    load_or_create_account_key(tmp_path, rotated)  # resealed with the active key
    only_new = load_or_create_account_key(tmp_path, SecretBox(Keyring([newer])))
    assert only_new.public_key().public_bytes(der, public) == key.public_key().public_bytes(
        der, public
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
