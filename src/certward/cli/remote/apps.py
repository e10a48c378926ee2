"""``certward app`` and ``certward env``: apps, their plans and their environments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import DEFAULT_SERVER, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.local_files import write_file
from certward.cli.remote.options import JsonOption, ServerOption, TokenOption, YesOption
from certward.cli.remote.terminal import (
    ask_confirmation,
    emit_json,
    format_time,
    print_details,
    print_line,
    show_answer,
    show_rows,
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
def app_create(
    name: Annotated[str, typer.Argument(help="App name (a DNS label).")],
    plan: Annotated[
        Plan, typer.Option("--plan", help="licensed apps may bring their own certificates.")
    ] = Plan.FREE,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an app (admin token)."""
    with connect(server, token, as_json=as_json) as api:
        body = api.create_app(name, plan.value)
    if as_json:
        emit_json(body)
        return
    print_line(f"Created app {body['name']} ({body['plan']}).")


@app_group.command("list")
def app_list(
    server: ServerOption = DEFAULT_SERVER, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The apps the token may see."""
    with connect(server, token, as_json=as_json) as api:
        apps = api.list_apps()
    show_rows(
        apps,
        as_json,
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
def app_show(
    name: Annotated[str, typer.Argument(help="App name.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """An app, its plan and its environments."""
    with connect(server, token, as_json=as_json) as api:
        body = api.get_app(name)
    show_answer(body, as_json, _print_app)


@app_group.command("update")
def app_update(
    name: Annotated[str, typer.Argument(help="App name.")],
    plan: Annotated[Plan, typer.Option("--plan", help="The new plan.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an app's plan (admin token)."""
    with connect(server, token, as_json=as_json) as api:
        body = api.update_app(name, plan=plan.value)
    if as_json:
        emit_json(body)
        return
    print_line(f"App {body['name']} is now {body['plan']}.")


@app_group.command("delete")
def app_delete(
    name: Annotated[str, typer.Argument(help="App name.")],
    yes: YesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an app with its environments and every certificate and key it holds."""
    ask_confirmation(f"Delete app {name} with everything in it?", yes)
    with connect(server, token, as_json=as_json) as api:
        api.delete_app(name)
    if not as_json:
        print_line(f"Deleted app {name}.")


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
def env_create(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name (a DNS label).")],
    upstream: Annotated[
        str, typer.Option("--upstream", help="URL the environment's traffic goes to.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an environment; it gets a default hostname and a managed certificate."""
    with connect(server, token, as_json=as_json) as api:
        body = api.create_environment(app, name, upstream=upstream)
    show_answer(body, as_json, _print_environment)


@env_group.command("list")
def env_list(
    app: Annotated[str, typer.Argument(help="App name.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's environments."""
    with connect(server, token, as_json=as_json) as api:
        environments = api.list_environments(app)
    show_rows(
        environments,
        as_json,
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
def env_show(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One environment."""
    with connect(server, token, as_json=as_json) as api:
        body = api.get_environment(app, name)
    show_answer(body, as_json, _print_environment)


@env_group.command("update")
def env_update(
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
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
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
    with connect(server, token, as_json=as_json) as api:
        body = api.update_environment(
            app,
            name,
            upstream=upstream,
            pkcs12_profile=pkcs12_profile.value if pkcs12_profile else None,
            no_client_certificate=hosts,
        )
    show_answer(body, as_json, _print_environment)


@env_group.command("delete")
def env_delete(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    yes: YesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an environment with its certificates, versions and domains."""
    ask_confirmation(f"Delete environment {app}/{name} with everything in it?", yes)
    with connect(server, token, as_json=as_json) as api:
        api.delete_environment(app, name)
    if not as_json:
        print_line(f"Deleted environment {app}/{name}.")


@env_group.command("managed-certificate")
def env_managed_certificate(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    pem: Annotated[
        bool, typer.Option("--pem", help="Print the certificate and chain PEM.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The platform-issued certificate of the environment's default hostname."""
    with connect(server, token, as_json=as_json) as api:
        body = api.managed_certificate(app, name)
    if as_json:
        emit_json(body)
        return
    if pem:
        typer.echo(
            str(body.get("certificate_pem") or "") + str(body.get("chain_pem") or ""), nl=False
        )
        return
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
def env_runtime_bundle(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (a gzipped tar, mode 0600).")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="A version (default: the applied one).")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Download a runtime bundle as it is (``certward bundle install`` also unpacks it)."""
    with connect(server, token) as api:
        bundle = api.runtime_bundle(app, name, version=version)
    write_file(out, bundle.content, private=True)
    print_line(f"Wrote version {bundle.version} of {app}/{name}'s runtime bundle to {out}.")
