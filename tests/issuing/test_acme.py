"""The ACME issuer against Debian's pebble on loopback: HTTP-01 through the in-process
responder, names resolved by pebble-challtestsrv's DNS server to 127.0.0.1."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certward.issuing import ca
from certward.issuing.acme import AcmeError, AcmeIssuer, Http01Responder
from tests.material.pebble import Pebble, pebble_root, run_pebble

pytestmark = [pytest.mark.external("pebble"), pytest.mark.slow]

HOST = "shop-production.apps.test"


@pytest.fixture
def responder() -> Iterator[Http01Responder]:
    """The in-process HTTP-01 responder on a free loopback port."""
    with Http01Responder("127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def pebble(tmp_path: Path, responder: Http01Responder) -> Iterator[Pebble]:
    """pebble and pebble-challtestsrv on loopback, validating against ``responder``."""
    with run_pebble(tmp_path, http_port=responder.port) as running:
        yield running


def test_issues_through_pebble_with_http01(pebble: Pebble, responder: Http01Responder) -> None:
    """A certificate for the hostname comes back from pebble and chains to pebble's root."""
    issuer = AcmeIssuer(
        directory_url=pebble.directory_url,
        account_key=ca.generate_key(),
        responder=responder,
        ca_bundle=pebble.ca_bundle,
        timeout=timedelta(seconds=20),
    )
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
    assert responder.published == 0, "tokens are withdrawn after the order"


def test_second_order_reuses_the_account(pebble: Pebble, responder: Http01Responder) -> None:
    """A second issuer with the same account key finds the existing account and issues."""
    account_key = ca.generate_key()
    for _ in range(2):
        issuer = AcmeIssuer(
            directory_url=pebble.directory_url,
            account_key=account_key,
            responder=responder,
            ca_bundle=pebble.ca_bundle,
            timeout=timedelta(seconds=20),
        )
        certificate_pem, _ = issuer.issue([f"api.{HOST}"], ca.generate_key())
        assert f"api.{HOST}" in str(
            x509.load_pem_x509_certificate(certificate_pem.encode())
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value
        )


def test_failed_validation_is_an_acme_error(pebble: Pebble) -> None:
    """When the challenge is never served, issuance fails with one readable AcmeError."""

    class Silent:
        def publish(self, token: str, key_authorization: str) -> None:
            """Serve nothing."""

        def withdraw(self, token: str) -> None:
            """Nothing to withdraw."""

    issuer = AcmeIssuer(
        directory_url=pebble.directory_url,
        account_key=ca.generate_key(),
        responder=Silent(),
        ca_bundle=pebble.ca_bundle,
        timeout=timedelta(seconds=20),
    )
    with pytest.raises(AcmeError, match="did not issue"):
        issuer.issue([HOST], ca.generate_key())
