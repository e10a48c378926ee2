"""A new platform root cross-certified by the old one, on SQLite and PostgreSQL.

After ``rotate(new_root=True)`` the certificates the new root's intermediate issues are
served (API, data-plane state, both data planes) with the cross-certificate above the
intermediate while the old root is not retired. A client trusting only the old root
then verifies leaf -> new intermediate -> cross-certificate -> old root, one trusting
only the new root leaf -> new intermediate -> new root: `openssl verify`, `openssl
s_client` and a Java 17 client (``tests/java/RootTrustCheck.java``) against the gateway
on loopback show both. Once the old root is retired the cross-certificate is gone from
everything served, and the hostnames it was served for are in the change feed.

The clock is set to the real time: OpenSSL and Java check validity against it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import PolicyBuilder, Store
from sqlalchemy import select, update

from certward.dataplane.nginx import certificate_file
from certward.dataplane.state import DataPlaneState
from certward.model import CaState, Environment, ManagedCertificate
from certward.services import platform_ca
from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.managed import renew_due
from certward.services.platform_ca import PlatformCaView
from tests.api.conftest import API, Api, expect
from tests.gateway.harness import WAIT_SECONDS, RunningGateway, running_gateway_on
from tests.material.openssl_cli import OpenSSLCli, OpenSSLFailed
from tests.material.tools import JavaTools

SOURCE = Path(__file__).resolve().parents[1] / "java" / "RootTrustCheck.java"
PEM = serialization.Encoding.PEM


@dataclass(frozen=True, slots=True, kw_only=True)
class Overlap:
    """A new root's overlap: ``prod`` renewed under the new root, ``stage`` still under
    the old one (which keeps the old root retiring)."""

    old: PlatformCaView
    new: PlatformCaView
    prod: str  # hostnames
    stage: str

    @property
    def old_root_pem(self) -> str:
        return self.old.root.certificate_pem

    @property
    def new_root_pem(self) -> str:
        return self.new.root.certificate_pem

    @property
    def cross_pem(self) -> str:
        assert self.new.root.cross_certificate is not None
        return self.new.root.cross_certificate.certificate_pem


def renew(api: Api, env: str) -> None:
    """Make the environment's certificate due now and renew it."""
    with api.context.database.transaction() as session:
        environment_id = session.scalar(select(Environment.id).where(Environment.name == env))
        session.execute(
            update(ManagedCertificate)
            .where(
                ManagedCertificate.environment_id == environment_id,
                ManagedCertificate.state == "active",
            )
            .values(renew_after=api.clock.now() - timedelta(seconds=1))
        )
    assert renew_due(api.context, worker="w", limit=10).renewed == 1


@pytest.fixture
def overlap(api: Api) -> Overlap:
    api.clock.set(datetime.now(UTC).replace(microsecond=0))
    api.create_app("shop")
    prod = api.create_environment("shop", "prod")["hostname"]
    stage = api.create_environment("shop", "stage")["hostname"]
    old = platform_ca.show(api.context)
    new = platform_ca.rotate(api.context, new_root=True)
    renew(api, "prod")
    return Overlap(old=old, new=new, prod=prod, stage=stage)


def managed(api: Api, env: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(
        api.client.get(api.env_url("shop", env, "/managed-certificate"), headers=api.admin_headers),
        200,
    )
    return body


def subjects(pem: str | bytes) -> list[str]:
    text = pem if isinstance(pem, bytes) else pem.encode()
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(text)]


def retire_old_root(api: Api, overlap: Overlap) -> None:
    renew(api, "stage")
    states = {c.id: c.state for c in platform_ca.show(api.context).certificates}
    assert states[overlap.old.root.id] is CaState.RETIRED


# -- the cross-certificate --------------------------------------------------------------------


