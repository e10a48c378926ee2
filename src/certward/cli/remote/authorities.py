"""``certward authority``: CA certificates an environment trusts for the partners it calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from certward.api_client import DEFAULT_SERVER, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.local_files import read_upload
from certward.cli.remote.options import (
    AppOption,
    EnvOption,
    JsonOption,
    ServerOption,
    TokenOption,
    input_file,
)
from certward.cli.remote.terminal import (
    emit_json,
    format_time,
    print_details,
    print_line,
    print_warnings,
    rows_table,
    show_rows,
    stdout_console,
)

authority_group = typer.Typer(
    help="CA certificates an environment trusts for the partners it calls (staged).",
    no_args_is_help=True,
)


def _print_authority(body: JsonObject, title: str) -> None:
    _print_stored_certificates(body.get("certificates") or [], title)
    print_details("", [("id", body.get("id")), ("state", body.get("state"))])
    print_warnings(body)


def _print_stored_certificates(certificates: Sequence[Any], title: str) -> None:
    stdout_console().print(
        rows_table(
            ("subject", "valid until", "SHA-256"),
            [
                (c.get("subject"), format_time(c.get("not_after")), c.get("sha256_fingerprint"))
                for c in certificates
                if isinstance(c, dict)
            ],
            title=title,
        )
    )


@authority_group.command("add")
def authority_add(
    app: AppOption,
    env: EnvOption,
    file: Annotated[Path, input_file("PEM with a root and/or intermediates.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload CA certificates (judged as authorities; staged until restart)."""
    with connect(server, token, as_json=as_json) as api:
        body = api.upload_authority(app, env, file=read_upload(file))
    if as_json:
        emit_json(body)
        return
    _print_authority(body, f"Staged certificate authority {body.get('id')}")


@authority_group.command("list")
def authority_list(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The environment's certificate authorities."""
    with connect(server, token, as_json=as_json) as api:
        authorities = api.list_authorities(app, env)
    show_rows(
        authorities,
        as_json,
        ("id", "certificates", "state", "created"),
        lambda a: (
            a.get("id"),
            [c.get("subject") for c in a.get("certificates") or [] if isinstance(c, dict)],
            a.get("state"),
            format_time(a.get("created_at")),
        ),
        empty=f"{app}/{env} has no certificate authorities.",
    )


@authority_group.command("show")
def authority_show(
    authority_id: Annotated[str, typer.Argument(help="The authority's id.")],
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One certificate authority and its certificates."""
    with connect(server, token, as_json=as_json) as api:
        body = api.get_authority(app, env, authority_id)
    if as_json:
        emit_json(body)
        return
    _print_authority(body, f"Certificate authority {authority_id}")


@authority_group.command("delete")
def authority_delete(
    authority_id: Annotated[str, typer.Argument(help="The authority's id.")],
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a certificate authority (staged until restart)."""
    with connect(server, token, as_json=as_json) as api:
        api.delete_authority(app, env, authority_id)
    if not as_json:
        print_line(f"Removed certificate authority {authority_id} (staged until restart).")
