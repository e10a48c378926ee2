"""``certward nginx render|sync``: Debian's nginx as a data plane.

The agent (`certward.dataplane.nginx_agent`) reads the state from the database like an
operator command, and records the sites it leaves out
(`certward.services.dataplane_exclusions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from certward.cli.operator import operator_platform, operator_settings
from certward.cli.remote.terminal import stderr_console, stdout_console, usage_error
from certward.egress import Listener
from certward.errors import ConfigurationError

if TYPE_CHECKING:
    from certward.dataplane.nginx_directory import NginxOptions
    from certward.dataplane.state import DataPlaneState
    from certward.platform import Platform
    from certward.settings import Settings

nginx_app = typer.Typer(help="Serve the data plane with Debian's nginx.", no_args_is_help=True)

_NginxOut = Annotated[
    Path,
    typer.Option("--out", help="Directory nginx runs from: nginx -c DIR/nginx.conf -p DIR."),
]
_HttpsListen = Annotated[
    str | None,
    typer.Option(help="host:port of HTTPS (default CERTWARD_GATEWAY_LISTEN, 127.0.0.1:8443)."),
]
_HttpListen = Annotated[
    str | None,
    typer.Option(
        help="host:port of plain HTTP (default CERTWARD_GATEWAY_HTTP_LISTEN, 127.0.0.1:8080)."
    ),
]
_AcmeUpstream = Annotated[
    str | None,
    typer.Option(help="Where ACME challenges are proxied (default: certward's API)."),
]
_NginxProgram = Annotated[
    str | None, typer.Option("--nginx", help="The nginx program (default: nginx on PATH).")
]
_Certificates = Annotated[
    str,
    typer.Option(
        "--certificates",
        help="per-handshake: nginx reads each certificate at every full handshake, so "
        "renewals need no reload (no connection closed); static: loaded at reloads "
        "(cheaper handshakes, a reload at every certificate change).",
    ),
]


def _nginx_options(
    settings: Settings,
    https_listen: str | None,
    http_listen: str | None,
    acme_upstream: str | None,
    nginx: str | None,
    certificates: str = "per-handshake",
) -> NginxOptions:
    import shutil

    from certward.dataplane.nginx_directory import CertificateLoading, NginxOptions
    from certward.dataplane.tls_policy import tls_policy

    try:
        loading = CertificateLoading(certificates)
    except ValueError:
        raise usage_error(
            f"--certificates must be per-handshake or static, not {certificates!r}"
        ) from None
    from certward.settings import format_listen

    api_host = "127.0.0.1" if settings.listen_host in {"0.0.0.0", "::", "*"} else None  # noqa: S104
    api = settings.listen if api_host is None else f"{api_host}:{settings.listen_port}"
    program = nginx or shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is not None and shutil.which(nginx) is None:
        raise usage_error(f"--nginx {nginx} is not a program that can be run")
    https = https_listen or format_listen(settings.gateway_listen)
    http = http_listen or format_listen(settings.gateway_http_listen)
    policy = settings.egress_policy()
    # nginx's own ports are the platform's listeners too, also when given here.
    own = [Listener(host=host, port=port) for host, port in map(_listen_parts, (https, http))]
    policy = replace(policy, platform_listeners=(*policy.platform_listeners, *own))
    return NginxOptions(
        https_listen=https,
        http_listen=http,
        acme_upstream=acme_upstream or f"http://{api}",
        nginx=program,
        policy=policy,
        certificates=loading,
        tls=tls_policy(settings.tls_policy),
    )


def _listen_parts(value: str) -> tuple[str, int]:
    from certward.settings import parse_listen

    try:
        return parse_listen(value, name="the listen address")
    except ConfigurationError as exc:
        raise usage_error(str(exc)) from exc


def _record(platform: Platform, state: DataPlaneState, skipped: Mapping[str, str]) -> None:
    from certward.services import dataplane_exclusions

    dataplane_exclusions.record(platform.context, state, skipped)


def _with_upstream_trust(options: NginxOptions, platform: Platform) -> NginxOptions:
    """``options`` with the bundle that verifies https upstreams."""
    from certward.services import platform_ca
    from certward.trust import upstream_trust_pem

    published = platform_ca.show(platform.context).published
    ca_pem = "".join(c.certificate_pem for c in published).encode("ascii")
    bundle = upstream_trust_pem(ca_pem, platform.context.settings.upstream_ca_bundle)
    return replace(options, upstream_trust_pem=bundle)


@nginx_app.command("render")
def nginx_render_command(
    out: _NginxOut,
    https_listen: _HttpsListen = None,
    http_listen: _HttpListen = None,
    acme_upstream: _AcmeUpstream = None,
    nginx: _NginxProgram = None,
    certificates: _Certificates = "per-handshake",
) -> None:
    """Write nginx's configuration for every served hostname into DIR, once.

    The set is written whole, checked with nginx -t when nginx is installed, and only
    then made DIR/nginx.conf. Nothing is reloaded: that is what sync does."""
    from certward.dataplane.nginx_directory import NginxDirectory
    from certward.dataplane.nginx_install import InstallOutcome, install
    from certward.services import dataplane_exclusions
    from certward.services.dataplane_feed import DataPlaneFeed

    settings = operator_settings()
    try:
        options = _nginx_options(
            settings, https_listen, http_listen, acme_upstream, nginx, certificates
        )
        with operator_platform() as platform:
            options = _with_upstream_trust(options, platform)
            state = DataPlaneFeed(platform.context).load()
            directory = NginxDirectory(out.absolute())
            installed = install(state, directory, options)
            if installed.outcome is not InstallOutcome.REJECTED:
                dataplane_exclusions.record(platform.context, state, installed.skipped)
    except ValueError as exc:
        raise usage_error(str(exc)) from exc
    err = stderr_console()
    for hostname, reason in sorted(installed.skipped.items()):
        err.print(Text(f"Warning: {hostname} is left out: {reason}", style="yellow"))
    if installed.outcome is InstallOutcome.REJECTED:
        err.print(Text(f"nginx refused the configuration:\n{installed.problem}", style="red"))
        raise typer.Exit(1)
    if options.nginx is None:
        err.print(Text("Warning: nginx is not installed; the configuration is unchecked."))
    served = len(state.sites) - len(installed.skipped)
    stdout_console().print(
        Text(
            f"State {state.version[:12]} ({served} hostname(s)) "
            f"{'already in' if installed.outcome is InstallOutcome.UNCHANGED else 'written to'} "
            f"{installed.set_path}. Run: nginx -c {directory.config} -p {directory.root}/"
        )
    )


@nginx_app.command("sync")
def nginx_sync_command(
    out: _NginxOut,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Seconds between looks at the state (default CERTWARD_GATEWAY_REFRESH)."
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Sync once, then exit.")] = False,
    https_listen: _HttpsListen = None,
    http_listen: _HttpListen = None,
    acme_upstream: _AcmeUpstream = None,
    nginx: _NginxProgram = None,
    certificates: _Certificates = "per-handshake",
) -> None:
    """Keep nginx in DIR serving the current state until SIGTERM/SIGINT.

    On every change: render, nginx -t, then write changed certificates in place (read
    at the next handshake) and, when the configuration changed, swap DIR/nginx.conf and
    reload the nginx whose pid is in DIR/run/nginx.pid. A configuration nginx refuses is
    logged and the last good one keeps serving."""
    import logging
    import signal

    from certward.dataplane.nginx_agent import NginxSync
    from certward.dataplane.nginx_directory import NginxDirectory
    from certward.services.dataplane_feed import DataPlaneFeed
    from certward.services.dataplane_follower import StateFollower

    settings = operator_settings()
    try:
        options = _nginx_options(
            settings, https_listen, http_listen, acme_upstream, nginx, certificates
        )
    except ValueError as exc:
        raise usage_error(str(exc)) from exc
    if options.nginx is None:
        raise usage_error("nginx is not installed (apt-get install nginx), or give --nginx")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with operator_platform() as platform:
        feed = StateFollower(DataPlaneFeed(platform.context), kind="nginx")
        sync = NginxSync(
            feed.load,
            NginxDirectory(out.absolute()),
            _with_upstream_trust(options, platform),
            report=partial(_record, platform),
        )
        try:
            if once:
                raise typer.Exit(0 if sync.sync_once().ok else 1)
            previous = {
                number: signal.signal(number, lambda *_: sync.stop())
                for number in (signal.SIGTERM, signal.SIGINT)
            }
            try:
                sync.run(interval or settings.gateway_refresh.total_seconds())
            finally:
                for number, handler in previous.items():
                    signal.signal(number, handler)
        except ValueError as exc:
            raise usage_error(str(exc)) from exc
