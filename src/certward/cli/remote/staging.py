"""``certward changes``, ``restart``, ``rollback`` and ``versions``: staged and applied state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final

import typer
from rich.text import Text

from certward.api_client import DEFAULT_SERVER, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.options import AppOption, EnvOption, JsonOption, ServerOption, TokenOption
from certward.cli.remote.terminal import (
    NOTHING,
    emit_json,
    format_time,
    plain_text,
    print_line,
    print_warnings,
    rows_table,
    show_answer,
    show_rows,
    stdout_console,
)

_QUIET_KEYS: Final = frozenset({"id", "sha256_fingerprint", "certificates"})


def _state_summary(state: Any, keys: Iterable[str] | None = None) -> Text:
    """A staged or applied object in one cell: its fields (``keys``: only those)."""
    if not isinstance(state, dict):
        return Text(NOTHING, style="dim")
    if keys is None:
        keys = [k for k, v in state.items() if k not in _QUIET_KEYS and v not in (None, "", [])]
    lines = [
        f"{k}: {format_time(state.get(k)) if k.startswith('not_') else plain_text(state.get(k))}"
        for k in keys
    ]
    return Text("\n".join(lines) or NOTHING)


def _print_changes(body: JsonObject) -> None:
    applied = body.get("applied_version")
    head = (
        f"Applied: version {applied} ({str(body.get('applied_digest'))[:12]}…)"
        if applied is not None
        else "Applied: nothing yet"
    )
    print_line(f"{head}; staged: {str(body.get('staged_digest'))[:12]}…")
    changes = body.get("changes") or []
    if not changes:
        print_line("No pending changes.")
        return
    rows: list[Sequence[Any]] = []
    for change in changes:
        before, after = change.get("before"), change.get("after")
        keys = None
        if isinstance(before, dict) and isinstance(after, dict):
            keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
        rows.append(
            (
                change.get("change"),
                change.get("object_type"),
                change.get("object_id"),
                _state_summary(before, keys),
                _state_summary(after, keys),
            )
        )
    stdout_console().print(
        rows_table(("change", "object", "id", "current (applied)", "new (staged)"), rows)
    )
    print_line(f"{len(changes)} pending change(s); restart applies them.")


def changes_command(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """What a restart would change: the applied version against the staged state."""
    with connect(server, token, as_json=as_json) as api:
        body = api.changes(app, env)
    show_answer(body, as_json, _print_changes)


def _print_applied(body: JsonObject, app: str, env: str) -> None:
    if body.get("changed"):
        print_line(
            f"Applied version {body.get('version')} of {app}/{env} "
            f"(digest {body.get('digest')}) at {format_time(body.get('applied_at'))}.",
            style="bold green",
        )
    else:
        print_line(f"Nothing staged: version {body.get('version')} of {app}/{env} stays applied.")
    print_warnings(body)


def restart_command(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply every staged change as a new version (everything is judged again first)."""
    with connect(server, token, as_json=as_json) as api:
        body = api.restart(app, env)
    if as_json:
        emit_json(body)
        return
    _print_applied(body, app, env)


def rollback_command(
    app: AppOption,
    env: EnvOption,
    to: Annotated[int, typer.Option("--to", min=1, help="The version to go back to.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply an earlier version's content again, as a new version."""
    with connect(server, token, as_json=as_json) as api:
        body = api.rollback(app, env, version=to)
    if as_json:
        emit_json(body)
        return
    _print_applied(body, app, env)


def versions_command(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The applied versions, newest first."""
    with connect(server, token, as_json=as_json) as api:
        versions = api.versions(app, env)
    show_rows(
        versions,
        as_json,
        ("version", "current", "applied", "by token", "digest"),
        lambda v: (
            v.get("version"),
            Text("current", style="bold green") if v.get("current") else "",
            format_time(v.get("applied_at")),
            v.get("actor"),
            v.get("digest"),
        ),
        empty=f"{app}/{env} has no applied version yet.",
    )
