"""nginx 1.22: certificates loaded per handshake against static ones, and what a reload costs.

Three measurements, each against its baseline in the same run:

1. **Full handshakes per server-CPU-second** (no resumption, SNI spread over 200 of
   1,000 hostnames, ECDSA P-256 and RSA-2048 leaves, one worker each): the
   configuration certward renders with certificates named per site in the
   configuration (static: loaded once, at a reload) against the one loading each
   site's certificate from ``certificates/<host>.pem`` at every handshake
   (``ssl_certificate .../$server_name.pem``), interleaved rounds, medians.
2. **A reload under keep-alive clients that do not retry**: clients each keep one
   HTTP/1.1 connection and send GETs back to back while nginx is reloaded (SIGHUP)
   every 0.5 s; every request that fails (the connection closed under it) is counted,
   against the same run with certificate renewals written in place instead of reloads.
3. **The rename window**: one client doing full handshakes to one hostname while its
   certificate file is replaced (a new key each time) every few milliseconds; a
   handshake whose two opens of the file (chain, then key) straddle a rename fails.
   Reported as failed handshakes per replacement, and per replacement at the measured
   handshake rate.

Run: ``.venv/bin/python benchmarks/bench_nginx_certificates.py [--quick]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pwd
import signal
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import _harness  # noqa: F401 - puts the repository root on sys.path for tests.material
from bench_gateway import (
    HOT_HOSTNAMES,
    Material,
    UpstreamNginx,
    _handshake_client,
    build_state,
    cpu_seconds,
    free_port,
    nginx,
    wait_port,
    warm_up,
)
from certward.dataplane.nginx import RenderedFile, render_set
from certward.dataplane.nginx_certificates import CertificateDirectory
from certward.dataplane.state import DataPlaneState
from tests.dataplane.local_policy import LOCAL_POLICY
from tests.material.factory import TestCA

CLIENT_PROCESSES = 2


class Nginx:
    """Debian's nginx serving ``state`` as certward renders it, one worker; with
    ``per_handshake`` the certificates are files read at every handshake."""

    def __init__(self, state: DataPlaneState, workdir: Path, *, per_handshake: bool) -> None:
        self.port = free_port()
        self.prefix = workdir / f"nginx-{self.port}"
        self.prefix.mkdir()
        self.prefix.chmod(0o755)  # nginx's workers enter it
        for folder in ("run", "logs", "tmp"):
            (self.prefix / folder).mkdir()
        owner = _worker_uid()
        self.certificates = CertificateDirectory(self.prefix / "certificates", owner)
        self.certificates.prepare()
        rendered = render_set(
            state,
            https_listen=f"127.0.0.1:{self.port}",
            http_listen=f"127.0.0.1:{free_port()}",
            acme_upstream="http://127.0.0.1:9",
            prefix=str(self.prefix),
            policy=LOCAL_POLICY,
            certificates=str(self.certificates.path) if per_handshake else None,
        )
        for relative, file in rendered.files.items():
            path = self.prefix / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            content = file.content
            if relative == "nginx.conf":  # one worker, like the gateway measured
                content = content.replace(b"worker_processes auto;", b"worker_processes 1;")
            path.write_bytes(content)
        self.certificates.write(rendered.certificates)
        self.process = subprocess.Popen(
            [nginx(), "-c", str(self.prefix / "nginx.conf"), "-p", f"{self.prefix}/"],
            stderr=subprocess.DEVNULL,
        )
        self.process.wait(30)  # nginx daemonizes: the master's pid is in run/nginx.pid
        wait_port(self.port)

    @property
    def master(self) -> int:
        return int((self.prefix / "run" / "nginx.pid").read_text())

    @property
    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.master}/task/{self.master}/children").read_text()
        return [self.master, *(int(p) for p in children.split())]

    def reload(self) -> None:
        os.kill(self.master, signal.SIGHUP)

    def stop(self) -> None:
        master = self.master
        os.kill(master, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{master}").exists():
            time.sleep(0.05)


def _worker_uid() -> int | None:
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody").pw_uid


# -- 1. handshakes -----------------------------------------------------------------------


def handshake_rate(server: Nginx, hosts: list[str], ca_pem: str, seconds: float) -> float:
    counter = multiprocessing.Value("q", 0)
    workers = [
        multiprocessing.Process(
            target=_handshake_client, args=(server.port, hosts, ca_pem, None, seconds, counter)
        )
        for _ in range(CLIENT_PROCESSES)
    ]
    before = cpu_seconds(server.pids)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    used = cpu_seconds(server.pids) - before
    return counter.value / used if used else float("nan")


def handshakes(workdir: Path, material: Material, upstream: int, quick: bool) -> None:
    seconds, rounds = (2.0, 3) if quick else (3.0, 5)
    count = 1000
    hosts = [f"h{n}.bench.test" for n in range(HOT_HOSTNAMES)]
    ca_pem = material.ca.cert_pem().decode()
    for key_type in ("ec", "rsa"):
        state = build_state(count, key_type, f"http://127.0.0.1:{upstream}", material, mtls=False)
        servers = {
            "static": Nginx(state, workdir, per_handshake=False),
            "per-handshake": Nginx(state, workdir, per_handshake=True),
        }
        try:
            for server in servers.values():
                warm_up(server, hosts, ca_pem, None)  # type: ignore[arg-type]
            figures: dict[str, list[float]] = {name: [] for name in servers}
            ratios: list[float] = []
            for _ in range(rounds):
                for name, server in servers.items():
                    figures[name].append(handshake_rate(server, hosts, ca_pem, seconds))
                ratios.append(figures["per-handshake"][-1] / figures["static"][-1])
            print(
                f"{count} hosts {key_type.upper():>3}: full handshakes per server-CPU-second:"
                f" static {statistics.median(figures['static']):6.0f},"
                f" per-handshake {statistics.median(figures['per-handshake']):6.0f},"
                f" ratio {statistics.median(ratios):.2f}"
            )
        finally:
            for server in servers.values():
                server.stop()


# -- 2. reloads under keep-alive clients ---------------------------------------------------


def _keepalive_no_retry(
    port: int, host: str, ca_pem: str, seconds: float, done: Any, failed: Any
) -> None:
    """One connection, GETs back to back; a failed request is counted and the client
    opens a new connection (it does not send the request again)."""
    context = ssl.create_default_context(cadata=ca_pem)
    request = f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    ok = bad = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
                context.wrap_socket(sock, server_hostname=host) as tls,
            ):
                while time.monotonic() < deadline:
                    tls.sendall(request)
                    answer = _read_response(tls)
                    if answer is None:
                        bad += 1
                        break
                    ok += 1
                    if answer == "close":  # announced (keepalive_requests): no failure
                        break
        except OSError:
            bad += 1
    with done.get_lock():
        done.value += ok
    with failed.get_lock():
        failed.value += bad


def _read_response(tls: ssl.SSLSocket) -> str | None:
    """``keep-alive`` or ``close`` (what the response announces), None when the
    connection ended without one."""
    buffer = b""
    while True:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(buffer) >= head_end + 4 + length:
                return "close" if b"connection: close" in head else "keep-alive"
        try:
            data = tls.recv(65536)
        except OSError:
            return None
        if not data:
            return None
        buffer += data


def under_keepalive(
    server: Nginx, host: str, ca_pem: str, seconds: float, change: Any
) -> tuple[int, int, int]:
    """Requests done and failed by 4 non-retrying keep-alive clients while ``change``
    runs every 0.5 s; and how many changes were made."""
    done = multiprocessing.Value("q", 0)
    failed = multiprocessing.Value("q", 0)
    clients = [
        multiprocessing.Process(
            target=_keepalive_no_retry, args=(server.port, host, ca_pem, seconds, done, failed)
        )
        for _ in range(4)
    ]
    for client in clients:
        client.start()
    changes = 0
    deadline = time.monotonic() + seconds - 0.5
    time.sleep(0.5)
    while time.monotonic() < deadline:
        change(changes)
        changes += 1
        time.sleep(0.5)
    for client in clients:
        client.join()
    return done.value, failed.value, changes


def reloads(workdir: Path, material: Material, upstream: int, quick: bool) -> None:
    seconds = 5.0 if quick else 10.0
    state = build_state(50, "ec", f"http://127.0.0.1:{upstream}", material, mtls=False)
    host = "h0.bench.test"
    ca_pem = material.ca.cert_pem().decode()
    server = Nginx(state, workdir, per_handshake=True)
    renewals = [_renewed(material, host) for _ in range(8)]
    try:
        in_place = under_keepalive(
            server,
            host,
            ca_pem,
            seconds,
            lambda n: server.certificates.write({host: renewals[n % len(renewals)]}),
        )
        reloaded = under_keepalive(server, host, ca_pem, seconds, lambda n: server.reload())
    finally:
        server.stop()
    for label, (done, failed, changes) in (
        ("certificate written in place", in_place),
        ("reload (SIGHUP)", reloaded),
    ):
        print(
            f"keep-alive clients without retry, {changes} x {label}: {done} requests,"
            f" {failed} failed ({failed / max(changes, 1):.2f} per change)"
        )


def _renewed(material: Material, host: str) -> RenderedFile:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = material.ca.issue_leaf(host, private_key=key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return RenderedFile(leaf.cert_pem() + leaf.chain_pem() + key_pem, 0o600)


# -- 3. the rename window ---------------------------------------------------------------


def rename_window(workdir: Path, material: Material, upstream: int, quick: bool) -> None:
    seconds = 5.0 if quick else 10.0
    state = build_state(50, "ec", f"http://127.0.0.1:{upstream}", material, mtls=False)
    host = "h0.bench.test"
    ca_pem = material.ca.cert_pem().decode()
    server = Nginx(state, workdir, per_handshake=True)
    renewals = [_renewed(material, host) for _ in range(16)]
    results = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def hammer() -> None:
        context = ssl.create_default_context(cadata=ca_pem)
        while not stop.is_set():
            try:
                with (
                    socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
                    context.wrap_socket(sock, server_hostname=host),
                ):
                    results["ok"] += 1
            except (ssl.SSLError, OSError):
                results["failed"] += 1

    try:
        clients = [threading.Thread(target=hammer) for _ in range(2)]
        for client in clients:
            client.start()
        replacements = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            server.certificates.write({host: renewals[replacements % len(renewals)]})
            replacements += 1
            time.sleep(0.002)
        stop.set()
        for client in clients:
            client.join()
    finally:
        server.stop()
    total = results["ok"] + results["failed"]
    rate = total / seconds
    per_replacement = results["failed"] / max(replacements, 1)
    print(
        f"rename window: {replacements} replacements, {total} handshakes ({rate:.0f}/s) to the"
        f" same host, {results['failed']} failed: {per_replacement:.4f} per replacement,"
        f" so about {per_replacement / max(rate, 1) * 1e6:.1f} µs of window"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short runs")
    options = parser.parse_args()
    print(__doc__.splitlines()[0])
    client_ca = TestCA.root(name="bench client root")
    material = Material(ca=TestCA.root(name="bench server root"), client_ca=client_ca)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        upstream = UpstreamNginx(workdir)
        try:
            handshakes(workdir, material, upstream.port, options.quick)
            reloads(workdir, material, upstream.port, options.quick)
            rename_window(workdir, material, upstream.port, options.quick)
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
