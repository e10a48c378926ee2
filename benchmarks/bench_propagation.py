"""Propagation: from a commit to the moment four gateway nodes on one PostgreSQL serve it.

Four ``certward gateway`` processes (one worker each, on ports of their own) follow one
installation on PostgreSQL (``CERTWARD_TEST_DATABASE_URL``, default the local test
server, in a schema of its own) through the change feed: a poll of the sequence, and
a LISTEN that wakes them at commit. The benchmark then creates environments one after
another; each creation commits a new hostname with its managed certificate, and from
the moment it returns, every node is asked for a TLS handshake with that server name
every few milliseconds until it completes with that hostname's certificate. A change's
propagation is the time until the last of the four serves it. Target: p99 < 1 s over
200 changes. The baseline printed beside it is what the same change cost before the
feed: a full reload every refresh interval (2 s), so on average half an interval plus
a full load, measured here on the same installation.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509

from _harness import per_call_seconds
from bench_issuance import ADMIN, installation
from certward.platform import Platform
from certward.services import apps
from certward.services.dataplane_feed import DataPlaneFeed
from certward.vocabulary import Plan

NODES = 4
TARGET_P99_S = 1.0
OLD_REFRESH_S = 2.0
PROBE_PAUSE_S = 0.005
GIVE_UP_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serves(port: int, hostname: str) -> bool:
    """Whether the node on ``port`` completes a handshake for ``hostname`` with its
    certificate (an unknown server name gets no handshake at all)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return False
    if der is None:
        return False
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return hostname in names.value.get_values_for_type(x509.DNSName)


@contextmanager
def gateway_nodes(platform: Platform) -> Iterator[list[int]]:
    settings = platform.context.settings
    ports = [free_port() for _ in range(NODES)]
    processes = []
    for port in ports:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CERTWARD_")},
            "CERTWARD_DATA_DIR": str(settings.data_dir),
            "CERTWARD_DATABASE_URL": settings.database_url,
            "CERTWARD_GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "CERTWARD_GATEWAY_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "CERTWARD_GATEWAY_WORKERS": "1",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "certward", "gateway"],
                env=environ,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def served_by_all(ports: list[int], hostname: str, since: float) -> float:
    """Seconds from ``since`` until every node serves ``hostname``."""
    done: list[float] = []

    def probe(port: int) -> None:
        deadline = since + GIVE_UP_S
        while time.perf_counter() < deadline:
            if serves(port, hostname):
                done.append(time.perf_counter() - since)
                return
            time.sleep(PROBE_PAUSE_S)

    threads = [threading.Thread(target=probe, args=(port,)) for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(done) < len(ports):
        raise SystemExit(
            f"{hostname}: served by {len(done)} of {len(ports)} nodes after {GIVE_UP_S} s"
        )
    return max(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    arguments = parser.parse_args()
    print(__doc__.splitlines()[0])
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with installation("postgresql") as platform:
        ctx = platform.context
        apps.create_app(ctx, ADMIN, name="spread", plan=Plan.LICENSED)

        def create(number: int) -> str:
            view = apps.create_environment(
                ctx, ADMIN, "spread", name=f"e{number}", upstream="http://10.0.0.1:80"
            )
            return view.hostname

        with gateway_nodes(platform) as ports:
            first = create(0)
            served_by_all(ports, first, time.perf_counter())  # every node up and following
            times = []
            for number in range(1, arguments.changes + 1):
                hostname = create(number)
                times.append(served_by_all(ports, hostname, time.perf_counter()))
        full_load = statistics.median(
            per_call_seconds(DataPlaneFeed(ctx).load, 1) for _ in range(3)
        )
    times.sort()
    p50 = times[len(times) // 2]
    p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
    before = OLD_REFRESH_S / 2 + full_load
    verdict = "ok" if p99 < TARGET_P99_S else f"ABOVE {TARGET_P99_S:g} s"
    print(
        f"{len(times)} changes, {NODES} nodes: commit -> served by all, p50 {p50 * 1e3:.0f} ms,"
        f" p99 {p99 * 1e3:.0f} ms, max {times[-1] * 1e3:.0f} ms  {verdict}"
    )
    print(
        f"before the feed (half a {OLD_REFRESH_S:g} s refresh + a full load of"
        f" {full_load * 1e3:.0f} ms): {before * 1e3:.0f} ms on average;"
        f" p50 ratio {p50 / before:.2f}x"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
