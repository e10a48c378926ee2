"""The commands every kind of range profile has: create, list, show, update, delete.

``certward access-profile`` and ``certward ip-deny-profile`` both start with them; a
`RangeProfileCommands` says what one kind calls, shows and says, and
`add_range_profile_commands` adds the five commands to the kind's group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from certward.api_client import DEFAULT_SERVER, ApiClient, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.options import (
    AppOption,
    IpRangeOption,
    JsonOption,
    NoIpRangesOption,
    ProfileArgument,
    ServerOption,
    TokenOption,
    new_ip_ranges,
)
from certward.cli.remote.terminal import format_time, print_line, show_answer, show_rows


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeProfileCommands:
    """One kind of range profile on the command line.

    ``helps`` holds each command's help by command name; ``column`` and ``cell`` are the
    listing's third column (after the name and the IP ranges); ``show`` draws one
    profile. The five calls are the kind's `ApiClient` operations.
    """

    noun: str  # "access profile"
    helps: Mapping[str, str]
    column: str
    cell: Callable[[JsonObject], Any]
    show: Callable[[JsonObject], None]
    create: Callable[[ApiClient, str, str, Sequence[str]], JsonObject]
    listing: Callable[[ApiClient, str], list[JsonObject]]
    get: Callable[[ApiClient, str, str], JsonObject]
    update: Callable[[ApiClient, str, str, Sequence[str]], JsonObject]
    delete: Callable[[ApiClient, str, str], None]


def add_range_profile_commands(group: typer.Typer, kind: RangeProfileCommands) -> None:
    """Add ``create``, ``list``, ``show``, ``update`` and ``delete`` to ``group``."""

    @group.command("create", help=kind.helps["create"])
    def create(
        name: ProfileArgument,
        app: AppOption,
        ip_range: IpRangeOption = None,
        server: ServerOption = DEFAULT_SERVER,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with connect(server, token, as_json=as_json) as api:
            body = kind.create(api, app, name, ip_range or ())
        show_answer(body, as_json, kind.show)

    @group.command("list", help=kind.helps["list"])
    def listing(
        app: AppOption,
        server: ServerOption = DEFAULT_SERVER,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with connect(server, token, as_json=as_json) as api:
            profiles = kind.listing(api, app)
        show_rows(
            profiles,
            as_json,
            ("name", "IP ranges", kind.column, "updated"),
            lambda p: (
                p.get("name"),
                p.get("ip_ranges"),
                kind.cell(p),
                format_time(p.get("updated_at")),
            ),
            empty=f"App {app} has no {kind.noun}s.",
        )

    @group.command("show", help=kind.helps["show"])
    def show(
        name: ProfileArgument,
        app: AppOption,
        server: ServerOption = DEFAULT_SERVER,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with connect(server, token, as_json=as_json) as api:
            body = kind.get(api, app, name)
        show_answer(body, as_json, kind.show)

    @group.command("update", help=kind.helps["update"])
    def update(
        name: ProfileArgument,
        app: AppOption,
        ip_range: IpRangeOption = None,
        no_ip_ranges: NoIpRangesOption = False,
        server: ServerOption = DEFAULT_SERVER,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        ip_ranges = new_ip_ranges(ip_range, no_ip_ranges)
        with connect(server, token, as_json=as_json) as api:
            body = kind.update(api, app, name, ip_ranges)
        show_answer(body, as_json, kind.show)

    @group.command("delete", help=kind.helps["delete"])
    def delete(
        name: ProfileArgument,
        app: AppOption,
        server: ServerOption = DEFAULT_SERVER,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with connect(server, token, as_json=as_json) as api:
            kind.delete(api, app, name)
        if not as_json:
            print_line(f"Deleted {kind.noun} {name}.")
