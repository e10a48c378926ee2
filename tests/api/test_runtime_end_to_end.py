"""From upload to handshake: a restarted environment's runtime presents the right certificate.

Two mutual-TLS partners on 127.0.0.1, each with its own host name and a server
certificate from a private CA, both requiring client certificates from one issuing
CA. Through the API: the private CA and two client certificates from that CA (one
made by ``openssl pkcs12 -export -legacy``, one by OpenSSL 3's defaults), pinned to
the two partners. The runtime is built from the downloaded, installed bundle.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.bundles.install import install
from certward.pki.limits import Limits
from certward.pki.material import load_material
from certward.pki.pkcs12_structure import read_pkcs12_structure
from certward.runtime import load_bundle
from tests.api.conftest import API, Api, expect
from tests.material import hostile
from tests.material.factory import IssuedCert, TestCA
from tests.material.openssl_cli import OpenSSLCli, Pkcs12Variant
from tests.runtime.partners import Partner, loopback_names, three_partners

__all__ = ["loopback_names"]  # a fixture, for pytest

PASSWORD_A = "legacy, with a comma"
PASSWORD_B = "modern-ünïcode"
pytestmark = pytest.mark.parametrize("api", ["sqlite"], indirect=True)


@pytest.fixture
def world(
    tmp_path: Path, loopback_names: None
) -> Iterator[tuple[TestCA, TestCA, dict[str, Partner]]]:
    server_ca = TestCA.root(name="partners' private CA")
    client_ca = TestCA.root(name="one issuing CA for both clients")
    with three_partners(tmp_path, server_ca=server_ca, client_ca=client_ca) as running:
        yield server_ca, client_ca, running


def seen_by(client: httpx.Client, partner: Partner) -> str | None:
    response = client.get(partner.url)
    response.raise_for_status()
    subject: str | None = response.json()["client_subject"]
    return subject


def download(api: Api, headers: dict[str, str]) -> httpx.Response:
    return api.client.get(
        f"{API}/apps/shop/environments/production/runtime-bundle", headers=headers
    )


def test_restart_makes_each_partner_see_exactly_its_pinned_certificate(
    api: Api,
    world: tuple[TestCA, TestCA, dict[str, Partner]],
    openssl_cli: OpenSSLCli,
    tmp_path: Path,
) -> None:
    """Before restart nothing reaches the partners; after it, pins, call names and
    no-client-certificate hosts behave, from the bundle a runtime token downloads."""
    server_ca, client_ca, partners = world
    api.create_app_and_environment("shop", "production")
    runtime_token = api.create_token("runtime", app="shop", environment="production")
    leaf_a: IssuedCert = client_ca.issue_leaf("client-a", eku=["clientAuth"])
    leaf_b: IssuedCert = client_ca.issue_leaf("client-b", eku=["clientAuth"], key_type="rsa-2048")
    legacy = openssl_cli.pkcs12(leaf_a, variant=Pkcs12Variant.LEGACY, password=PASSWORD_A)
    modern = openssl_cli.pkcs12(leaf_b, variant=Pkcs12Variant.DEFAULT, password=PASSWORD_B)
    expect(api.upload_authority("shop", "production", server_ca.cert_pem()), 201)
    expect(
        api.upload_client_certificate(
            "shop",
            "production",
            legacy,
            password=PASSWORD_A,
            pins=["partner-a.test"],
            call_name="billing",
        ),
        201,
    )
    expect(
        api.upload_client_certificate(
            "shop", "production", modern, password=PASSWORD_B, pins=["partner-b.test"]
        ),
        201,
    )
    expect(
        api.client.patch(
            f"{API}/apps/shop/environments/production",
            json={"no_client_certificate": ["open.test"]},
            headers=api.admin_headers,
        ),
        200,
    )

    # Staged only: there is no bundle a runtime could use.
    refused = download(api, runtime_token.headers)
    assert refused.status_code == 404
    assert refused.json()["code"] == "no-applied-version"

    version = api.restart("shop", "production")["version"]
    response = download(api, runtime_token.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    installed = install(response.content, tmp_path / "runtime" / "certificates")
    assert installed.version == version

    runtime = load_bundle(installed.directory)
    with runtime.http_client() as client:
        assert seen_by(client, partners["a"]) == "CN=client-a"
        assert seen_by(client, partners["b"]) == "CN=client-b"
        assert seen_by(client, partners["open"]) is None
    with runtime.http_client(call_name="billing") as client:
        assert seen_by(client, partners["b"]) == "CN=client-a"
        assert seen_by(client, partners["open"]) is None

    settings = json.loads((installed.directory / "runtime-settings.json").read_text())
    assert all(Path(p).is_absolute() for p in settings["ClientCertificates"].split(","))
    assert Path(settings["CACertificates"]) == installed.directory / "ca-certificates.pem"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        everything = b"".join(
            archive.extractfile(m).read()
            for m in archive.getmembers()  # type: ignore[union-attr]
        )
    for uploaded in (PASSWORD_A, PASSWORD_B):
        assert uploaded.encode() not in everything


def test_a_runtime_token_downloads_only_its_own_environment(api: Api) -> None:
    """Another environment's bundle is invisible to it (404); a viewer may not download (403)."""
    api.create_app_and_environment("shop", "production")
    api.create_environment("shop", "acceptance")
    api.restart("shop", "production")
    api.restart("shop", "acceptance")
    runtime = api.create_token("runtime", app="shop", environment="production")
    viewer = api.create_token("viewer", app="shop")
    assert download(api, runtime.headers).status_code == 200
    other = api.client.get(
        f"{API}/apps/shop/environments/acceptance/runtime-bundle", headers=runtime.headers
    )
    assert other.status_code == 404
    assert download(api, viewer.headers).status_code == 403


