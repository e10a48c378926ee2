"""``certward tls-cert``: custom-domain certificates (upload, CSR, ACME, replace)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import (
    is_encrypted_key,
    read_optional_upload,
    read_password,
    read_upload,
    write_file,
)
from certward.cli.remote.options import (
    AppOption,
    PasswordFileOption,
    PasswordStdinOption,
    YesOption,
    input_file,
)
from certward.cli.remote.terminal import (
    ask_confirmation,
    format_time,
    print_details,
    print_line,
    print_warnings,
    usage_error,
)
from certward.expiry import CertificateStatus
from certward.pki.csr import CsrKeyType

tls_cert_group = typer.Typer(
    help="An app's TLS certificates for custom domains (live).", no_args_is_help=True
)
TlsIdArgument = Annotated[str, typer.Argument(help="The TLS certificate's id.")]


def _print_tls_certificate(body: JsonObject, title: str) -> None:
    domains = [
        f"{d.get('hostname')} ({d.get('environment')})"
        for d in body.get("domains") or []
        if isinstance(d, dict)
    ]
    print_details(
        title,
        [
            ("id", body.get("id")),
            ("status", body.get("status")),
            ("origin", body.get("origin")),
            ("common name", body.get("common_name")),
            ("SANs", body.get("sans")),
            ("subject", body.get("subject")),
            ("issuer", body.get("issuer")),
            (
                "valid",
                f"{format_time(body.get('not_before'))} → {format_time(body.get('not_after'))}",
            ),
            ("key", body.get("key_type")),
            ("chain", [c.get("subject") for c in body.get("chain") or [] if isinstance(c, dict)]),
            ("domains", domains),
            ("description", body.get("description")),
            ("SHA-256", body.get("sha256_fingerprint")),
        ],
    )
    print_warnings(body)


@tls_cert_group.command("upload")
@connected()
def tls_cert_upload(
    remote: Remote,
    app: AppOption,
    certificate: Annotated[Path, input_file("Certificate, PEM or DER (may hold the chain).")],
    key: Annotated[Path, input_file("Its private key, PEM or DER.")],
    chain: Annotated[Path | None, input_file("Intermediate certificates.")] = None,
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
) -> None:
    """Upload a certificate with its key and chain (judged as a TLS certificate)."""
    key_upload = read_upload(key)
    password = read_password(
        password_file,
        password_stdin,
        prompt=f"Password of {key.name}" if is_encrypted_key(key_upload) else None,
    )
    with remote.connect() as api:
        body = api.upload_tls_certificate(
            app,
            certificate=read_upload(certificate),
            private_key=key_upload,
            chain=read_optional_upload(chain),
            password=password,
            description=description,
        )
    remote.emit(
        body,
        lambda shown: _print_tls_certificate(shown, f"Uploaded TLS certificate {shown.get('id')}"),
    )


@tls_cert_group.command("csr")
@connected()
def tls_cert_csr(
    remote: Remote,
    app: AppOption,
    common_name: Annotated[
        str, typer.Option("--common-name", help="The first name (at most 64 characters).")
    ],
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="A further name (repeatable).", show_default=False),
    ] = None,
    key_type: Annotated[
        CsrKeyType, typer.Option("--key-type", help="The key certward generates.")
    ] = CsrKeyType.EC_P256,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the CSR here (else it is printed).", show_default=False),
    ] = None,
) -> None:
    """Have certward generate a key and a CSR: send the CSR to your CA, then `complete`."""
    with remote.connect() as api:
        body = api.create_tls_csr(
            app,
            common_name=common_name,
            sans=san or (),
            key_type=key_type.value,
            description=description or "",
        )
    csr = str(body.get("csr_pem") or "")
    if out is not None:
        write_file(out, csr.encode(), private=False)
    remote.emit(body, lambda shown: _print_csr(shown, app, csr, out))


def _print_csr(body: JsonObject, app: str, csr: str, out: Path | None) -> None:
    _print_tls_certificate(body, f"Pending TLS certificate {body.get('id')}")
    if out is not None:
        print_line(f"Wrote the CSR to {out}.")
    else:
        typer.echo(csr, nl=False)
    print_line(
        f"Then: certward tls-cert complete {body.get('id')} --app {app} --certificate FILE",
        style="dim",
    )


@tls_cert_group.command("acme")
@connected()
def tls_cert_acme(
    remote: Remote,
    app: AppOption,
    san: Annotated[
        list[str],
        typer.Option("--san", help="A name to cover (repeatable; the first is the common name)."),
    ],
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
) -> None:
    """Order a certificate from the platform's ACME CA; certward renews it by itself.

    Every name must already resolve to the platform (HTTP-01)."""
    with remote.connect() as api:
        body = api.order_acme_tls_certificate(app, sans=san, description=description or "")
    remote.emit(
        body,
        lambda shown: _print_tls_certificate(
            shown, f"TLS certificate {shown.get('id')} from the ACME CA"
        ),
    )


@tls_cert_group.command("complete")
@connected()
def tls_cert_complete(
    remote: Remote,
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    certificate: Annotated[Path, input_file("The certificate the CA signed.")],
    chain: Annotated[Path | None, input_file("Its intermediate certificates.")] = None,
) -> None:
    """Give a pending CSR the certificate its CA signed."""
    with remote.connect() as api:
        body = api.complete_tls_csr(
            app,
            tls_certificate_id,
            certificate=read_upload(certificate),
            chain=read_optional_upload(chain),
        )
    remote.emit(
        body,
        lambda shown: _print_tls_certificate(
            shown, f"Completed TLS certificate {tls_certificate_id}"
        ),
    )


@tls_cert_group.command("list")
@connected()
def tls_cert_list(
    remote: Remote,
    app: AppOption,
    status: Annotated[
        CertificateStatus | None,
        typer.Option("--status", help="Only this status.", show_default=False),
    ] = None,
) -> None:
    """The app's TLS certificates, oldest first."""
    with remote.connect() as api:
        certificates = api.list_tls_certificates(app, status=status.value if status else None)
    remote.emit_rows(
        certificates,
        ("id", "status", "names", "valid until", "domains", "description"),
        lambda c: (
            c.get("id"),
            c.get("status"),
            c.get("sans") or c.get("common_name"),
            format_time(c.get("not_after")),
            [d.get("hostname") for d in c.get("domains") or [] if isinstance(d, dict)],
            c.get("description"),
        ),
        empty=f"App {app} has no TLS certificates.",
    )


