"""The ``certward`` command line.

Exit codes: 0 success, 1 the material has error problems or cannot be read (or a
refusal), 2 usage errors. ``main(argv)`` returns the code, so tests call it directly.
Passwords come only from files or standard input, never from arguments.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from cryptography import x509
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certward.cli.remote import remote_app
from certward.clock import SystemClock
from certward.errors import ConfigurationError, MaterialError
from certward.pki.checks import Purpose, judge
from certward.pki.convert import Pkcs12Profile, to_java_truststore, to_pem, to_pkcs12
from certward.pki.inspect import describe_certificate
from certward.pki.material import combine, load_material
from certward.pki.problems import Problem, ProblemCode, Severity
from certward.pki.report import Inspection, inspect_material
from certward.settings import Settings

if TYPE_CHECKING:
    from certward.platform import Platform
from certward.trust import public_roots

PRIVATE_UMASK = 0o077

if TYPE_CHECKING:
    from certward.services.platform_ca import PlatformCaView

app = typer.Typer(
    name="certward",
    help="certward: the certificate control plane of an application hosting platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_PKCS12_SUFFIXES = {".p12", ".pfx"}


class OutputFormat(StrEnum):
    PKCS12 = "pkcs12"
    PEM = "pem"
    JAVA_TRUSTSTORE = "java-truststore"


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _usage_error(message: str) -> typer.Exit:
    """Say what is wrong with the command line; the caller raises the result (exit 2)."""
    _console(stderr=True).print(Text(f"Error: {message}", style="red"))
    return typer.Exit(2)


def _read_password(path: Path | None, from_stdin: bool, what: str) -> bytes | None:
    if path is not None and from_stdin:
        raise _usage_error(f"give the {what} either as a file or on standard input, not both")
    if from_stdin:
        raw = sys.stdin.buffer.read()
    elif path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _usage_error(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    else:
        return None
    # One trailing line break is the file's, not the password's.
    for ending in (b"\r\n", b"\n"):
        if raw.endswith(ending):
            return raw[: -len(ending)]
    return raw


def _read_input(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _usage_error(f"cannot read {path}: {exc.strerror}") from exc


@app.command("inspect")
def inspect_command(
    file: Annotated[Path, typer.Argument(help="PKCS12, PEM, DER or PKCS7 file.")],
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="File holding the password.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    purpose: Annotated[
        Purpose | None, typer.Option("--as", help="Judge the material for this purpose.")
    ] = None,
    hostname: Annotated[
        list[str] | None,
        typer.Option("--hostname", help="Host name a TLS certificate must cover (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Read certificate material, describe it and list every problem found."""
    password = _read_password(password_file, password_stdin, "password")
    data = _read_input(file)
    inspection = inspect_material(
        data,
        at=SystemClock().now(),
        password=password,
        purpose=purpose,
        hostnames=hostname or (),
        known_roots=public_roots(),
        expect_pkcs12=file.suffix.lower() in _PKCS12_SUFFIXES,
    )
    if as_json:
        typer.echo(json.dumps(inspection.to_dict(), indent=2))
    else:
        _print_inspection(inspection, file, purpose)
    raise typer.Exit(0 if inspection.ok else 1)


