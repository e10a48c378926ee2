"""Mutual-TLS "partner" servers on loopback that report which client certificate they got.

Each partner has its own host name (resolved to 127.0.0.1 by `loopback_names`), a
server certificate from a private CA, and requires a client certificate issued by the
given client CA. A GET answers JSON: ``{"partner", "client_subject", "client_serial"}``
(``null`` when the client presented none, for partners that only request one).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certward.bundles.files import BundleClientCertificate, BundleSpec, build_bundle
from certward.pki.convert import Pkcs12Profile
from certward.randomness import SYSTEM_RANDOMNESS
from tests.material.factory import NOW, IssuedCert, TestCA


@dataclass(frozen=True)
class Partner:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"https://{self.name}:{self.port}/"


@contextmanager
def partner_server(
    name: str,
    *,
    server_ca: TestCA,
    client_ca: x509.Certificate,
    workdir: Path,
    require_client_certificate: bool = True,
) -> Iterator[Partner]:
    """Serve HTTPS as ``name`` on 127.0.0.1 until the block ends."""
    leaf = server_ca.issue_leaf(name, sans=[name])
    (workdir / f"{name}.pem").write_bytes(leaf.cert_pem() + leaf.chain_pem())
    (workdir / f"{name}.key").write_bytes(leaf.key_pem())
    (workdir / f"{name}-clients.pem").write_bytes(
        client_ca.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / f"{name}.pem", workdir / f"{name}.key")
    context.load_verify_locations(cafile=workdir / f"{name}-clients.pem")
    context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
            subject = serial = None
            if peer:
                certificate = x509.load_der_x509_certificate(peer)
                subject = certificate.subject.rfc4514_string()
                serial = format(certificate.serial_number, "x")
            body = json.dumps(
                {"partner": name, "client_subject": subject, "client_serial": serial}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Partner(name=name, port=server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def three_partners(
    workdir: Path, *, server_ca: TestCA, client_ca: TestCA
) -> Iterator[dict[str, Partner]]:
    """``a`` and ``b`` require a client certificate from ``client_ca``; ``open`` only asks."""
    with (
        partner_server(
            "partner-a.test", server_ca=server_ca, client_ca=client_ca.certificate, workdir=workdir
        ) as a,
        partner_server(
            "partner-b.test", server_ca=server_ca, client_ca=client_ca.certificate, workdir=workdir
        ) as b,
        partner_server(
            "open.test",
            server_ca=server_ca,
            client_ca=client_ca.certificate,
            workdir=workdir,
            require_client_certificate=False,
        ) as open_,
    ):
        yield {"a": a, "b": b, "open": open_}


@pytest.fixture
def loopback_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve every ``*.test`` host name to 127.0.0.1 in this process (no DNS involved)."""
    real = socket.getaddrinfo

    def resolve(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.endswith(".test"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def bundle_dir(
    tmp_path: Path,
    clients: dict[str, IssuedCert],
    server_ca: TestCA,
    *,
    profile: Pkcs12Profile = Pkcs12Profile.MODERN,
    no_client_certificate: tuple[str, ...] = ("open.test",),
) -> Path:
    spec = BundleSpec(
        app="shop",
        environment="production",
        version=1,
        digest="0" * 64,
        created_at=NOW,
        pkcs12_profile=profile,
        client_certificates=(
            BundleClientCertificate(
                id="a",
                call_name="billing",
                pins=("partner-a.test",),
                subject="CN=client-a",
                not_after=NOW,
                certificate=clients["client-a"].certificate,
                chain=clients["client-a"].chain,
                private_key=clients["client-a"].private_key,
            ),
            BundleClientCertificate(
                id="b",
                call_name=None,
                pins=("partner-b.test", "Billing.Service"),
                subject="CN=client-b",
                not_after=NOW,
                certificate=clients["client-b"].certificate,
                chain=(),
                private_key=clients["client-b"].private_key,
            ),
        ),
        authorities=(server_ca.certificate,),
        no_client_certificate=no_client_certificate,
    )
    directory = tmp_path / "bundle"  # the bundle as installed on the app's machine
    for relative, data in build_bundle(spec, randomness=SYSTEM_RANDOMNESS).items():
        (directory / relative).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
    return directory
