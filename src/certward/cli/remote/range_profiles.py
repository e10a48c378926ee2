"""The commands every kind of range profile has: create, list, show, update, delete.

``certward access-profile`` and ``certward ip-deny-profile`` both start with them; a
`RangeProfileCommands` says where the API keeps one kind and what its commands show and
say, and `add_range_profile_commands` adds the five commands to the kind's group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer

from certward.api_client import JsonObject, RangeProfilePaths
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.options import (
    AppOption,
    IpRangeOption,
    NoIpRangesOption,
    ProfileArgument,
    new_ip_ranges,
)
from certward.cli.remote.terminal import format_time


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeProfileCommands:
    """One kind of range profile on the command line.

    ``paths`` is where the API keeps the kind; ``helps`` holds each command's help by
    command name; ``column`` and ``cell`` are the listing's third column (after the name
    and the IP ranges); ``show`` draws one profile.
    """

    noun: str  # "access profile"
    paths: RangeProfilePaths
    helps: Mapping[str, str]
    column: str
    cell: Callable[[JsonObject], Any]
    show: Callable[[JsonObject], None]


def add_range_profile_commands(group: typer.Typer, kind: RangeProfileCommands) -> None:
    """Add ``create``, ``list``, ``show``, ``update`` and ``delete`` to ``group``."""

    @group.command("create", help=kind.helps["create"])
    @connected()
    def create(
        remote: Remote, name: ProfileArgument, app: AppOption, ip_range: IpRangeOption = None
    ) -> None:
        with remote.connect() as api:
            body = api.create_range_profile(kind.paths, app, name, ip_ranges=ip_range or ())
        remote.emit(body, kind.show)

    @group.command("list", help=kind.helps["list"])
    @connected()
    def listing(remote: Remote, app: AppOption) -> None:
        with remote.connect() as api:
            profiles = api.list_range_profiles(kind.paths, app)
        remote.emit_rows(
            profiles,
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
    @connected()
    def show(remote: Remote, name: ProfileArgument, app: AppOption) -> None:
        with remote.connect() as api:
            body = api.get_range_profile(kind.paths, app, name)
        remote.emit(body, kind.show)

    @group.command("update", help=kind.helps["update"])
    @connected()
    def update(
        remote: Remote,
        name: ProfileArgument,
        app: AppOption,
        ip_range: IpRangeOption = None,
        no_ip_ranges: NoIpRangesOption = False,
    ) -> None:
        ip_ranges = new_ip_ranges(ip_range, no_ip_ranges)
        with remote.connect() as api:
            body = api.update_range_profile(kind.paths, app, name, ip_ranges=ip_ranges)
        remote.emit(body, kind.show)

    @group.command("delete", help=kind.helps["delete"])
    @connected()
    def delete(remote: Remote, name: ProfileArgument, app: AppOption) -> None:
        with remote.connect() as api:
            api.delete_range_profile(kind.paths, app, name)
        remote.say(f"Deleted {kind.noun} {name}.")
