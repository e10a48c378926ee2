"""``certward access-profile crl``: the certificate revocation list of a client CA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import read_upload
from certward.cli.remote.options import AppOption, ProfileArgument, input_file
from certward.cli.remote.terminal import format_time, print_details

crl_group = typer.Typer(
    help="The certificate revocation list of a client CA of an access profile (live).",
    no_args_is_help=True,
)

FingerprintArgument = Annotated[str, typer.Argument(help="SHA-256 of the client CA.")]


def _print_crl(body: JsonObject) -> None:
    print_details(
        f"CRL of client CA {body.get('sha256_fingerprint')}",
        [
            ("issuer", body.get("issuer")),
            ("this update", format_time(body.get("this_update"))),
            ("next update", format_time(body.get("next_update"))),
            ("revoked", body.get("revoked")),
            ("stale", "yes: its next update has passed" if body.get("stale") else "no"),
        ],
    )


@crl_group.command("upload")
@connected()
def crl_upload(
    remote: Remote,
    name: ProfileArgument,
    fingerprint: FingerprintArgument,
    app: AppOption,
    file: Annotated[Path, input_file("The CRL, PEM or DER, signed by that CA.")],
) -> None:
    """Set or replace a client CA's CRL: the certificates it revokes are refused."""
    with remote.connect() as api:
        body = api.upload_crl(app, name, fingerprint, file=read_upload(file))
    remote.emit(body, _print_crl)


@crl_group.command("show")
@connected()
def crl_show(
    remote: Remote, name: ProfileArgument, fingerprint: FingerprintArgument, app: AppOption
) -> None:
    """A client CA's CRL: its issuer, dates and number of revoked certificates."""
    with remote.connect() as api:
        body = api.get_crl(app, name, fingerprint)
    remote.emit(body, _print_crl)


@crl_group.command("remove")
@connected()
def crl_remove(
    remote: Remote, name: ProfileArgument, fingerprint: FingerprintArgument, app: AppOption
) -> None:
    """Remove a client CA's CRL: its certificates are no longer checked for revocation."""
    with remote.connect() as api:
        api.remove_crl(app, name, fingerprint)
    remote.say(f"Removed the CRL of client CA {fingerprint} from {name}.")
