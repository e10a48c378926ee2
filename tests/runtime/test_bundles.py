"""The runtime bundle's files and their on-disk store."""

from __future__ import annotations

import base64
import io
import json
import stat
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.bundles.files import BundleClientCertificate, BundleSpec, build_bundle, verify_files
from certward.bundles.store import BundleStore
from certward.pki.convert import Pkcs12Profile
from certward.pki.limits import Limits
from certward.pki.pkcs12_structure import read_pkcs12_structure
from certward.randomness import SYSTEM_RANDOMNESS
from certward.secrets import Keyring, MasterKey, SecretBox
from tests.material.factory import NOW, IssuedCert, TestCA

BOX = SecretBox(Keyring([MasterKey.generate()]))


def spec(
    clients: dict[str, IssuedCert], server_ca: TestCA, profile: Pkcs12Profile = Pkcs12Profile.MODERN
) -> BundleSpec:
    return BundleSpec(
        app="shop",
        environment="production",
        version=7,
        digest="ab" * 32,
        created_at=NOW,
        pkcs12_profile=profile,
        client_certificates=tuple(
            BundleClientCertificate(
                id=name,
                call_name=f"call-{name}" if name == "client-a" else None,
                pins=(f"{name}.partner.test", "Billing.Service")
                if name == "client-b"
                else (f"{name}.partner.test",),
                subject=issued.certificate.subject.rfc4514_string(),
                not_after=issued.certificate.not_valid_after_utc,
                certificate=issued.certificate,
                chain=issued.chain,
                private_key=issued.private_key,
            )
            for name, issued in clients.items()
        ),
        authorities=(server_ca.certificate,),
        no_client_certificate=("open.test",),
    )


# modern2026 is the modern encryption under a PBMAC1 MAC.
ENCRYPTION = {
    Pkcs12Profile.MODERN: "modern",
    Pkcs12Profile.MODERN_2026: "modern",
    Pkcs12Profile.LEGACY: "legacy",
}


@pytest.mark.parametrize("profile", list(Pkcs12Profile))
def test_the_manifest_indexes_every_file_with_its_digest(
    clients: dict[str, IssuedCert], server_ca: TestCA, profile: Pkcs12Profile
) -> None:
    """manifest.json names app, version, profile, certificates and each file's SHA-256."""
    files = build_bundle(spec(clients, server_ca, profile), randomness=SYSTEM_RANDOMNESS)
    manifest = json.loads(files["manifest.json"])
    assert (manifest["app"], manifest["environment"], manifest["version"]) == (
        "shop",
        "production",
        7,
    )
    assert manifest["pkcs12_profile"] == profile.value
    assert manifest["authorities"] == "ca-certificates.pem"
    assert manifest["truststore"]["file"] == "truststore.p12"
    assert manifest["no_client_certificate"] == ["open.test"]
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    assert verify_files(manifest, files.__getitem__) == []
    for entry in manifest["client_certificates"]:
        structure = read_pkcs12_structure(files[entry["pkcs12"]], limits=Limits())
        assert structure.encryption.value == ENCRYPTION[profile]
        assert structure.mac is not None
        assert (structure.mac.pbmac1 is not None) == (profile is Pkcs12Profile.MODERN_2026)
        loaded = pkcs12.load_pkcs12(files[entry["pkcs12"]], entry["password"].encode())
        assert loaded.key is not None
    truststore = read_pkcs12_structure(files["truststore.p12"], limits=Limits())
    assert truststore.mac is not None
    assert (truststore.mac.pbmac1 is not None) == (profile is Pkcs12Profile.MODERN_2026)


def test_passwords_are_fresh_alphanumeric_and_never_the_uploaded_one(
    clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """Every PKCS12 gets its own random password, safe in comma-separated settings."""
    first = json.loads(
        build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)["manifest.json"]
    )
    second = json.loads(
        build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)["manifest.json"]
    )
    passwords = [e["password"] for e in first["client_certificates"]] + [
        first["truststore"]["password"]
    ]
    assert all(p.isalnum() and len(p) >= 32 for p in passwords)
    assert len(set(passwords)) == len(passwords)
    assert passwords[0] != second["client_certificates"][0]["password"]


