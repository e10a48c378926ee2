"""``certward changes``, ``restart``, ``rollback`` and ``versions``: staged and applied state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final

import typer
from rich.text import Text

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.options import AppOption, EnvOption
from certward.cli.remote.terminal import (
    NOTHING,
    format_time,
    plain_text,
    print_line,
    print_warnings,
    rows_table,
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


@connected()
def changes_command(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """What a restart would change: the applied version against the staged state."""
    with remote.connect() as api:
        body = api.changes(app, env)
    remote.emit(body, _print_changes)


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


@connected()
def restart_command(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """Apply every staged change as a new version (everything is judged again first)."""
    with remote.connect() as api:
        body = api.restart(app, env)
    remote.emit(body, lambda shown: _print_applied(shown, app, env))


@connected()
def rollback_command(
    remote: Remote,
    app: AppOption,
    env: EnvOption,
    to: Annotated[int, typer.Option("--to", min=1, help="The version to go back to.")],
) -> None:
    """Apply an earlier version's content again, as a new version."""
    with remote.connect() as api:
        body = api.rollback(app, env, version=to)
    remote.emit(body, lambda shown: _print_applied(shown, app, env))


@connected()
def versions_command(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """The applied versions, newest first."""
    with remote.connect() as api:
        versions = api.versions(app, env)
    remote.emit_rows(
        versions,
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
