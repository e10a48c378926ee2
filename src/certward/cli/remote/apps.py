"""``certward app`` and ``certward env``: apps, their plans and their environments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import write_file
from certward.cli.remote.options import YesOption
from certward.cli.remote.terminal import (
    ask_confirmation,
    format_time,
    print_details,
    print_line,
    usage_error,
)
from certward.pki.convert import Pkcs12Profile
from certward.vocabulary import Plan

app_group = typer.Typer(help="Apps and their plans.", no_args_is_help=True)


def _print_app(body: JsonObject) -> None:
    print_details(
        f"App {body.get('name')}",
        [
            ("plan", body.get("plan")),
            ("environments", body.get("environments")),
            ("created", format_time(body.get("created_at"))),
        ],
    )


@app_group.command("create")
@connected()
def app_create(
    remote: Remote,
    name: Annotated[str, typer.Argument(help="App name (a DNS label).")],
    plan: Annotated[
        Plan, typer.Option("--plan", help="licensed apps may bring their own certificates.")
    ] = Plan.FREE,
) -> None:
    """Create an app (admin token)."""
    with remote.connect() as api:
        body = api.create_app(name, plan.value)
    remote.emit(body, lambda shown: print_line(f"Created app {shown['name']} ({shown['plan']})."))


@app_group.command("list")
@connected()
def app_list(remote: Remote) -> None:
    """The apps the token may see."""
    with remote.connect() as api:
        apps = api.list_apps()
    remote.emit_rows(
        apps,
        ("name", "plan", "environments", "created"),
        lambda a: (
            a.get("name"),
            a.get("plan"),
            a.get("environments"),
            format_time(a.get("created_at")),
        ),
        empty="No apps.",
    )


@app_group.command("show")
@connected()
def app_show(remote: Remote, name: Annotated[str, typer.Argument(help="App name.")]) -> None:
    """An app, its plan and its environments."""
    with remote.connect() as api:
        body = api.get_app(name)
    remote.emit(body, _print_app)


@app_group.command("update")
@connected()
def app_update(
    remote: Remote,
    name: Annotated[str, typer.Argument(help="App name.")],
    plan: Annotated[Plan, typer.Option("--plan", help="The new plan.")],
) -> None:
    """Change an app's plan (admin token)."""
    with remote.connect() as api:
        body = api.update_app(name, plan=plan.value)
    remote.emit(body, lambda shown: print_line(f"App {shown['name']} is now {shown['plan']}."))


@app_group.command("delete")
@connected()
def app_delete(
    remote: Remote,
    name: Annotated[str, typer.Argument(help="App name.")],
    yes: YesOption = False,
) -> None:
    """Delete an app with its environments and every certificate and key it holds."""
    ask_confirmation(f"Delete app {name} with everything in it?", yes)
    with remote.connect() as api:
        api.delete_app(name)
    remote.say(f"Deleted app {name}.")


env_group = typer.Typer(help="Environments of an app.", no_args_is_help=True)


def _print_environment(body: JsonObject) -> None:
    print_details(
        f"Environment {body.get('app')}/{body.get('name')}",
        [
            ("hostname", body.get("hostname")),
            ("upstream", body.get("upstream")),
            ("PKCS12 profile", body.get("pkcs12_profile")),
            ("no client certificate", body.get("no_client_certificate")),
            ("applied version", body.get("applied_version")),
            ("created", format_time(body.get("created_at"))),
        ],
    )


@env_group.command("create")
@connected()
def env_create(
    remote: Remote,
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name (a DNS label).")],
    upstream: Annotated[
        str, typer.Option("--upstream", help="URL the environment's traffic goes to.")
    ],
) -> None:
    """Create an environment; it gets a default hostname and a managed certificate."""
    with remote.connect() as api:
        body = api.create_environment(app, name, upstream=upstream)
    remote.emit(body, _print_environment)


@env_group.command("list")
@connected()
def env_list(remote: Remote, app: Annotated[str, typer.Argument(help="App name.")]) -> None:
    """The app's environments."""
    with remote.connect() as api:
        environments = api.list_environments(app)
    remote.emit_rows(
        environments,
        ("name", "hostname", "upstream", "PKCS12 profile", "applied version"),
        lambda e: (
            e.get("name"),
            e.get("hostname"),
            e.get("upstream"),
            e.get("pkcs12_profile"),
            e.get("applied_version"),
        ),
        empty=f"App {app} has no environments.",
    )


