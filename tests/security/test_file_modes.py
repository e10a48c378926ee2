"""Files the CLI writes are the owner's alone.

Replays: ``certward db upgrade`` created the SQLite database 0644 (world-readable
sealed secrets, token hashes and audit trail) under the usual umask 022, since only
``certward serve`` set umask 077.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from certward import platform
from certward.cli import app as cli
from certward.cli import material, operator
from certward.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_db_upgrade_creates_the_database_0600_under_umask_022(tmp_path: Path) -> None:
    """A real ``certward db upgrade`` started with umask 022: database and WAL 0600."""
    data_dir = tmp_path / "certward-data"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CERTWARD_")}
    environ["CERTWARD_DATA_DIR"] = str(data_dir)
    environ["PYTHONPATH"] = str(Path(cli.__file__).parents[2])
    result = subprocess.run(
        [sys.executable, "-m", "certward", "db", "upgrade"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,  # the umask of a login shell
        check=False,
    )
    assert result.returncode == 0, result.stderr
    files = sorted(data_dir.glob("certward.db*"))
    assert data_dir / "certward.db" in files
    for path in files:
        assert _mode(path) == 0o600, f"{path.name} is {_mode(path):04o}"
    assert _mode(data_dir) == 0o700


def test_a_database_file_outside_the_data_directory_is_created_0600(
    tmp_path: Path,
) -> None:
    """Even called as a library under umask 022, the upgrade creates the file 0600."""
    database = tmp_path / "elsewhere" / "certward.db"
    database.parent.mkdir()
    settings = Settings.from_env(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "data"),
            "CERTWARD_DATABASE_URL": f"sqlite:///{database}",
        }
    )
    previous = os.umask(0o022)
    try:
        platform.upgrade_schema(settings)
    finally:
        os.umask(previous)
    assert _mode(database) == 0o600


@pytest.mark.parametrize(
    "argv",
    [
        ["db", "upgrade"],
        ["keys", "rotate"],
        ["ca", "show"],
        ["convert", __file__, "--to", "pem", "--out", "x.pem"],
    ],
)
def test_every_cli_command_runs_under_umask_077(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The umask is set once at the CLI's entry point, for every command, and restored."""
    seen: list[int] = []

    def spy(*_args: object, **_kwargs: object) -> None:
        current = os.umask(0)
        os.umask(current)
        seen.append(current)
        raise SystemExit(0)

    monkeypatch.setattr(operator, "operator_settings", spy)
    monkeypatch.setattr(material, "read_secret", spy)
    previous = os.umask(0o022)
    try:
        cli.main(argv)
        after = os.umask(0o022)
    finally:
        os.umask(previous)
    assert seen == [0o077]
    assert after == 0o022