def test_the_new_root_is_cross_certified_by_the_old_one(api: Api, overlap: Overlap) -> None:
    """Subject, key and key identifier of the new root, issued and signed by the old root,
    valid within it; shown by the API with fingerprint and dates during the overlap."""
    old_root = x509.load_pem_x509_certificate(overlap.old_root_pem.encode())
    new_root = x509.load_pem_x509_certificate(overlap.new_root_pem.encode())
    cross = x509.load_pem_x509_certificate(overlap.cross_pem.encode())
    assert cross.subject == new_root.subject
    assert cross.issuer == old_root.subject
    assert cross.public_key() == new_root.public_key()
    ski = x509.SubjectKeyIdentifier
    assert (
        cross.extensions.get_extension_for_class(ski).value
        == new_root.extensions.get_extension_for_class(ski).value
    )
    cross.verify_directly_issued_by(old_root)
    assert old_root.not_valid_before_utc <= cross.not_valid_before_utc
    assert cross.not_valid_after_utc <= old_root.not_valid_after_utc
    view = overlap.new.root.cross_certificate
    assert view is not None
    assert view.issuer_id == overlap.old.root.id
    assert view.sha256_fingerprint == cross.fingerprint(hashes.SHA256()).hex()
    assert overlap.new.cross_certificates == (view,)
    listing = expect(api.client.get(f"{API}/platform/ca/certificates"), 200)
    [root] = [c for c in listing if c["id"] == overlap.new.root.id]
    assert root["cross_certificate"]["sha256_fingerprint"] == view.sha256_fingerprint
    assert root["cross_certificate"]["issuer_id"] == overlap.old.root.id
    assert datetime.fromisoformat(root["cross_certificate"]["not_after"]) == view.not_after
    assert datetime.fromisoformat(root["cross_certificate"]["not_before"]) == view.not_before
    assert all(c["cross_certificate"] is None for c in listing if c["id"] != root["id"])


def test_an_intermediate_rotation_cross_certifies_nothing(api: Api) -> None:
    """An intermediate-only rotation makes no cross-certificate."""
    rotated = platform_ca.rotate(api.context, new_root=False)
    assert rotated.cross_certificates == ()
    assert all(c.cross_certificate is None for c in rotated.certificates)


# -- served during the overlap ------------------------------------------------------------------


def test_the_chain_carries_the_cross_certificate_during_the_overlap(
    api: Api, overlap: Overlap
) -> None:
    """The API and the data-plane state (and nginx's certificate file) serve leaf, new
    intermediate and cross-certificate for what the new root issued; the old root's
    certificates keep their chain."""
    body = managed(api, "prod")
    new_intermediate = overlap.new.intermediate.subject
    assert subjects(body["chain_pem"]) == [new_intermediate, overlap.new.root.subject]
    assert body["chain_pem"].endswith(overlap.cross_pem)
    assert subjects(managed(api, "stage")["chain_pem"]) == [overlap.old.intermediate.subject]
    state = DataPlaneFeed(api.context).load()
    site = state.site(overlap.prod)
    assert site is not None
    assert site.certificate is not None
    assert subjects(site.certificate.chain_pem) == [
        f"CN={overlap.prod}",
        new_intermediate,
        overlap.new.root.subject,
    ]
    assert overlap.cross_pem.encode() in site.certificate.chain_pem
    rendered = certificate_file(site)
    assert rendered is not None
    assert overlap.cross_pem.encode() in rendered.content
    stage = state.site(overlap.stage)
    assert stage is not None
    assert stage.certificate is not None
    assert len(subjects(stage.certificate.chain_pem)) == 2


def test_pyca_verifies_the_new_roots_certificate_with_either_root(
    api: Api, overlap: Overlap
) -> None:
    """pyca's strict server verifier builds a path to whichever root it trusts."""
    body = managed(api, "prod")
    leaf = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    chain = x509.load_pem_x509_certificates(body["chain_pem"].encode())
    for root_pem, length in ((overlap.old_root_pem, 4), (overlap.new_root_pem, 3)):
        verifier = (
            PolicyBuilder()
            .store(Store([x509.load_pem_x509_certificate(root_pem.encode())]))
            .time(api.clock.now())
            .build_server_verifier(x509.DNSName(overlap.prod))
        )
        assert len(verifier.verify(leaf, chain)) == length


def openssl_verify(
    cli: OpenSSLCli, tmp_path: Path, *, trusted: str, chain: str, leaf: str, hostname: str
) -> list[str]:
    """``openssl verify -show_chain`` of ``leaf`` with ``chain`` untrusted: the path lines."""
    for name, text in (("trusted.pem", trusted), ("chain.pem", chain), ("leaf.pem", leaf)):
        (tmp_path / name).write_text(text)
    completed = cli.run(
        [
            "verify",
            "-show_chain",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            hostname,
            "-CAfile",
            str(tmp_path / "trusted.pem"),
            "-untrusted",
            str(tmp_path / "chain.pem"),
            str(tmp_path / "leaf.pem"),
        ]
    )
    assert completed.stdout.startswith(f"{tmp_path / 'leaf.pem'}: OK")
    return [line for line in completed.stdout.splitlines() if line.startswith("depth=")]


