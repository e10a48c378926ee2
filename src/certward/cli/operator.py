"""The operator's commands, run where the installation is: ``serve``, ``worker``,
``gateway``, ``db``, ``keys``, ``ca`` and ``webhook``.

They read the settings from the environment (a wrong one is exit 1, said in one line)
and import the service stack only when they run, so that ``certward inspect`` starts
without loading FastAPI and SQLAlchemy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from certward.cli.remote.terminal import stderr_console, stdout_console, usage_error
from certward.errors import ConfigurationError
from certward.settings import Settings

if TYPE_CHECKING:
    from certward.platform import Platform
    from certward.services.platform_ca import PlatformCaView

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Master key.", no_args_is_help=True)
ca_app = typer.Typer(help="The built-in platform CA.", no_args_is_help=True)
webhook_app = typer.Typer(help="Expiry webhooks.", no_args_is_help=True)


def operator_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigurationError as exc:
        raise config_error(exc) from exc


def config_error(exc: ConfigurationError) -> typer.Exit:
    stderr_console().print(Text(f"certward cannot start: {exc}", style="red"))
    return typer.Exit(1)


@contextmanager
def operator_platform() -> Iterator[Platform]:
    """The installation opened for an operator command (no bootstrap, closed after)."""
    from certward.platform import open_platform

    settings = operator_settings()
    try:
        platform = open_platform(settings, bootstrap=False)
    except ConfigurationError as exc:
        raise config_error(exc) from exc
    try:
        yield platform
    finally:
        platform.close()


def serve_command(
    gateway: Annotated[
        bool,
        typer.Option(
            "--gateway/--no-gateway",
            help="Also run the HTTPS gateway on CERTWARD_GATEWAY_LISTEN (default: yes).",
        ),
    ] = True,
) -> None:
    """Run the API on CERTWARD_LISTEN (default 127.0.0.1:8700) with embedded defaults,
    the renewal worker and the HTTPS gateway."""
    from certward.server import serve

    try:
        serve(operator_settings(), gateway=gateway)
    except ConfigurationError as exc:
        raise config_error(exc) from exc


def worker_command() -> None:
    """Renew due managed certificates every CERTWARD_RENEWAL_INTERVAL until SIGTERM/SIGINT.

    Safe to run many at once, on other machines too (PostgreSQL)."""
    import logging
    import signal

    from certward.platform import open_platform
    from certward.services.acme_issuing import check_acme_profile
    from certward.worker import RenewalWorker

    try:
        platform = open_platform(operator_settings(), bootstrap=False)
    except ConfigurationError as exc:
        raise config_error(exc) from exc
    try:
        check_acme_profile(platform.context)
    except ConfigurationError as exc:
        platform.close()
        raise config_error(exc) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = RenewalWorker(platform.context)
    previous = {
        number: signal.signal(number, lambda *_: worker.stop())
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        worker.run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        platform.close()


def gateway_command(
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Worker processes (default CERTWARD_GATEWAY_WORKERS: one per core)."
        ),
    ] = None,
) -> None:
    """Serve HTTPS for every hostname on CERTWARD_GATEWAY_LISTEN until SIGTERM/SIGINT.

    Certificates, domains and applied access rules are picked up live. Run as many
    gateways as needed, on other machines too (PostgreSQL)."""
    import logging

    from certward.dataplane.gateway_runner import run_gateway

    settings = operator_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        run_gateway(settings, workers=workers)
    except ConfigurationError as exc:
        raise config_error(exc) from exc
    except OSError as exc:
        raise config_error(
            ConfigurationError(f"The gateway cannot listen: {exc.strerror or exc}.")
        ) from exc


@db_app.command("upgrade")
def db_upgrade_command() -> None:
    """Apply the database migrations (also done by serve at start)."""
    from certward.db import head_revision
    from certward.platform import upgrade_schema

    settings = operator_settings()
    try:
        upgrade_schema(settings)
    except ConfigurationError as exc:
        raise config_error(exc) from exc
    stdout_console().print(Text(f"Database at revision {head_revision()}."))


@keys_app.command("rotate")
def keys_rotate_command(
    retire: Annotated[
        bool, typer.Option("--retire", help="Remove keys no secret uses any more.")
    ] = False,
) -> None:
    """Add a new master key and re-encrypt every stored secret with it, in one transaction."""
    from certward.platform import open_platform
    from certward.services.keys import rotate

    settings = operator_settings()
    try:
        platform = open_platform(settings, bootstrap=False)
    except ConfigurationError as exc:
        raise config_error(exc) from exc
    try:
        result = rotate(
            settings, platform.context.database, platform.context.secrets.keyring, retire=retire
        )
    except ConfigurationError as exc:
        raise config_error(exc) from exc
    finally:
        platform.close()
    stdout_console().print(
        Text(
            f"Active key {result.active_key_id}; {result.secrets_reencrypted} secret(s) "
            f"re-encrypted, {result.files_resealed} sealed file(s) re-sealed; "
            f"retired: {', '.join(result.retired_key_ids) or 'none'}."
        )
    )


@ca_app.command("show")
def ca_show_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the platform CA: active root and intermediate, and what is still published."""
    from certward.services import platform_ca

    with operator_platform() as platform:
        view = platform_ca.show(platform.context)
    _print_platform_ca(view, as_json)


