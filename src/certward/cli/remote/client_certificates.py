"""``certward client-cert``: the certificates an environment presents to the partners it calls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certward.api_client import UNSET, JsonObject
from certward.cli.remote.certificate_import import client_cert_import_dir
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import (
    is_encrypted_key,
    is_pkcs12,
    read_optional_upload,
    read_password,
    read_upload,
)
from certward.cli.remote.options import (
    AppOption,
    EnvOption,
    PasswordFileOption,
    PasswordStdinOption,
    input_file,
)
from certward.cli.remote.terminal import (
    format_time,
    print_details,
    print_line,
    print_warnings,
    usage_error,
)

client_cert_group = typer.Typer(
    help="Client certificates an environment presents to the partners it calls (staged).",
    no_args_is_help=True,
)


def _print_client_certificate(body: JsonObject, title: str) -> None:
    chain = body.get("chain") or []
    print_details(
        title,
        [
            ("id", body.get("id")),
            ("subject", body.get("subject")),
            ("issuer", body.get("issuer")),
            (
                "valid",
                f"{format_time(body.get('not_before'))} → {format_time(body.get('not_after'))}",
            ),
            ("pins", body.get("pins")),
            ("call name", body.get("call_name")),
            ("description", body.get("description")),
            ("state", body.get("state")),
            ("chain", [c.get("subject") for c in chain if isinstance(c, dict)]),
            ("serial", body.get("serial")),
            ("SHA-256", body.get("sha256_fingerprint")),
        ],
    )
    print_warnings(body)


@client_cert_group.command("add")
@connected()
def client_cert_add(
    remote: Remote,
    app: AppOption,
    env: EnvOption,
    file: Annotated[Path, input_file("PKCS12 file, or a PEM/DER certificate.")],
    key: Annotated[Path | None, input_file("Private key file (for a PEM/DER certificate).")] = None,
    chain: Annotated[Path | None, input_file("Chain file (for a PEM/DER certificate).")] = None,
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            "--pin",
            help="Host, IP address or Module.Service it is used for (repeatable).",
            show_default=False,
        ),
    ] = None,
    call_name: Annotated[
        str | None,
        typer.Option("--call-name", help="The name runtimes ask for it by.", show_default=False),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
) -> None:
    """Upload a client certificate; it is judged at once and staged until restart.

    Without --password-file or --password-stdin, a terminal is asked for the password."""
    upload = read_upload(file)
    key_upload = read_optional_upload(key)
    needs_password = is_pkcs12(upload) or is_encrypted_key(key_upload)
    password = read_password(
        password_file,
        password_stdin,
        prompt=f"Password of {file.name}" if needs_password else None,
    )
    with remote.connect() as api:
        body = api.upload_client_certificate(
            app,
            env,
            file=upload,
            password=password,
            key=key_upload,
            chain=read_optional_upload(chain),
            pins=pin or (),
            call_name=call_name,
            description=description,
        )
    remote.emit(body, lambda shown: _print_staged(shown, app, env))


@client_cert_group.command("list")
@connected()
def client_cert_list(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """Every client certificate of the environment (every page)."""
    with remote.connect() as api:
        certificates = api.list_client_certificates(app, env)
    remote.emit_rows(
        certificates,
        ("id", "subject", "valid until", "pins", "call name", "state"),
        lambda c: (
            c.get("id"),
            c.get("subject"),
            format_time(c.get("not_after")),
            c.get("pins"),
            c.get("call_name"),
            c.get("state"),
        ),
        empty=f"{app}/{env} has no client certificates.",
    )


CertificateIdArgument = Annotated[str, typer.Argument(help="The client certificate's id.")]


@client_cert_group.command("show")
@connected()
def client_cert_show(
    remote: Remote,
    certificate_id: CertificateIdArgument,
    app: AppOption,
    env: EnvOption,
) -> None:
    """One client certificate."""
    with remote.connect() as api:
        body = api.get_client_certificate(app, env, certificate_id)
    remote.emit(
        body, lambda shown: _print_client_certificate(shown, f"Client certificate {certificate_id}")
    )


@client_cert_group.command("update")
@connected()
def client_cert_update(
    remote: Remote,
    certificate_id: CertificateIdArgument,
    app: AppOption,
    env: EnvOption,
    pin: Annotated[
        list[str] | None,
        typer.Option("--pin", help="The pins, replacing all (repeatable).", show_default=False),
    ] = None,
    add_pin: Annotated[
        list[str] | None,
        typer.Option("--add-pin", help="A pin to add (repeatable).", show_default=False),
    ] = None,
    remove_pin: Annotated[
        list[str] | None,
        typer.Option("--remove-pin", help="A pin to remove (repeatable).", show_default=False),
    ] = None,
    no_pins: Annotated[bool, typer.Option("--no-pins", help="Remove every pin.")] = False,
    call_name: Annotated[
        str | None, typer.Option("--call-name", help="A new call name.", show_default=False)
    ] = None,
    no_call_name: Annotated[
        bool, typer.Option("--no-call-name", help="Remove the call name.")
    ] = False,
    description: Annotated[
        str | None, typer.Option("--description", help="A new description.", show_default=False)
    ] = None,
) -> None:
    """Change pins, call name or description (staged until restart)."""
    if sum((pin is not None, no_pins, bool(add_pin or remove_pin))) > 1:
        raise usage_error("give --pin, --no-pins, or --add-pin/--remove-pin, not several")
    if call_name is not None and no_call_name:
        raise usage_error("give --call-name or --no-call-name, not both")
    if not (pin or no_pins or add_pin or remove_pin or call_name or no_call_name) and (
        description is None
    ):
        raise usage_error("nothing to change: give pins, a call name or a description")
    with remote.connect() as api:
        pins: list[str] | None = [] if no_pins else pin
        if add_pin or remove_pin:
            current = api.get_client_certificate(app, env, certificate_id)
            removed = {p.lower() for p in remove_pin or ()}
            pins = [p for p in current.get("pins") or [] if str(p).lower() not in removed]
            pins += [p for p in add_pin or () if p.lower() not in {q.lower() for q in pins}]
        body = api.update_client_certificate(
            app,
            env,
            certificate_id,
            pins=pins,
            call_name=None if no_call_name else (call_name if call_name is not None else UNSET),
            description=description,
        )
    remote.emit(
        body,
        lambda shown: _print_client_certificate(
            shown, f"Updated client certificate {certificate_id} (staged)"
        ),
    )


@client_cert_group.command("delete")
@connected()
def client_cert_delete(
    remote: Remote,
    certificate_id: CertificateIdArgument,
    app: AppOption,
    env: EnvOption,
) -> None:
    """Remove a client certificate (staged: restart applies it, rollback brings it back)."""
    with remote.connect() as api:
        api.delete_client_certificate(app, env, certificate_id)
    remote.say(f"Removed client certificate {certificate_id} (staged until restart).")


client_cert_group.command("import-dir")(client_cert_import_dir)


def _print_staged(body: JsonObject, app: str, env: str) -> None:
    _print_client_certificate(body, f"Staged client certificate {body.get('id')}")
    print_line(f"Apply it with: certward restart --app {app} --env {env}", style="dim")