def test_openssl_verify_reaches_either_root(
    api: Api, overlap: Overlap, openssl_cli: OpenSSLCli, tmp_path: Path
) -> None:
    """``openssl verify -CAfile old_root.pem -untrusted chain.pem leaf.pem`` goes through
    the cross-certificate to the old root; with ``-CAfile new_root.pem`` it stops at the
    new root. Without the cross-certificate the old root verifies nothing."""
    body = managed(api, "prod")
    leaf, chain = body["certificate_pem"], body["chain_pem"]
    above = [
        f"depth=0: CN = {overlap.prod} (untrusted)",
        "depth=1: CN = certward platform issuing CA I2 (untrusted)",
    ]
    for trusted, path in (
        (
            overlap.old_root_pem,
            [
                "depth=2: CN = certward platform root CA R2 (untrusted)",  # the cross-certificate
                "depth=3: CN = certward platform root CA R1",
            ],
        ),
        (overlap.new_root_pem, ["depth=2: CN = certward platform root CA R2"]),
    ):
        shown = openssl_verify(
            openssl_cli, tmp_path, trusted=trusted, chain=chain, leaf=leaf, hostname=overlap.prod
        )
        assert shown == above + path
    with pytest.raises(OpenSSLFailed):
        openssl_verify(
            openssl_cli,
            tmp_path,
            trusted=overlap.old_root_pem,
            chain=overlap.new.intermediate.certificate_pem,
            leaf=leaf,
            hostname=overlap.prod,
        )


# -- after the overlap -----------------------------------------------------------------------


def test_the_cross_certificate_is_no_longer_served_once_the_old_root_is_retired(
    api: Api, overlap: Overlap, openssl_cli: OpenSSLCli, tmp_path: Path
) -> None:
    """When the last certificate under the old root is renewed the old root retires: the
    cross-certificate leaves the API's chain, the views, and the data-plane state — read
    afresh, by a feed that cached it, and through the change feed, which lists the
    hostname it was served for. The old root alone then verifies nothing."""
    feed = DataPlaneFeed(api.context)
    before = feed.load()
    assert overlap.cross_pem.encode() in _chain(before, overlap.prod)
    retire_old_root(api, overlap)
    changes = feed.changes_since(before.sequence)
    assert changes is not None
    assert overlap.prod in changes.changed
    site, _ = changes.changed[overlap.prod]
    assert site.certificate is not None
    assert overlap.cross_pem.encode() not in site.certificate.chain_pem
    for state in (feed.load(), DataPlaneFeed(api.context).load()):
        for host in (overlap.prod, overlap.stage):
            assert len(subjects(_chain(state, host))) == 2  # leaf and new intermediate
    view = platform_ca.show(api.context)
    assert view.cross_certificates == ()
    listing = expect(api.client.get(f"{API}/platform/ca/certificates?all=true"), 200)
    assert all(c["cross_certificate"] is None for c in listing)
    body = managed(api, "prod")
    assert subjects(body["chain_pem"]) == [overlap.new.intermediate.subject]
    with pytest.raises(OpenSSLFailed):
        openssl_verify(
            openssl_cli,
            tmp_path,
            trusted=overlap.old_root_pem,
            chain=body["chain_pem"],
            leaf=body["certificate_pem"],
            hostname=overlap.prod,
        )


def _chain(state: DataPlaneState, host: str) -> bytes:
    site = state.site(host)
    assert site is not None
    assert site.certificate is not None
    return site.certificate.chain_pem


# -- real TLS handshakes with the gateway --------------------------------------------------------


