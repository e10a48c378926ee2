"""``certward ip-deny-profile``: IP ranges refused before any other access check."""

from __future__ import annotations

from typing import Annotated

import typer

from certward.api_client import IP_DENY_PROFILES, JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.options import AppOption, EnvOption
from certward.cli.remote.range_profiles import RangeProfileCommands, add_range_profile_commands
from certward.cli.remote.terminal import format_time, print_details, print_line, usage_error

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


IP_DENY_PROFILE_COMMANDS = RangeProfileCommands(
    noun="IP deny profile",
    paths=IP_DENY_PROFILES,
    helps={
        "create": "Create an IP deny profile.",
        "list": "The app's IP deny profiles and where they are attached.",
        "show": "One IP deny profile.",
        "update": "Replace an IP deny profile's ranges (live).",
        "delete": "Delete an IP deny profile (refused while attached).",
    },
    column="attached to",
    cell=lambda p: p.get("environments"),
    show=_print_ip_deny_profile,
)
add_range_profile_commands(ip_deny_group, IP_DENY_PROFILE_COMMANDS)


@ip_deny_group.command("attach")
@connected()
def ip_deny_attach(
    remote: Remote,
    app: AppOption,
    env: EnvOption,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Every profile to attach: the whole set.", show_default=False),
    ] = None,
    none: Annotated[bool, typer.Option("--none", help="Detach every profile.")] = False,
) -> None:
    """Set the IP deny profiles attached to an environment, as a whole set (live)."""
    if bool(names) == none:
        raise usage_error("name the profiles to attach, or give --none")
    with remote.connect() as api:
        body = api.attach_ip_deny_profiles(app, env, profiles=names or [])
    remote.emit(body, lambda shown: _print_attached(shown, app, env))


def _print_attached(body: JsonObject, app: str, env: str) -> None:
    profiles = body.get("profiles") or []
    if profiles:
        print_line(f"IP deny profiles attached to {app}/{env}: {', '.join(map(str, profiles))}.")
    else:
        print_line(f"No IP deny profile is attached to {app}/{env}.")


@ip_deny_group.command("attached")
@connected()
def ip_deny_attached(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """The IP deny profiles attached to an environment."""
    with remote.connect() as api:
        body = api.attached_ip_deny_profiles(app, env)
    remote.emit(body, lambda shown: _print_attached(shown, app, env))
