"""``certward inventory``, ``metrics``, ``health`` and ``platform-ca``: the platform as a whole."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import write_file
from certward.cli.remote.options import OptionalAppOption, limit_option
from certward.cli.remote.terminal import format_time, print_line, print_rows
from certward.expiry import CertificateStatus


class InventoryKind(StrEnum):
    """The kinds of certificate the inventory lists (``GET /api/v1/certificates?kind=``)."""

    MANAGED = "managed"
    CUSTOM_DOMAIN = "custom-domain"
    CLIENT = "client"
    AUTHORITY = "authority"


@connected()
def inventory_command(
    remote: Remote,
    status: Annotated[
        CertificateStatus | None,
        typer.Option("--status", help="Only this status.", show_default=False),
    ] = None,
    kind: Annotated[
        InventoryKind | None, typer.Option("--kind", help="Only this kind.", show_default=False)
    ] = None,
    app: OptionalAppOption = None,
    limit: Annotated[int | None, limit_option(1000)] = None,
) -> None:
    """Every certificate the token may see, soonest expiry first."""
    with remote.connect() as api:
        items = api.inventory(
            status=status.value if status else None,
            kind=kind.value if kind else None,
            app=app,
            limit=limit,
        )
    remote.emit_rows(
        items,
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


@connected(json=False)
def metrics_command(remote: Remote) -> None:
    """The Prometheus metrics, as text (admin token)."""
    with remote.connect() as api:
        text = api.metrics()
    typer.echo(text, nl=False)


@connected(token=False)
def health_command(remote: Remote) -> None:
    """Whether the server answers (no token needed)."""
    with remote.connect() as api:
        body = api.health()
    remote.emit(body, lambda shown: print_line(f"certward at {api.server}: {shown.get('status')}."))


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
@connected(token=False)
def platform_ca_show(remote: Remote, every: AllOption = False) -> None:
    """The platform CA's certificates with their state."""
    with remote.connect() as api:
        certificates = api.platform_ca_certificates(every=every)
    remote.emit(certificates, _print_ca_certificates)


def _print_ca_certificates(certificates: list[JsonObject]) -> None:
    """One row a CA certificate; below a root cross-certified by the root it replaced,
    while that cross-certificate is served, a ``cross`` row for it."""
    rows: list[tuple[Any, ...]] = []
    for c in certificates:
        rows.append(
            (
                c.get("id"),
                c.get("kind"),
                c.get("state"),
                c.get("subject"),
                format_time(c.get("not_after")),
                c.get("sha256_fingerprint"),
            )
        )
        if isinstance(cross := c.get("cross_certificate"), dict):
            rows.append(
                (
                    "",
                    "cross",
                    "served",
                    f"{cross.get('subject')}, issued by {cross.get('issuer')}",
                    format_time(cross.get("not_after")),
                    cross.get("sha256_fingerprint"),
                )
            )
    print_rows(
        ("id", "kind", "state", "subject", "valid until", "SHA-256"),
        rows,
        empty="No published CA certificates.",
    )


@platform_ca_group.command("pem")
@connected(token=False, json=False)
def platform_ca_pem(
    remote: Remote,
    every: AllOption = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here (else printed).", show_default=False)
    ] = None,
) -> None:
    """The active root (what machines import to trust default hostnames) as PEM."""
    with remote.connect() as api:
        pem = api.platform_ca_pem(every=every)
    if out is None:
        typer.echo(pem, nl=False)
        return
    write_file(out, pem.encode(), private=False)
    print_line(f"Wrote the platform CA to {out}.")


@platform_ca_group.command("certificate")
@connected(token=False, json=False)
def platform_ca_certificate(remote: Remote, ca_id: CaIdArgument, out: OutOption) -> None:
    """Download one CA certificate in DER."""
    with remote.connect() as api:
        download = api.platform_ca_certificate(ca_id)
    write_file(out, download.content, private=False)
    print_line(f"Wrote CA certificate {ca_id} to {out}.")


@platform_ca_group.command("crl")
@connected(token=False, json=False)
def platform_ca_crl(remote: Remote, ca_id: CaIdArgument, out: OutOption) -> None:
    """Download one CA's certificate revocation list in DER."""
    with remote.connect() as api:
        download = api.platform_ca_crl(ca_id)
    write_file(out, download.content, private=False)
    print_line(f"Wrote the CRL of {ca_id} to {out}.")


data_plane_group = typer.Typer(
    help="What the nginx data plane serves (platform admin).", no_args_is_help=True
)


@data_plane_group.command("excluded")
@connected()
def data_plane_excluded(remote: Remote) -> None:
    """The sites nginx leaves out of its configuration, why, and since when."""
    with remote.connect() as api:
        sites = api.excluded_sites()
    remote.emit_rows(
        sites,
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
@connected()
def data_plane_nodes(remote: Remote) -> None:
    """The gateway workers and nginx agents: the change sequence each serves, its lag
    behind the current one, its state digest and its last contact."""
    with remote.connect() as api:
        answer = api.data_plane_nodes()
    remote.emit(answer, _print_nodes)


def _print_nodes(answer: JsonObject) -> None:
    print_line(f"Current data-plane sequence: {answer.get('sequence')}")
    nodes = answer.get("nodes")
    print_rows(
        ("node", "kind", "sequence", "lag", "hostnames", "digest", "last contact"),
        [
            (
                n.get("id"),
                n.get("kind"),
                n.get("sequence"),
                n.get("lag"),
                n.get("hostnames"),
                str(n.get("version") or "")[:12],
                format_time(n.get("last_contact")),
            )
            for n in (nodes if isinstance(nodes, list) else [])
        ],
        empty="No data-plane node has reported yet.",
    )
