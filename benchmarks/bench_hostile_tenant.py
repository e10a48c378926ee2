"""Another tenant's latency while one tenant uploads hostile material, on a real server.

One `certward serve` (SQLite, default budgets: 2 material workers, 2 s CPU, 3 s wall
per upload). App B's reads (its client-certificate list and single certificates) and
``/healthz`` go out open-loop at a fixed rate (20/s each), each latency measured from
the moment the request was *due*, first with nothing else going on, then while app A
sends batches of 8 concurrent hostile uploads of each kind in turn:

* a ~1.3 KB PKCS12 with a PBKDF2 count of 2^31-1 hidden inside its encrypted safe,
* a PKCS12 whose MAC is at the cap (20,000), with a wrong password,
* an oversized chain: a PEM of 300 certificates (the cap is 20).

The upload rate limits are lifted: they would refuse most of A's uploads with 429
before any parsing, and this measures what the uploads that do get parsed cost.
Targets: B's p99 under attack <= 2x its p99 alone and < 100 ms (reads and /healthz
alike); every hostile upload answered (refused) within 3 s; the worker CPU per hostile
upload within its 2 s budget.

A control run sends the same volleys of plain junk (1 KB, refused at once as
``not-certificate-material``): what any request costs the serving process, so that the
hostile volleys' figures can be read against it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path

import httpx

import _harness  # noqa: F401 - puts the repository on sys.path
from tests.material import hostile
from tests.material.factory import TestCA

RATE = 20.0  # per second, for B's reads and for /healthz each
WARM_UP = 2.0
DURATION = 12.0
CONCURRENT = 8
TARGET_RATIO = 2.0
TARGET_P99_MS = 100.0
TARGET_ANSWER_S = 3.0
CPU_BUDGET_S = 2.0
ADMIN = "bench-admin-token-" + secrets.token_hex(8)
API = "/api/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(data_dir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CERTWARD_")},
        "CERTWARD_DATA_DIR": str(data_dir),
        "CERTWARD_LISTEN": f"127.0.0.1:{port}",
        "CERTWARD_ADMIN_TOKEN": ADMIN,
        "CERTWARD_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "CERTWARD_GATEWAY_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "CERTWARD_GATEWAY_WORKERS": "1",
        "CERTWARD_UPLOAD_RATE": "1000000/s",
        "CERTWARD_FAILED_UPLOAD_RATE": "1000000/s",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from certward.cli.app import run; run()", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("certward serve did not start")
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(base: str, name: str) -> float:
    text = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def prepare(base: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Apps A and B (licensed, one environment each), a member token each; B gets 20
    client certificates. Returns A's and B's headers and B's certificate ids."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    now = datetime.now(UTC)
    ca = TestCA.root(
        name="bench partner CA",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3650),
    )
    headers: list[dict[str, str]] = []
    ids: list[str] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for app in ("attacker", "victim"):
            client.post(f"{API}/apps", json={"name": app, "plan": "licensed"}, headers=admin)
            client.post(
                f"{API}/apps/{app}/environments",
                json={"name": "prod", "upstream": f"http://{app}.backend.test:8080"},
                headers=admin,
            ).raise_for_status()
            token = client.post(
                f"{API}/tokens", json={"role": "member", "app": app}, headers=admin
            ).json()["token"]
            headers.append({"Authorization": f"Bearer {token}"})
        for n in range(20):
            leaf = ca.issue_leaf(
                f"partner-{n}.example.test",
                eku=["clientAuth"],
                not_before=now - timedelta(days=1),
                not_after=now + timedelta(days=365),
            )
            response = client.post(
                f"{API}/apps/victim/environments/prod/client-certificates",
                files={"file": ("c.p12", leaf.pkcs12("bench"))},
                data={"password": "bench", "pins": f"partner-{n}.example.com"},
                headers=headers[1],
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
    return headers[0], headers[1], ids


def oversized_chain() -> bytes:
    root = TestCA.root(name="bench oversized chain")
    leaf = root.issue_leaf("chain.example.test")
    return b"".join([leaf.cert_pem()] * 300)


@dataclass(slots=True)
class Latencies:
    reads: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    errors: int = 0


async def open_loop(base: str, headers: dict[str, str], ids: list[str]) -> Latencies:
    """B's reads and /healthz at RATE each, for WARM_UP + DURATION seconds."""
    prefix = f"{API}/apps/victim/environments/prod/client-certificates"
    out = Latencies()
    # Idle connections are dropped before the server's header deadline (10 s) closes them.
    limits = httpx.Limits(keepalive_expiry=4.0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(due: float, path: str, sink: list[float], counted: bool) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                response = await client.get(path, headers=headers)
            except httpx.TransportError:
                out.errors += 1
                return
            if counted:
                sink.append(time.perf_counter() - due)
            if response.status_code != 200:
                out.errors += 1

        start = time.perf_counter() + 0.2
        warm_up = int(RATE * WARM_UP)
        tasks = []
        for n in range(warm_up + int(RATE * DURATION)):
            due = start + n / RATE
            path = f"{prefix}/{ids[n % len(ids)]}" if n % 2 else f"{prefix}?limit=100"
            tasks.append(asyncio.create_task(one(due, path, out.reads, n >= warm_up)))
            tasks.append(
                asyncio.create_task(one(due + 0.5 / RATE, "/healthz", out.health, n >= warm_up))
            )
        await asyncio.gather(*tasks)
    return out


@dataclass(slots=True)
class Attack:
    answers: dict[str, list[float]] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def uploads(self) -> int:
        return sum(len(v) for v in self.answers.values())


def hostile_kinds() -> dict[str, tuple[bytes, str | None, str]]:
    return {
        "nested KDF 2^31-1": (hostile.kdf_inside_encrypted_safe(), "hostile", "c.p12"),
        "MAC at cap, wrong password": (hostile.mac_at_cap(20_000), "wrong", "c.p12"),
        "oversized chain (300)": (oversized_chain(), None, "chain.pem"),
    }


def benign_kinds() -> dict[str, tuple[bytes, str | None, str]]:
    """The control: as many uploads, of 1 KB that is plainly not certificate material."""
    junk = b"not certificate material\n" * 40
    return {f"control {n}": (junk, None, "junk.txt") for n in range(3)}


async def attack(base: str, headers: dict[str, str], until: float, *, flood: bool,
                 benign: bool) -> Attack:  # fmt: skip
    """App A's uploads: every second a volley of CONCURRENT uploads of each kind at once;
    or, with ``flood``, CONCURRENT uploads of each kind always in flight."""
    kinds = benign_kinds() if benign else hostile_kinds()
    url = f"{API}/apps/attacker/environments/prod/client-certificates"
    result = Attack()
    limits = httpx.Limits(keepalive_expiry=4.0)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, limits=limits
    ) as client:

        async def upload(kind: str, data: bytes, password: str | None, name: str) -> None:
            start = time.perf_counter()
            response = await client.post(
                url,
                files={"file": (name, data)},
                data={} if password is None else {"password": password},
            )
            result.answers.setdefault(kind, []).append(time.perf_counter() - start)
            code = f"{response.status_code} {response.json().get('code')}"
            counts = result.codes.setdefault(kind, {})
            counts[code] = counts.get(code, 0) + 1

        async def sender(kind: str, data: bytes, password: str | None, name: str) -> None:
            while time.perf_counter() < until:
                await upload(kind, data, password, name)

        if flood:
            await asyncio.gather(
                *(sender(kind, *spec) for kind, spec in kinds.items() for _ in range(CONCURRENT))
            )
            return result
        while time.perf_counter() < until:
            volley = time.perf_counter()
            await asyncio.gather(
                *(upload(kind, *spec) for kind, spec in kinds.items() for _ in range(CONCURRENT))
            )
            await asyncio.sleep(max(0.0, volley + 1.0 - time.perf_counter()))
    return result


