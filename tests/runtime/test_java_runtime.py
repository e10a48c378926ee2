"""A Java 17 runtime completes mutual TLS with a bundle's truststore.p12 and client .p12."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from certward.pki.convert import Pkcs12Profile
from certward.runtime import load_bundle
from tests.material.factory import IssuedCert, TestCA
from tests.material.tools import JavaTools
from tests.runtime.partners import Partner, bundle_dir, partner_server

SOURCE = Path(__file__).resolve().parents[1] / "java" / "TlsClientCheck.java"


@pytest.fixture(scope="module")
def java_client(java_tools: JavaTools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TlsClientCheck.java compiled once."""
    classes = tmp_path_factory.mktemp("tls-client-check")
    subprocess.run([java_tools.javac, "-d", str(classes), str(SOURCE)], check=True, timeout=120)
    return classes


@pytest.fixture
def partner(
    tmp_path: Path, server_ca: TestCA, client_ca: TestCA, loopback_names: None
) -> Iterator[Partner]:
    with partner_server(
        "partner-a.test", server_ca=server_ca, client_ca=client_ca.certificate, workdir=tmp_path
    ) as running:
        yield running


# Java 17 reads no PBMAC1 (modern2026): tests/pki/test_convert.py shows it refusing.
@pytest.mark.parametrize("profile", [Pkcs12Profile.MODERN, Pkcs12Profile.LEGACY])
def test_java_presents_the_bundle_client_certificate(
    tmp_path: Path,
    java_tools: JavaTools,
    java_client: Path,
    partner: Partner,
    clients: dict[str, IssuedCert],
    server_ca: TestCA,
    profile: Pkcs12Profile,
) -> None:
    """truststore.p12 and each client .p12 load in Java and the handshake succeeds."""
    runtime = load_bundle(bundle_dir(tmp_path, clients, server_ca, profile=profile))
    manifest = json.loads((runtime.root / "manifest.json").read_text())
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 {partner.name}\n")
    truststore_password = tmp_path / "truststore.pw"
    truststore_password.write_text(manifest["truststore"]["password"])
    for certificate in runtime.client_certificates:
        key_password = tmp_path / f"{certificate.id}.pw"
        key_password.write_text(certificate.password)
        result = subprocess.run(
            [
                java_tools.java,
                f"-Djdk.net.hosts.file={hosts}",
                "-cp",
                str(java_client),
                "TlsClientCheck",
                partner.url,
                str(runtime.root / manifest["truststore"]["file"]),
                str(truststore_password),
                str(certificate.pkcs12),
                str(key_password),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["client_subject"] == certificate.subject
