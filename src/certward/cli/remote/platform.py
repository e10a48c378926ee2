"""``certward inventory``, ``metrics``, ``health`` and ``platform-ca``: the platform as a whole."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import DEFAULT_SERVER
from certward.cli.remote.connection import connect
from certward.cli.remote.local_files import write_file
from certward.cli.remote.options import JsonOption, OptionalAppOption, ServerOption, TokenOption
from certward.cli.remote.terminal import emit_json, format_time, print_line, show_rows
from certward.expiry import CertificateStatus


class InventoryKind(StrEnum):
    """The kinds of certificate the inventory lists (``GET /api/v1/certificates?kind=``)."""

    MANAGED = "managed"
    CUSTOM_DOMAIN = "custom-domain"
    CLIENT = "client"
    AUTHORITY = "authority"


def inventory_command(
    status: Annotated[
        CertificateStatus | None,
        typer.Option("--status", help="Only this status.", show_default=False),
    ] = None,
    kind: Annotated[
        InventoryKind | None, typer.Option("--kind", help="Only this kind.", show_default=False)
    ] = None,
    app: OptionalAppOption = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=1000,
            help="At most this many (API default 100).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every certificate the token may see, soonest expiry first."""
    with connect(server, token, as_json=as_json) as api:
        items = api.inventory(
            status=status.value if status else None,
            kind=kind.value if kind else None,
            app=app,
            limit=limit,
        )
    show_rows(
        items,
        as_json,
        (
            "status",
            "valid until",
            "kind",
            "app",
            "environment",
            "subject or hostnames",
            "id",
            "why expires-soon",
        ),
        lambda i: (
            i.get("status"),
            format_time(i.get("not_after")),
            i.get("kind"),
            i.get("app"),
            i.get("environment"),
            i.get("hostnames") or i.get("subject"),
            i.get("id"),
            i.get("status_reason") or "",
        ),
        empty="No certificates match.",
    )


def metrics_command(server: ServerOption = DEFAULT_SERVER, token: TokenOption = None) -> None:
    """The Prometheus metrics, as text (admin token)."""
    with connect(server, token) as api:
        text = api.metrics()
    typer.echo(text, nl=False)


def health_command(server: ServerOption = DEFAULT_SERVER, as_json: JsonOption = False) -> None:
    """Whether the server answers (no token needed)."""
    with connect(server, None, as_json=as_json, needs_token=False) as api:
        body = api.health()
    if as_json:
        emit_json(body)
        return
    print_line(f"certward at {api.server}: {body.get('status')}.")


platform_ca_group = typer.Typer(
    help="The platform CA's public certificates and CRLs (no token needed).",
    no_args_is_help=True,
)
AllOption = Annotated[
    bool, typer.Option("--all", help="Every published root and intermediate (show: retired too).")
]
CaIdArgument = Annotated[str, typer.Argument(help="The CA certificate's id.")]
OutOption = Annotated[Path, typer.Option("--out", help="File to write (DER).")]


@platform_ca_group.command("show")
def platform_ca_show(
    every: AllOption = False, server: ServerOption = DEFAULT_SERVER, as_json: JsonOption = False
) -> None:
    """The platform CA's certificates with their state."""
    with connect(server, None, as_json=as_json, needs_token=False) as api:
        certificates = api.platform_ca_certificates(every=every)
    show_rows(
        certificates,
        as_json,
        ("id", "kind", "state", "subject", "valid until", "SHA-256"),
        lambda c: (
            c.get("id"),
            c.get("kind"),
            c.get("state"),
            c.get("subject"),
            format_time(c.get("not_after")),
            c.get("sha256_fingerprint"),
        ),
        empty="No published CA certificates.",
    )


@platform_ca_group.command("pem")
def platform_ca_pem(
    every: AllOption = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here (else printed).", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """The active root (what machines import to trust default hostnames) as PEM."""
    with connect(server, None, needs_token=False) as api:
        pem = api.platform_ca_pem(every=every)
    if out is None:
        typer.echo(pem, nl=False)
        return
    write_file(out, pem.encode(), private=False)
    print_line(f"Wrote the platform CA to {out}.")


@platform_ca_group.command("certificate")
def platform_ca_certificate(
    ca_id: CaIdArgument, out: OutOption, server: ServerOption = DEFAULT_SERVER
) -> None:
    """Download one CA certificate in DER."""
    with connect(server, None, needs_token=False) as api:
        download = api.platform_ca_certificate(ca_id)
    write_file(out, download.content, private=False)
    print_line(f"Wrote CA certificate {ca_id} to {out}.")


@platform_ca_group.command("crl")
def platform_ca_crl(
    ca_id: CaIdArgument, out: OutOption, server: ServerOption = DEFAULT_SERVER
) -> None:
    """Download one CA's certificate revocation list in DER."""
    with connect(server, None, needs_token=False) as api:
        download = api.platform_ca_crl(ca_id)
    write_file(out, download.content, private=False)
    print_line(f"Wrote the CRL of {ca_id} to {out}.")


data_plane_group = typer.Typer(
    help="What the nginx data plane serves (platform admin).", no_args_is_help=True
)


@data_plane_group.command("excluded")
def data_plane_excluded(
    server: ServerOption = DEFAULT_SERVER, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The sites nginx leaves out of its configuration, why, and since when."""
    with connect(server, token, as_json=as_json) as api:
        sites = api.excluded_sites()
    show_rows(
        sites,
        as_json,
        ("hostname", "app", "environment", "reason", "since"),
        lambda s: (
            s.get("hostname"),
            s.get("app"),
            s.get("environment"),
            s.get("reason"),
            format_time(s.get("since")),
        ),
        empty="No site is left out: nginx serves every one.",
    )


@data_plane_group.command("nodes")
def data_plane_nodes(
    server: ServerOption = DEFAULT_SERVER, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The gateway workers and nginx agents: the change sequence each serves, its lag
    behind the current one, its state digest and its last contact."""
    with connect(server, token, as_json=as_json) as api:
        answer = api.data_plane_nodes()
    if as_json:
        emit_json(answer)
        return
    print_line(f"Current data-plane sequence: {answer.get('sequence')}")
    nodes = answer.get("nodes")
    show_rows(
        nodes if isinstance(nodes, list) else [],
        as_json,
        ("node", "kind", "sequence", "lag", "hostnames", "digest", "last contact"),
        lambda n: (
            n.get("id"),
            n.get("kind"),
            n.get("sequence"),
            n.get("lag"),
            n.get("hostnames"),
            str(n.get("version") or "")[:12],
            format_time(n.get("last_contact")),
        ),
        empty="No data-plane node has reported yet.",
    )