@pytest.fixture(scope="module")
def root_trust_check(java_tools: JavaTools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RootTrustCheck.java compiled once."""
    classes = tmp_path_factory.mktemp("root-trust-check")
    subprocess.run([java_tools.javac, "-d", str(classes), str(SOURCE)], check=True, timeout=120)
    return classes


@dataclass(frozen=True, slots=True, kw_only=True)
class Clients:
    """A Java 17 client and ``openssl s_client``, each trusting one PEM file of roots."""

    java: JavaTools
    classes: Path
    openssl: OpenSSLCli
    workdir: Path

    def java_path(self, port: int, host: str, roots_pem: str) -> list[str]:
        """What Java served and built (``served``/``path``/``anchor`` lines); AssertionError
        with Java's exception when the handshake fails."""
        roots = self.workdir / "java-roots.pem"
        roots.write_text(roots_pem)
        completed = subprocess.run(
            [
                self.java.java,
                "-cp",
                str(self.classes),
                "RootTrustCheck",
                "127.0.0.1",
                str(port),
                host,
                str(roots),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if completed.returncode != 0:
            raise AssertionError(completed.stderr)
        return completed.stdout.splitlines()

    def s_client_path(self, port: int, host: str, roots_pem: str) -> list[str]:
        """The ``depth=`` lines of a verified ``openssl s_client`` handshake."""
        roots = self.workdir / "openssl-roots.pem"
        roots.write_text(roots_pem)
        completed = self.openssl.run(
            [
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                host,
                "-verify_hostname",
                host,
                "-CAfile",
                str(roots),
                "-verify_return_error",
            ]
        )
        output = completed.stderr + completed.stdout
        assert "Verify return code: 0 (ok)" in output
        return [line for line in output.splitlines() if line.startswith("depth=")]


@pytest.fixture
def clients(
    java_tools: JavaTools, root_trust_check: Path, openssl_cli: OpenSSLCli, tmp_path: Path
) -> Clients:
    return Clients(java=java_tools, classes=root_trust_check, openssl=openssl_cli, workdir=tmp_path)


@pytest.fixture
def gateway(api: Api, overlap: Overlap) -> Iterator[RunningGateway]:
    """The gateway on loopback, serving the database through a `DataPlaneFeed`."""
    with running_gateway_on(DataPlaneFeed(api.context), refresh=0.05) as running:
        yield running


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_java_and_openssl_trusting_either_root_complete_a_handshake_with_the_gateway(
    api: Api, overlap: Overlap, clients: Clients, gateway: RunningGateway
) -> None:
    """During the overlap a Java 17 client trusting only the old root builds leaf -> new
    intermediate -> cross-certificate -> old root; trusting only the new root, leaf ->
    new intermediate -> new root (the extra certificate is left out). ``openssl
    s_client`` does the same. Once the old root is retired the gateway stops serving the
    cross-certificate and a client trusting only the old root fails the handshake."""
    port, host = gateway.https_port, overlap.prod
    leaf, issuing, r1, r2 = (
        f"CN={host}",
        "CN=certward platform issuing CA I2",
        "CN=certward platform root CA R1",
        "CN=certward platform root CA R2",
    )
    served = [f"served\t{leaf}", f"served\t{issuing}", f"served\t{r2}"]
    assert clients.java_path(port, host, overlap.old_root_pem) == [
        *served,
        f"path\t{leaf}\t{issuing}",
        f"path\t{issuing}\t{r2}",
        f"path\t{r2}\t{r1}",
        f"anchor\t{r1}",
    ]
    assert clients.java_path(port, host, overlap.new_root_pem) == [
        *served,
        f"path\t{leaf}\t{issuing}",
        f"path\t{issuing}\t{r2}",
        f"anchor\t{r2}",
    ]
    assert clients.s_client_path(port, host, overlap.old_root_pem) == [
        "depth=3 CN = certward platform root CA R1",
        "depth=2 CN = certward platform root CA R2",
        "depth=1 CN = certward platform issuing CA I2",
        f"depth=0 CN = {host}",
    ]
    assert clients.s_client_path(port, host, overlap.new_root_pem) == [
        "depth=2 CN = certward platform root CA R2",
        "depth=1 CN = certward platform issuing CA I2",
        f"depth=0 CN = {host}",
    ]
    retire_old_root(api, overlap)
    _wait_for_chain_length(gateway, host, 2)
    assert clients.java_path(port, host, overlap.new_root_pem)[:2] == served[:2]
    with pytest.raises(AssertionError, match="PKIX path building failed"):
        clients.java_path(port, host, overlap.old_root_pem)
    with pytest.raises(OpenSSLFailed):
        clients.s_client_path(port, host, overlap.old_root_pem)


def _wait_for_chain_length(running: RunningGateway, host: str, length: int) -> None:
    """Until the gateway serves ``host`` with ``length`` certificates."""
    deadline = datetime.now(UTC) + timedelta(seconds=WAIT_SECONDS)
    while datetime.now(UTC) < deadline:
        site = running.gateway.state.site(host) if running.gateway else None
        certificate = site.certificate if site is not None else None
        if certificate is not None and len(subjects(certificate.chain_pem)) == length:
            return
        time.sleep(0.05)
    raise AssertionError(f"the gateway still serves {host} with another chain")
