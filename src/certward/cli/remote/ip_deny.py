"""``certward ip-deny-profile``: IP ranges refused before any other access check."""

from __future__ import annotations

from typing import Annotated

import typer

from certward.api_client import DEFAULT_SERVER, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.options import (
    AppOption,
    EnvOption,
    IpRangeOption,
    JsonOption,
    NoIpRangesOption,
    ProfileArgument,
    ServerOption,
    TokenOption,
    new_ip_ranges,
)
from certward.cli.remote.terminal import (
    emit_json,
    format_time,
    print_details,
    print_line,
    show_answer,
    show_rows,
    usage_error,
)

ip_deny_group = typer.Typer(
    help="Address ranges refused on the environments they are attached to (live).",
    no_args_is_help=True,
)


def _print_ip_deny_profile(body: JsonObject) -> None:
    print_details(
        f"IP deny profile {body.get('name')}",
        [
            ("IP ranges", body.get("ip_ranges")),
            ("attached to", body.get("environments")),
            ("updated", format_time(body.get("updated_at"))),
        ],
    )


@ip_deny_group.command("create")
def ip_deny_create(
    name: ProfileArgument,
    app: AppOption,
    ip_range: IpRangeOption = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an IP deny profile."""
    with connect(server, token, as_json=as_json) as api:
        body = api.create_ip_deny_profile(app, name, ip_ranges=ip_range or ())
    show_answer(body, as_json, _print_ip_deny_profile)


@ip_deny_group.command("list")
def ip_deny_list(
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's IP deny profiles and where they are attached."""
    with connect(server, token, as_json=as_json) as api:
        profiles = api.list_ip_deny_profiles(app)
    show_rows(
        profiles,
        as_json,
        ("name", "IP ranges", "attached to", "updated"),
        lambda p: (
            p.get("name"),
            p.get("ip_ranges"),
            p.get("environments"),
            format_time(p.get("updated_at")),
        ),
        empty=f"App {app} has no IP deny profiles.",
    )


@ip_deny_group.command("show")
def ip_deny_show(
    name: ProfileArgument,
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One IP deny profile."""
    with connect(server, token, as_json=as_json) as api:
        body = api.get_ip_deny_profile(app, name)
    show_answer(body, as_json, _print_ip_deny_profile)


@ip_deny_group.command("update")
def ip_deny_update(
    name: ProfileArgument,
    app: AppOption,
    ip_range: IpRangeOption = None,
    no_ip_ranges: NoIpRangesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace an IP deny profile's ranges (live)."""
    ip_ranges = new_ip_ranges(ip_range, no_ip_ranges)
    with connect(server, token, as_json=as_json) as api:
        body = api.update_ip_deny_profile(app, name, ip_ranges=ip_ranges)
    show_answer(body, as_json, _print_ip_deny_profile)


@ip_deny_group.command("delete")
def ip_deny_delete(
    name: ProfileArgument,
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an IP deny profile (refused while attached)."""
    with connect(server, token, as_json=as_json) as api:
        api.delete_ip_deny_profile(app, name)
    if not as_json:
        print_line(f"Deleted IP deny profile {name}.")


@ip_deny_group.command("attach")
def ip_deny_attach(
    app: AppOption,
    env: EnvOption,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Every profile to attach: the whole set.", show_default=False),
    ] = None,
    none: Annotated[bool, typer.Option("--none", help="Detach every profile.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the IP deny profiles attached to an environment, as a whole set (live)."""
    if bool(names) == none:
        raise usage_error("name the profiles to attach, or give --none")
    with connect(server, token, as_json=as_json) as api:
        body = api.attach_ip_deny_profiles(app, env, profiles=names or [])
    if as_json:
        emit_json(body)
        return
    _print_attached(body, app, env)


def _print_attached(body: JsonObject, app: str, env: str) -> None:
    profiles = body.get("profiles") or []
    if profiles:
        print_line(f"IP deny profiles attached to {app}/{env}: {', '.join(map(str, profiles))}.")
    else:
        print_line(f"No IP deny profile is attached to {app}/{env}.")


@ip_deny_group.command("attached")
def ip_deny_attached(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The IP deny profiles attached to an environment."""
    with connect(server, token, as_json=as_json) as api:
        body = api.attached_ip_deny_profiles(app, env)
    if as_json:
        emit_json(body)
        return
    _print_attached(body, app, env)
