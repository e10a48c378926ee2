"""The operator's files: uploads read, passwords and tokens from a file, standard input or
a hidden prompt, files written atomically, JSON read (unreadable or invalid input is exit 2)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import typer

from certward.api_client import UploadFile
from certward.cli.remote.terminal import usage_error
from certward.pki.material import MaterialKind, sniff_kind

PKCS12_SUFFIXES: Final = frozenset({".p12", ".pfx"})
CERTIFICATE_SUFFIXES: Final = frozenset({".p12", ".pfx", ".pem", ".crt", ".cer", ".der"})


def read_upload(path: Path) -> UploadFile:
    try:
        return UploadFile(path.name, path.read_bytes())
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror}") from exc


def read_optional_upload(path: Path | None) -> UploadFile | None:
    return None if path is None else read_upload(path)


def strip_line_break(raw: bytes) -> bytes:
    """One trailing line break belongs to the file, not to the password."""
    for ending in (b"\r\n", b"\n"):
        if raw.endswith(ending):
            return raw[: -len(ending)]
    return raw


def read_secret(path: Path | None, from_stdin: bool, what: str) -> bytes | None:
    """A password or token (``what``, as the errors name it) from a file or standard
    input, one trailing line break dropped; None when neither is given."""
    if path is not None and from_stdin:
        raise usage_error(f"give the {what} either as a file or on standard input, not both")
    if from_stdin:
        return strip_line_break(sys.stdin.buffer.read())
    if path is not None:
        try:
            return strip_line_break(path.read_bytes())
        except OSError as exc:
            raise usage_error(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    return None


def read_password(path: Path | None, from_stdin: bool, *, prompt: str | None) -> bytes | None:
    """The password from a file, standard input, or (``prompt``, on a terminal) a hidden
    prompt; None when none is given and none is needed."""
    given = read_secret(path, from_stdin, "password")
    if given is not None or path is not None or from_stdin:
        return given
    if prompt is not None and sys.stdin.isatty():
        entered: str = typer.prompt(
            prompt, hide_input=True, default="", show_default=False, err=True
        )
        return entered.encode("utf-8")
    return None


def is_pkcs12(upload: UploadFile) -> bool:
    return (
        Path(upload.filename).suffix.lower() in PKCS12_SUFFIXES
        or sniff_kind(upload.data) is MaterialKind.PKCS12
    )


def is_encrypted_key(upload: UploadFile | None) -> bool:
    return upload is not None and b"ENCRYPTED" in upload.data[:4096]


def write_file(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` atomically; ``private`` files (bundles hold keys) get mode 0600."""
    directory = path.parent if str(path.parent) else Path()
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise usage_error(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600 if private else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json_file(path: Path, what: str) -> Any:
    """JSON from ``path`` (``-``: standard input); unreadable or invalid JSON is exit 2."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise usage_error(f"{path} is not valid JSON ({what}): {exc}") from exc
