"""Runtime bundles on disk: one immutable directory per applied version, switched atomically.

    <root>/<app>/<env>/<version>/<file>.sealed   a complete bundle, every file sealed
                                                 (files 0600, directories 0700)
    <root>/<app>/<env>/current                   symlink to the applied version's directory

A bundle holds client keys next to the passwords that open them, so the store keeps
no file in the clear: each one is an AES-256-GCM envelope of the installation's
`SecretBox`, bound to its app, environment, version and path (a file copied to another
place does not open). Neither the data directory nor the master key alone yields a key.
The download (`tarball`) opens them; the copy `certward bundle install` puts on the
app's machine is the app's.

A version is written into a temporary directory, every file and directory fsynced,
then renamed into place; ``current`` is switched by renaming a new symlink over it.
A reader following ``current`` sees version N or N+1, never a mix, and a crash at any
point leaves ``current`` on a complete directory. Key rotation re-seals each file in
place with one atomic rename per file (the content it opens to does not change).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from certward.bundles.files import MANIFEST, verify_files
from certward.errors import SecretError
from certward.secrets import SecretBox, associated_data

CURRENT = "current"
SEALED_SUFFIX = ".sealed"
_TEMP_PREFIX = ".incoming-"


def bundle_file_aad(app: str, environment: str, version: int, relative: str) -> bytes:
    """The associated data of one sealed bundle file: where it belongs."""
    return associated_data("bundles", f"{app}/{environment}/{version}", relative)


class BundleStore:
    """The sealed bundles of every environment under ``root`` (``<data dir>/bundles``)."""

    def __init__(self, root: Path, box: SecretBox) -> None:
        self.root = root
        self._box = box

    def __repr__(self) -> str:
        return f"BundleStore({str(self.root)!r})"

    def environment_directory(self, app: str, environment: str) -> Path:
        return self.root / app / environment

    def version_directory(self, app: str, environment: str, version: int) -> Path:
        return self.environment_directory(app, environment) / str(version)

    def write(self, app: str, environment: str, version: int, files: dict[str, bytes]) -> Path:
        """Write version ``version`` completely, then move it into place (not yet current)."""
        parent = self.environment_directory(app, environment)
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = parent / str(version)
        temporary = parent / f"{_TEMP_PREFIX}{version}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(mode=0o700)
        for relative, data in files.items():
            path = temporary / (relative + SEALED_SUFFIX)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            aad = bundle_file_aad(app, environment, version, relative)
            _write_file(path, self._box.encrypt(data, aad=aad))
        for directory in sorted({p.parent for p in temporary.rglob("*")}, reverse=True):
            _fsync_directory(directory)
        if target.exists():  # left by an apply that never committed: not a real version
            shutil.rmtree(target)
        temporary.rename(target)
        _fsync_directory(parent)
        return target

    def activate(self, app: str, environment: str, version: int) -> None:
        """Point ``current`` at ``version`` in one atomic rename."""
        parent = self.environment_directory(app, environment)
        link = parent / f"{_TEMP_PREFIX}{CURRENT}-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(str(version))
        os.replace(link, parent / CURRENT)
        _fsync_directory(parent)

    def current_version(self, app: str, environment: str) -> int | None:
        link = self.environment_directory(app, environment) / CURRENT
        try:
            return int(os.readlink(link))
        except (OSError, ValueError):
            return None

    def read(self, app: str, environment: str, version: int, relative: str) -> bytes:
        """One file of a version, opened; `OSError` if absent, `SecretError` if it won't open."""
        path = self.version_directory(app, environment, version) / (relative + SEALED_SUFFIX)
        return self._box.decrypt(
            path.read_bytes(), aad=bundle_file_aad(app, environment, version, relative)
        )

    def manifest(self, app: str, environment: str, version: int) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(self.read(app, environment, version, MANIFEST))
        except (OSError, ValueError, SecretError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def is_complete(self, app: str, environment: str, version: int) -> bool:
        """The directory exists, its manifest reads, and every file matches its digest."""
        manifest = self.manifest(app, environment, version)
        if manifest is None or manifest.get("version") != version:
            return False
        return not verify_files(
            manifest, lambda relative: self.read(app, environment, version, relative)
        )

    def tarball(self, app: str, environment: str, version: int) -> bytes:
        """The version's files, opened, as a gzipped tar (paths relative to the bundle root)."""
        directory = self.version_directory(app, environment, version)
        buffer = io.BytesIO()
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
            tarfile.open(fileobj=compressed, mode="w") as archive,
        ):
            for path in sorted(p for p in directory.rglob("*" + SEALED_SUFFIX) if p.is_file()):
                relative = str(path.relative_to(directory))[: -len(SEALED_SUFFIX)]
                data = self.read(app, environment, version, relative)
                info = tarfile.TarInfo(relative)
                info.size = len(data)
                info.mode = 0o600
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def sealed_files(self) -> Iterator[tuple[Path, bytes]]:
        """Every sealed file of every complete version, with its associated data."""
        for version_directory in sorted(self.root.glob("*/*/*")):
            name = version_directory.name
            if not name.isdigit() or version_directory.is_symlink():
                continue
            app, environment = version_directory.parent.parent.name, version_directory.parent.name
            for path in sorted(version_directory.rglob("*" + SEALED_SUFFIX)):
                relative = str(path.relative_to(version_directory))[: -len(SEALED_SUFFIX)]
                yield path, bundle_file_aad(app, environment, int(name), relative)

    def remove_unsealed(self) -> int:
        """Delete version directories holding any file in the clear (a store written before
        bundles were sealed); they are rebuilt, sealed, when needed. How many."""
        removed = 0
        for version_directory in self.root.glob("*/*/*"):
            if not version_directory.name.isdigit() or version_directory.is_symlink():
                continue
            files = [p for p in version_directory.rglob("*") if p.is_file()]
            for leftover in (p for p in files if p.name.startswith(".")):
                leftover.unlink(missing_ok=True)  # a re-seal's temporary file, cut short
            if any(
                not p.name.startswith(".") and not p.name.endswith(SEALED_SUFFIX) for p in files
            ):
                shutil.rmtree(version_directory, ignore_errors=True)
                removed += 1
        return removed

    def remove_incoming(self) -> int:
        """Delete half-written version directories a crash left behind; how many."""
        removed = 0
        for leftover in self.root.glob(f"*/*/{_TEMP_PREFIX}*"):
            if leftover.is_symlink() or leftover.is_file():
                leftover.unlink(missing_ok=True)
            else:
                shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
        return removed

    def remove_environment(self, app: str, environment: str) -> None:
        shutil.rmtree(self.environment_directory(app, environment), ignore_errors=True)

    def remove_app(self, app: str) -> None:
        shutil.rmtree(self.root / app, ignore_errors=True)


def _write_file(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