@app.command("convert")
def convert_command(
    inputs: Annotated[
        list[Path], typer.Argument(help="Certificate, key and chain files, in any format.")
    ],
    to: Annotated[OutputFormat, typer.Option("--to", help="Format to write.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="Password of the inputs.")
    ] = None,
    profile: Annotated[
        Pkcs12Profile, typer.Option("--profile", help="PKCS12 encryption to write.")
    ] = Pkcs12Profile.MODERN,
    out_password_file: Annotated[
        Path | None,
        typer.Option("--out-password-file", help="Password for the file written."),
    ] = None,
) -> None:
    """Convert material to PKCS12 (modern or legacy), PEM, or a Java truststore."""
    password = _read_password(password_file, False, "password")
    out_password = _read_password(out_password_file, False, "output password")
    if to is not OutputFormat.PEM and not out_password:
        raise _usage_error(f"--to {to.value} needs --out-password-file")
    err = _console(stderr=True)
    try:
        material = combine([load_material(_read_input(p), password=password) for p in inputs])
    except MaterialError as exc:
        _print_problems(err, exc.problems)
        raise typer.Exit(1) from exc
    judgement = judge(material, at=SystemClock().now(), known_roots=public_roots())
    chain = judgement.chain
    blocking = [p for p in judgement.problems if p.code is ProblemCode.KEY_MISMATCH]
    if to is OutputFormat.JAVA_TRUSTSTORE:
        blocking = []
    elif to is OutputFormat.PKCS12 and material.private_key is None:
        blocking.append(
            Problem.error(
                ProblemCode.NO_PRIVATE_KEY,
                "A PKCS12 container needs a certificate and its private key; give the key "
                "file as an input too.",
            )
        )
    if blocking:
        _print_problems(err, blocking)
        raise typer.Exit(1)
    try:
        if to is OutputFormat.JAVA_TRUSTSTORE:
            written = to_java_truststore(
                material.certificates, password=out_password or b"", profile=profile
            )
            summary = f"a Java truststore with {len(material.certificates)} trusted certificate(s)"
        elif to is OutputFormat.PKCS12 and material.private_key and judgement.leaf:
            written = to_pkcs12(
                private_key=material.private_key,
                certificate=judgement.leaf,
                chain=[c for c in chain if c is not judgement.leaf],
                password=out_password or b"",
                profile=profile,
            )
            summary = f"a {profile.value} PKCS12 container with {len(chain)} certificate(s)"
        else:
            written = to_pem(chain, private_key=material.private_key, key_password=out_password)
            summary = f"PEM with {len(chain)} certificate(s)" + (
                " and the private key" if material.private_key is not None else ""
            )
    except ValueError as exc:  # e.g. a password the PKCS12 format cannot carry
        raise _usage_error(f"cannot write {out}: {exc}") from exc
    _write_private_file(out, written)
    _print_problems(err, [p for p in judgement.problems if p.severity is Severity.WARNING])
    _console().print(Text(f"Wrote {summary} to {out}."))


def _write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically, readable by the owner only (it may hold a key)."""
    directory = path.parent if str(path.parent) else Path()
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _print_inspection(inspection: Inspection, file: Path, purpose: Purpose | None) -> None:
    console = _console()
    kind = inspection.kind.value.upper() if inspection.kind else "unrecognised"
    header = Text(f"{file}: ", style="bold")
    header.append(f"{kind} file")
    judgement = inspection.judgement
    if judgement is not None:
        has_key = judgement.material.private_key is not None
        header.append(", with a private key" if has_key else ", no private key")
    console.print(header)
    if inspection.pkcs12 is not None:
        details = inspection.pkcs12
        console.print(
            Text(
                f"PKCS12: encryption {details.encryption.value}"
                f" ({', '.join(details.algorithms) or 'none'}), MAC "
                f"{details.mac_algorithm or 'none'}, {details.mac_iterations or 0} iterations"
            )
        )
    if judgement is not None:
        for number, certificate in enumerate(judgement.chain + judgement.unrelated, start=1):
            console.print(_certificate_table(number, certificate, certificate is judgement.leaf))
    _print_problems(console, inspection.problems)
    purpose_text = f" as {purpose.value}" if purpose else ""
    if inspection.ok:
        console.print(Text(f"OK{purpose_text}: no errors.", style="bold green"))
    else:
        errors = sum(1 for p in inspection.problems if p.is_error)
        console.print(Text(f"Refused{purpose_text}: {errors} error(s).", style="bold red"))


def _certificate_table(number: int, certificate: x509.Certificate, is_leaf: bool) -> Table:
    info = describe_certificate(certificate)
    role = "leaf" if is_leaf else ("CA" if info.is_ca else "certificate")
    if info.self_signed:
        role += ", self-signed"
    table = Table(
        title=Text(f"{number}. {info.subject}  ({role})", style="bold"),
        title_justify="left",
        show_header=False,
        box=box.SIMPLE,
        pad_edge=False,
    )
    table.add_column("field", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold")
    key = info.key.key_type + (f" {info.key.key_size}" if info.key.key_size else "")
    if info.key.curve:
        key += f" ({info.key.curve})"
    rows = [
        ("issuer", info.issuer),
        ("valid", f"{info.not_before:%Y-%m-%d %H:%M} → {info.not_after:%Y-%m-%d %H:%M} UTC"),
        ("key", f"{key}, signed with {info.signature_algorithm}"),
        ("serial", info.serial),
        ("SANs", ", ".join(info.san) or "none"),
        ("key usage", ", ".join(info.key_usage + info.eku) or "not stated"),
        ("SHA-256", info.sha256_fingerprint),
    ]
    if info.is_ca:
        rows.insert(
            4, ("path length", "unlimited" if info.path_length is None else str(info.path_length))
        )
    for field, value in rows:
        table.add_row(field, Text(value))
    return table


def _print_problems(console: Console, problems: Sequence[Problem]) -> None:
    for problem in problems:
        style = "red" if problem.is_error else "yellow"
        line = Text(f"{problem.severity.value} ", style=f"bold {style}")
        line.append(f"[{problem.code.value}] ", style=style)
        line.append(problem.message)
        console.print(line)


bundle_app = typer.Typer(help="Runtime bundles.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("install")
def bundle_install_command(
    into: Annotated[Path, typer.Option("--into", help="Directory the runtime reads.")],
    app_name: Annotated[str, typer.Option("--app", help="App name.")],
    environment: Annotated[str, typer.Option("--env", help="Environment name.")],
    version: Annotated[
        int | None, typer.Option("--version", help="A version (default: the applied one).")
    ] = None,
    server: Annotated[
        str, typer.Option("--server", envvar="CERTWARD_SERVER", help="certward's URL.")
    ] = "http://127.0.0.1:8700",
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding the token (or set CERTWARD_TOKEN)."),
    ] = None,
) -> None:
    """Download the environment's runtime bundle and install it in DIR, paths absolute."""
    from certward.bundles.install import BundleInstallError, fetch, install

    token = _read_password(token_file, False, "token")
    secret = token.decode().strip() if token else os.environ.get("CERTWARD_TOKEN", "").strip()
    if not secret:
        raise _usage_error("give a token with --token-file or CERTWARD_TOKEN")
    try:
        installed = install(fetch(server, secret, app_name, environment, version), into)
    except BundleInstallError as exc:
        _console(stderr=True).print(Text(f"Error: {exc}", style="red"))
        raise typer.Exit(1) from exc
    _console().print(
        Text(
            f"Installed version {installed.version} of {installed.app}/{installed.environment} "
            f"({installed.client_certificates} client certificate(s)) in {installed.directory}."
        )
    )


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Master key.", no_args_is_help=True)
ca_app = typer.Typer(help="The built-in platform CA.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(ca_app, name="ca")


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc


def _config_error(exc: ConfigurationError) -> typer.Exit:
    _console(stderr=True).print(Text(f"certward cannot start: {exc}", style="red"))
    return typer.Exit(1)


@app.command("serve")
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
        serve(_settings(), gateway=gateway)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc


@db_app.command("upgrade")
def db_upgrade_command() -> None:
    """Apply the database migrations (also done by serve at start)."""
    from certward.db import head_revision
    from certward.platform import upgrade_schema

    settings = _settings()
    try:
        upgrade_schema(settings)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc
    _console().print(Text(f"Database at revision {head_revision()}."))


@keys_app.command("rotate")
def keys_rotate_command(
    retire: Annotated[
        bool, typer.Option("--retire", help="Remove keys no secret uses any more.")
    ] = False,
) -> None:
    """Add a new master key and re-encrypt every stored secret with it, in one transaction."""
    from certward.platform import open_platform
    from certward.services.keys import rotate

    settings = _settings()
    try:
        platform = open_platform(settings, bootstrap=False)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc
    try:
        result = rotate(
            settings, platform.context.database, platform.context.secrets.keyring, retire=retire
        )
    except ConfigurationError as exc:
        raise _config_error(exc) from exc
    finally:
        platform.close()
    _console().print(
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

    with _operator_platform() as platform:
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

    with _operator_platform() as platform:
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
    console = _console()
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


webhook_app = typer.Typer(help="Expiry webhooks.", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")


@webhook_app.command("add")
def webhook_add_command(
    url: Annotated[str, typer.Argument(help="http(s) URL that receives JSON notices.")],
) -> None:
    """Notify URL when a certificate enters expires-soon, expires, or fails to renew."""
    from certward.errors import Refusal
    from certward.services import notifications
    from certward.services.notifications import SYSTEM

    with _operator_platform() as platform:
        try:
            hook = notifications.add_webhook(platform.context, SYSTEM, url)
        except Refusal as exc:
            raise _usage_error(exc.message) from exc
    _console().print(Text(f"Webhook {hook.id} added: {hook.url}"))


@webhook_app.command("list")
def webhook_list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The registered webhooks."""
    from certward.services import notifications
    from certward.services.notifications import SYSTEM

    with _operator_platform() as platform:
        hooks = notifications.list_webhooks(platform.context, SYSTEM)
    if as_json:
        typer.echo(json.dumps([{"id": h.id, "url": h.url} for h in hooks], indent=2))
        return
    for hook in hooks:
        _console().print(Text(f"{hook.id}  {hook.url}"))


@webhook_app.command("remove")
def webhook_remove_command(
    webhook_id: Annotated[str, typer.Argument(help="The webhook's id.")],
) -> None:
    """Stop notifying a webhook (its pending notices go with it)."""
    from certward.errors import Refusal
    from certward.services import notifications
    from certward.services.notifications import SYSTEM

    with _operator_platform() as platform:
        try:
            notifications.remove_webhook(platform.context, SYSTEM, webhook_id)
        except Refusal as exc:
            _console(stderr=True).print(Text(f"Error: {exc.message}", style="red"))
            raise typer.Exit(1) from exc
    _console().print(Text(f"Webhook {webhook_id} removed."))


@contextmanager
def _operator_platform() -> Iterator[Platform]:
    """The installation opened for an operator command (no bootstrap, closed after)."""
    from certward.platform import open_platform

    settings = _settings()
    try:
        platform = open_platform(settings, bootstrap=False)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc
    try:
        yield platform
    finally:
        platform.close()


@app.command("worker")
def worker_command() -> None:
    """Renew due managed certificates every CERTWARD_RENEWAL_INTERVAL until SIGTERM/SIGINT.

    Safe to run many at once, on other machines too (PostgreSQL)."""
    import logging
    import signal

    from certward.platform import open_platform
    from certward.worker import RenewalWorker

    try:
        platform = open_platform(_settings(), bootstrap=False)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc
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


@app.command("gateway")
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

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        run_gateway(settings, workers=workers)
    except ConfigurationError as exc:
        raise _config_error(exc) from exc
    except OSError as exc:
        raise _config_error(
            ConfigurationError(f"The gateway cannot listen: {exc.strerror or exc}.")
        ) from exc


# The data plane on Debian's nginx (certward nginx render|sync).
from certward.cli.nginx import nginx_app  # noqa: E402 - after the helpers it uses

app.add_typer(nginx_app, name="nginx")


# The commands that drive a certward server through its API (app, env, client-cert, …).
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
