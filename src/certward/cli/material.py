"""``certward inspect`` and ``convert``: certificate material read and written locally.

Exit codes: 0 success, 1 the material has error problems or cannot be read, 2 usage
errors. Passwords come only from files or standard input, never from arguments.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from certward.cli.remote.local_files import PKCS12_SUFFIXES, read_secret, read_upload
from certward.cli.remote.terminal import stderr_console, stdout_console, usage_error
from certward.clock import SystemClock
from certward.errors import MaterialError
from certward.pki.checks import Purpose, judge
from certward.pki.convert import Pkcs12Profile, to_java_truststore, to_pem, to_pkcs12
from certward.pki.inspect import describe_certificate
from certward.pki.material import combine, load_material
from certward.pki.problems import Problem, ProblemCode, Severity
from certward.pki.report import Inspection, inspect_material
from certward.trust import public_roots


class OutputFormat(StrEnum):
    PKCS12 = "pkcs12"
    PEM = "pem"
    JAVA_TRUSTSTORE = "java-truststore"


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
    password = read_secret(password_file, password_stdin, "password")
    data = read_upload(file).data
    inspection = inspect_material(
        data,
        at=SystemClock().now(),
        password=password,
        purpose=purpose,
        hostnames=hostname or (),
        known_roots=public_roots(),
        expect_pkcs12=file.suffix.lower() in PKCS12_SUFFIXES,
    )
    if as_json:
        typer.echo(json.dumps(inspection.to_dict(), indent=2))
    else:
        _print_inspection(inspection, file, purpose)
    raise typer.Exit(0 if inspection.ok else 1)


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
    password = read_secret(password_file, False, "password")
    out_password = read_secret(out_password_file, False, "output password")
    if to is not OutputFormat.PEM and not out_password:
        raise usage_error(f"--to {to.value} needs --out-password-file")
    err = stderr_console()
    try:
        material = combine([load_material(read_upload(p).data, password=password) for p in inputs])
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
        raise usage_error(f"cannot write {out}: {exc}") from exc
    _write_private_file(out, written)
    _print_problems(err, [p for p in judgement.problems if p.severity is Severity.WARNING])
    stdout_console().print(Text(f"Wrote {summary} to {out}."))


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
    console = stdout_console()
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