@env_group.command("show")
@connected()
def env_show(
    remote: Remote,
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
) -> None:
    """One environment."""
    with remote.connect() as api:
        body = api.get_environment(app, name)
    remote.emit(body, _print_environment)


@env_group.command("update")
@connected()
def env_update(
    remote: Remote,
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="New upstream URL (live).", show_default=False)
    ] = None,
    pkcs12_profile: Annotated[
        Pkcs12Profile | None,
        typer.Option(
            "--pkcs12-profile", help="PKCS12 profile runtimes read (staged).", show_default=False
        ),
    ] = None,
    no_client_certificate: Annotated[
        list[str] | None,
        typer.Option(
            "--no-client-certificate",
            help="Host or Module.Service called without a client certificate (repeatable; "
            "replaces the list; staged).",
            show_default=False,
        ),
    ] = None,
    clear_no_client_certificate: Annotated[
        bool,
        typer.Option(
            "--clear-no-client-certificate", help="Empty the no-client-certificate list (staged)."
        ),
    ] = False,
) -> None:
    """Change the upstream (live), the PKCS12 profile or the no-client-certificate list.

    The profile and the list are staged until restart."""
    if no_client_certificate and clear_no_client_certificate:
        raise usage_error("give --no-client-certificate or --clear-no-client-certificate")
    hosts = [] if clear_no_client_certificate else no_client_certificate
    if upstream is None and pkcs12_profile is None and hosts is None:
        raise usage_error(
            "nothing to change: give --upstream, --pkcs12-profile or --no-client-certificate"
        )
    with remote.connect() as api:
        body = api.update_environment(
            app,
            name,
            upstream=upstream,
            pkcs12_profile=pkcs12_profile.value if pkcs12_profile else None,
            no_client_certificate=hosts,
        )
    remote.emit(body, _print_environment)


@env_group.command("delete")
@connected()
def env_delete(
    remote: Remote,
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    yes: YesOption = False,
) -> None:
    """Delete an environment with its certificates, versions and domains."""
    ask_confirmation(f"Delete environment {app}/{name} with everything in it?", yes)
    with remote.connect() as api:
        api.delete_environment(app, name)
    remote.say(f"Deleted environment {app}/{name}.")


@env_group.command("managed-certificate")
@connected()
def env_managed_certificate(
    remote: Remote,
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    pem: Annotated[
        bool, typer.Option("--pem", help="Print the certificate and chain PEM.")
    ] = False,
) -> None:
    """The platform-issued certificate of the environment's default hostname."""
    with remote.connect() as api:
        body = api.managed_certificate(app, name)
    remote.emit(body, _print_managed_pem if pem else _print_managed_certificate)


def _print_managed_pem(body: JsonObject) -> None:
    typer.echo(str(body.get("certificate_pem") or "") + str(body.get("chain_pem") or ""), nl=False)


def _print_managed_certificate(body: JsonObject) -> None:
    print_details(
        f"Managed certificate of {body.get('hostname')}",
        [
            ("state", body.get("state")),
            ("subject", body.get("subject")),
            ("issuer", body.get("issuer")),
            (
                "valid",
                f"{format_time(body.get('not_before'))} → {format_time(body.get('not_after'))}",
            ),
            ("renew after", format_time(body.get("renew_after"))),
            ("SHA-256", body.get("sha256_fingerprint")),
            ("attempts", body.get("attempts")),
            ("last error", body.get("last_error")),
        ],
    )


@env_group.command("runtime-bundle")
@connected(json=False)
def env_runtime_bundle(
    remote: Remote,
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (a gzipped tar, mode 0600).")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="A version (default: the applied one).")
    ] = None,
) -> None:
    """Download a runtime bundle as it is (``certward bundle install`` also unpacks it)."""
    with remote.connect() as api:
        bundle = api.runtime_bundle(app, name, version=version)
    write_file(out, bundle.content, private=True)
    print_line(f"Wrote version {bundle.version} of {app}/{name}'s runtime bundle to {out}.")