def attacker_process(
    base: str,
    headers: dict[str, str],
    seconds: float,
    flood: bool,
    benign: bool,
    results: Queue,  # type: ignore[type-arg]
) -> None:
    """App A's uploads, from a process of their own: the measuring client's event loop
    must not queue B's requests behind A's."""
    until = time.perf_counter() + seconds
    outcome = asyncio.run(attack(base, headers, until, flood=flood, benign=benign))
    results.put((outcome.answers, outcome.codes))


def under_attack(
    base: str,
    victim: dict[str, str],
    attacker: dict[str, str],
    ids: list[str],
    *,
    flood: bool,
    benign: bool = False,
) -> tuple[Latencies, Attack]:
    context = multiprocessing.get_context("spawn")
    results: Queue = context.Queue()  # type: ignore[type-arg]
    process = context.Process(
        target=attacker_process,
        args=(base, attacker, WARM_UP + DURATION + 1.0, flood, benign, results),
    )
    process.start()
    time.sleep(1.0)  # the attacker's process is up and uploading
    reads = asyncio.run(open_loop(base, victim, ids))
    answers, codes = results.get(timeout=120)
    process.join(timeout=30)
    return reads, Attack(answers=answers, codes=codes)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    label: str,
    alone: Latencies,
    attacked: Latencies,
    hostile_uploads: Attack,
    cpu: tuple[float, float, float],
) -> bool:
    """Print one attack's figures; True when every target is met."""
    cpu_alone, cpu_attacked, worker_cpu = cpu
    print(f"-- {label}")
    verdicts: list[bool] = []
    for name, before, after in (
        ("B reads", alone.reads, attacked.reads),
        ("/healthz", alone.health, attacked.health),
    ):
        p99_alone, p99_attacked = percentile(before, 0.99) * 1e3, percentile(after, 0.99) * 1e3
        ratio = p99_attacked / p99_alone
        ok = ratio <= TARGET_RATIO and p99_attacked < TARGET_P99_MS
        verdicts.append(ok)
        print(
            f"{name:<9} p50 {percentile(before, 0.5) * 1e3:6.1f} -> "
            f"{percentile(after, 0.5) * 1e3:6.1f} ms, p99 {p99_alone:6.1f} -> "
            f"{p99_attacked:6.1f} ms: ratio {ratio:.2f}x ({'ok' if ok else 'ABOVE TARGET'})"
        )
    print(f"errors in B's requests: alone {alone.errors}, under attack {attacked.errors}")
    for kind, answers in hostile_uploads.answers.items():
        slowest = max(answers)
        ok = slowest <= TARGET_ANSWER_S and all(
            not code.startswith("2") for code in hostile_uploads.codes[kind]
        )
        verdicts.append(ok)
        print(
            f"{kind:<28} {len(answers):5d} uploads, answered in p50 "
            f"{percentile(answers, 0.5) * 1e3:6.1f} ms, max {slowest * 1e3:7.1f} ms "
            f"({'ok' if ok else 'ABOVE TARGET'}); {hostile_uploads.codes[kind]}"
        )
    uploads = hostile_uploads.uploads
    per_upload = worker_cpu / uploads
    serving = max(0.0, cpu_attacked - cpu_alone) / uploads
    verdicts.append(per_upload <= CPU_BUDGET_S)
    print(
        f"CPU per hostile upload: {per_upload * 1e3:.2f} ms in the material workers "
        f"(budget {CPU_BUDGET_S:.0f} s), {serving * 1e3:.2f} ms more in the serving process "
        f"({uploads} uploads; serving process {cpu_alone:.2f} s alone, "
        f"{cpu_attacked:.2f} s under attack)"
    )
    print("all targets met" if all(verdicts) else "SOME TARGETS MISSED")
    return all(verdicts)


def main() -> None:
    print(__doc__.splitlines()[0])
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as directory, server(Path(directory)) as (base, pid):
        attacker, victim, ids = prepare(base)
        cpu_start = process_cpu(pid)
        alone = asyncio.run(open_loop(base, victim, ids))
        cpu_alone = process_cpu(pid) - cpu_start
        for label, flood, benign in (
            (f"control: volleys of {3 * CONCURRENT} junk uploads, every second", False, True),
            (f"volleys: {CONCURRENT} concurrent uploads of each kind, every second", False, False),
            (f"flood: {CONCURRENT} uploads of each kind always in flight", True, False),
        ):
            worker_cpu_start = metric(base, "certward_material_cpu_seconds_total")
            cpu_start = process_cpu(pid)
            attacked, hostile_uploads = under_attack(
                base, victim, attacker, ids, flood=flood, benign=benign
            )
            cpu_attacked = process_cpu(pid) - cpu_start
            worker_cpu = metric(base, "certward_material_cpu_seconds_total") - worker_cpu_start
            report(label, alone, attacked, hostile_uploads, (cpu_alone, cpu_attacked, worker_cpu))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
