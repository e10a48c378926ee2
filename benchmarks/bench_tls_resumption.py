"""Session resumption on both data planes: server CPU per connection, resumed vs full.

Both servers get the same 200-hostname state (ECDSA P-256 or RSA-2048 leaves); every
hostname denies ``/`` so each connection's one request is answered by the data plane
itself (no upstream), the same small cost in both modes. One client process opens
connections one after another for a few seconds: "full" offers no session, "resumed"
offers the session of the previous connection to the same hostname (tickets, on TLS
1.3 and on TLS 1.2). The figure is the server worker's CPU (utime + stime from /proc)
per connection; the ratio resumed/full is what resumption leaves of a connection's
cost, on each data plane, measured in the same run. nginx uses ticket keys written as
the agent writes them (`certward.dataplane.session_tickets`).

Run: ``.venv/bin/python benchmarks/bench_tls_resumption.py [--quick]``.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import _harness  # noqa: F401 - puts the repository root on sys.path for tests.material
from bench_gateway import GatewayProcess, Material, NginxProcess, build_state, cpu_seconds
from certward.dataplane.session_tickets import ticket_key_files
from certward.dataplane.state import DataPlaneState, PathRule, RuleKind
from certward.dataplane.tls_policy import NginxTls
from tests.material.factory import TestCA

HOSTNAMES = 200
REQUEST = b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"


def denying(state: DataPlaneState) -> DataPlaneState:
    """Every hostname answers ``/`` itself (403): no upstream in the measurement."""
    rule = (PathRule(prefix="/", rule=RuleKind.DENY_ALL),)
    sites = {name: replace(site, path_rules=rule) for name, site in state.sites.items()}
    return DataPlaneState(sites=sites, version=state.version + "-deny")


def ticket_nginx(state: DataPlaneState, workdir: Path) -> NginxProcess:
    """nginx rendered with session-ticket keys as the agent writes them."""
    keys = ticket_key_files(workdir / "ticket-keys", rotation=timedelta(hours=12), now=time.time())
    return NginxProcess(state, workdir, NginxTls(ticket_key_files=keys))


def connections(
    port: int,
    hosts: list[str],
    context: ssl.SSLContext,
    seconds: float,
    sessions: dict[str, ssl.SSLSession] | None,
) -> tuple[int, int]:
    """Connections made in ``seconds``, and how many of them resumed; with ``sessions``,
    each offers (and updates) the last session of its hostname."""
    done = reused = 0
    deadline = time.monotonic() + seconds
    while done == 0 or time.monotonic() < deadline:
        host = hosts[done % len(hosts)]
        offered = sessions.get(host) if sessions is not None else None
        with (
            socket.create_connection(("127.0.0.1", port)) as sock,
            context.wrap_socket(sock, server_hostname=host, session=offered) as tls,
        ):
            tls.sendall(REQUEST % host.encode())
            while tls.recv(65536):
                pass
            reused += tls.session_reused
            if sessions is not None and tls.session is not None:
                sessions[host] = tls.session
        done += 1
    return done, reused


def measure(
    server: GatewayProcess | NginxProcess,
    hosts: list[str],
    context: ssl.SSLContext,
    seconds: float,
    rounds: int,
) -> tuple[float, float, float]:
    """Median server CPU ms per connection, full and resumed, and the share resumed."""
    full: list[float] = []
    resumed: list[float] = []
    shares: list[float] = []
    sessions: dict[str, ssl.SSLSession] = {}
    for host in hosts:  # warm up: contexts built, a session per hostname
        connections(server.port, [host], context, 0.0, sessions)
    for _ in range(rounds):
        for offered, into in ((None, full), (sessions, resumed)):
            before = cpu_seconds(server.pids)
            done, reused = connections(server.port, hosts, context, seconds, offered)
            into.append((cpu_seconds(server.pids) - before) * 1e3 / done)
            if offered is not None:
                shares.append(reused / done)
    return statistics.median(full), statistics.median(resumed), statistics.median(shares)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short runs")
    options = parser.parse_args()
    print(__doc__.splitlines()[0])
    seconds, rounds = (1.5, 3) if options.quick else (3.0, 5)
    material = Material(ca=TestCA.root(name="bench server root"), client_ca=TestCA.root())
    hosts = [f"h{n}.bench.test" for n in range(HOSTNAMES)]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for key_type in ("ec", "rsa"):
            state = denying(
                build_state(HOSTNAMES, key_type, "http://127.0.0.1:9", material, mtls=False)
            )
            for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                context = ssl.create_default_context(cadata=material.ca.cert_pem().decode())
                context.minimum_version = context.maximum_version = version
                for name, make in (("gateway", GatewayProcess), ("nginx", ticket_nginx)):
                    server = make(state, workdir)
                    try:
                        full, resumed, share = measure(server, hosts, context, seconds, rounds)
                    finally:
                        server.stop()
                    print(
                        f"{key_type.upper():>3} {version.name} {name:<7}: server CPU per"
                        f" connection full {full:6.3f} ms, resumed {resumed:6.3f} ms, ratio"
                        f" {resumed / full:5.2f} ({share:.0%} resumed)"
                    )


if __name__ == "__main__":
    main()
