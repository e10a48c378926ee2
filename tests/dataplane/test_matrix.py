"""The behaviour matrix (`tests.dataplane.matrix`) against every data plane.

To add a data plane, implement `DataPlaneUnderTest` (a class taking a `PlaneSetup`) and
add one line to `DATA_PLANES`; `GatewayDataPlane` adapts the embedded gateway
(``"gateway": GatewayDataPlane``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from certward.dataplane.nginx_agent import reload, wait_until_serving
from certward.dataplane.nginx_directory import NginxDirectory, NginxOptions
from certward.dataplane.nginx_install import InstallOutcome, install
from certward.dataplane.state import DataPlaneState
from tests.dataplane.local_policy import LOCAL_POLICY
from tests.dataplane.matrix import (
    CASES,
    Case,
    DataPlaneFactory,
    Endpoints,
    Env,
    LoggedDecision,
    MatrixPki,
    PlaneSetup,
    check_case_against_decide,
    free_port,
    run_case,
)
from tests.gateway.harness import running_gateway
from tests.material.tools import require_tool

STOP_SECONDS = 10.0


class NginxDataPlane:
    """Debian's nginx in the foreground (``-g 'daemon off;'``) on free loopback ports,
    configured by `certward.dataplane.nginx_agent` exactly as ``certward nginx sync`` does it,
    reloaded with SIGHUP and killed at the end. Its JSON access log gives the decisions.
    """

    def __init__(self, setup: PlaneSetup) -> None:
        self.setup = setup
        self.binary = require_tool("nginx")
        self.directory = NginxDirectory(setup.workdir / "nginx")
        self.process: subprocess.Popen[bytes] | None = None
        self.options: NginxOptions | None = None

    def start(self, state: DataPlaneState) -> Endpoints:
        failures: list[str] = []
        for _ in range(3):  # a free port may be taken before nginx binds it
            https_port, http_port = free_port(), free_port()
            options = NginxOptions(
                https_listen=f"127.0.0.1:{https_port}",
                http_listen=f"127.0.0.1:{http_port}",
                acme_upstream=self.setup.acme_upstream,
                nginx=self.binary,
                policy=LOCAL_POLICY,
            )
            installed = install(state, self.directory, options)
            assert installed.outcome is not InstallOutcome.REJECTED, installed.problem
            assert not installed.skipped, installed.skipped
            output = self.setup.workdir / "nginx.out"
            with output.open("ab") as sink:
                self.process = subprocess.Popen(
                    [
                        self.binary,
                        "-c",
                        str(self.directory.config),
                        "-p",
                        f"{self.directory.root}/",
                        "-g",
                        "daemon off;",
                    ],
                    stdout=sink,
                    stderr=sink,
                )
            if wait_until_serving(options.http_listen, state.version, attempts=100):
                self.options = options
                return Endpoints(https_port=https_port, http_port=http_port)
            failures.append(output.read_text(errors="replace")[-2000:])
            self._terminate()
        raise AssertionError("nginx did not start:\n" + "\n".join(failures))

    def update(self, state: DataPlaneState) -> None:
        assert self.options is not None
        assert self.process is not None
        installed = install(state, self.directory, self.options)
        assert installed.outcome is not InstallOutcome.REJECTED, installed.problem
        if installed.outcome in (InstallOutcome.UNCHANGED, InstallOutcome.CERTIFICATES):
            return  # certificates are read at every handshake: nothing to reload
        old_workers = self._workers()
        assert reload(self.directory), "nginx is not running"
        assert wait_until_serving(self.options.http_listen, state.version), "no reload"
        # Old workers stop accepting at once and exit when their connections close.
        waiter = threading.Event()
        for _ in range(int(STOP_SECONDS / 0.05)):
            if not old_workers & self._workers():
                return
            waiter.wait(0.05)
        raise AssertionError(f"old nginx workers {old_workers & self._workers()} linger")

    def stop(self) -> None:
        self._terminate()

    def decisions(self) -> list[LoggedDecision]:
        try:
            lines = self.directory.access_log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[LoggedDecision] = []
        for line in lines:
            record = json.loads(line)
            if record.get("listener") == "https":
                out.append(
                    LoggedDecision(
                        host=record["host"],
                        path=record["path"],
                        ip=record["ip"],
                        decision=record["decision"],
                        rule=record["rule"],
                    )
                )
        return out

    def _workers(self) -> set[int]:
        return set() if self.process is None else children_of(self.process.pid)

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        workers = children_of(process.pid)
        process.terminate()  # SIGTERM: nginx's fast shutdown, workers included
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def children_of(parent: int) -> set[int]:
    """The child processes of ``parent``, from /proc."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.add(int(entry.name))
    return children


class GatewayDataPlane:
    """The embedded gateway in a thread of this process (``tests.gateway.harness``),
    answering ACME challenges from the same tokens the fake API serves."""

    def __init__(self, setup: PlaneSetup) -> None:
        self.setup = setup
        self.stack = contextlib.ExitStack()
        self.running: Any = None

    def start(self, state: DataPlaneState) -> Endpoints:
        self.running = self.stack.enter_context(running_gateway(state))
        self.running.source.challenges = self.setup.challenges
        return Endpoints(https_port=self.running.https_port, http_port=self.running.http_port)

    def update(self, state: DataPlaneState) -> None:
        self.running.update(state)

    def stop(self) -> None:
        self.stack.close()


DATA_PLANES: dict[str, DataPlaneFactory] = {
    "nginx": NginxDataPlane,
    "gateway": GatewayDataPlane,
}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_every_case_expects_what_decide_says(case: Case, matrix_pki: MatrixPki) -> None:
    """The cases are checked against the pure specification before any data plane."""
    env = Env(
        pki=matrix_pki,
        upstreams=dict.fromkeys(("app", "other", "acme"), "http://127.0.0.1:9"),
    )
    check_case_against_decide(case, env)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("plane", sorted(DATA_PLANES))
def test_data_plane_behaves_as_specified(
    plane: str, case: Case, matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    run_case(DATA_PLANES[plane], case, matrix_pki, tmp_path)
