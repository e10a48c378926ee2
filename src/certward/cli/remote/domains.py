"""``certward domain``: an environment's hostnames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final

import typer

from certward.api_client import DEFAULT_SERVER, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.options import AppOption, EnvOption, JsonOption, ServerOption, TokenOption
from certward.cli.remote.terminal import (
    emit_json,
    format_time,
    print_line,
    rows_table,
    show_rows,
    stdout_console,
)

domain_group = typer.Typer(help="An environment's hostnames (live).", no_args_is_help=True)
HostnameArgument = Annotated[str, typer.Argument(help="The hostname.")]


def _domain_row(domain: JsonObject) -> Sequence[Any]:
    certificate = domain.get("certificate")
    if not isinstance(certificate, dict):
        return (domain.get("hostname"), domain.get("kind"), None, None, None)
    return (
        domain.get("hostname"),
        domain.get("kind"),
        certificate.get("status"),
        format_time(certificate.get("not_after")),
        certificate.get("id"),
    )


_DOMAIN_COLUMNS: Final = ("hostname", "kind", "status", "valid until", "certificate")


@domain_group.command("add")
def domain_add(
    hostname: HostnameArgument,
    app: AppOption,
    env: EnvOption,
    certificate: Annotated[
        str, typer.Option("--certificate", help="Id of one of the app's TLS certificates.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve a custom hostname from the environment with one of the app's certificates."""
    with connect(server, token, as_json=as_json) as api:
        body = api.add_custom_domain(app, env, hostname=hostname, certificate_id=certificate)
    if as_json:
        emit_json(body)
        return
    stdout_console().print(rows_table(_DOMAIN_COLUMNS, [_domain_row(body)], title="Added"))


@domain_group.command("list")
def domain_list(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The default hostname, then the custom domains."""
    with connect(server, token, as_json=as_json) as api:
        domains = api.list_domains(app, env)
    show_rows(domains, as_json, _DOMAIN_COLUMNS, _domain_row, empty="No hostnames.")


@domain_group.command("remove")
def domain_remove(
    hostname: HostnameArgument,
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop serving a custom hostname."""
    with connect(server, token, as_json=as_json) as api:
        api.remove_custom_domain(app, env, hostname)
    if not as_json:
        print_line(f"{hostname} is no longer served by {app}/{env}.")
