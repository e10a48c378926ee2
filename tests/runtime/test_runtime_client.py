"""certward.runtime against real mutual-TLS partners on loopback, from a bundle on disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from certward.pki.convert import Pkcs12Profile
from certward.runtime import RuntimeBundleError, load_bundle
from tests.material.factory import IssuedCert, TestCA
from tests.runtime.partners import Partner, bundle_dir


def seen_by(client: httpx.Client, partner: Partner) -> str | None:
    response = client.get(partner.url)
    response.raise_for_status()
    subject: str | None = response.json()["client_subject"]
    return subject


@pytest.mark.parametrize("profile", list(Pkcs12Profile))
def test_each_partner_sees_exactly_the_certificate_pinned_to_it(
    tmp_path: Path,
    clients: dict[str, IssuedCert],
    server_ca: TestCA,
    partners: dict[str, Partner],
    profile: Pkcs12Profile,
) -> None:
    """Two certificates of one CA: the pin, not the CA, decides which one a host gets."""
    runtime = load_bundle(bundle_dir(tmp_path, clients, server_ca, profile=profile))
    with runtime.http_client() as client:
        assert seen_by(client, partners["a"]) == "CN=client-a"
        assert seen_by(client, partners["b"]) == "CN=client-b"
        assert seen_by(client, partners["open"]) is None


def test_a_call_name_presents_its_certificate_to_every_host(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA, partners: dict[str, Partner]
) -> None:
    """call_name overrides the pins, but a no-client-certificate host still gets none."""
    runtime = load_bundle(bundle_dir(tmp_path, clients, server_ca))
    with runtime.http_client(call_name="billing") as client:
        assert seen_by(client, partners["a"]) == "CN=client-a"
        assert seen_by(client, partners["b"]) == "CN=client-a"
        assert seen_by(client, partners["open"]) is None


def test_a_service_pin_presents_its_certificate(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA, partners: dict[str, Partner]
) -> None:
    """A Module.Service pin picks the certificate for calls made for that service."""
    runtime = load_bundle(bundle_dir(tmp_path, clients, server_ca))
    with runtime.http_client(service="Billing.Service") as client:
        assert seen_by(client, partners["a"]) == "CN=client-b"


def test_an_unknown_call_name_is_an_error_not_a_fallback(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """The reference silently uses some certificate; certward names what it knows."""
    runtime = load_bundle(bundle_dir(tmp_path, clients, server_ca))
    with pytest.raises(RuntimeBundleError, match="billing"):
        runtime.http_client(call_name="payments")


def test_hosts_with_nothing_pinned_get_no_certificate_and_fail_mtls(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA, partners: dict[str, Partner]
) -> None:
    """Without a pin, a partner requiring a client certificate refuses the handshake."""
    runtime = load_bundle(
        bundle_dir(tmp_path, clients, server_ca, no_client_certificate=("partner-a.test",))
    )
    with runtime.http_client() as client, pytest.raises(httpx.TransportError):
        client.get(partners["a"].url)


def test_the_bundle_cas_are_trusted_and_nothing_else_private(
    tmp_path: Path, clients: dict[str, IssuedCert], partners: dict[str, Partner]
) -> None:
    """A bundle without the partners' CA cannot reach them: verification fails."""
    other = TestCA.root(name="unrelated CA")
    runtime = load_bundle(bundle_dir(tmp_path, clients, other))
    with runtime.http_client() as client, pytest.raises(httpx.ConnectError):
        client.get(partners["open"].url)


def test_a_directory_without_a_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    """load_bundle says what is missing instead of failing later."""
    with pytest.raises(RuntimeBundleError, match="not a certward bundle"):
        load_bundle(tmp_path)
