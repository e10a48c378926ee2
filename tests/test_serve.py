"""``certward serve`` and ``certward db upgrade`` as an operator runs them: real processes.

`ServerProcess` starts ``certward serve`` (the installed console script) on a free
loopback port with an explicit environment, waits for ``/healthz`` and is always
stopped by the fixture that made it. ``tests/api/test_durability.py`` reuses it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, make_url, text

from certward.cli.app import main
from certward.db import head_revision
from tests.material import tools
from tests.material.factory import IssuedCert, TestCA

START_TIMEOUT = 30.0
"""Seconds a server may take to answer /healthz (generous: loaded CI machines)."""

ADMIN_TOKEN = "cw_serve-test-admin-token-0123456789"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def certward_command(*arguments: str) -> list[str]:
    """The installed ``certward`` console script (next to this Python), else ``-c``."""
    script = Path(sys.executable).with_name("certward")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), *arguments]
    return [sys.executable, "-c", "from certward.cli.app import run; run()", *arguments]


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without any ``CERTWARD_*`` variable, plus ``variables``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CERTWARD_")}
    environ.update(variables)
    return environ


@dataclass(slots=True, kw_only=True)
class ServerProcess:
    """One ``certward serve`` process; output goes to files under ``log_dir``."""

    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path
    gateway_port: int = 0
    gateway_http_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_until_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``/healthz`` until it answers 200; fail with the output if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"certward serve exited with {self.process.returncode} before answering:\n"
                    f"{self.stdout}\n{self.stderr}"
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"certward serve did not answer /healthz:\n{self.stdout}\n{self.stderr}")

    def kill(self) -> None:
        """``kill -9``, and reap the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass(slots=True)
