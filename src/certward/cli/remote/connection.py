"""The connection of a remote command to its server: refusals and failures end it with exit 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.text import Text

from certward.api_client import ApiClient, ApiClientError, ApiProblem
from certward.cli.remote.terminal import print_problem, stderr_console, usage_error


@contextmanager
def connect(
    server: str, token: str | None, *, as_json: bool = False, needs_token: bool = True
) -> Iterator[ApiClient]:
    """An `ApiClient` for the command; refusals and connection failures end it with exit 1."""
    secret = (token or "").strip()
    if needs_token and not secret:
        raise usage_error("give a token with --token or CERTWARD_TOKEN")
    try:
        with ApiClient(server, secret or None) as api:
            yield api
    except ApiProblem as problem:
        print_problem(problem, as_json)
        raise typer.Exit(1) from problem
    except ApiClientError as exc:
        stderr_console().print(Text(f"Error: {exc}", style="red"))
        raise typer.Exit(1) from exc
