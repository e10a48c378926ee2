"""The data-plane change feed: what a node pays per poll, against the full reload it
replaces, on SQLite and PostgreSQL.

For 10,000 and 100,000 hostnames (environments with an active managed certificate,
seeded with bulk inserts, each key sealed for its own row), measured in the same run:

- **baseline**: a full `DataPlaneFeed.load()`, what every gateway worker and nginx
  agent did at every poll before the feed;
- **no-change poll**: `StateFollower.load()` when nothing changed (one row read);
  target < 5 ms at 100,000;
- **one change applied**: one environment's upstream changed (not timed), then
  `StateFollower.load()` reads the sequence, the changed hostname and its site, and
  applies it to the state; target < 50 ms;
- **full start**: a fresh process opening the installation and loading the snapshot,
  its wall time and peak RSS; target < 15 s and < 2 GB at 100,000.

On PostgreSQL, the feed's queries alone with 1,000,000 change rows: the poll and
`changes_since` one sequence back. ``--quick`` measures 10,000 hostnames only and
skips the 1,000,000 rows. PostgreSQL is ``CERTWARD_TEST_DATABASE_URL`` (default: the
local test server) in a schema of its own; skipped when it does not answer.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import OperationalError

from _harness import per_call_seconds
from bench_issuance import ADMIN, installation
from certward.clock import FixedClock
from certward.model import App, Environment, ManagedCertificate, new_id
from certward.platform import Platform, open_platform
from certward.secrets import private_key_aad
from certward.services import apps
from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.dataplane_follower import StateFollower
from certward.settings import Settings
from certward.vocabulary import Plan
from tests.material.factory import NOW

POLL_TARGET_MS = 5.0
CHANGE_TARGET_MS = 50.0
START_TARGET_S = 15.0
START_TARGET_MIB = 2048
CHUNK = 5000
aad = private_key_aad(ManagedCertificate.__tablename__)


def seed(platform: Platform, count: int) -> None:
    """``count`` environments of one app, each with its own sealed managed certificate."""
    ctx = platform.context
    apps.create_app(ctx, ADMIN, name="bench", plan=Plan.LICENSED)
    apps.create_environment(ctx, ADMIN, "bench", name="template", upstream="http://10.0.0.1:80")
    with ctx.database.reading() as session:
        app_id = session.scalar(select(App.id).where(App.name == "bench"))
        template = session.scalar(select(ManagedCertificate))
        assert template is not None
        key = ctx.secrets.decrypt(template.private_key_ciphertext, aad=aad(template.id))
        copied = {
            c.key: getattr(template, c.key)
            for c in ManagedCertificate.__table__.columns
            if c.key not in {"id", "environment_id", "hostname", "private_key_ciphertext"}
        }
    for start in range(0, count, CHUNK):
        environments = [
            {
                "id": new_id(),
                "app_id": app_id,
                "name": f"e{n}",
                "upstream": "http://10.0.0.1:80",
                "hostname": f"e{n}-bench.{ctx.settings.platform_domain}",
                "no_client_certificate": [],
                "created_at": NOW,
            }
            for n in range(start, min(count, start + CHUNK))
        ]
        certificates = []
        for environment in environments:
            row_id = new_id()
            certificates.append(
                {
                    **copied,
                    "id": row_id,
                    "environment_id": environment["id"],
                    "hostname": environment["hostname"],
                    "private_key_ciphertext": ctx.secrets.encrypt(key, aad=aad(row_id)),
                }
            )
        with ctx.database.transaction() as session:
            session.execute(insert(Environment), environments)
            session.execute(insert(ManagedCertificate), certificates)


def change_one(platform: Platform, number: int) -> None:
    with platform.context.database.transaction() as session:
        session.execute(
            update(Environment)
            .where(Environment.name == f"e{number * 7919 % 1000}")
            .values(upstream=f"http://10.0.0.{number % 250 + 1}:80")
        )


def measure(database: str, count: int) -> None:
    with installation(database) as platform:
        started = time.perf_counter()
        seed(platform, count)
        seeded = time.perf_counter() - started
        feed = DataPlaneFeed(platform.context)
        follower = StateFollower(feed, kind="gateway", node="bench")
        follower.load()
        full = statistics.median(
            per_call_seconds(DataPlaneFeed(platform.context).load, 1) for _ in range(3)
        )
        poll = statistics.median(per_call_seconds(follower.load, 50) for _ in range(5))
        applied: list[float] = []
        for number in range(15):
            change_one(platform, number)
            applied.append(per_call_seconds(follower.load, 1))
        one = statistics.median(applied)
        assert follower.load().version == feed.load().version
        label = f"{database} {count:,} hostnames"
        print(f"{label}: seeded in {seeded:.1f} s")
        verdict = "ok" if poll * 1e3 < POLL_TARGET_MS else f"ABOVE {POLL_TARGET_MS} ms"
        print(
            f"  no-change poll      {poll * 1e3:9.3f} ms  vs full load {full * 1e3:9.1f} ms"
            f"  ratio {poll / full:.2g}x  {verdict}"
        )
        verdict = "ok" if one * 1e3 < CHANGE_TARGET_MS else f"ABOVE {CHANGE_TARGET_MS} ms"
        print(
            f"  one change applied  {one * 1e3:9.3f} ms  vs full load {full * 1e3:9.1f} ms"
            f"  ratio {one / full:.2g}x  {verdict}"
        )
        if count >= 100_000:
            start(platform)
        if database == "postgresql" and count >= 100_000:
            million(platform)


def start(platform: Platform) -> None:
    """A full snapshot start in a process of its own: wall time and peak RSS."""
    settings = platform.context.settings
    child = subprocess.run(
        [sys.executable, __file__, "--start-child", str(settings.data_dir), settings.database_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    ok = figures["seconds"] < START_TARGET_S and figures["rss_mib"] < START_TARGET_MIB
    print(
        f"  full start          {figures['seconds']:9.2f} s   peak RSS {figures['rss_mib']:.0f} MiB"
        f" ({figures['hostnames']:,} hostnames)  {'ok' if ok else 'ABOVE TARGET'}"
    )


def start_child(data_dir: str, database_url: str) -> None:
    began = time.perf_counter()
    environ = {"CERTWARD_DATA_DIR": data_dir, "CERTWARD_DATABASE_URL": database_url}
    platform = open_platform(Settings.from_env(environ), clock=FixedClock(NOW))
    state = StateFollower(DataPlaneFeed(platform.context), kind="gateway", node="start").load()
    seconds = time.perf_counter() - began
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mib": rss_mib, "hostnames": len(state.sites)}))
    platform.close()


def million(platform: Platform) -> None:
    """The feed's queries with 1,000,000 change rows (PostgreSQL)."""
    with platform.context.database.transaction() as session:
        current = int(session.scalar(text("SELECT value FROM data_plane_sequence")) or 0)
        session.execute(
            text(
                "INSERT INTO data_plane_changes (sequence, hostname)"
                " SELECT :base + g, 'gone-' || g || '.bench.test'"
                " FROM generate_series(1, 1000000) g"
            ),
            {"base": current},
        )
        session.execute(
            text("UPDATE data_plane_sequence SET value = :v"), {"v": current + 1_000_000}
        )
        session.execute(text("ANALYZE data_plane_changes"))
    feed = DataPlaneFeed(platform.context)
    newest = feed.poll()
    poll = statistics.median(per_call_seconds(feed.poll, 50) for _ in range(5))
    since = statistics.median(
        per_call_seconds(lambda: feed.changes_since(newest - 1), 20) for _ in range(5)
    )
    print(
        f"  1,000,000 change rows: poll {poll * 1e3:.3f} ms, "
        f"changes_since one back {since * 1e3:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 hostnames only")
    parser.add_argument("--start-child", nargs=2, metavar=("DATA_DIR", "DATABASE_URL"))
    arguments = parser.parse_args()
    if arguments.start_child:
        start_child(*arguments.start_child)
        return
    counts = (10_000,) if arguments.quick else (10_000, 100_000)
    for database in ("sqlite", "postgresql"):
        for count in counts:
            try:
                measure(database, count)
            except OperationalError as exc:
                print(f"{database}: skipped ({str(exc.orig).strip().splitlines()[0]})")
                break


if __name__ == "__main__":
    main()