def test_an_older_version_can_be_downloaded_and_every_download_is_audited(api: Api) -> None:
    """?version=N serves that version; the audit log names each download."""
    api.create_app_and_environment("shop", "production")
    api.restart("shop", "production")
    expect(
        api.client.patch(
            f"{API}/apps/shop/environments/production",
            json={"pkcs12_profile": "legacy"},
            headers=api.admin_headers,
        ),
        200,
    )
    assert api.restart("shop", "production")["version"] == 2
    first = api.client.get(
        f"{API}/apps/shop/environments/production/runtime-bundle?version=1",
        headers=api.admin_headers,
    )
    assert first.headers["x-certward-version"] == "1"
    with tarfile.open(fileobj=io.BytesIO(first.content), mode="r:gz") as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        assert json.load(member)["pkcs12_profile"] == "modern"
    events = expect(api.client.get(f"{API}/audit", headers=api.admin_headers), 200)
    assert [e["detail"]["version"] for e in events if e["action"] == "runtime_bundle.download"] == [
        1
    ]


def test_a_modern2026_bundle_carries_pbmac1_files_from_a_pbmac1_upload(
    api: Api, tmp_path: Path
) -> None:
    """A PBMAC1 upload is accepted; after ``modern2026`` is applied, the bundle's client
    certificate and truststore carry PBMAC1 MACs that pyca verifies with their passwords."""
    api.create_app_and_environment("shop", "production")
    client_ca = TestCA.root(name="pbmac1 issuing CA")
    leaf = client_ca.issue_leaf("client-pbmac1", eku=["clientAuth"])
    upload = hostile.pbmac1_pkcs12(leaf.pkcs12(PASSWORD_B), password=PASSWORD_B)
    expect(api.upload_authority("shop", "production", client_ca.cert_pem()), 201)
    expect(
        api.upload_client_certificate(
            "shop", "production", upload, password=PASSWORD_B, pins=["partner-a.test"]
        ),
        201,
    )
    expect(
        api.client.patch(
            f"{API}/apps/shop/environments/production",
            json={"pkcs12_profile": "modern2026"},
            headers=api.admin_headers,
        ),
        200,
    )
    api.restart("shop", "production")
    response = download(api, api.admin_headers)
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        files = {
            member.name: extracted.read()
            for member in archive.getmembers()
            if (extracted := archive.extractfile(member)) is not None
        }
    manifest = json.loads(files["manifest.json"])
    assert manifest["pkcs12_profile"] == "modern2026"
    [entry] = manifest["client_certificates"]
    written = {
        entry["pkcs12"]: entry["password"],
        manifest["truststore"]["file"]: manifest["truststore"]["password"],
    }
    for path, password in written.items():
        mac = read_pkcs12_structure(files[path], limits=Limits()).mac
        assert mac is not None
        assert (mac.algorithm, mac.iterations) == ("pbmac1-sha256", 2048), path
        pkcs12.load_pkcs12(files[path], password.encode())
    material = load_material(files[entry["pkcs12"]], password=entry["password"].encode())
    assert material.certificates[0] == leaf.certificate
