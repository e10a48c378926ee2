"""REST API latency with 10,000 client certificates stored, on SQLite and PostgreSQL.

A real `certward serve` process per database; an open-loop client sends reads at a
fixed rate (100 requests/s: half list pages of 100 certificates at random cursors,
half single certificates by id) and measures each latency from the moment the
request was *due*, so a stalled server cannot hide its queue. The first 3 seconds
warm the server up (connections, compiled queries) and are not counted; the next
20 seconds are. Target: p99 < 100 ms.

Second figure: upload-to-stored latency of a client certificate through the API
(multipart POST, judgement, encryption, one transaction, audit) as a ratio of the
bare material judgement of the same file measured in this process.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

import _harness  # noqa: F401 - puts the repository on sys.path
from certward.clock import SystemClock
from certward.db import Database, make_engine, upgrade_database
from certward.model import App, ClientCertificate, ClientCertificatePin, Environment
from certward.pki.checks import Purpose, judge
from certward.pki.convert import Pkcs12Profile, private_key_der
from certward.pki.material import load_material
from certward.secrets import SecretBox, load_or_create_keyring
from certward.services.staging import key_aad
from certward.vocabulary import Plan
from tests.material.factory import TestCA

CERTIFICATES = 10_000
RATE = 100.0
DURATION = 20.0
WARM_UP = 3.0
TARGET_P99_MS = 100.0
ADMIN = "bench-admin-token-" + secrets.token_hex(8)
POSTGRES = os.environ.get(
    "CERTWARD_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(database_url: str, data_dir: Path) -> tuple[list[str], bytes]:
    """10,000 realistic rows: distinct certificates' PEM, encrypted keys, pins."""
    engine = make_engine(database_url)
    upgrade_database(engine)
    box = SecretBox(load_or_create_keyring(data_dir / "master.key"))
    ca = TestCA.root(name="bench partner CA")
    leaves = [ca.issue_leaf(f"client-{i}", eku=["clientAuth"]) for i in range(50)]
    now = SystemClock().now()
    ids: list[str] = []
    with Database(engine).transaction() as session:
        app = App(name="bench", plan=Plan.LICENSED, created_at=now)
        session.add(app)
        session.flush()
        environment = Environment(
            app_id=app.id,
            name="production",
            upstream="http://127.0.0.1:9",
            hostname="production-bench.apps.localhost",
            pkcs12_profile=Pkcs12Profile.MODERN,
            created_at=now,
        )
        session.add(environment)
        session.flush()
        for i in range(CERTIFICATES):
            leaf = leaves[i % len(leaves)]
            row_id = f"{i:08d}-0000-4000-8000-{secrets.token_hex(6)}"
            ids.append(row_id)
            session.add(
                ClientCertificate(
                    id=row_id,
                    environment_id=environment.id,
                    description=f"partner {i}",
                    call_name=f"call-{i}",
                    subject=f"CN=client-{i}",
                    issuer=ca.certificate.subject.rfc4514_string(),
                    serial=format(i, "x"),
                    not_before=leaf.certificate.not_valid_before_utc,
                    not_after=leaf.certificate.not_valid_after_utc,
                    sha256_fingerprint=secrets.token_hex(32),
                    certificate_pem=leaf.cert_pem().decode(),
                    chain_pem=ca.cert_pem().decode(),
                    private_key_ciphertext=box.encrypt(
                        private_key_der(leaf.private_key), aad=key_aad(row_id)
                    ),
                    key_id=box.keyring.active.key_id,
                    created_at=now,
                    updated_at=now,
                    pins=[
                        ClientCertificatePin(
                            pin=f"partner-{i}.example.com", environment_id=environment.id
                        )
                    ],
                )
            )
    if engine.dialect.name == "postgresql":
        # What autovacuum does shortly after a bulk load (statistics, visibility map),
        # done now so that it does not land in the middle of the measurement.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return ids, leaves[0].pkcs12("bench password, with a comma")