def test_runtime_settings_follow_the_reference_runtime(
    clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """Comma-separated paths and passwords in the same order; usages per pin and call name."""
    files = build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)
    settings = json.loads(files["runtime-settings.json"])
    manifest = json.loads(files["manifest.json"])
    entries = manifest["client_certificates"]
    assert settings["CACertificates"] == "ca-certificates.pem"
    assert settings["ClientCertificates"].split(",") == [e["pkcs12"] for e in entries]
    assert settings["ClientCertificatePasswords"].split(",") == [e["password"] for e in entries]
    assert settings["ClientCertificateUsages"] == {
        "client-a.partner.test": "client-certificates/client-a.p12",
        "call-client-a": "client-certificates/client-a.p12",
        "client-b.partner.test": "client-certificates/client-b.p12",
        "Billing.Service": "client-certificates/client-b.p12",
    }
    assert settings["NoClientCertificateUsages"] == ["open.test"]


def test_buildpack_variables_carry_the_containers_themselves(
    clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """CLIENT_CERTIFICATES is a JSON string of {pfx, password, pin_to}; CAs as PEM text."""
    files = build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)
    variables = json.loads(files["buildpack.json"])
    assert "BEGIN CERTIFICATE" in variables["CERTIFICATE_AUTHORITIES"]
    entries = json.loads(variables["CLIENT_CERTIFICATES"])
    assert [e["pin_to"] for e in entries] == [
        ["client-a.partner.test", "call-client-a"],
        ["client-b.partner.test", "Billing.Service"],
    ]
    for entry in entries:
        assert pkcs12.load_pkcs12(base64.b64decode(entry["pfx"]), entry["password"].encode()).key


def test_pem_files_carry_the_key_encrypted(
    clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """No key is written unencrypted, not even in the PEM form."""
    files = build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)
    for path, data in files.items():
        if path.endswith(".pem") and path.startswith("client-certificates/"):
            assert b"ENCRYPTED PRIVATE KEY" in data
            assert b"BEGIN PRIVATE KEY" not in data


def test_the_store_switches_current_atomically_and_verifies(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """Version directories are private, complete, and current points at the activated one."""
    store = BundleStore(tmp_path / "bundles", BOX)
    files = build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)
    directory = store.write("shop", "production", 7, files)
    assert store.current_version("shop", "production") is None
    store.activate("shop", "production", 7)
    assert store.current_version("shop", "production") == 7
    assert store.is_complete("shop", "production", 7)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in directory.rglob("*") if p.is_file())
    settings_file = directory / "runtime-settings.json.sealed"
    settings_file.write_bytes(BOX.encrypt(b"{}", aad=b"bundles:shop/production/7:x"))
    assert not store.is_complete("shop", "production", 7)


def test_the_store_seals_every_file_to_its_place(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """No file of the store is in the clear; a sealed file moved to another path won't open."""
    store = BundleStore(tmp_path / "bundles", BOX)
    files = build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)
    directory = store.write("shop", "production", 7, files)
    stored = {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*.sealed")}
    assert set(stored) == {f"{name}.sealed" for name in files}
    for name, data in files.items():
        assert data not in stored[f"{name}.sealed"]
        assert store.read("shop", "production", 7, name) == data
    other = BundleStore(tmp_path / "bundles", SecretBox(Keyring([MasterKey.generate()])))
    assert other.manifest("shop", "production", 7) is None
    assert not other.is_complete("shop", "production", 7)
    (directory / "manifest.json.sealed").write_bytes(stored["runtime-settings.json.sealed"])
    assert not store.is_complete("shop", "production", 7)


def test_the_tarball_holds_the_bundle_relative_to_its_root(
    tmp_path: Path, clients: dict[str, IssuedCert], server_ca: TestCA
) -> None:
    """The download is a gzipped tar of exactly the version's files."""
    store = BundleStore(tmp_path / "bundles", BOX)
    files = build_bundle(spec(clients, server_ca), randomness=SYSTEM_RANDOMNESS)
    store.write("shop", "production", 7, files)
    with tarfile.open(
        fileobj=io.BytesIO(store.tarball("shop", "production", 7)), mode="r:gz"
    ) as archive:
        names = set(archive.getnames())
        assert names == set(files)
        extracted = archive.extractfile("manifest.json")
        assert extracted is not None
        assert extracted.read() == files["manifest.json"]
