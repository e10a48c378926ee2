"""``certward authority``: CA certificates an environment trusts for the partners it calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import read_upload
from certward.cli.remote.options import AppOption, EnvOption, input_file
from certward.cli.remote.terminal import (
    format_time,
    print_details,
    print_warnings,
    rows_table,
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
@connected()
def authority_add(
    remote: Remote,
    app: AppOption,
    env: EnvOption,
    file: Annotated[Path, input_file("PEM with a root and/or intermediates.")],
) -> None:
    """Upload CA certificates (judged as authorities; staged until restart)."""
    with remote.connect() as api:
        body = api.upload_authority(app, env, file=read_upload(file))
    remote.emit(
        body,
        lambda shown: _print_authority(shown, f"Staged certificate authority {shown.get('id')}"),
    )


@authority_group.command("list")
@connected()
def authority_list(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """The environment's certificate authorities."""
    with remote.connect() as api:
        authorities = api.list_authorities(app, env)
    remote.emit_rows(
        authorities,
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
@connected()
def authority_show(
    remote: Remote,
    authority_id: Annotated[str, typer.Argument(help="The authority's id.")],
    app: AppOption,
    env: EnvOption,
) -> None:
    """One certificate authority and its certificates."""
    with remote.connect() as api:
        body = api.get_authority(app, env, authority_id)
    remote.emit(
        body, lambda shown: _print_authority(shown, f"Certificate authority {authority_id}")
    )


@authority_group.command("delete")
@connected()
def authority_delete(
    remote: Remote,
    authority_id: Annotated[str, typer.Argument(help="The authority's id.")],
    app: AppOption,
    env: EnvOption,
) -> None:
    """Remove a certificate authority (staged until restart)."""
    with remote.connect() as api:
        api.delete_authority(app, env, authority_id)
    remote.say(f"Removed certificate authority {authority_id} (staged until restart).")