@contextmanager
def server(database_url: str, data_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CERTWARD_DATA_DIR": str(data_dir),
        "CERTWARD_DATABASE_URL": database_url,
        "CERTWARD_LISTEN": f"127.0.0.1:{port}",
        "CERTWARD_ADMIN_TOKEN": ADMIN,
        # Latency, not the upload rate limits: 40 uploads in a row would be over them.
        "CERTWARD_UPLOAD_RATE": "100000/minute",
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
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def open_loop(base: str, ids: list[str]) -> tuple[list[float], int]:
    """Latencies (s) measured from each request's due time; and the error count."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    prefix = "/api/v1/apps/bench/environments/production/client-certificates"
    rng = random.Random(7)  # noqa: S311 - a reproducible request mix, not a secret
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:

        async def one(due: float, path: str, counted: bool) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            response = await client.get(path)
            if counted:
                latencies.append(time.perf_counter() - due)
            if response.status_code != 200:
                errors += 1

        start = time.perf_counter() + 0.5
        tasks = []
        warm_up = int(RATE * WARM_UP)
        for n in range(warm_up + int(RATE * DURATION)):
            if n % 2:
                path = f"{prefix}/{rng.choice(ids)}"
            else:
                path = f"{prefix}?limit=100&after={rng.choice(ids)}"
            tasks.append(asyncio.create_task(one(start + n / RATE, path, n >= warm_up)))
        await asyncio.gather(*tasks)
    return latencies, errors


def upload_ratio(base: str, pfx: bytes) -> tuple[float, float]:
    password = b"bench password, with a comma"
    headers = {"Authorization": f"Bearer {ADMIN}"}
    url = base + "/api/v1/apps/bench/environments/production/client-certificates"
    api: list[float] = []
    bare: list[float] = []
    with httpx.Client(headers=headers, timeout=10) as client:
        for _ in range(40):
            start = time.perf_counter()
            judge(
                load_material(pfx, password=password),
                at=SystemClock().now(),
                purpose=Purpose.CLIENT_CERTIFICATE,
            )
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            response = client.post(
                url, files={"file": ("c.p12", pfx)}, data={"password": password.decode()}
            )
            api.append(time.perf_counter() - start)
            assert response.status_code == 201, response.text
    return statistics.median(api), statistics.median(bare)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    schema = f"certward_bench_{secrets.token_hex(4)}"
    try:
        admin = create_engine(POSTGRES)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        print(f"postgresql: skipped ({type(exc).__name__}: {exc})".splitlines()[0])
        yield None
        return
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(label: str, database_url: str, data_dir: Path) -> None:
    started = time.perf_counter()
    ids, pfx = seed(database_url, data_dir)
    print(
        f"{label}: seeded {len(ids):,} client certificates in {time.perf_counter() - started:.1f} s"
    )
    with server(database_url, data_dir) as base:
        latencies, errors = asyncio.run(open_loop(base, ids))
        p50, p99 = percentile(latencies, 0.50) * 1e3, percentile(latencies, 0.99) * 1e3
        verdict = "ok" if p99 < TARGET_P99_MS else f"ABOVE {TARGET_P99_MS:.0f} ms"
        print(
            f"{label}: {len(latencies)} reads at {RATE:.0f}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"({verdict}), errors {errors}; p99/target {p99 / TARGET_P99_MS:.2f}"
        )
        api, bare = upload_ratio(base, pfx)
        print(
            f"{label}: upload-to-stored {api * 1e3:.1f} ms vs bare judgement {bare * 1e3:.1f} ms: "
            f"ratio {api / bare:.2f}x"
        )


def main() -> None:
    print(__doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as sqlite_dir:
        data_dir = Path(sqlite_dir)
        run("sqlite", f"sqlite:///{data_dir / 'certward.db'}", data_dir)
    with postgres_schema() as url, tempfile.TemporaryDirectory() as pg_dir:
        if url is not None:
            run("postgresql", url, Path(pg_dir))


if __name__ == "__main__":
    main()
