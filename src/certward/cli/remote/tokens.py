"""``certward token`` and ``certward audit``: API tokens and the audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.options import OptionalAppOption, limit_option
from certward.cli.remote.terminal import format_time, print_details, print_line, stderr_console
from certward.vocabulary import Role

token_group = typer.Typer(help="API tokens.", no_args_is_help=True)


@token_group.command("create")
@connected()
def token_create(
    remote: Remote,
    role: Annotated[Role, typer.Option("--role", help="What the token may do.")],
    app: Annotated[
        str | None, typer.Option("--app", help="The app (all roles but admin).", show_default=False)
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", help="The environment (runtime tokens).", show_default=False),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Who or what uses it.")] = "",
) -> None:
    """Create a token; its value is shown this once."""
    with remote.connect() as api:
        body = api.create_token(role=role.value, app=app, environment=env, description=description)
    remote.emit(body, _print_new_token)


def _print_new_token(body: JsonObject) -> None:
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
@connected()
def token_list(remote: Remote, app: OptionalAppOption = None) -> None:
    """The tokens the caller may see (never their values)."""
    with remote.connect() as api:
        tokens = api.list_tokens(app=app)
    remote.emit_rows(
        tokens,
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
@connected()
def token_revoke(
    remote: Remote,
    token_id: Annotated[str, typer.Argument(help="The token's id (not its value).")],
) -> None:
    """Revoke a token: it stops working at once."""
    with remote.connect() as api:
        body = api.revoke_token(token_id)
    remote.emit(
        body, lambda shown: print_line(f"Revoked token {shown.get('id')} ({shown.get('role')}).")
    )


@connected()
def audit_command(
    remote: Remote,
    app: OptionalAppOption = None,
    before: Annotated[
        int | None,
        typer.Option("--before", min=1, help="Only events older than this id.", show_default=False),
    ] = None,
    limit: Annotated[int | None, limit_option(500)] = None,
) -> None:
    """Audit events, newest first."""
    with remote.connect() as api:
        events = api.audit(app=app, before=before, limit=limit)
    remote.emit_rows(
        events,
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
