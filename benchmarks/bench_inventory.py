"""Inventory query for expiring certificates with 100,000 certificates stored.

100,000 client certificates spread over 100 environments with expiries spread over
two years, on SQLite and PostgreSQL; the query is the inventory's "expires-soon,
soonest first, first page of 100", as an admin sees it (every app) and as a member
of one app sees it. Baseline, measured in the same run: the same query's bare SQL
(ids only) through SQLAlchemy Core. Target: < 50 ms.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, text

from _harness import per_call_seconds
from bench_api import postgres_schema
from certward.authorization import Principal
from certward.clock import FixedClock
from certward.expiry import CertificateStatus
from certward.model import App, ClientCertificate, Environment
from certward.platform import open_platform
from certward.services.inventory import list_inventory
from certward.settings import Settings
from certward.vocabulary import Plan, Role

CERTIFICATES = 100_000
ENVIRONMENTS = 100
NOW = datetime(2026, 11, 26, tzinfo=UTC)
TARGET_MS = 50.0


def seed(
    settings: Settings,
) -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    platform = open_platform(settings, clock=FixedClock(NOW), bootstrap=False)
    context = platform.context
    with context.database.transaction() as session:
        app = App(name="bench", plan=Plan.LICENSED, created_at=NOW)
        session.add(app)
        session.flush()
        environments = []
        for n in range(ENVIRONMENTS):
            environment = Environment(
                app_id=app.id,
                name=f"env-{n}",
                upstream="http://127.0.0.1:9",
                hostname=f"env-{n}-bench.apps.localhost",
                no_client_certificate=[],
                created_at=NOW,
            )
            session.add(environment)
            environments.append(environment)
        session.flush()
        env_ids = [e.id for e in environments]
        app_id = app.id
    rows = [
        {
            "id": f"{n:08d}-0000-4000-8000-{secrets.token_hex(6)}",
            "environment_id": env_ids[n % ENVIRONMENTS],
            "description": "",
            "subject": f"CN=client-{n}",
            "issuer": "CN=bench CA",
            "serial": format(n, "x"),
            "not_before": NOW - timedelta(days=30),
            "not_after": NOW + timedelta(minutes=(n * 7919) % (730 * 24 * 60)),
            "sha256_fingerprint": secrets.token_hex(32),
            "certificate_pem": "-",
            "chain_pem": "",
            "private_key_ciphertext": b"\0" * 48,
            "key_id": "0" * 16,
            "created_at": NOW,
            "updated_at": NOW,
        }
        for n in range(CERTIFICATES)
    ]
    with context.database.transaction() as session:
        for start in range(0, CERTIFICATES, 5000):
            session.execute(insert(ClientCertificate), rows[start : start + 5000])
    if platform.engine.dialect.name == "postgresql":
        with platform.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    admin = Principal(token_id=None, role=Role.ADMIN)
    member = Principal(token_id=None, role=Role.MEMBER, app_id=app_id)

    def as_admin() -> object:
        return list_inventory(context, admin, status=CertificateStatus.EXPIRES_SOON, limit=100)

    def as_member() -> object:
        return list_inventory(context, member, status=CertificateStatus.EXPIRES_SOON, limit=100)

    def bare_sql() -> object:
        with context.database.reading() as session:
            return session.scalars(
                select(ClientCertificate.id)
                .where(
                    ClientCertificate.not_after >= NOW,
                    ClientCertificate.not_after < NOW + timedelta(days=30),
                )
                .order_by(ClientCertificate.not_after)
                .limit(100)
            ).all()

    return as_admin, as_member, bare_sql


def measure(label: str, settings: Settings) -> None:
    started = time.perf_counter()
    as_admin, as_member, bare = seed(settings)
    print(f"{label}: seeded {CERTIFICATES:,} certificates in {time.perf_counter() - started:.1f} s")
    for name, query in (("admin, every app", as_admin), ("member of the app", as_member)):
        query()
        ours = statistics.median(per_call_seconds(query, 5) for _ in range(7))
        baseline = statistics.median(per_call_seconds(bare, 5) for _ in range(7))
        verdict = "ok" if ours * 1e3 < TARGET_MS else f"ABOVE {TARGET_MS:.0f} ms"
        print(
            f"{label}: expires-soon, first 100 ({name}): {ours * 1e3:.1f} ms ({verdict}); "
            f"bare SQL {baseline * 1e3:.1f} ms; ratio {ours / baseline:.2f}x"
        )


def main() -> None:
    print(__doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as directory:
        measure("sqlite", Settings.from_env({"CERTWARD_DATA_DIR": directory}))
    with postgres_schema() as url, tempfile.TemporaryDirectory() as directory:
        if url is not None:
            measure(
                "postgresql",
                Settings.from_env({"CERTWARD_DATA_DIR": directory, "CERTWARD_DATABASE_URL": url}),
            )


if __name__ == "__main__":
    main()
