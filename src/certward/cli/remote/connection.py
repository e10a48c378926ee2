"""The connection of a remote command to its server: refusals and failures end it with exit 1.

`connected` gives a command its ``--server``/``CERTWARD_SERVER``, ``--token``/
``CERTWARD_TOKEN`` and ``--json`` options, declared once here and accepted after the
subcommand as each command's own; the command receives them as one `Remote`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

import typer
from rich.text import Text

from certward.api_client import DEFAULT_SERVER, ApiClient, ApiClientError, ApiProblem, JsonObject
from certward.cli.remote.options import JsonOption, ServerOption, TokenOption
from certward.cli.remote.terminal import (
    print_line,
    print_problem,
    show_answer,
    show_rows,
    stderr_console,
    usage_error,
)

P = ParamSpec("P")
# Each option a remote command may take from `connected`: its default and its declaration.
_SHARED: dict[str, tuple[object, object]] = {
    "server": (DEFAULT_SERVER, ServerOption),
    "token": (None, TokenOption),
    "as_json": (False, JsonOption),
}


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Remote:
    """The server a command drives, its token, and whether it answers in JSON."""

    server: str
    token: str | None
    as_json: bool
    needs_token: bool

    def connect(self) -> AbstractContextManager[ApiClient]:
        """An `ApiClient` for the command; refusals and connection failures exit 1."""
        return connect(self.server, self.token, as_json=self.as_json, needs_token=self.needs_token)

    def emit(self, data: Any, render: Callable[[Any], None]) -> None:
        """The API's answer as JSON (``--json``), or drawn by ``render`` for people."""
        show_answer(data, self.as_json, render)

    def say(self, message: str) -> None:
        """A line for people after a change the API answers with nothing (none with ``--json``)."""
        if not self.as_json:
            print_line(message)

    def emit_rows(
        self,
        items: Sequence[JsonObject],
        columns: Sequence[str],
        row: Callable[[JsonObject], Sequence[Any]],
        *,
        empty: str,
    ) -> None:
        """A listing as JSON (``--json``), or a table of one ``row`` an item (else ``empty``)."""
        show_rows(items, self.as_json, columns, row, empty=empty)


def connected(
    *, token: bool = True, json: bool = True
) -> Callable[[Callable[Concatenate[Remote, P], None]], Callable[P, None]]:
    """Add ``--server``, ``--token`` (unless ``token`` is false: public reads) and
    ``--json`` (unless ``json`` is false: raw downloads) after a command's own options,
    and hand the command a `Remote` made of them as its first argument."""
    names = ["server", *(["token"] if token else []), *(["as_json"] if json else [])]
    shared = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_SHARED[name][0],
            annotation=_SHARED[name][1],
        )
        for name in names
    ]

    def decorate(command: Callable[Concatenate[Remote, P], None]) -> Callable[P, None]:
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())[1:]  # the first is the Remote

        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            remote = Remote(
                server=str(kwargs.pop("server")),
                token=_text(kwargs.pop("token", None)),
                as_json=bool(kwargs.pop("as_json", False)),
                needs_token=token,
            )
            command(remote, *args, **kwargs)

        parameters = [*own, *shared]
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters} | {
            "return": signature.return_annotation
        }
        return run

    return decorate


def _text(value: object) -> str | None:
    return None if value is None else str(value)
