"""The web console in process (Starlette ``TestClient``) and served for a real browser.

``console`` opens a fresh installation (SQLite in ``tmp_path``, a `FixedClock` at the
factory's ``NOW``) and yields a `ConsoleClient` that keeps the cookies and the page's
CSRF token like a browser does::

    def test_something(console: ConsoleClient) -> None:
        console.sign_in()
        page = console.get("/apps")
        console.post("/apps", {"name": "shop", "plan": "licensed"})

``live_console`` serves the same application with uvicorn on a free loopback port (in a
thread) for the browser tests; ``browser`` is Debian's chromium driven by Playwright,
launched once per session. Without chromium the browser tests are skipped, and fail
when ``CI=true`` (``tests.material.tools.require_tool``).

Screenshots go to ``$CERTWARD_TEST_ARTIFACTS/console/`` when that variable is set, else
to ``test-artifacts/console/`` under pytest's base temporary directory; the path is
printed at the end of the run.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from certward.api import create_app
from certward.authorization import Principal
from certward.clock import FixedClock
from certward.platform import Platform, open_platform
from certward.services import apps
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.api.conftest import UNLIMITED_UPLOADS
from tests.material import tools
from tests.material.factory import NOW

ADMIN_TOKEN = "cw_console-test-admin-token-0123456789"  # a test credential
ARTIFACTS_VARIABLE = "CERTWARD_TEST_ARTIFACTS"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
OPERATOR = Principal(token_id=None, role=Role.ADMIN)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_screenshot_root: list[Path] = []


def open_installation(
    data_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[Platform, FixedClock]:
    """A fresh installation in ``data_dir``; ``environ`` adds ``CERTWARD_*`` settings."""
    settings = Settings.from_env(
        {
            "CERTWARD_DATA_DIR": str(data_dir),
            "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
            **UNLIMITED_UPLOADS,
            **(environ or {}),
        }
    )
    clock = FixedClock(NOW)
    return open_platform(settings, clock=clock), clock


@dataclass(slots=True, kw_only=True)
class ConsoleClient:
    """A browser-like client: cookies kept, the CSRF token of the last page reused."""

    client: TestClient = field(repr=False)
    platform: Platform = field(repr=False)
    clock: FixedClock
    csrf_token: str = field(default="", repr=False)

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self._keep(self.client.get(path, **options))

    def post(
        self,
        path: str,
        data: Mapping[str, str | Sequence[str]] | None = None,
        *,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        csrf: str | None = None,
        **options: Any,
    ) -> httpx.Response:
        """POST a form with this session's CSRF token (``csrf`` overrides it)."""
        if not self.csrf_token:
            self.get("/sign-in")
        form: dict[str, Any] = {"csrf": self.csrf_token if csrf is None else csrf}
        form.update(data or {})
        return self._keep(self.client.post(path, data=form, files=files, **options))

    def sign_in(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        self.get("/sign-in")
        response = self.post("/sign-in", {"token": token, "next": "/apps"})
        assert response.status_code == 200, response.text
        return response

    def create_app(self, name: str, plan: Plan = Plan.LICENSED) -> None:
        apps.create_app(self.platform.context, OPERATOR, name=name, plan=plan)

    def create_environment(self, app: str, name: str) -> None:
        apps.create_environment(
            self.platform.context,
            OPERATOR,
            app,
            name=name,
            upstream=f"http://{app}.backend.test:8080",
        )

    def _keep(self, response: httpx.Response) -> httpx.Response:
        found = (
            _CSRF.search(response.text)
            if "html" in response.headers.get("content-type", "")
            else None
        )
        if found:
            self.csrf_token = found.group(1)
        return response


@contextmanager
def console_client(
    data_dir: Path, environ: Mapping[str, str] | None = None
) -> Iterator[ConsoleClient]:
    """A `ConsoleClient` on a fresh installation, closed afterwards."""
    platform, clock = open_installation(data_dir, environ)
    try:
        client = TestClient(create_app(platform.context), base_url="http://certward.test")
        with client:
            yield ConsoleClient(client=client, platform=platform, clock=clock)
    finally:
        platform.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleClient]:
    with console_client(tmp_path / "certward-data") as client:
        yield client


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveConsole:
    """The console served over HTTP on a loopback port."""

    base_url: str
    platform: Platform = field(repr=False)
    clock: FixedClock

    def create_app(self, name: str, plan: Plan = Plan.LICENSED) -> None:
        apps.create_app(self.platform.context, OPERATOR, name=name, plan=plan)

    def create_environment(self, app: str, name: str) -> None:
        apps.create_environment(
            self.platform.context,
            OPERATOR,
            app,
            name=name,
            upstream=f"http://{app}.backend.test:8080",
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def live_console(tmp_path: Path) -> Iterator[LiveConsole]:
    """uvicorn in a thread, stopped (and the installation closed) after the test."""
    platform, clock = open_installation(tmp_path / "certward-data")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform.context),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
        )
    )
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the console's uvicorn server did not start")
            time.sleep(0.02)
        yield LiveConsole(base_url=f"http://127.0.0.1:{port}", platform=platform, clock=clock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        platform.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright (never a downloaded browser)."""
    executable = tools.require_tool("chromium")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only browser tests

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save screenshots (see the module docstring)."""
    configured = os.environ.get(ARTIFACTS_VARIABLE, "").strip()
    root = Path(configured) if configured else tmp_path_factory.getbasetemp() / "test-artifacts"
    path = root / "console"
    path.mkdir(parents=True, exist_ok=True)
    _screenshot_root.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in _screenshot_root[:1]:
        shots = len(list(path.glob("*.png")))
        terminalreporter.write_line(f"console screenshots ({shots}): {path}")
