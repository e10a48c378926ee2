"""Managed certificates from an ACME CA (Debian's pebble on loopback) when
``CERTWARD_ACME_DIRECTORY`` is set: issued with the environment, renewed through
pebble when due, a failure with backoff when pebble is gone; and the ACME account key
that survives restarts, sealed in the data directory."""

from __future__ import annotations

import itertools
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from certward.errors import ConfigurationError
from certward.model import ManagedCertificate
from certward.secrets import Keyring, MasterKey, SecretBox
from certward.services.acme_issuing import (
    ACCOUNT_KEY_FILE,
    close_acme,
    load_or_create_account_key,
)
from certward.services.managed import ACME, renew_due
from tests.api.conftest import Api, expect
from tests.material.pebble import Pebble, free_port, pebble_root, run_pebble


@pytest.fixture
def http_port() -> int:
    """The port certward's HTTP-01 responder listens on and pebble validates against."""
    return free_port()


@pytest.fixture
def pebble(tmp_path: Path, http_port: int) -> Iterator[Pebble]:
    with run_pebble(tmp_path / "pebble", http_port=http_port) as running:
        yield running


@pytest.fixture
def api_environ(pebble: Pebble, http_port: int) -> Iterator[dict[str, str]]:
    """The ``api`` fixture's installation issues through pebble."""
    yield {
        "CERTWARD_PLATFORM_DOMAIN": "apps.test",
        "CERTWARD_ACME_DIRECTORY": pebble.directory_url,
        "CERTWARD_ACME_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "CERTWARD_ACME_CA_BUNDLE": str(pebble.ca_bundle),
    }
    close_acme()  # the process-wide responder and issuer of this installation


def active_row(api: Api, env: str = "prod") -> ManagedCertificate:
    with api.context.database.reading() as session:
        rows = session.scalars(
            select(ManagedCertificate).where(
                ManagedCertificate.hostname == f"{env}-shop.apps.test",
                ManagedCertificate.state == "active",
            )
        ).all()
        assert len(rows) == 1
        session.expunge_all()
        return rows[0]


def assert_from_pebble(row: ManagedCertificate, pebble: Pebble) -> x509.Certificate:
    leaf = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    chain = x509.load_pem_x509_certificates(row.chain_pem.encode())
    for child, parent in itertools.pairwise([leaf, *chain, pebble_root(pebble)]):
        child.verify_directly_issued_by(parent)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [row.hostname]
    assert row.issuer == ACME
    assert row.issuing_ca_id is None
    return leaf


@pytest.mark.external("pebble")
@pytest.mark.slow
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_managed_certificates_come_from_pebble(api: Api, pebble: Pebble) -> None:
    """Issued at creation and renewed through pebble; with pebble gone, renewal records a
    failure with backoff and creating an environment is refused with 503."""
    api.create_app_and_environment("shop", "prod")
    first = active_row(api)
    first_leaf = assert_from_pebble(first, pebble)
    body = expect(
        api.client.get(
            api.env_url("shop", "prod", "/managed-certificate"), headers=api.admin_headers
        ),
        200,
    )
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

    response = api.client.post(
        api.app_url("shop", "/environments"),
        json={"name": "staging", "upstream": "http://10.0.0.11:8080"},
        headers=api.admin_headers,
    )
    problem = expect(response, 503)
    assert problem["code"] == "issuer-unavailable"
    assert "staging-shop.apps.test" in problem["detail"]


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
