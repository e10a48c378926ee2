"""Gateway vs nginx: full TLS handshakes and keep-alive requests per server-CPU-second.

Both servers get the same `DataPlaneState` (1,000 and 10,000 hostnames, ECDSA P-256 or
RSA-2048 leaves, optionally a client-CA rule on every host): the gateway through a
fixed source, nginx through `certward.dataplane.nginx.render`. Each runs one worker
process; load comes from client processes doing full handshakes (no resumption) with
SNI spread over 200 of the hostnames, and from keep-alive clients sending GETs that
both servers proxy to the same upstream (a plain nginx answering ``ok``). The figure
is work per CPU-second of the server's worker (utime + stime from /proc), so a
loaded machine slows both sides alike. Targets: handshakes per server-CPU-second
≥ 0.9x nginx's; keep-alive proxied requests per server-CPU-second ≥ 0.5x nginx's;
gateway start with 10,000 hostnames < 5 s; memory < 20 KB per hostname (RSS with
the hostnames minus RSS with none) once every hostname had a handshake, with 10,000
and 100,000 hostnames (``--quick``: 1,000 hostnames for the rates, 10,000 for memory).

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import pickle
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import _harness  # noqa: F401 - puts the repository root on sys.path for tests.material
from certward.dataplane.gateway import Gateway
from certward.dataplane.nginx import render
from certward.dataplane.state import (
    DataPlaneState,
    PathRule,
    RuleKind,
    ServedCertificate,
    Site,
    state_version,
)
from certward.dataplane.tls_policy import DEFAULT_NGINX_TLS, NginxTls
from tests.dataplane.local_policy import LOCAL_POLICY
from tests.gateway.harness import LOOPBACK_ALLOWED, MutableSource, profile
from tests.material.factory import TestCA

HOT_HOSTNAMES = 200
CLIENT_PROCESSES = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    ca: TestCA
    client_ca: TestCA


def build_state(
    count: int, key_type: str, upstream: str, material: Material, *, mtls: bool
) -> DataPlaneState:
    """``count`` hostnames, each with its own certificate (one shared key: key generation is
    not what is measured)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if key_type == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    office = profile("office", cas=(material.client_ca,))
    sites: dict[str, Site] = {}
    for number in range(count):
        host = f"h{number}.bench.test"
        leaf = material.ca.issue_leaf(host, private_key=key)
        site = Site(
            hostname=host,
            kind="custom",
            app="bench",
            environment="production",
            environment_id=f"env-{number}",
            upstream=upstream,
            certificate=ServedCertificate(
                id=f"{number}", chain_pem=leaf.cert_pem() + leaf.chain_pem(), key_pem=key_pem
            ),
            profiles={"office": office} if mtls else {},
        )
        sites[host] = (
            replace(
                site, path_rules=(PathRule(prefix="/", rule=RuleKind.PROFILE, profile="office"),)
            )
            if mtls
            else site
        )
    return DataPlaneState(sites=sites, version=state_version([str(count), key_type, str(mtls)]))


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def serve_gateway(state_file: str, port: int) -> None:
    """Child process: one gateway worker on ``port`` serving the pickled state."""
    with Path(state_file).open("rb") as handle:
        state = pickle.load(handle)  # noqa: S301 - our own file

    async def main() -> None:
        gateway = Gateway(
            MutableSource(state), refresh_seconds=3600, log_allowed=False, egress=LOOPBACK_ALLOWED
        )
        await gateway.start(("127.0.0.1", port), None)
        await asyncio.Event().wait()

    uvloop.run(main())


