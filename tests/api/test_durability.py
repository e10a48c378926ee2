"""``kill -9`` of ``certward serve`` loses no acknowledged change and leaves nothing half-written.

A real server process (SQLite in its data directory) takes a stream of requests from
a few client threads: create an app, its environment, upload a client certificate.
Every 201 is remembered. At a random moment, with requests in flight, the server gets
SIGKILL; a new server starts on the same data directory. Every acknowledged object
must be there, the database must pass SQLite's integrity check, and every environment
holding certificates must restart (which decrypts and judges every stored key), so no
row was written without its secret. Loopback only; the fixture stops every process.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.test_serve import (
    ServerLauncher,
    ServerProcess,
    bearer,
    client_certificate,
)

ADMIN_TOKEN = "cw_durability-admin-token-0123456789"
TRIALS = 3
CLIENTS = 3
PASSWORD = "durable"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerLauncher]:
    """Starts ``certward serve`` processes; every one is stopped when the test ends."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    launcher = ServerLauncher(log_dir)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@dataclass(frozen=True, slots=True)
class Certificate:
    app: str
    env: str
    id: str
    sha256_fingerprint: str


@dataclass(slots=True)
class Acknowledged:
    """What the server answered 201 to (appended from several client threads)."""

    apps: list[str] = field(default_factory=list)
    environments: list[tuple[str, str]] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)


def client_loop(
    base_url: str, prefix: str, acknowledged: Acknowledged, stop: threading.Event
) -> None:
    """Create app, environment and certificate after another until the server goes away."""
    material = client_certificate(f"{prefix}.example.test").pkcs12(PASSWORD)
    number = 0
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=bearer(ADMIN_TOKEN), timeout=30) as c:
        while not stop.is_set():
            app, env = f"{prefix}-{number}", "prod"
            number += 1
            try:
                if c.post("/apps", json={"name": app, "plan": "licensed"}).status_code != 201:
                    continue
                acknowledged.apps.append(app)
                created = c.post(
                    f"/apps/{app}/environments",
                    json={"name": env, "upstream": f"http://{app}.backend.test:8080"},
                )
                if created.status_code != 201:
                    continue
                acknowledged.environments.append((app, env))
                uploaded = c.post(
                    f"/apps/{app}/environments/{env}/client-certificates",
                    files={"file": ("client.p12", material)},
                    data={"password": PASSWORD, "pins": f"{app}.partner.example"},
                )
                if uploaded.status_code == 201:
                    body = uploaded.json()
                    acknowledged.certificates.append(
                        Certificate(app, env, body["id"], body["sha256_fingerprint"])
                    )
            except httpx.TransportError:
                return  # killed under us: whatever was in flight is not acknowledged


def verify(server: ServerProcess, acknowledged: Acknowledged) -> int:
    """Every acknowledged object is there; every environment with certificates restarts."""
    with httpx.Client(
        base_url=f"{server.base_url}/api/v1", headers=bearer(ADMIN_TOKEN), timeout=60
    ) as c:
        apps = {a["name"]: a for a in c.get("/apps").raise_for_status().json()}
        for app in acknowledged.apps:
            assert app in apps, f"acknowledged app {app} lost"
        for app, env in acknowledged.environments:
            assert env in apps[app]["environments"], f"acknowledged environment {app}/{env} lost"
        for certificate in acknowledged.certificates:
            url = f"/apps/{certificate.app}/environments/{certificate.env}/client-certificates"
            response = c.get(f"{url}/{certificate.id}")
            assert response.status_code == 200, f"acknowledged {certificate} lost: {response.text}"
            assert response.json()["sha256_fingerprint"] == certificate.sha256_fingerprint
        restarted = 0
        for name, app in apps.items():
            for env in app["environments"]:
                base = f"/apps/{name}/environments/{env}"
                stored = c.get(f"{base}/client-certificates").raise_for_status().json()
                if stored:
                    response = c.post(f"{base}/restart")
                    assert response.status_code == 200, f"{base}: {response.text}"
                    restarted += 1
    return restarted


def test_kill_9_during_writes_loses_no_acknowledged_change(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    """Three SIGKILLs mid-stream: every 201 survives, the database is whole, every key decrypts."""
    environ = {"CERTWARD_DATA_DIR": str(tmp_path / "data"), "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN}
    acknowledged = Acknowledged()
    chance = random.Random()
    server = servers.start(environ, cwd=tmp_path)
    server.wait_until_healthy()
    for trial in range(TRIALS):
        stop = threading.Event()
        clients = [
            threading.Thread(
                target=client_loop,
                args=(server.base_url, f"t{trial}c{n}", acknowledged, stop),
                daemon=True,
            )
            for n in range(CLIENTS)
        ]
        certificates_before = len(acknowledged.certificates)
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acknowledged.certificates) == certificates_before:  # some work acknowledged
            assert time.monotonic() < deadline, server.stdout + server.stderr
            time.sleep(0.01)
        time.sleep(chance.uniform(0.05, 0.6))
        server.kill()  # SIGKILL while the clients keep sending
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
            assert not thread.is_alive()

        server = servers.start(environ, cwd=tmp_path)
        server.wait_until_healthy()
        assert "Traceback" not in server.stdout + server.stderr
        database = tmp_path / "data" / "certward.db"
        with closing(sqlite3.connect(database)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert verify(server, acknowledged) >= len(
            {(c.app, c.env) for c in acknowledged.certificates}
        )
    assert len(acknowledged.certificates) >= TRIALS
    print(
        f"durability: {TRIALS} kills; acknowledged {len(acknowledged.apps)} apps, "
        f"{len(acknowledged.environments)} environments, "
        f"{len(acknowledged.certificates)} certificates; all present"
    )
