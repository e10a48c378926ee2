"""What the remote commands show on the terminal: tables, details, problems, questions.

Names and values from the server are printed as plain text, never as Rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certward.api_client import ApiProblem, JsonObject

NOTHING: Final = "—"


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=False)


def print_line(message: str, style: str | None = None) -> None:
    stdout_console().print(Text(message, style=style or ""))


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def show_answer(body: Any, as_json: bool, printer: Callable[[Any], None]) -> None:
    """The API's answer as JSON for scripts, or drawn by ``printer`` for people."""
    if as_json:
        emit_json(body)
    else:
        printer(body)


def usage_error(message: str) -> typer.Exit:
    """Say what is wrong with the command line; the caller raises the result (exit 2)."""
    stderr_console().print(Text(f"Error: {message}", style="red"))
    return typer.Exit(2)


def format_time(value: Any) -> str:
    """An API timestamp as ``YYYY-MM-DD HH:MM`` (UTC, as the API gives it)."""
    if not isinstance(value, str):
        return NOTHING
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def cell_text(value: Any) -> Text:
    """A value as table text (never Rich markup: names may hold brackets)."""
    if value is None or value in ("", []):
        return Text(NOTHING, style="dim")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list | tuple):
        return Text(", ".join(plain_text(v) for v in value))
    return Text(plain_text(value))


def plain_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain_text(v) for v in value) or NOTHING
    return NOTHING if value is None else str(value)


def rows_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "") -> Table:
    table = Table(
        box=box.SIMPLE,
        pad_edge=False,
        title=Text(title, style="bold") if title else None,
        title_justify="left",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(v if isinstance(v, Text) else cell_text(v) for v in row))
    return table


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    if not rows:
        print_line(empty)
        return
    stdout_console().print(rows_table(columns, rows))


def show_rows(
    items: Sequence[JsonObject],
    as_json: bool,
    columns: Sequence[str],
    row: Callable[[JsonObject], Sequence[Any]],
    *,
    empty: str,
) -> None:
    """A listing: the API's JSON for scripts, or a table of one ``row`` an item for people
    (``empty`` when there is none)."""
    if as_json:
        emit_json(items)
        return
    print_rows(columns, [row(item) for item in items], empty=empty)


def print_details(title: str, rows: Iterable[tuple[str, Any]]) -> None:
    table = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    table.add_column("field", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else cell_text(value))
    console = stdout_console()
    if title:
        console.print(Text(title, style="bold"))
    console.print(table)


def print_warnings(body: JsonObject) -> None:
    """The problems an accepted upload or restart came back with (warnings)."""
    problems = body.get("problems")
    if isinstance(problems, list):
        print_problem_list(stdout_console(), problems)


def print_problem_list(console: Console, problems: Sequence[Any], said: str = "") -> None:
    """Each problem on a line: severity, code, and the message unless ``said`` already."""
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        severity = str(problem.get("severity", "error"))
        style = "red" if severity == "error" else "yellow"
        line = Text(f"  {severity} ", style=f"bold {style}")
        line.append(f"[{problem.get('code', '?')}]", style=style)
        message = str(problem.get("message", ""))
        if message and message != said:
            line.append(f" {message}")
        if problem.get("certificate"):
            line.append(f" ({problem['certificate']})", style="dim")
        console.print(line)


def print_problem(problem: ApiProblem, as_json: bool) -> None:
    """A refusal on standard error: code, title and detail, every problem, extra members."""
    if as_json:
        typer.echo(json.dumps(problem.body, indent=2, ensure_ascii=False), err=True)
        return
    console = stderr_console()
    head = Text(f"Refused ({problem.status} {problem.code}): ", style="bold red")
    head.append(problem.title, style="red")
    console.print(head)
    if problem.detail:
        console.print(Text(f"  {problem.detail}"))
    print_problem_list(console, problem.problems, said=problem.detail)
    for name, value in problem.extra.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                console.print(Text(f"  {name}: {plain_text(item)}"))
        else:
            console.print(Text(f"  {name}: {plain_text(value)}"))
    if problem.status == 401:
        console.print(Text("  Check the token given with --token or CERTWARD_TOKEN.", style="dim"))


def ask_confirmation(question: str, yes: bool) -> None:
    """Ask before destroying something rollback cannot bring back; scripts pass ``--yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise usage_error(f"{question} Add --yes to confirm without a question.")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