@ca_app.command("rotate")
def ca_rotate_command(
    new_root: Annotated[
        bool, typer.Option("--new-root", help="Make a new root too, not only an intermediate.")
    ] = False,
) -> None:
    """Make a new issuing intermediate (and root) active; the old ones stay published as
    retiring until every certificate they issued has been renewed."""
    from certward.services import platform_ca

    with operator_platform() as platform:
        view = platform_ca.rotate(platform.context, new_root=new_root)
    _print_platform_ca(view, False)


def _print_platform_ca(view: PlatformCaView, as_json: bool) -> None:
    rows = [
        {
            "id": c.id,
            "kind": c.kind,
            "state": c.state.value,
            "subject": c.subject,
            "not_before": c.not_before.isoformat(),
            "not_after": c.not_after.isoformat(),
            "sha256_fingerprint": c.sha256_fingerprint,
            "certificates_in_use": c.certificates_in_use,
            "cross_certificate": None
            if c.cross_certificate is None
            else {
                "issuer_id": c.cross_certificate.issuer_id,
                "issuer": c.cross_certificate.issuer,
                "not_before": c.cross_certificate.not_before.isoformat(),
                "not_after": c.cross_certificate.not_after.isoformat(),
                "sha256_fingerprint": c.cross_certificate.sha256_fingerprint,
            },
        }
        for c in view.certificates
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {"root": view.root.id, "intermediate": view.intermediate.id, "certificates": rows},
                indent=2,
            )
        )
        return
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("kind", "state", "subject", "valid until", "in use", "SHA-256"):
        table.add_column(column, overflow="fold")
    for row, certificate in zip(rows, view.certificates, strict=True):
        table.add_row(
            Text(str(row["kind"])),
            Text(str(row["state"])),
            Text(str(row["subject"])),
            Text(str(row["not_after"])[:16].replace("T", " ")),
            Text(str(row["certificates_in_use"]) if row["kind"] == "intermediate" else ""),
            Text(str(row["sha256_fingerprint"])),
        )
        if (cross := certificate.cross_certificate) is not None:
            table.add_row(
                Text("cross"),
                Text("served"),
                Text(f"{cross.subject}, issued by {cross.issuer}"),
                Text(cross.not_after.isoformat()[:16].replace("T", " ")),
                Text(""),
                Text(cross.sha256_fingerprint),
            )
    console = stdout_console()
    console.print(table)
    console.print(Text(f"Active root: {view.root.subject} ({view.root.sha256_fingerprint})."))
    for cross in view.cross_certificates:
        console.print(
            Text(
                f"Cross-certificate of {cross.subject} by {cross.issuer} "
                f"({cross.sha256_fingerprint}), valid {cross.not_before.isoformat()} to "
                f"{cross.not_after.isoformat()}: served with what the new root issues "
                "until the old root is retired."
            )
        )


@webhook_app.command("add")
def webhook_add_command(
    url: Annotated[str, typer.Argument(help="http(s) URL that receives JSON notices.")],
) -> None:
    """Notify URL when a certificate enters expires-soon, expires, or fails to renew."""
    from certward.errors import Refusal
    from certward.services import notifications
    from certward.services.notifications import SYSTEM

    with operator_platform() as platform:
        try:
            hook = notifications.add_webhook(platform.context, SYSTEM, url)
        except Refusal as exc:
            raise usage_error(exc.message) from exc
    stdout_console().print(Text(f"Webhook {hook.id} added: {hook.url}"))


@webhook_app.command("list")
def webhook_list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The registered webhooks."""
    from certward.services import notifications
    from certward.services.notifications import SYSTEM

    with operator_platform() as platform:
        hooks = notifications.list_webhooks(platform.context, SYSTEM)
    if as_json:
        typer.echo(json.dumps([{"id": h.id, "url": h.url} for h in hooks], indent=2))
        return
    for hook in hooks:
        stdout_console().print(Text(f"{hook.id}  {hook.url}"))


@webhook_app.command("remove")
def webhook_remove_command(
    webhook_id: Annotated[str, typer.Argument(help="The webhook's id.")],
) -> None:
    """Stop notifying a webhook (its pending notices go with it)."""
    from certward.errors import Refusal
    from certward.services import notifications
    from certward.services.notifications import SYSTEM

    with operator_platform() as platform:
        try:
            notifications.remove_webhook(platform.context, SYSTEM, webhook_id)
        except Refusal as exc:
            stderr_console().print(Text(f"Error: {exc.message}", style="red"))
            raise typer.Exit(1) from exc
    stdout_console().print(Text(f"Webhook {webhook_id} removed."))
