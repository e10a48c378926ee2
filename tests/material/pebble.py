"""pebble (Debian's ACME test CA) and pebble-challtestsrv (its DNS, every name
127.0.0.1) on loopback, for tests that issue through ACME, and certward's API served
over real HTTP where pebble validates HTTP-01 challenges::

    port = free_port()
    with serve_http(api.app, port) as served, run_pebble(tmp_path, http_port=port) as pebble:
        ...  # pebble.directory_url, pebble.ca_bundle, pebble_root(pebble)
        served.challenge_fetches  # what pebble fetched from /.well-known/acme-challenge/
        pebble.stop()  # to test an unreachable CA

Requires both programs via ``require_tool`` (skip, or fail when ``CI=true``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certward.issuing import ca
from certward.issuing.acme import CHALLENGE_PATH
from tests.material.tools import require_tool

STARTUP_SECONDS = 15.0


@dataclass(slots=True, kw_only=True)
class Pebble:
    """A running pebble: its directory URL, management URL and the TLS CA bundle to trust."""

    directory_url: str
    management_url: str
    ca_bundle: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop pebble and its DNS server (idempotent)."""
        for process in reversed(self.processes):
            stop(process)


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


@contextmanager
def run_pebble(directory: Path, *, http_port: int) -> Iterator[Pebble]:
    """pebble and pebble-challtestsrv (DNS only) on loopback, stopped afterwards.

    pebble validates HTTP-01 challenges on 127.0.0.1:``http_port``; its files and
    logs go to ``directory``.
    """
    pebble_path = require_tool("pebble")
    challtestsrv_path = require_tool("pebble-challtestsrv")
    tmp_path = directory
    tmp_path.mkdir(parents=True, exist_ok=True)
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
            "httpPort": http_port,
            "tlsPort": free_port(),  # no tls-alpn-01 responder: never answers
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (tmp_path / "pebble.json").write_text(json.dumps(config))
    pebble = Pebble(directory_url="", management_url="", ca_bundle=tmp_path / "tls-root.pem")
    processes = pebble.processes
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
        pebble.directory_url = f"https://127.0.0.1:{acme_port}/dir"
        pebble.management_url = f"https://127.0.0.1:{management_port}"
        yield pebble
    finally:
        pebble.stop()


def pebble_root(pebble: Pebble) -> x509.Certificate:
    """pebble's current root, from its management API (the test's only fetch of it)."""
    context = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    answer = httpx.get(f"{pebble.management_url}/roots/0", verify=context, timeout=10)
    answer.raise_for_status()
    return x509.load_pem_x509_certificate(answer.content)


@dataclass(slots=True, kw_only=True)
class Served:
    """An ASGI application served over HTTP on loopback, and what was fetched from it.

    ``challenge_fetches`` lists the host name (without port) and status of every request
    for ``/.well-known/acme-challenge/…`` (pebble's validation requests), in order.
    """

    port: int
    challenge_fetches: list[tuple[str, int]] = field(default_factory=list)


@contextmanager
def serve_http(app: ASGIApp, port: int) -> Iterator[Served]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` in a background thread (what
    ``certward serve`` runs), recording the challenge requests it answers."""
    served = Served(port=port)

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CHALLENGE_PATH):
            await app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0]

        async def noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                served.challenge_fetches.append((host, int(str(message["status"]))))
            await send(message)

        await app(scope, receive, noting_status)

    config = uvicorn.Config(
        recording, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"certward's API did not start serving on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield served
    finally:
        server.should_exit = True
        thread.join(timeout=10)
