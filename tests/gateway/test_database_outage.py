"""A gateway keeps serving its last good state while the database is gone.

The test starts a PostgreSQL server of its own (``initdb`` in a temporary directory,
``pg_ctl`` on a free loopback port), runs a gateway that follows it, stops the server,
checks that TLS handshakes for a served hostname keep succeeding and that the outage is
logged once, starts the server again, creates an environment and waits until the
gateway serves its hostname.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from certward.api import create_app
from certward.clock import FixedClock
from certward.platform import open_platform
from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.dataplane_follower import StateFollower
from certward.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, UNLIMITED_UPLOADS, bearer, expect
from tests.api.test_dataplane_feed import served_certificate
from tests.gateway.harness import running_gateway_on
from tests.material.factory import NOW
from tests.material.tools import in_ci

pytestmark = pytest.mark.slow


@dataclass
class OwnPostgres:
    """A PostgreSQL server in a directory of its own, stopped and started at will."""

    bin: Path
    data: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        log = str(self.data / "server.log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if found is None:
        if in_ci():
            pytest.fail("initdb is required in CI (apt-get install postgresql)")
        pytest.skip("initdb is not installed")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="certward-pg-"))
    data = root / "data"
    data.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    server = OwnPostgres(bin=Path(found).parent, data=data, port=_free_port(), as_user=as_user)
    server._run(str(server.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()  # unless already stopped
        shutil.rmtree(root, ignore_errors=True)


def _wait_until(check: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_the_gateway_serves_its_last_state_while_the_database_is_gone(
    own_postgres: OwnPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "data"),
            "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "CERTWARD_DATABASE_URL": own_postgres.url,
            **UNLIMITED_UPLOADS,
        }
    )
    platform = open_platform(settings, clock=FixedClock(NOW))
    admin = bearer(ADMIN_TOKEN)
    try:
        with TestClient(create_app(platform.context), base_url="http://certward.test") as client:
            expect(
                client.post(
                    "/api/v1/apps", json={"name": "shop", "plan": "licensed"}, headers=admin
                ),
                201,
            )

            def create(name: str) -> str:
                body = expect(
                    client.post(
                        "/api/v1/apps/shop/environments",
                        json={"name": name, "upstream": "http://shop.backend.test:8080"},
                        headers=admin,
                    ),
                    201,
                )
                return str(body["hostname"])

            first = create("prod")
            follower = StateFollower(
                DataPlaneFeed(platform.context), kind="gateway", node="outage", report_seconds=0
            )
            caplog.set_level(logging.INFO, logger="certward.dataplane")
            try:
                with running_gateway_on(follower, refresh=0.05) as gateway:
                    assert served_certificate(gateway.https_port, first)
                    own_postgres.stop()
                    for _ in range(10):  # many polls fail meanwhile
                        assert served_certificate(gateway.https_port, first)
                        time.sleep(0.05)
                    assert follower.database_unreachable
                    gone = [
                        r for r in caplog.records if "database is unreachable" in r.getMessage()
                    ]
                    assert len(gone) == 1  # logged once, not at every poll

                    own_postgres.start()
                    assert _wait_until(lambda: not follower.database_unreachable)
                    second = create("staging")
                    assert _wait_until(lambda: served_certificate(gateway.https_port, second))
                    assert served_certificate(gateway.https_port, first)
                    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
                    assert len(back) == 1
            finally:
                follower.close()
    finally:
        platform.close()
