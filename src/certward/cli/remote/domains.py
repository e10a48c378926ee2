"""``certward domain``: an environment's hostnames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final

import typer

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.options import AppOption, EnvOption
from certward.cli.remote.terminal import format_time, rows_table, stdout_console

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
@connected()
def domain_add(
    remote: Remote,
    hostname: HostnameArgument,
    app: AppOption,
    env: EnvOption,
    certificate: Annotated[
        str, typer.Option("--certificate", help="Id of one of the app's TLS certificates.")
    ],
) -> None:
    """Serve a custom hostname from the environment with one of the app's certificates."""
    with remote.connect() as api:
        body = api.add_custom_domain(app, env, hostname=hostname, certificate_id=certificate)
    remote.emit(
        body,
        lambda shown: stdout_console().print(
            rows_table(_DOMAIN_COLUMNS, [_domain_row(shown)], title="Added")
        ),
    )


@domain_group.command("list")
@connected()
def domain_list(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """The default hostname, then the custom domains."""
    with remote.connect() as api:
        domains = api.list_domains(app, env)
    remote.emit_rows(domains, _DOMAIN_COLUMNS, _domain_row, empty="No hostnames.")


@domain_group.command("remove")
@connected()
def domain_remove(
    remote: Remote,
    hostname: HostnameArgument,
    app: AppOption,
    env: EnvOption,
) -> None:
    """Stop serving a custom hostname."""
    with remote.connect() as api:
        api.remove_custom_domain(app, env, hostname)
    remote.say(f"{hostname} is no longer served by {app}/{env}.")