class ServerLauncher:
    """Starts ``certward serve`` processes and stops every one of them at teardown."""

    log_dir: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(
        self, environ: Mapping[str, str], *, cwd: Path, port: int | None = None
    ) -> ServerProcess:
        """Start a server with exactly ``environ`` (plus PATH etc.); CERTWARD_LISTEN is set."""
        port = port or free_port()
        gateway = {
            "CERTWARD_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
            "CERTWARD_GATEWAY_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "CERTWARD_GATEWAY_WORKERS": "1",
            # The test apps listen on loopback, which the default egress policy refuses;
            # 10.0.0.0/8 holds the backends that are named but never reached.
            "CERTWARD_EGRESS_ALLOW": "127.0.0.0/8,10.0.0.0/8",
        }
        env = clean_environment(**{**gateway, **environ}, CERTWARD_LISTEN=f"127.0.0.1:{port}")
        number = len(self.started)
        stdout_path = self.log_dir / f"serve-{number}.out"
        stderr_path = self.log_dir / f"serve-{number}.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                certward_command("serve"), cwd=cwd, env=env, stdout=out, stderr=err
            )
        server = ServerProcess(
            process=process,
            port=port,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            gateway_port=int(env["CERTWARD_GATEWAY_LISTEN"].rsplit(":", 1)[1]),
            gateway_http_port=int(env["CERTWARD_GATEWAY_HTTP_LISTEN"].rsplit(":", 1)[1]),
        )
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerLauncher]:
    """A launcher whose processes are all stopped when the test ends, whatever happened."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    launcher = ServerLauncher(log_dir)
    try:
        yield launcher
    finally:
        launcher.stop_all()


def run_certward(
    *arguments: str, cwd: Path, environ: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a ``certward`` command to completion (output captured as text)."""
    return subprocess.run(
        certward_command(*arguments),
        cwd=cwd,
        env=clean_environment(**environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def client_certificate(common_name: str = "serve-test.example.test") -> IssuedCert:
    """A client certificate valid around the real current time (the server's clock)."""
    now = datetime.now(UTC)
    root = TestCA.root(
        name="serve test root", not_before=now - timedelta(days=1), not_after=now + timedelta(3650)
    )
    return root.issue_leaf(
        common_name,
        eku=["clientAuth"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- serve -----------------------------------------------------------------------------------


def test_serve_without_configuration_creates_its_data_directory_and_an_admin_token(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    """Started in an empty directory, serve makes ./certward-data with 0600 key and token files."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    server = servers.start({}, cwd=cwd)
    server.wait_until_healthy()

    data_dir = cwd / "certward-data"
    assert data_dir.is_dir()
    master_key, token_file = data_dir / "master.key", data_dir / "admin-token"
    assert stat.S_IMODE(master_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0

    banner = server.stdout
    assert f"http://127.0.0.1:{server.port}/api/v1" in banner
    assert str(token_file.resolve()) in banner
    token = token_file.read_text().strip()
    assert token not in banner + server.stderr

    apps = httpx.get(f"{server.base_url}/api/v1/apps", headers=bearer(token), timeout=10)
    assert apps.status_code == 200
    assert apps.json() == []
    assert httpx.get(f"{server.base_url}/api/v1/apps", timeout=10).status_code == 401


def test_serve_with_an_admin_token_in_the_environment_writes_no_token_file(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    """CERTWARD_ADMIN_TOKEN becomes the admin token: it works, and no admin-token file appears."""
    server = servers.start({"CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN}, cwd=tmp_path)
    server.wait_until_healthy()

    assert not (tmp_path / "certward-data" / "admin-token").exists()
    assert "CERTWARD_ADMIN_TOKEN" in server.stdout
    assert ADMIN_TOKEN not in server.stdout + server.stderr
    created = httpx.post(
        f"{server.base_url}/api/v1/apps",
        json={"name": "shop", "plan": "free"},
        headers=bearer(ADMIN_TOKEN),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    wrong = httpx.get(f"{server.base_url}/api/v1/apps", headers=bearer("x" * 40), timeout=10)
    assert wrong.status_code == 401


def _store_a_secret(server: ServerProcess) -> None:
    """A licensed app, an environment and one client certificate (key and password stored)."""
    url = f"{server.base_url}/api/v1"
    with httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=30) as client:
        response = client.post("/apps", json={"name": "shop", "plan": "licensed"})
        assert response.status_code == 201, response.text
        response = client.post(
            "/apps/shop/environments", json={"name": "prod", "upstream": "http://10.0.0.1:80"}
        )
        assert response.status_code == 201, response.text
        response = client.post(
            "/apps/shop/environments/prod/client-certificates",
            files={"file": ("client.p12", client_certificate().pkcs12("pw"))},
            data={"password": "pw"},
        )
        assert response.status_code == 201, response.text


@pytest.mark.parametrize("wrong_key", ["environment-variable", "regenerated-file"])
def test_serve_refuses_to_start_with_another_master_key_once_secrets_are_stored(
    servers: ServerLauncher, tmp_path: Path, wrong_key: str
) -> None:
    """A master key that did not encrypt the stored secrets stops serve with exit 1, unserved."""
    environ = {"CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN}
    first = servers.start(environ, cwd=tmp_path)
    first.wait_until_healthy()
    _store_a_secret(first)
    first.stop()

    if wrong_key == "environment-variable":
        environ["CERTWARD_MASTER_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    else:
        (tmp_path / "certward-data" / "master.key").unlink()
    second = servers.start(environ, cwd=tmp_path)
    assert second.process.wait(timeout=60) == 1
    output = second.stdout + second.stderr
    assert "master key" in output
    assert "certward cannot start" in output
    assert "Traceback" not in output
    assert "Uvicorn running" not in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{second.base_url}/healthz", timeout=2)


# -- db upgrade ------------------------------------------------------------------------------


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _upgrade(monkeypatch: pytest.MonkeyPatch, environ: Mapping[str, str]) -> int:
    for name in [k for k in os.environ if k.startswith("CERTWARD_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return main(["db", "upgrade"])


def test_db_upgrade_creates_the_schema_of_a_fresh_sqlite_database_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``certward db upgrade`` brings a new SQLite file to the head revision, twice over."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    environ = {"CERTWARD_DATABASE_URL": url, "CERTWARD_DATA_DIR": str(tmp_path / "data")}
    assert _upgrade(monkeypatch, environ) == 0
    assert _revision(url) == head_revision()
    assert _upgrade(monkeypatch, environ) == 0
    assert _revision(url) == head_revision()
    assert capsys.readouterr().out.count(f"Database at revision {head_revision()}") == 2


def test_db_upgrade_with_embedded_defaults_creates_the_data_directory(tmp_path: Path) -> None:
    """In an empty directory, ``certward db upgrade`` makes ./certward-data and its database."""
    result = run_certward("db", "upgrade", cwd=tmp_path, environ={})
    assert result.returncode == 0, result.stdout + result.stderr
    database = tmp_path / "certward-data" / "certward.db"
    assert database.is_file()
    assert _revision(f"sqlite:///{database}") == head_revision()


def test_db_upgrade_of_an_unreachable_database_fails_with_one_clear_line(tmp_path: Path) -> None:
    """A database nobody answers for is exit 1 with a sentence, not a traceback."""
    url = f"postgresql+psycopg://certward:hunter2-secret@127.0.0.1:{free_port()}/certward"
    result = run_certward("db", "upgrade", cwd=tmp_path, environ={"CERTWARD_DATABASE_URL": url})
    assert result.returncode == 1
    assert "certward cannot start" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr


@pytest.fixture
def postgresql_schema_url() -> Iterator[str]:
    """A URL into a new, empty PostgreSQL schema (dropped afterwards)."""
    base = make_url(tools.require_postgresql()).set(drivername="postgresql+psycopg")
    schema = f"certward_upgrade_{secrets.token_hex(6)}"
    admin = create_engine(base, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = base.update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def test_db_upgrade_creates_the_schema_on_postgresql_and_is_idempotent(
    postgresql_schema_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``certward db upgrade`` fills an empty PostgreSQL schema; a second run changes nothing."""
    environ = {
        "CERTWARD_DATABASE_URL": postgresql_schema_url,
        "CERTWARD_DATA_DIR": str(tmp_path / "data"),
    }
    assert _revision(postgresql_schema_url) is None
    assert _upgrade(monkeypatch, environ) == 0
    assert _revision(postgresql_schema_url) == head_revision()
    engine = create_engine(postgresql_schema_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"apps", "environments", "client_certificates", "tokens", "audit_events"} <= tables
    assert _upgrade(monkeypatch, environ) == 0
    assert _revision(postgresql_schema_url) == head_revision()


def test_bundle_install_puts_the_applied_bundle_in_place_with_absolute_paths(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    """`certward bundle install --into DIR` with a runtime token: verified files, 0600,
    settings pointing at DIR; without a token it is a usage error."""
    server = servers.start(
        {"CERTWARD_DATA_DIR": str(tmp_path / "data"), "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN},
        cwd=tmp_path,
    )
    server.wait_until_healthy()
    _store_a_secret(server)
    url = f"{server.base_url}/api/v1"
    with httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=30) as client:
        client.post("/apps/shop/environments/prod/restart").raise_for_status()
        token = client.post(
            "/tokens", json={"role": "runtime", "app": "shop", "environment": "prod"}
        ).json()["token"]
    into = tmp_path / "app" / "certificates"
    arguments = (
        "bundle",
        "install",
        "--into",
        str(into),
        "--app",
        "shop",
        "--env",
        "prod",
        "--server",
        server.base_url,
    )
    refused = run_certward(*arguments, cwd=tmp_path, environ=clean_environment())
    assert refused.returncode == 2, refused.stderr
    done = run_certward(*arguments, cwd=tmp_path, environ=clean_environment(CERTWARD_TOKEN=token))
    assert done.returncode == 0, done.stderr
    assert "Installed version 1 of shop/prod" in done.stdout
    settings = json.loads((into / "runtime-settings.json").read_text())
    (path,) = settings["ClientCertificates"].split(",")
    assert Path(path).is_absolute()
    assert Path(path).parent.parent == into
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in into.rglob("*") if p.is_file())
    again = run_certward(*arguments, cwd=tmp_path, environ=clean_environment(CERTWARD_TOKEN=token))
    assert again.returncode == 0, again.stderr  # replaces the installed bundle in place
