"""The connection options are declared once and every remote command takes them alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from certward.cli import remote as cli_remote
from certward.cli.app import app

REMOTE = Path(cli_remote.__file__).parent
CONNECTION = {
    "server": (["--server"], "CERTWARD_SERVER"),
    "token": (["--token"], "CERTWARD_TOKEN"),
    "as_json": (["--json"], None),
}


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    if hasattr(group, "commands"):
        return [
            found
            for name, sub in sorted(group.commands.items())
            for found in commands(sub, (*path, name))
        ]
    return [(" ".join(path), group)]


REMOTE_COMMANDS = [
    (name, command)
    for name, command in commands(typer.main.get_command(app))
    if command.callback.__module__.startswith("certward.cli.remote")
]


def test_the_remote_commands_are_found() -> None:
    assert len(REMOTE_COMMANDS) > 60


@pytest.mark.parametrize(("name", "command"), REMOTE_COMMANDS, ids=[n for n, _ in REMOTE_COMMANDS])
def test_connection_options_come_last_with_their_flags_and_variables(
    name: str, command: Any
) -> None:
    shared = [p for p in command.params if p.name in CONNECTION]
    assert command.params[-len(shared) :] == shared, name
    assert [p.name for p in shared] == [n for n in CONNECTION if n in {p.name for p in shared}]
    for param in shared:
        flags, variable = CONNECTION[param.name]
        assert list(param.opts) == flags
        assert param.envvar == variable


@pytest.mark.parametrize(
    "path",
    sorted(REMOTE.glob("*.py")),
    ids=lambda p: p.name,
)
def test_commands_leave_options_and_json_to_connection(path: Path) -> None:
    """``--server``/``--token``/``--json`` come from `connected`, JSON output from
    `Remote.emit`: no command module declares or branches on them itself."""
    if path.name in {"options.py", "connection.py", "terminal.py"}:
        return
    text = path.read_text()
    for declared in ("ServerOption", "TokenOption", "JsonOption", "emit_json(", "as_json"):
        assert declared not in text, f"{path.name} uses {declared}"
