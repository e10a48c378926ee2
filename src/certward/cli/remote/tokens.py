"""``certward token`` and ``certward audit``: API tokens and the audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from certward.api_client import DEFAULT_SERVER
from certward.cli.remote.connection import connect
from certward.cli.remote.options import JsonOption, OptionalAppOption, ServerOption, TokenOption
from certward.cli.remote.terminal import (
    emit_json,
    format_time,
    print_details,
    print_line,
    show_rows,
    stderr_console,
)
from certward.vocabulary import Role

token_group = typer.Typer(help="API tokens.", no_args_is_help=True)


@token_group.command("create")
def token_create(
    role: Annotated[Role, typer.Option("--role", help="What the token may do.")],
    app: Annotated[
        str | None, typer.Option("--app", help="The app (all roles but admin).", show_default=False)
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", help="The environment (runtime tokens).", show_default=False),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Who or what uses it.")] = "",
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token; its value is shown this once."""
    with connect(server, token, as_json=as_json) as api:
        body = api.create_token(role=role.value, app=app, environment=env, description=description)
    if as_json:
        emit_json(body)
        return
    print_details(
        f"Token {body.get('id')}",
        [
            ("role", body.get("role")),
            ("app", body.get("app")),
            ("environment", body.get("environment")),
            ("description", body.get("description")),
        ],
    )
    stderr_console().print(Text("The token's value, shown this once:", style="bold"))
    typer.echo(str(body.get("token")))


@token_group.command("list")
def token_list(
    app: OptionalAppOption = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The tokens the caller may see (never their values)."""
    with connect(server, token, as_json=as_json) as api:
        tokens = api.list_tokens(app=app)
    show_rows(
        tokens,
        as_json,
        ("id", "role", "app", "environment", "description", "created", "revoked"),
        lambda t: (
            t.get("id"),
            t.get("role"),
            t.get("app"),
            t.get("environment"),
            t.get("description"),
            format_time(t.get("created_at")),
            format_time(t.get("revoked_at")) if t.get("revoked_at") else None,
        ),
        empty="No tokens.",
    )


@token_group.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (not its value).")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a token: it stops working at once."""
    with connect(server, token, as_json=as_json) as api:
        body = api.revoke_token(token_id)
    if as_json:
        emit_json(body)
        return
    print_line(f"Revoked token {body.get('id')} ({body.get('role')}).")


def audit_command(
    app: OptionalAppOption = None,
    before: Annotated[
        int | None,
        typer.Option("--before", min=1, help="Only events older than this id.", show_default=False),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=500,
            help="At most this many (API default 100).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Audit events, newest first."""
    with connect(server, token, as_json=as_json) as api:
        events = api.audit(app=app, before=before, limit=limit)
    show_rows(
        events,
        as_json,
        ("id", "at", "action", "object", "app", "by token"),
        lambda e: (
            e.get("id"),
            format_time(e.get("at")),
            e.get("action"),
            f"{e.get('object_type')} {e.get('object_id')}",
            e.get("app"),
            e.get("actor_token_id"),
        ),
        empty="No audit events.",
    )
