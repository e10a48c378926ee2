"""``certward client-cert import-dir``: many client certificates from one directory, with a
mapping file for their pins, call names, keys and passwords."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from certward.api_client import ApiClient, ApiProblem, JsonObject, UploadFile
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import (
    CERTIFICATE_SUFFIXES,
    PKCS12_SUFFIXES,
    read_json_file,
    read_password,
    strip_line_break,
)
from certward.cli.remote.options import (
    AppOption,
    EnvOption,
    PasswordFileOption,
    PasswordStdinOption,
)
from certward.cli.remote.terminal import (
    print_line,
    rows_table,
    stderr_console,
    stdout_console,
    usage_error,
)

_ENTRY_KEYS: Final = frozenset(
    {"pins", "call_name", "description", "key", "chain", "password_file"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportEntry:
    """One certificate file of a bulk import, as the mapping file describes it."""

    file: str
    pins: tuple[str, ...] = ()
    call_name: str | None = None
    description: str | None = None
    key: str | None = None
    chain: str | None = None
    password_file: Path | None = None


@dataclass(slots=True)
class ImportOutcome:
    """What became of the files of a bulk import, for the summary and ``--json``."""

    imported: list[JsonObject] = field(default_factory=list)
    failed: list[JsonObject] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_import_mapping(path: Path) -> list[ImportEntry]:
    """The mapping file of ``client-cert import-dir``: a JSON object from file name to
    ``{"pins", "call_name", "description", "key", "chain", "password_file"}`` (every
    member optional; ``password_file`` relative to the mapping file)."""
    data = read_json_file(path, "the mapping of file names to pins")
    if not isinstance(data, dict):
        raise usage_error(f"{path} must hold a JSON object from file name to its pins")
    entries: list[ImportEntry] = []
    for name, spec in data.items():
        where = f"{path}: entry {name!r}"
        if not name or Path(name).name != name:
            raise usage_error(f"{where}: give a file name in the directory, not a path")
        if not isinstance(spec, dict):
            raise usage_error(f'{where} must be an object such as {{"pins": [...]}}')
        unknown = sorted(set(spec) - _ENTRY_KEYS)
        if unknown:
            raise usage_error(
                f"{where}: unknown member {unknown[0]!r} (known: {', '.join(sorted(_ENTRY_KEYS))})"
            )
        pins = spec.get("pins", [])
        if isinstance(pins, str):
            pins = [pins]
        if not isinstance(pins, list) or not all(isinstance(p, str) for p in pins):
            raise usage_error(f"{where}: pins must be a list of names")
        texts = {
            k: spec.get(k) for k in ("call_name", "description", "key", "chain", "password_file")
        }
        for member, value in texts.items():
            if value is not None and not isinstance(value, str):
                raise usage_error(f"{where}: {member} must be text")
        password_file = texts["password_file"]
        entries.append(
            ImportEntry(
                file=name,
                pins=tuple(pins),
                call_name=texts["call_name"],
                description=texts["description"],
                key=texts["key"],
                chain=texts["chain"],
                password_file=None if password_file is None else path.parent / password_file,
            )
        )
    return entries


def _import_one(
    api: ApiClient,
    app: str,
    env: str,
    directory: Path,
    entry: ImportEntry,
    password: bytes | None,
    outcome: ImportOutcome,
) -> None:
    """Upload one file; a refusal or an unreadable file is recorded, never raised."""
    try:
        upload = UploadFile(entry.file, (directory / entry.file).read_bytes())
        key = _entry_file(directory, entry.key)
        chain = _entry_file(directory, entry.chain)
        if entry.password_file is not None:
            password = strip_line_break(entry.password_file.read_bytes())
    except OSError as exc:
        outcome.failed.append(
            {
                "file": entry.file,
                "status": None,
                "code": "file-not-found"
                if isinstance(exc, FileNotFoundError)
                else "unreadable-file",
                "detail": f"{exc.filename or entry.file}: {exc.strerror}",
                "problems": [],
            }
        )
        return
    try:
        body = api.upload_client_certificate(
            app,
            env,
            file=upload,
            password=password,
            key=key,
            chain=chain,
            pins=entry.pins,
            call_name=entry.call_name,
            description=entry.description,
        )
    except ApiProblem as problem:
        if problem.status == 401:
            raise  # the token is refused: no other file would fare better
        outcome.failed.append(
            {
                "file": entry.file,
                "status": problem.status,
                "code": problem.code,
                "detail": problem.detail,
                "problems": list(problem.problems),
                **problem.extra,
            }
        )
        return
    outcome.imported.append({"file": entry.file, "client_certificate": body})


def _entry_file(directory: Path, name: str | None) -> UploadFile | None:
    if name is None:
        return None
    return UploadFile(name, (directory / name).read_bytes())


def _failure_reason(failure: JsonObject) -> str:
    """The detail, then the error messages of the problem list it does not repeat."""
    parts = [str(failure.get("detail") or "")]
    for problem in failure.get("problems") or []:
        if isinstance(problem, dict) and problem.get("severity") == "error":
            message = str(problem.get("message", ""))
            if message and message not in parts[0]:
                parts.append(message)
    return " ".join(p for p in parts if p)


def _print_import_summary(outcome: ImportOutcome) -> None:
    rows: list[Sequence[Any]] = []
    for item in outcome.imported:
        body = item["client_certificate"]
        rows.append(
            (
                item["file"],
                Text("imported", style="green"),
                body.get("id"),
                body.get("pins"),
                body.get("subject"),
            )
        )
    for failure in outcome.failed:
        rows.append(
            (
                failure["file"],
                Text("failed", style="red"),
                Text(str(failure.get("code")), style="red"),
                None,
                _failure_reason(failure),
            )
        )
    for name in outcome.skipped:
        rows.append((name, Text("skipped", style="yellow"), None, None, "not in the mapping file"))
    stdout_console().print(
        rows_table(
            ("file", "result", "id or problem", "pins", "subject or why"), rows, title="Import"
        )
    )
    total = len(outcome.imported) + len(outcome.failed)
    summary = f"Imported {len(outcome.imported)} of {total} file(s)"
    summary += f"; {len(outcome.failed)} failed." if outcome.failed else "."
    if outcome.skipped:
        summary += f" {len(outcome.skipped)} certificate file(s) skipped: not in the mapping."
    print_line(summary, style="bold red" if outcome.failed else "bold green")


@connected()
def client_cert_import_dir(
    remote: Remote,
    directory: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, readable=True, help="Directory holding the files."
        ),
    ],
    app: AppOption,
    env: EnvOption,
    pins_from: Annotated[
        Path,
        typer.Option(
            "--pins-from",
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSON object: file name -> {pins, call_name, description, key, chain, "
            "password_file}.",
        ),
    ],
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Upload every file the mapping names, with its pins; say what failed and why.

    Exit 1 when any file failed."""
    entries = read_import_mapping(pins_from)
    if not entries:
        raise usage_error(f"{pins_from} names no files")
    needs_prompt = any(
        e.password_file is None and Path(e.file).suffix.lower() in PKCS12_SUFFIXES for e in entries
    )
    password = read_password(
        password_file,
        password_stdin,
        prompt="Password of the PKCS12 files" if needs_prompt else None,
    )
    named = {e.file for e in entries} | {n for e in entries for n in (e.key, e.chain) if n}
    outcome = ImportOutcome(
        skipped=sorted(
            p.name
            for p in directory.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.suffix.lower() in CERTIFICATE_SUFFIXES
            and p.name not in named
        )
    )
    with (
        remote.connect() as api,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=stderr_console(),
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("Importing", total=len(entries))
        for entry in entries:
            progress.update(task, description=f"Importing {entry.file}")
            _import_one(api, app, env, directory, entry, password, outcome)
            progress.advance(task)
    remote.emit(
        {"imported": outcome.imported, "failed": outcome.failed, "skipped": outcome.skipped},
        lambda _: _print_import_summary(outcome),
    )
    if outcome.failed:
        raise typer.Exit(1)
