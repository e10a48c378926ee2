"""The ``certward`` command line: the Typer app, its command tree and ``main``.

Exit codes: 0 success, 1 the material has error problems or cannot be read (or a
refusal), 2 usage errors. ``main(argv)`` returns the code, so tests call it directly.
Passwords come only from files or standard input, never from arguments.

This module is the map of the local commands: material (`certward.cli.material`), the
operator's (`certward.cli.operator`), runtime bundles (`certward.cli.bundle`), the data
plane on nginx (`certward.cli.nginx`); then every API operation (`certward.cli.remote`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from certward.cli import material, operator
from certward.cli.bundle import bundle_app
from certward.cli.nginx import nginx_app
from certward.cli.remote import remote_app

PRIVATE_UMASK = 0o077

app = typer.Typer(
    name="certward",
    help="certward: the certificate control plane of an application hosting platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("inspect")(material.inspect_command)
app.command("convert")(material.convert_command)
app.command("serve")(operator.serve_command)
app.command("worker")(operator.worker_command)
app.command("gateway")(operator.gateway_command)
app.add_typer(bundle_app, name="bundle")
app.add_typer(operator.db_app, name="db")
app.add_typer(operator.keys_app, name="keys")
app.add_typer(operator.ca_app, name="ca")
app.add_typer(operator.webhook_app, name="webhook")
app.add_typer(nginx_app, name="nginx")
app.add_typer(remote_app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: the process arguments); return the exit code.

    Every command runs under umask 077: whatever it writes (databases and their
    journals, data directories, bundles, keys, converted files) is the owner's alone.
    The previous umask is restored afterwards, for callers that run commands in process.
    """
    command = typer.main.get_command(app)
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        command.main(
            args=list(argv) if argv is not None else None,
            prog_name="certward",
            standalone_mode=True,
        )
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        os.umask(previous_umask)
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