class GatewayProcess:
    """One gateway worker in a child process, serving a pickled state."""

    def __init__(self, state: DataPlaneState, workdir: Path) -> None:
        self.port = free_port()
        state_file = workdir / f"state-{self.port}.pickle"
        with state_file.open("wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-gateway", str(state_file), str(self.port)],
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        self.start_seconds = time.perf_counter() - started
        state_file.unlink()

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class NginxProcess:
    """Debian's nginx with the configuration certward renders, one worker process."""

    def __init__(
        self, state: DataPlaneState, workdir: Path, tls: NginxTls = DEFAULT_NGINX_TLS
    ) -> None:
        self.port = free_port()
        self.prefix = workdir / f"nginx-{self.port}"
        self.prefix.mkdir()
        for folder in ("run", "logs", "tmp"):
            (self.prefix / folder).mkdir()
        files = render(
            state,
            https_listen=f"127.0.0.1:{self.port}",
            http_listen=f"127.0.0.1:{free_port()}",
            acme_upstream="http://127.0.0.1:9",
            prefix=str(self.prefix),
            policy=LOCAL_POLICY,
            tls=tls,
        )
        for relative, rendered in files.items():
            path = self.prefix / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            content = rendered.content
            if relative == "nginx.conf":  # one worker, like the gateway measured
                content = content.replace(b"worker_processes auto;", b"worker_processes 1;")
            path.write_bytes(content)
        self.process = subprocess.Popen(
            [
                nginx(),
                "-c",
                str(self.prefix / "nginx.conf"),
                "-p",
                str(self.prefix),
                "-g",
                "daemon off;",
            ],
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    @property
    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [self.process.pid, *(int(p) for p in children.split())]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def nginx() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        raise SystemExit("Debian's nginx is needed: apt-get install nginx")
    return path


class UpstreamNginx:
    """A plain nginx answering ``ok``: the same fast upstream for both servers."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        prefix = workdir / "upstream"
        (prefix / "logs").mkdir(parents=True)
        (prefix / "nginx.conf").write_text(
            "worker_processes 1; pid upstream.pid; error_log stderr crit;\n"
            "events { worker_connections 4096; }\n"
            "http { access_log off; client_body_temp_path tmp; proxy_temp_path tmp;"
            " fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;\n"
            f"  server {{ listen 127.0.0.1:{self.port}; keepalive_requests 100000;"
            " location / { return 200 'ok'; } } }\n"
        )
        self.process = subprocess.Popen(
            [nginx(), "-c", str(prefix / "nginx.conf"), "-p", str(prefix), "-g", "daemon off;"],
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(10)


# -- load -----------------------------------------------------------------------------------


def _handshake_client(
    port: int,
    hosts: list[str],
    ca_pem: str,
    client_pem: str | None,
    seconds: float,
    counter: Any,
) -> None:
    context = ssl.create_default_context(cadata=ca_pem)
    if client_pem:
        path = Path(tempfile.mkdtemp()) / "client.pem"
        path.write_text(client_pem)
        context.load_cert_chain(path)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        host = random.choice(hosts)  # noqa: S311 - load spreading
        with (
            socket.create_connection(("127.0.0.1", port)) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            pass  # the client's last flight, its certificate included, is sent: close
        done += 1
    with counter.get_lock():
        counter.value += done


def _keepalive_client(
    port: int, hosts: list[str], ca_pem: str, seconds: float, counter: Any
) -> None:
    """GETs one after another on a kept-alive connection; a new connection when the server
    ends one (nginx does after ``keepalive_requests``, 1,000 by default)."""
    context = ssl.create_default_context(cadata=ca_pem)
    host = random.choice(hosts)  # noqa: S311 - load spreading
    request = f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with (
            socket.create_connection(("127.0.0.1", port)) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            done += _requests_until_closed(tls, request, deadline)
    with counter.get_lock():
        counter.value += done


def _requests_until_closed(tls: ssl.SSLSocket, request: bytes, deadline: float) -> int:
    done = 0
    buffer = b""
    while time.monotonic() < deadline:
        tls.sendall(request)
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buffer[:head_end].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buffer) >= head_end + 4 + length:
                    buffer = buffer[head_end + 4 + length :]
                    break
            data = tls.recv(65536)
            if not data:
                return done
            buffer += data
        done += 1
    return done


def measure(
    server: GatewayProcess | NginxProcess,
    target: Any,
    args: tuple[object, ...],
    seconds: float,
    processes: int,
) -> float:
    """Work done per CPU-second of the server over ``seconds`` of load."""
    counter = multiprocessing.Value("q", 0)
    workers = [
        multiprocessing.Process(target=target, args=(server.port, *args, seconds, counter))
        for _ in range(processes)
    ]
    before = cpu_seconds(server.pids)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    used = cpu_seconds(server.pids) - before
    return counter.value / used if used else float("nan")


def warm_up(
    server: GatewayProcess | NginxProcess, hosts: list[str], ca_pem: str, client_pem: str | None
) -> None:
    """One handshake per hot hostname, so no measured handshake builds a TLS context."""
    context = ssl.create_default_context(cadata=ca_pem)
    if client_pem:
        path = Path(tempfile.mkdtemp()) / "client.pem"
        path.write_text(client_pem)
        context.load_cert_chain(path)
    for host in hosts:
        with (
            socket.create_connection(("127.0.0.1", server.port)) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            pass


def compare(
    servers: dict[str, GatewayProcess | NginxProcess],
    target: object,
    args: tuple[object, ...],
    seconds: float,
    rounds: int,
) -> tuple[float, float, float]:
    """Median work per server-CPU-second of each server over interleaved rounds, and the
    median of the per-round ratios (gateway / nginx)."""
    figures: dict[str, list[float]] = {name: [] for name in servers}
    ratios: list[float] = []
    for _ in range(rounds):
        for name, server in servers.items():
            figures[name].append(measure(server, target, args, seconds, CLIENT_PROCESSES))
        ratios.append(figures["gateway"][-1] / figures["nginx"][-1])
    return (
        statistics.median(figures["gateway"]),
        statistics.median(figures["nginx"]),
        statistics.median(ratios),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick",
        action="store_true",
        help="rates with 1,000 hostnames only, memory with 10,000, short runs",
    )
    parser.add_argument("--memory-only", action="store_true", help="start and memory figures only")
    parser.add_argument("--serve-gateway", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_gateway:
        serve_gateway(options.serve_gateway[0], int(options.serve_gateway[1]))
        return
    print(__doc__.splitlines()[0])
    seconds, rounds = (2.0, 3) if options.quick else (3.0, 5)
    counts = [] if options.memory_only else [1000] if options.quick else [1000, 10000]
    memory_counts = [10000] if options.quick else [10000, 100000]
    client_ca = TestCA.root(name="bench client root")
    material = Material(ca=TestCA.root(name="bench server root"), client_ca=client_ca)
    client = client_ca.issue_leaf("bench client", eku=("clientAuth",))
    client_pem = (client.cert_pem() + client.key_pem()).decode()
    ca_pem = material.ca.cert_pem().decode()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upstream = UpstreamNginx(workdir)
        try:
            for count in counts:
                hosts = [f"h{n}.bench.test" for n in range(min(HOT_HOSTNAMES, count))]
                for key_type in ("ec", "rsa"):
                    for mtls in (False, True):
                        state = build_state(
                            count,
                            key_type,
                            f"http://127.0.0.1:{upstream.port}",
                            material,
                            mtls=mtls,
                        )
                        servers: dict[str, GatewayProcess | NginxProcess] = {
                            "gateway": GatewayProcess(state, workdir),
                            "nginx": NginxProcess(state, workdir),
                        }
                        label = (
                            f"{count:>6} hosts {key_type.upper():>3} {'mTLS' if mtls else '    '}"
                        )
                        try:
                            presented = client_pem if mtls else None
                            for server in servers.values():
                                warm_up(server, hosts, ca_pem, presented)
                            gateway, nginx_rate, ratio = compare(
                                servers,
                                _handshake_client,
                                (hosts, ca_pem, presented),
                                seconds,
                                rounds,
                            )
                            print(
                                f"{label}: full handshakes per server-CPU-second: gateway"
                                f" {gateway:6.0f}, nginx {nginx_rate:6.0f}, ratio {ratio:.2f}"
                                " (target >= 0.9)"
                            )
                            if not mtls:
                                gateway, nginx_rate, ratio = compare(
                                    servers, _keepalive_client, (hosts, ca_pem), seconds, rounds
                                )
                                print(
                                    f"{label}: keep-alive requests per server-CPU-second: gateway"
                                    f" {gateway:6.0f}, nginx {nginx_rate:6.0f}, ratio {ratio:.2f}"
                                    " (target >= 0.5)"
                                )
                        finally:
                            for server in servers.values():
                                server.stop()
            for count in memory_counts:
                start_and_memory(workdir, material, upstream.port, count)
        finally:
            upstream.stop()


def start_and_memory(workdir: Path, material: Material, upstream_port: int, count: int) -> None:
    """Start time and resident memory per hostname, after start (contexts are built on
    first use) and after one handshake on every hostname (every context built)."""
    empty = GatewayProcess(DataPlaneState(sites={}, version="empty"), workdir)
    baseline = rss_kib(empty.process.pid)
    empty.stop()
    state = build_state(count, "ec", f"http://127.0.0.1:{upstream_port}", material, mtls=False)
    loaded = GatewayProcess(state, workdir)
    try:
        started = (rss_kib(loaded.process.pid) - baseline) / count
        hostnames = sorted(state.sites)
        del state
        spread = [hostnames[n::CLIENT_PROCESSES] for n in range(CLIENT_PROCESSES)]
        clients = [
            multiprocessing.Process(
                target=warm_up, args=(loaded, part, material.ca.cert_pem().decode(), None)
            )
            for part in spread
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        served = (rss_kib(loaded.process.pid) - baseline) / count
    finally:
        loaded.stop()
    print(
        f"{count:,} hostnames: gateway start {loaded.start_seconds:.2f} s (target < 5 s; with no"
        f" hostname {empty.start_seconds:.2f} s); memory per hostname {started:.1f} KB after"
        f" start, {served:.1f} KB once every hostname had a handshake (target < 20 KB)"
    )


if __name__ == "__main__":
    main()
