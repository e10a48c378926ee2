"""The ACME issuer against Debian's pebble on loopback: HTTP-01 challenges published in
the database and answered by certward's API over real HTTP, names resolved by
pebble-challtestsrv's DNS server to 127.0.0.1."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from acme.client import _renewal_info_path_component
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select

from certward.api import create_app
from certward.issuing import ca
from certward.issuing.acme import AcmeError, AcmeIssuer, ari_certificate_id
from certward.model import AcmeChallenge
from certward.platform import Platform, open_platform
from certward.services.acme_issuing import DatabaseChallengeResponder
from certward.settings import Settings
from tests.material.factory import NOW
from tests.material.pebble import Pebble, Served, free_port, pebble_root, run_pebble, serve_http

pytestmark = [pytest.mark.external("pebble"), pytest.mark.slow]

HOST = "shop-production.apps.test"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A certward installation (SQLite) whose database holds the published challenges."""
    opened = open_platform(Settings.from_env({"CERTWARD_DATA_DIR": str(tmp_path / "data")}))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def served(platform: Platform) -> Iterator[Served]:
    """certward's API on a free loopback port: where pebble fetches the challenges."""
    with serve_http(create_app(platform.context), free_port()) as running:
        yield running


@pytest.fixture
def pebble(tmp_path: Path, served: Served) -> Iterator[Pebble]:
    """pebble and pebble-challtestsrv on loopback, validating against ``served``."""
    with run_pebble(tmp_path / "pebble", http_port=served.port) as running:
        yield running


def published(platform: Platform) -> int:
    with platform.context.database.reading() as session:
        return session.scalar(select(func.count()).select_from(AcmeChallenge)) or 0


def issuer_for(
    pebble: Pebble, responder: object, account_key: ca.ec.EllipticCurvePrivateKey | None = None
) -> AcmeIssuer:
    return AcmeIssuer(
        directory_url=pebble.directory_url,
        account_key=account_key or ca.generate_key(),
        responder=responder,  # type: ignore[arg-type]
        ca_bundle=pebble.ca_bundle,
        timeout=timedelta(seconds=20),
    )


def test_issues_through_pebble_with_http01(
    platform: Platform, served: Served, pebble: Pebble
) -> None:
    """A certificate for the hostname comes back from pebble and chains to pebble's root;
    pebble fetched the challenge from the API over HTTP, and the row is withdrawn."""
    issuer = issuer_for(pebble, DatabaseChallengeResponder(platform.context))
    key = ca.generate_key()

    certificate_pem, chain_pem = issuer.issue([HOST], key)

    leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]
    assert leaf.public_key() == key.public_key()
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    path = [leaf, *chain, pebble_root(pebble)]
    for child, parent in itertools.pairwise(path):
        child.verify_directly_issued_by(parent)
    assert (HOST, 200) in served.challenge_fetches, served.challenge_fetches
    assert published(platform) == 0, "challenges are withdrawn after the order"


def test_second_order_reuses_the_account(platform: Platform, pebble: Pebble) -> None:
    """A second issuer with the same account key finds the existing account and issues."""
    account_key = ca.generate_key()
    for _ in range(2):
        issuer = issuer_for(pebble, DatabaseChallengeResponder(platform.context), account_key)
        certificate_pem, _ = issuer.issue([f"api.{HOST}"], ca.generate_key())
        assert f"api.{HOST}" in str(
            x509.load_pem_x509_certificate(certificate_pem.encode())
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value
        )


def test_failed_validation_is_an_acme_error(served: Served, pebble: Pebble) -> None:
    """When the challenge is never published, pebble's fetch gets 404 and issuance fails
    with one readable AcmeError."""

    class Silent:
        def publish(self, token: str, key_authorization: str) -> None:
            """Publish nothing."""

        def withdraw(self, token: str) -> None:
            """Nothing to withdraw."""

    with pytest.raises(AcmeError, match="did not issue"):
        issuer_for(pebble, Silent()).issue([HOST], ca.generate_key())
    assert served.challenge_fetches
    assert {status for _, status in served.challenge_fetches} == {404}


def _certificate(key_identifier: bytes, serial: int) -> x509.Certificate:
    key = ca.generate_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ari.example")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=6))
        .add_extension(x509.AuthorityKeyIdentifier(key_identifier, None, None), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_the_ari_certificate_id_is_the_rfc_9773_example() -> None:
    """RFC 9773 §4.1: keyIdentifier 69:88:5B:…:C8:D4 and serial 00:87:65:43:21 (the
    leading zero byte of a DER integer whose high bit is set) give its identifier."""
    key_identifier = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    certificate = _certificate(key_identifier, 0x87654321)
    assert ari_certificate_id(certificate) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 2**158 + 12345, 2**159 - 1])
def test_the_ari_certificate_id_agrees_with_the_acme_library(serial: int) -> None:
    certificate = _certificate(b"\x01\x02\x03\x04", serial)
    assert ari_certificate_id(certificate) == _renewal_info_path_component(certificate)


def test_a_certificate_without_authority_key_identifier_has_no_ari_id() -> None:
    key = ca.generate_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ari.example")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=6))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="authority key identifier"):
        ari_certificate_id(certificate)
