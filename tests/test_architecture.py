"""Import rules that keep the pure core pure (see docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "certward"
PURE_PACKAGES = ["pki"]
PURE_MODULES = ["ip_ranges.py"]
IO_MODULES = {
    "os",
    "pathlib",
    "io",
    "socket",
    "ssl",
    "subprocess",
    "shutil",
    "tempfile",
    "time",
    "urllib",
    "http",
    "httpx",
    "requests",
    "certifi",
    "sqlalchemy",
    "alembic",
    "certward.db",
    "certward.model",
    "certward.settings",
    "certward.clock",
    "certward.trust",
    "certward.cli.app",
}
PURE_EXCEPTIONS = {"urllib.parse"}  # string functions only
DATA_PLANE_RUNNERS = {"gateway_runner.py"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    [p for package in PURE_PACKAGES for p in modules(PACKAGE / package)]
    + [PACKAGE / name for name in PURE_MODULES],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_pure_modules_import_nothing_that_does_io(path: Path) -> None:
    """certward.pki takes bytes and returns values, and certward.ip_ranges text: no files,
    network, clock or database."""
    forbidden = {
        name
        for name in imported_names(path)
        if name not in PURE_EXCEPTIONS
        and any(name == io or name.startswith(io + ".") for io in IO_MODULES)
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", modules(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_clock_module_reads_the_clock(path: Path) -> None:
    """datetime.now() and friends appear only in certward/clock.py."""
    if path.name == "clock.py":
        return
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [
        f"{node.func.value.id}.{node.func.attr}"  # type: ignore[attr-defined]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in {"datetime", "date", "time"}
    ]
    assert not calls, f"{path.name} reads the clock: {calls}"


@pytest.mark.parametrize(
    "path",
    [p for p in modules(PACKAGE / "dataplane") if p.name not in DATA_PLANE_RUNNERS],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_data_plane_never_reaches_into_the_database(path: Path) -> None:
    """certward.dataplane serves a DataPlaneState; only services/dataplane_feed builds it.

    The gateway's runner is the one exception: it opens the installation and hands
    each worker a follower of the feed.
    """
    forbidden = {
        name
        for name in imported_names(path)
        if any(
            name == banned or name.startswith(banned + ".")
            for banned in ("certward.model", "certward.db", "certward.services", "sqlalchemy")
        )
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


@pytest.mark.parametrize(
    "path",
    [
        PACKAGE / "dataplane" / name
        for name in ("state.py", "access.py", "nginx.py", "request_target.py", "caller_headers.py")
    ],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_data_plane_rules_are_pure(path: Path) -> None:
    """The state, the decision and the nginx rendering do no IO."""
    forbidden = {
        name
        for name in imported_names(path)
        if name not in PURE_EXCEPTIONS
        and any(name == io or name.startswith(io + ".") for io in IO_MODULES)
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


def test_no_grab_bag_modules() -> None:
    """Modules are named after what they do, never utils/helpers/manager."""
    vague = {"utils.py", "helpers.py", "manager.py", "misc.py", "common.py"}
    assert not [p for p in modules(PACKAGE) if p.name in vague]
