"""The ACME issuer against Debian's pebble on loopback: HTTP-01 through the in-process
responder, names resolved by pebble-challtestsrv's DNS server to 127.0.0.1."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certward.issuing import ca
from certward.issuing.acme import AcmeError, AcmeIssuer, Http01Responder
from tests.material.tools import require_tool

pytestmark = [pytest.mark.external("pebble"), pytest.mark.slow]

HOST = "shop-production.apps.test"
STARTUP_SECONDS = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pebble:
    """A running pebble: its directory URL, management URL and the TLS CA bundle to trust."""

    directory_url: str
    management_url: str
    ca_bundle: Path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 nothing is bound to right now (TCP, or UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once 127.0.0.1:``port`` accepts TCP connections; fail if the process died."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited early:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on port {port}:\n{log.read_text(errors='replace')}")


def start(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` (kill it when it lingers) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def responder() -> Iterator[Http01Responder]:
    """The in-process HTTP-01 responder on a free loopback port."""
    with Http01Responder("127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def pebble(tmp_path: Path, responder: Http01Responder) -> Iterator[Pebble]:
    """pebble and pebble-challtestsrv (DNS only) on loopback, stopped afterwards."""
    pebble_path = require_tool("pebble")
    challtestsrv_path = require_tool("pebble-challtestsrv")
    now = datetime.now(UTC)
    tls_root = ca.create_root(at=now, common_name="certward test pebble TLS root")
    tls_key = ca.generate_key()
    tls_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(tls_root.certificate.subject)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(tls_root.private_key.public_key()),
            critical=False,
        )
        .sign(tls_root.private_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "tls-root.pem").write_bytes(tls_root.certificate.public_bytes(pem))
    (tmp_path / "tls-cert.pem").write_bytes(tls_certificate.public_bytes(pem))
    (tmp_path / "tls-key.pem").write_bytes(
        tls_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    acme_port, management_port = free_port(), free_port()
    dns_port, challtestsrv_management_port = free_port(socket.SOCK_DGRAM), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(tmp_path / "tls-cert.pem"),
            "privateKey": str(tmp_path / "tls-key.pem"),
            "httpPort": responder.port,
            "tlsPort": free_port(),  # no tls-alpn-01 responder: never answers
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (tmp_path / "pebble.json").write_text(json.dumps(config))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        dns = start(
            [
                challtestsrv_path,
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                f"127.0.0.1:{dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{challtestsrv_management_port}",
            ],
            tmp_path / "challtestsrv.log",
        )
        processes.append(dns)
        wait_for_port(challtestsrv_management_port, dns, tmp_path / "challtestsrv.log")
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_VA_ALWAYS_VALID": "0",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        server = start(
            [
                pebble_path,
                "-config",
                str(tmp_path / "pebble.json"),
                "-dnsserver",
                f"127.0.0.1:{dns_port}",
            ],
            tmp_path / "pebble.log",
            env,
        )
        processes.append(server)
        wait_for_port(acme_port, server, tmp_path / "pebble.log")
        wait_for_port(management_port, server, tmp_path / "pebble.log")
        yield Pebble(
            directory_url=f"https://127.0.0.1:{acme_port}/dir",
            management_url=f"https://127.0.0.1:{management_port}",
            ca_bundle=tmp_path / "tls-root.pem",
        )
    finally:
        for process in reversed(processes):
            stop(process)


def pebble_root(pebble: Pebble) -> x509.Certificate:
    """pebble's current root, from its management API (the test's only fetch of it)."""
    context = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    answer = httpx.get(f"{pebble.management_url}/roots/0", verify=context, timeout=10)
    answer.raise_for_status()
    return x509.load_pem_x509_certificate(answer.content)


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
