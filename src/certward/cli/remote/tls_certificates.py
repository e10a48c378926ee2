"""``certward tls-cert``: custom-domain certificates (upload, CSR, ACME, replace)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import DEFAULT_SERVER, JsonObject
from certward.cli.remote.connection import connect
from certward.cli.remote.local_files import (
    is_encrypted_key,
    read_optional_upload,
    read_password,
    read_upload,
    write_file,
)
from certward.cli.remote.options import (
    AppOption,
    JsonOption,
    PasswordFileOption,
    PasswordStdinOption,
    ServerOption,
    TokenOption,
    YesOption,
    input_file,
)
from certward.cli.remote.terminal import (
    ask_confirmation,
    emit_json,
    format_time,
    print_details,
    print_line,
    print_warnings,
    show_rows,
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
def tls_cert_upload(
    app: AppOption,
    certificate: Annotated[Path, input_file("Certificate, PEM or DER (may hold the chain).")],
    key: Annotated[Path, input_file("Its private key, PEM or DER.")],
    chain: Annotated[Path | None, input_file("Intermediate certificates.")] = None,
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a certificate with its key and chain (judged as a TLS certificate)."""
    key_upload = read_upload(key)
    password = read_password(
        password_file,
        password_stdin,
        prompt=f"Password of {key.name}" if is_encrypted_key(key_upload) else None,
    )
    with connect(server, token, as_json=as_json) as api:
        body = api.upload_tls_certificate(
            app,
            certificate=read_upload(certificate),
            private_key=key_upload,
            chain=read_optional_upload(chain),
            password=password,
            description=description,
        )
    if as_json:
        emit_json(body)
        return
    _print_tls_certificate(body, f"Uploaded TLS certificate {body.get('id')}")


@tls_cert_group.command("csr")
def tls_cert_csr(
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
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Have certward generate a key and a CSR: send the CSR to your CA, then `complete`."""
    with connect(server, token, as_json=as_json) as api:
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
    if as_json:
        emit_json(body)
        return
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
def tls_cert_acme(
    app: AppOption,
    san: Annotated[
        list[str],
        typer.Option("--san", help="A name to cover (repeatable; the first is the common name)."),
    ],
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Order a certificate from the platform's ACME CA; certward renews it by itself.

    Every name must already resolve to the platform (HTTP-01)."""
    with connect(server, token, as_json=as_json) as api:
        body = api.order_acme_tls_certificate(app, sans=san, description=description or "")
    if as_json:
        emit_json(body)
        return
    _print_tls_certificate(body, f"TLS certificate {body.get('id')} from the ACME CA")


@tls_cert_group.command("complete")
def tls_cert_complete(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    certificate: Annotated[Path, input_file("The certificate the CA signed.")],
    chain: Annotated[Path | None, input_file("Its intermediate certificates.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a pending CSR the certificate its CA signed."""
    with connect(server, token, as_json=as_json) as api:
        body = api.complete_tls_csr(
            app,
            tls_certificate_id,
            certificate=read_upload(certificate),
            chain=read_optional_upload(chain),
        )
    if as_json:
        emit_json(body)
        return
    _print_tls_certificate(body, f"Completed TLS certificate {tls_certificate_id}")


@tls_cert_group.command("list")
def tls_cert_list(
    app: AppOption,
    status: Annotated[
        CertificateStatus | None,
        typer.Option("--status", help="Only this status.", show_default=False),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's TLS certificates, oldest first."""
    with connect(server, token, as_json=as_json) as api:
        certificates = api.list_tls_certificates(app, status=status.value if status else None)
    show_rows(
        certificates,
        as_json,
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
def tls_cert_show(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    csr_out: Annotated[
        Path | None,
        typer.Option(
            "--csr-out", help="Write a pending certificate's CSR here.", show_default=False
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One TLS certificate and the domains using it."""
    with connect(server, token, as_json=as_json) as api:
        body = api.get_tls_certificate(app, tls_certificate_id)
    if csr_out is not None:
        if not body.get("csr_pem"):
            raise usage_error(f"TLS certificate {tls_certificate_id} has no CSR")
        write_file(csr_out, str(body["csr_pem"]).encode(), private=False)
    if as_json:
        emit_json(body)
        return
    _print_tls_certificate(body, f"TLS certificate {tls_certificate_id}")


@tls_cert_group.command("replace")
def tls_cert_replace(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    replacement: Annotated[
        str, typer.Option("--with", help="Id of the certificate taking over its domains.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move every custom domain using a certificate to its replacement, at once."""
    with connect(server, token, as_json=as_json) as api:
        body = api.replace_tls_certificate(app, tls_certificate_id, replacement_id=replacement)
    if as_json:
        emit_json(body)
        return
    _print_tls_certificate(body, f"TLS certificate {replacement} now serves")


@tls_cert_group.command("delete")
def tls_cert_delete(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    yes: YesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a TLS certificate and its key (refused while a domain uses it)."""
    ask_confirmation(f"Delete TLS certificate {tls_certificate_id} and its private key?", yes)
    with connect(server, token, as_json=as_json) as api:
        api.delete_tls_certificate(app, tls_certificate_id)
    if not as_json:
        print_line(f"Deleted TLS certificate {tls_certificate_id}.")
