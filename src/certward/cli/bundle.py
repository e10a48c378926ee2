"""``certward bundle install``: a runtime host fetches its environment's bundle and unpacks it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from certward.cli.remote.local_files import read_secret
from certward.cli.remote.terminal import stderr_console, stdout_console, usage_error

bundle_app = typer.Typer(help="Runtime bundles.", no_args_is_help=True)


@bundle_app.command("install")
def bundle_install_command(
    into: Annotated[Path, typer.Option("--into", help="Directory the runtime reads.")],
    app_name: Annotated[str, typer.Option("--app", help="App name.")],
    environment: Annotated[str, typer.Option("--env", help="Environment name.")],
    version: Annotated[
        int | None, typer.Option("--version", help="A version (default: the applied one).")
    ] = None,
    server: Annotated[
        str, typer.Option("--server", envvar="CERTWARD_SERVER", help="certward's URL.")
    ] = "http://127.0.0.1:8700",
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding the token (or set CERTWARD_TOKEN)."),
    ] = None,
) -> None:
    """Download the environment's runtime bundle and install it in DIR, paths absolute."""
    from certward.bundles.install import BundleInstallError, fetch, install

    token = read_secret(token_file, False, "token")
    secret = token.decode().strip() if token else os.environ.get("CERTWARD_TOKEN", "").strip()
    if not secret:
        raise usage_error("give a token with --token-file or CERTWARD_TOKEN")
    try:
        installed = install(fetch(server, secret, app_name, environment, version), into)
    except BundleInstallError as exc:
        stderr_console().print(Text(f"Error: {exc}", style="red"))
        raise typer.Exit(1) from exc
    stdout_console().print(
        Text(
            f"Installed version {installed.version} of {installed.app}/{installed.environment} "
            f"({installed.client_certificates} client certificate(s)) in {installed.directory}."
        )
    )
