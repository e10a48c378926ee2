"""Session-ticket keys for nginx, written by the agent and rotated on a schedule.

nginx reads ``ssl_session_ticket_key`` files (80 random bytes: key name, HMAC secret,
AES key) when it loads its configuration: the first file encrypts new tickets, every
file decrypts. The agent keeps two, the current key and the one before it, so a
ticket stays usable for one rotation period after its key stops encrypting. Each key
gets a file name of its own (``<generation>.key``): a rotation changes the rendered
configuration, which is how the agent knows to reload.

Keys are secrets: mode 0600 from the moment the file exists, written atomically,
never logged. All workers of one nginx share them, so a client resumes whichever
worker accepts its next connection.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path

from certward.randomness import SYSTEM_RANDOMNESS

KEY_BYTES = 80
KEPT = 2
DEFAULT_ROTATION = timedelta(hours=12)
_SUFFIX = ".key"


def ticket_key_files(directory: Path, *, rotation: timedelta, now: float) -> tuple[str, ...]:
    """The key files nginx should use, newest first, after rotating when the newest is
    older than ``rotation`` (``now`` in seconds since the epoch)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    generations = _generations(directory)
    newest = generations[0] if generations else None
    if newest is None or now - _path(directory, newest).stat().st_mtime >= rotation.total_seconds():
        newest = (newest or 0) + 1
        _write_key(_path(directory, newest))
        generations.insert(0, newest)
    for old in generations[KEPT:]:
        with contextlib.suppress(FileNotFoundError):
            _path(directory, old).unlink()
    return tuple(str(_path(directory, g)) for g in generations[:KEPT])


def _generations(directory: Path) -> list[int]:
    found = []
    for entry in directory.iterdir():
        stem = entry.name.removesuffix(_SUFFIX)
        if entry.name.endswith(_SUFFIX) and stem.isdigit():
            found.append(int(stem))
    return sorted(found, reverse=True)


def _path(directory: Path, generation: int) -> Path:
    return directory / f"{generation}{_SUFFIX}"


def _write_key(path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{SYSTEM_RANDOMNESS.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            sink.write(SYSTEM_RANDOMNESS.token_bytes(KEY_BYTES))
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
