"""The options and arguments the remote commands share (connection, output, names)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from certward.cli.remote.terminal import usage_error

ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="CERTWARD_SERVER",
        help="URL of the certward server.",
        rich_help_panel="Connection",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CERTWARD_TOKEN",
        help="Bearer token (prefer CERTWARD_TOKEN: arguments show in process lists).",
        show_default=False,
        rich_help_panel="Connection",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON (errors: problem JSON on stderr).")
]
AppOption = Annotated[str, typer.Option("--app", help="App name.", show_default=False)]
EnvOption = Annotated[str, typer.Option("--env", help="Environment name.", show_default=False)]
OptionalAppOption = Annotated[
    str | None, typer.Option("--app", help="Only this app.", show_default=False)
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="File holding the password (one trailing line break ignored).",
        show_default=False,
    ),
]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
IpRangeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ip-range", help="IPv4 or IPv6 network in CIDR form (repeatable).", show_default=False
    ),
]
NoIpRangesOption = Annotated[bool, typer.Option("--no-ip-ranges", help="Remove every IP range.")]


def input_file(help_text: str) -> Any:
    """A ``typer.Option`` for a file to upload: it must exist and be readable (else exit 2)."""
    return typer.Option(
        exists=True, dir_okay=False, readable=True, help=help_text, show_default=False
    )


def limit_option(most: int) -> Any:
    """A ``typer.Option`` for ``--limit``: 1 to ``most`` items (the API gives 100 unless told)."""
    return typer.Option(
        "--limit", min=1, max=most, help="At most this many (API default 100).", show_default=False
    )


ProfileArgument = Annotated[str, typer.Argument(help="The profile's name.")]


def new_ip_ranges(ip_range: list[str] | None, no_ip_ranges: bool) -> list[str]:
    """The ranges that replace a profile's: ``--ip-range`` given, or ``--no-ip-ranges``
    (exactly one of them, else exit 2)."""
    if bool(ip_range) == no_ip_ranges:
        raise usage_error("give the new ranges with --ip-range, or --no-ip-ranges")
    return ip_range or []
