"""``certward access-profile``: who may call an app (IP ranges and client-CA trees)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from rich.tree import Tree

from certward.api_client import ACCESS_PROFILES, JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import read_upload
from certward.cli.remote.options import AppOption, ProfileArgument, input_file
from certward.cli.remote.range_profiles import RangeProfileCommands, add_range_profile_commands
from certward.cli.remote.terminal import (
    format_time,
    print_details,
    print_line,
    print_warnings,
    stdout_console,
    usage_error,
)

access_profile_group = typer.Typer(
    help="Who may call an app: IP ranges and client CAs (live).", no_args_is_help=True
)


def _ca_tree(certificates: Sequence[Any], title: str) -> Tree:
    tree = Tree(Text(title, style="bold"))

    def grow(branch: Tree, nodes: Sequence[Any]) -> None:
        for node in nodes:
            if not isinstance(node, dict):
                continue
            label = Text("✓ " if node.get("selected") else "  ", style="green")
            label.append(str(node.get("subject")))
            label.append(
                f"  until {format_time(node.get('not_after'))}  {node.get('sha256_fingerprint')}",
                style="dim",
            )
            grow(branch.add(label), node.get("children") or [])

    grow(tree, certificates)
    return tree


def _print_ca_tree(body: JsonObject) -> None:
    certificates = body.get("certificates") or []
    if not certificates:
        print_line("No client CAs: only the IP ranges let requests through.")
        return
    stdout_console().print(
        _ca_tree(certificates, "Client CAs (✓ selected; none selected: all accepted)")
    )


def _print_access_profile(body: JsonObject) -> None:
    print_details(
        f"Access profile {body.get('name')}",
        [
            ("IP ranges", body.get("ip_ranges")),
            ("created", format_time(body.get("created_at"))),
            ("updated", format_time(body.get("updated_at"))),
        ],
    )
    _print_ca_tree(body)


def _print_merged_ca_tree(body: JsonObject) -> None:
    _print_ca_tree(body)
    print_warnings(body)


def _count_nodes(nodes: Sequence[Any]) -> int:
    return sum(1 + _count_nodes(n.get("children") or []) for n in nodes if isinstance(n, dict))


ACCESS_PROFILE_COMMANDS = RangeProfileCommands(
    noun="access profile",
    paths=ACCESS_PROFILES,
    helps={
        "create": "Create an access profile.",
        "list": "The app's access profiles.",
        "show": "A profile's IP ranges and its client CAs as a tree.",
        "update": "Replace a profile's IP ranges (live).",
        "delete": "Delete a profile (refused while a path rule names it).",
    },
    column="client CAs",
    cell=lambda p: _count_nodes(p.get("certificates") or []),
    show=_print_access_profile,
)
add_range_profile_commands(access_profile_group, ACCESS_PROFILE_COMMANDS)


@access_profile_group.command("add-cas")
@connected()
def access_profile_add_cas(
    remote: Remote,
    name: ProfileArgument,
    app: AppOption,
    file: Annotated[Path, input_file("PEM with CA certificates, or one DER certificate.")],
) -> None:
    """Add client CA certificates to a profile (merged; shown as a tree)."""
    with remote.connect() as api:
        body = api.upload_client_cas(app, name, file=read_upload(file))
    remote.emit(body, _print_merged_ca_tree)


@access_profile_group.command("select-cas")
@connected()
def access_profile_select_cas(
    remote: Remote,
    name: ProfileArgument,
    app: AppOption,
    fingerprint: Annotated[
        list[str] | None,
        typer.Option(
            "--fingerprint", help="SHA-256 of an accepted CA (repeatable).", show_default=False
        ),
    ] = None,
    none: Annotated[
        bool, typer.Option("--none", help="Select none: every CA of the profile is accepted.")
    ] = False,
) -> None:
    """Choose the CAs whose client certificates are accepted (each with the CAs below it)."""
    if bool(fingerprint) == none:
        raise usage_error("give the accepted CAs with --fingerprint, or --none")
    with remote.connect() as api:
        body = api.select_client_cas(app, name, selected=fingerprint or [])
    remote.emit(body, _print_ca_tree)


@access_profile_group.command("remove-ca")
@connected()
def access_profile_remove_ca(
    remote: Remote,
    name: ProfileArgument,
    fingerprint: Annotated[str, typer.Argument(help="SHA-256 of the CA to remove.")],
    app: AppOption,
) -> None:
    """Remove one client CA from a profile."""
    with remote.connect() as api:
        api.remove_client_ca(app, name, fingerprint)
    remote.say(f"Removed the client CA {fingerprint} from {name}.")
