"""Hostile PKCS12 uploads against a real ``certward serve``: refused within budget, the
server answering everyone else meanwhile.

Replays:

1. A 1 KB PKCS12 whose shrouded key bag, hidden *inside* the encrypted certificate safe,
   asks for 2^31-1 PBKDF2 iterations: the guard saw only the counts outside the safe,
   and ``pkcs12.load_pkcs12`` spent about ten minutes holding the GIL on the serving
   thread -- ``/healthz`` and every tenant stalled. Through client-certificate and TLS
   uploads of a licensed app, and with an empty password through the client-CA upload of
   an access profile. Now: 422 ``too-expensive`` in milliseconds, on every path.
2. A wrong password against a MAC at the cap cost 1.6 s of CPU in a Python KDF. Now the
   MAC cap is low, the KDF runs in C, and the refusal costs milliseconds of worker CPU.
   A PBMAC1 MAC at the same cap costs as little (PBKDF2 in C, at most four blocks).
3. A file the guard admits (caps raised by the operator) that still costs too much: the
   worker is killed at its CPU budget (or its wall deadline), the upload refused with
   ``too-expensive`` naming the setting, and the next upload works on a new worker.
4. A full pool answers 503 ``busy`` with ``Retry-After``, and one app cannot take every
   worker: another app's upload goes through while the first app's second job waits.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.material import hostile
from tests.material.factory import TestCA
from tests.test_serve import ADMIN_TOKEN, ServerLauncher, ServerProcess, bearer, servers

__all__ = ["servers"]

pytestmark = pytest.mark.slow

API = "/api/v1"
ADMIN = bearer(ADMIN_TOKEN)
UNLIMITED_UPLOADS = {
    "CERTWARD_UPLOAD_RATE": "1000000/s",
    "CERTWARD_FAILED_UPLOAD_RATE": "1000000/s",
}
QUICK = 1.0  # seconds within which a refused hostile upload must be answered
HEALTH_BUDGET = 0.25  # seconds /healthz may take while hostile uploads are being read


def _start(servers: ServerLauncher, tmp_path: Path, **environ: str) -> ServerProcess:
    server = servers.start(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "data"),
            "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
            **UNLIMITED_UPLOADS,
            **environ,
        },
        cwd=tmp_path,
    )
    server.wait_until_healthy()
    return server


@dataclass(slots=True)
class Tenant:
    """An app with one environment, an access profile and a member token."""

    client: httpx.Client = field(repr=False)
    app: str
    headers: dict[str, str] = field(repr=False)

    def client_certificate(self, data: bytes, password: str | None) -> httpx.Response:
        fields = {} if password is None else {"password": password}
        return self.client.post(
            f"{API}/apps/{self.app}/environments/prod/client-certificates",
            files={"file": ("client.p12", data)},
            data=fields,
            headers=self.headers,
        )

    def tls_certificate(self, data: bytes, password: str | None) -> httpx.Response:
        fields = {} if password is None else {"password": password}
        return self.client.post(
            f"{API}/apps/{self.app}/tls-certificates",
            files={"certificate": ("tls.p12", data), "private_key": ("tls.p12", data)},
            data=fields,
            headers=self.headers,
        )

    def client_cas(self, data: bytes, password: str | None = None) -> httpx.Response:
        del password  # the client-CA upload takes none: an empty-password file opens
        return self.client.post(
            f"{API}/apps/{self.app}/access-profiles/partners/client-cas",
            files={"certificates": ("cas.p12", data)},
            headers=self.headers,
        )

    def authority(self, pem: bytes) -> httpx.Response:
        return self.client.post(
            f"{API}/apps/{self.app}/environments/prod/certificate-authorities",
            files={"file": ("ca.pem", pem)},
            headers=self.headers,
        )


def _tenant(client: httpx.Client, app: str, plan: str = "licensed") -> Tenant:
    _expect(client.post(f"{API}/apps", json={"name": app, "plan": plan}, headers=ADMIN), 201)
    _expect(
        client.post(
            f"{API}/apps/{app}/environments",
            json={"name": "prod", "upstream": f"http://{app}.backend.test:8080"},
            headers=ADMIN,
        ),
        201,
    )
    _expect(
        client.post(f"{API}/apps/{app}/access-profiles", json={"name": "partners"}, headers=ADMIN),
        201,
    )
    token = _expect(
        client.post(f"{API}/tokens", json={"role": "member", "app": app}, headers=ADMIN), 201
    )
    return Tenant(client=client, app=app, headers=bearer(token["token"]))


def _expect(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path} -> {response.status_code}, "
        f"expected {status}: {response.text}"
    )
    body: dict[str, object] = response.json() if response.content else {}
    return body


def _ca_pem() -> bytes:
    now = datetime.now(UTC)
    return TestCA.root(
        name="budget test partner CA",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3650),
    ).cert_pem()


def _metrics(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics", headers=ADMIN).text
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(r"^(certward_material_[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)
    }


@dataclass(slots=True)
class HealthProbe:
    """Polls ``/healthz`` from another thread; the slowest answer seen."""

    base_url: str
    slowest: float = 0.0
    answers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                assert client.get("/healthz").status_code == 200
                self.slowest = max(self.slowest, time.monotonic() - start)
                self.answers += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def probe_health() -> Iterator[Callable[[ServerProcess], HealthProbe]]:
    threads: list[tuple[threading.Thread, HealthProbe]] = []

    def start(server: ServerProcess) -> HealthProbe:
        probe = HealthProbe(server.base_url)
        thread = threading.Thread(target=probe.run, daemon=True)
        thread.start()
        threads.append((thread, probe))
        return probe

    yield start
    for thread, probe in threads:
        probe.stop()
        thread.join(timeout=40)


Upload = Callable[[bytes, str | None], httpx.Response]

# -- 1. a key derivation hidden inside the encrypted safe ---------------------------------------

PATHS = ("client_certificate", "tls_certificate", "client_cas")


def test_a_kdf_inside_the_encrypted_safe_is_refused_at_once_on_every_upload_path(
    servers: ServerLauncher,
    tmp_path: Path,
    probe_health: Callable[[ServerProcess], HealthProbe],
) -> None:
    server = _start(servers, tmp_path)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        licensed = _tenant(client, "shop")
        free = _tenant(client, "hobby", plan="free")
        _expect(licensed.authority(_ca_pem()), 201)  # the workers are up
        probe = probe_health(server)
        attacks: list[tuple[str, Upload, bytes, str | None]] = [
            ("client certificate", licensed.client_certificate,
             hostile.kdf_inside_encrypted_safe(), hostile.HOSTILE_PASSWORD),
            ("client certificate, nested safe", licensed.client_certificate,
             hostile.kdf_inside_encrypted_safe(nested_safe=True), hostile.HOSTILE_PASSWORD),
            ("TLS certificate", licensed.tls_certificate,
             hostile.kdf_inside_encrypted_safe(), hostile.HOSTILE_PASSWORD),
            ("client CAs, empty password, free app", free.client_cas,
             hostile.kdf_inside_encrypted_safe(password=""), None),
        ]  # fmt: skip
        for label, send, data, password in attacks:
            start = time.monotonic()
            response = send(data, password)
            elapsed = time.monotonic() - start
            body = _expect(response, 422)
            assert body["code"] == "too-expensive", (label, body)
            assert "2,147,483,647" in str(body["detail"]), label
            assert "CERTWARD_MAX_PKCS12_ITERATIONS" in str(body["detail"]), label
            assert elapsed < QUICK, f"{label}: refused after {elapsed:.2f} s"
        probe.stop()
        assert probe.answers > 0
        assert probe.slowest < HEALTH_BUDGET, f"/healthz took {probe.slowest:.2f} s"
        # Refused by the guard inside a worker: the jobs were read there, not here.
        assert _metrics(client)['certward_material_jobs_total{outcome="read"}'] >= len(attacks)


# -- 2. a wrong password against the MAC ------------------------------------------------------


def test_a_wrong_password_at_the_mac_cap_is_explained_within_budget(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    server = _start(servers, tmp_path)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        shop = _tenant(client, "shop")
        _expect(shop.authority(_ca_pem()), 201)  # the workers are up
        at_cap = hostile.mac_at_cap(20_000)
        before = _metrics(client)["certward_material_cpu_seconds_total"]
        for password in ("wrong-password", None):
            body = _expect(shop.client_certificate(at_cap, password), 422)
            assert body["code"] == "wrong-password"
        spent = _metrics(client)["certward_material_cpu_seconds_total"] - before
        assert spent < 2 * 0.050, f"two wrong-password refusals cost {spent * 1e3:.0f} ms of CPU"

        # The old cap (1,000,000 MAC iterations: 1.6 s of CPU per guess) is now refused
        # by its count, before any derivation, naming the setting.
        old_cap = hostile.mac_at_cap(1_000_000)
        start = time.monotonic()
        body = _expect(shop.client_certificate(old_cap, "wrong-password"), 422)
        assert time.monotonic() - start < QUICK
        assert body["code"] == "too-expensive"
        assert "CERTWARD_MAX_PKCS12_MAC_ITERATIONS" in str(body["detail"])


def test_a_wrong_password_at_the_pbmac1_cap_is_explained_within_budget(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    """PBMAC1 at the MAC cap, with its costliest derivation (PBKDF2-HMAC-SHA1, 64-byte
    key: four blocks), is refused as a wrong password within the same budget."""
    server = _start(servers, tmp_path)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        shop = _tenant(client, "shop")
        _expect(shop.authority(_ca_pem()), 201)  # the workers are up
        at_cap = hostile.pbmac1_pkcs12(
            iterations=20_000,
            prf=hostile.HMAC_OIDS["sha1"],
            mac=hostile.HMAC_OIDS["sha512"],
            key_length=64,
        )
        before = _metrics(client)["certward_material_cpu_seconds_total"]
        for password in ("wrong-password", None):
            body = _expect(shop.client_certificate(at_cap, password), 422)
            assert body["code"] == "wrong-password"
        spent = _metrics(client)["certward_material_cpu_seconds_total"] - before
        assert spent < 2 * 0.050, f"two wrong-password refusals cost {spent * 1e3:.0f} ms of CPU"
        over_cap = hostile.pbmac1_pkcs12(iterations=hostile.MAX_ITERATIONS, compute=False)
        start = time.monotonic()
        body = _expect(shop.client_certificate(over_cap, "wrong-password"), 422)
        assert time.monotonic() - start < QUICK
        assert body["code"] == "too-expensive"
        assert "CERTWARD_MAX_PKCS12_MAC_ITERATIONS" in str(body["detail"])


# -- 3. over the worker's budget --------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "setting"),
    [
        ({"CERTWARD_MATERIAL_CPU_SECONDS": "1", "CERTWARD_MATERIAL_WALL_SECONDS": "20"},
         "CERTWARD_MATERIAL_CPU_SECONDS"),
        ({"CERTWARD_MATERIAL_CPU_SECONDS": "30", "CERTWARD_MATERIAL_WALL_SECONDS": "1"},
         "CERTWARD_MATERIAL_WALL_SECONDS"),
    ],
    ids=["cpu", "wall"],
)  # fmt: skip
def test_a_job_over_budget_is_killed_and_its_worker_replaced(
    servers: ServerLauncher,
    tmp_path: Path,
    probe_health: Callable[[ServerProcess], HealthProbe],
    budget: dict[str, str],
    setting: str,
) -> None:
    # The operator lifted the iteration cap: only the worker's budget is left.
    server = _start(
        servers, tmp_path, CERTWARD_MAX_PKCS12_ITERATIONS=str(hostile.MAX_ITERATIONS), **budget
    )
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        shop = _tenant(client, "shop")
        other = _tenant(client, "other")
        _expect(shop.authority(_ca_pem()), 201)  # a first worker is up
        started = _metrics(client)["certward_material_workers_started_total"]
        probe = probe_health(server)
        start = time.monotonic()
        response = shop.client_certificate(
            hostile.kdf_inside_encrypted_safe(), hostile.HOSTILE_PASSWORD
        )
        elapsed = time.monotonic() - start
        body = _expect(response, 422)
        assert body["code"] == "too-expensive"
        assert setting in str(body["detail"])
        # Well before the 20 s wall deadline (a worker runs at niceness +10: on a busy
        # machine its CPU second takes longer to come).
        assert elapsed < 10, f"the job was stopped after {elapsed:.1f} s"
        probe.stop()
        assert probe.slowest < HEALTH_BUDGET, f"/healthz took {probe.slowest:.2f} s"

        # The next uploads work, on a new worker.
        _expect(shop.authority(_ca_pem()), 201)
        _expect(other.authority(_ca_pem()), 201)
        # The replacement starts in the background as soon as the job is killed.
        deadline = time.monotonic() + 15
        after = _metrics(client)
        while after["certward_material_workers_started_total"] < started + 1:
            assert time.monotonic() < deadline, "the killed worker was never replaced"
            time.sleep(0.1)
            after = _metrics(client)
        assert after["certward_material_workers_started_total"] == started + 1
        outcome = "cpu-budget" if "CPU" in setting else "wall-deadline"
        assert after[f'certward_material_jobs_total{{outcome="{outcome}"}}'] == 1


# -- 4. a full pool, and one app's share of it -------------------------------------------------


def test_one_app_cannot_take_every_worker_and_a_full_pool_answers_busy(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    server = _start(
        servers,
        tmp_path,
        CERTWARD_MAX_PKCS12_ITERATIONS=str(hostile.MAX_ITERATIONS),
        CERTWARD_MATERIAL_WORKERS="2",
        CERTWARD_MATERIAL_CPU_SECONDS="5",
        CERTWARD_MATERIAL_WALL_SECONDS="8",  # so at most 4 s in the queue
    )
    slow = hostile.kdf_inside_encrypted_safe()
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        attacker = _tenant(client, "attacker")
        victim = _tenant(client, "victim")
        for tenant in (attacker, victim):  # both workers are up
            _expect(tenant.authority(_ca_pem()), 201)
        first: list[httpx.Response] = []
        hog = threading.Thread(
            target=lambda: first.append(attacker.client_certificate(slow, "hostile"))
        )
        hog.start()
        deadline = time.monotonic() + 10
        while _metrics(client)["certward_material_jobs_in_flight"] < 1:
            assert time.monotonic() < deadline, "the first hostile job never started"
            time.sleep(0.05)

        # The attacker's second upload waits for its own first (uploads of one app take
        # turns), and gives up with 503 busy; the victim is served meanwhile.
        second: list[httpx.Response] = []
        waiter = threading.Thread(
            target=lambda: second.append(attacker.client_certificate(slow, "hostile"))
        )
        waiter.start()
        start = time.monotonic()
        _expect(victim.authority(_ca_pem()), 201)
        assert time.monotonic() - start < 2, "the other app waited for the attacker's jobs"
        waiter.join(timeout=30)
        hog.join(timeout=30)
        busy = _expect(second[0], 503)
        assert busy["code"] == "busy"
        assert second[0].headers["Retry-After"] == "8"
        assert busy["retry_after"] == 8
        assert _expect(first[0], 422)["code"] == "too-expensive"
        metrics = _metrics(client)
        assert metrics['certward_material_jobs_total{outcome="busy"}'] == 1


# -- 5. the workers yield the CPU to the serving process ---------------------------------------


def _process_table() -> dict[int, tuple[int, int]]:
    """Every process of this machine: pid -> (parent pid, niceness), from /proc."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[16]))
    return table


def test_material_workers_run_below_the_server_priority(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    server = _start(servers, tmp_path, CERTWARD_MATERIAL_WORKERS="2")
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        shop = _tenant(client, "shop")
        _expect(shop.authority(_ca_pem()), 201)  # a worker has served a job
        table = _process_table()
        descendants: set[int] = set()
        frontier = {server.process.pid}
        while frontier:
            descendants |= frontier
            frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - descendants
        server_nice = table[server.process.pid][1]
        niceness = sorted(table[pid][1] for pid in descendants - {server.process.pid})
        lowered = [n for n in niceness if n == min(19, server_nice + 10)]
        # The gateway child and the fork server keep the server's priority; the workers
        # (at least the one that answered) run 10 lower.
        assert lowered, f"no worker below the server's niceness {server_nice}: {niceness}"
        assert server_nice in niceness, "the gateway child should keep the server's priority"