@tls_cert_group.command("show")
@connected()
def tls_cert_show(
    remote: Remote,
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    csr_out: Annotated[
        Path | None,
        typer.Option(
            "--csr-out", help="Write a pending certificate's CSR here.", show_default=False
        ),
    ] = None,
) -> None:
    """One TLS certificate and the domains using it."""
    with remote.connect() as api:
        body = api.get_tls_certificate(app, tls_certificate_id)
    if csr_out is not None:
        if not body.get("csr_pem"):
            raise usage_error(f"TLS certificate {tls_certificate_id} has no CSR")
        write_file(csr_out, str(body["csr_pem"]).encode(), private=False)
    remote.emit(
        body, lambda shown: _print_tls_certificate(shown, f"TLS certificate {tls_certificate_id}")
    )


@tls_cert_group.command("replace")
@connected()
def tls_cert_replace(
    remote: Remote,
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    replacement: Annotated[
        str, typer.Option("--with", help="Id of the certificate taking over its domains.")
    ],
) -> None:
    """Move every custom domain using a certificate to its replacement, at once."""
    with remote.connect() as api:
        body = api.replace_tls_certificate(app, tls_certificate_id, replacement_id=replacement)
    remote.emit(
        body,
        lambda shown: _print_tls_certificate(shown, f"TLS certificate {replacement} now serves"),
    )


@tls_cert_group.command("delete")
@connected()
def tls_cert_delete(
    remote: Remote,
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    yes: YesOption = False,
) -> None:
    """Delete a TLS certificate and its key (refused while a domain uses it)."""
    ask_confirmation(f"Delete TLS certificate {tls_certificate_id} and its private key?", yes)
    with remote.connect() as api:
        api.delete_tls_certificate(app, tls_certificate_id)
    remote.say(f"Deleted TLS certificate {tls_certificate_id}.")
