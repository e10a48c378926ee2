"""The API client commands against a real certward API served over HTTP on loopback.

``live_server`` starts uvicorn in a thread on a socket bound to a free 127.0.0.1 port,
serving ``certward.api.create_app`` over a fresh SQLite data directory on a
`FixedClock` at the factory's ``NOW`` (so test certificates are valid whatever the
date). It lives for the whole ``tests/cli`` package: every test uses its own app
names (a test needing a platform of its own serves one with ``serving`` and drives it
through ``cli_for``). The ``cli`` fixture runs ``certward.cli.main`` in process, pointed
at that server with the admin token, and returns what it printed::

    def test_something(cli: Cli) -> None:
        result = cli("app", "create", "shop", "--plan", "licensed")
        assert result.code == 0, result.stderr
        apps = cli("app", "list", "--json").json()

Everything every command printed is kept in ``cli.outputs`` so a test can check that
no password ever appeared.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from certward.api import create_app
from certward.cli.app import main
from certward.clock import FixedClock
from certward.platform import Platform, open_platform
from certward.settings import Settings
from tests.material.factory import NOW, IssuedCert, TestCA

ADMIN_TOKEN = "cw_cli-test-admin-token-0123456789abcdef"  # a test credential
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveServer:
    """A certward API answering on ``url``; ``platform`` gives the rows behind it."""

    url: str
    admin_token: str = field(repr=False)
    platform: Platform = field(repr=False)
    clock: FixedClock


@dataclass(frozen=True, slots=True, kw_only=True)
class CliResult:
    """What one ``certward`` command returned and printed."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Standard output as JSON (fails the test, showing the output, when it is not)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            pytest.fail(f"not JSON on stdout:\n{self.stdout}\nstderr:\n{self.stderr}")

    def problem(self) -> Any:
        """Standard error as JSON: the problem a ``--json`` command was refused with."""
        return json.loads(self.stderr)


@dataclass(slots=True)
class Cli:
    """Runs ``certward`` commands against the live server (admin token unless told)."""

    server: LiveServer
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    outputs: list[str] = field(default_factory=list)

    def __call__(
        self,
        *arguments: str,
        token: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
    ) -> CliResult:
        """Run ``certward ARGUMENTS``; ``stdin`` feeds standard input, ``tty`` makes it
        look like a terminal."""
        self.capsys.readouterr()
        with self.monkeypatch.context() as patch:
            patch.setenv("CERTWARD_SERVER", self.server.url)
            patch.setenv("CERTWARD_TOKEN", self.server.admin_token if token is None else token)
            stream = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
            if tty:
                patch.setattr(stream, "isatty", lambda: True, raising=False)
            patch.setattr(sys, "stdin", stream)
            code = main(list(arguments))
        captured = self.capsys.readouterr()
        self.outputs += [captured.out, captured.err]
        return CliResult(code=code, stdout=captured.out, stderr=captured.err)

    def ok(self, *arguments: str, **options: Any) -> CliResult:
        """Run a command that must succeed (its output shows when it does not)."""
        result = self(*arguments, **options)
        assert result.code == 0, f"certward {' '.join(arguments)} -> {result.code}\n{result}"
        return result

    def refused(self, *arguments: str, **options: Any) -> CliResult:
        """Run a command the server must refuse: exit 1, nothing on standard output."""
        result = self(*arguments, **options)
        assert result.code == 1, f"certward {' '.join(arguments)} -> {result.code}\n{result}"
        assert result.stdout == "", result.stdout
        return result


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """certward's API over HTTP on loopback, for the whole package (see the docstring)."""
    with serving(tmp_path_factory.mktemp("cli-server") / "certward-data") as server:
        yield server


@contextmanager
def serving(data_dir: Path) -> Iterator[LiveServer]:
    """certward's API over ``data_dir``, on loopback while the ``with`` block runs."""
    settings = Settings.from_env(
        {"CERTWARD_DATA_DIR": str(data_dir), "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    clock = FixedClock(NOW)
    platform = open_platform(settings, clock=clock)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        create_app(platform.context),
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="certward-cli-api", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the certward API did not start for the CLI tests")
            time.sleep(0.02)
        yield LiveServer(
            url=f"http://127.0.0.1:{port}",
            admin_token=ADMIN_TOKEN,
            platform=platform,
            clock=clock,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()
        platform.close()


@pytest.fixture
def cli(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """Runs ``certward`` commands against the live server; Rich gets wide lines."""
    return cli_for(live_server, capsys, monkeypatch)


def cli_for(
    server: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """Runs ``certward`` commands against ``server``; Rich gets wide lines."""
    monkeypatch.setenv("COLUMNS", "300")
    return Cli(server=server, capsys=capsys, monkeypatch=monkeypatch)


# -- material -------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def partner_ca() -> TestCA:
    """The CA of a partner the apps call, issuing their client certificates."""
    return TestCA.root(name="certward CLI test partner CA")


@pytest.fixture(scope="package")
def tls_ca() -> TestCA:
    """An issuing intermediate under a root, as public CAs have, for TLS certificates."""
    return TestCA.root(name="certward CLI test TLS root").intermediate(
        name="certward CLI test TLS issuing CA"
    )


def client_leaf(ca: TestCA, common_name: str) -> IssuedCert:
    """A client certificate (``clientAuth``) valid around ``NOW``."""
    return ca.issue_leaf(common_name, eku=["clientAuth"])


def write(directory: Path, name: str, data: bytes) -> Path:
    """Write a test file and return its path."""
    path = directory / name
    path.write_bytes(data)
    return path
