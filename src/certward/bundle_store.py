"""Runtime bundles on disk: one immutable directory per applied version, switched atomically.

    <root>/<app>/<env>/<version>/...   a complete bundle (files 0600, directories 0700)
    <root>/<app>/<env>/current         symlink to the applied version's directory

A version is written into a temporary directory, every file and directory fsynced,
then renamed into place; ``current`` is switched by renaming a new symlink over it.
A reader following ``current`` sees version N or N+1, never a mix, and a crash at any
point leaves ``current`` on a complete directory.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from certward.bundles import MANIFEST, verify_files

CURRENT = "current"
_TEMP_PREFIX = ".incoming-"


class BundleStore:
    """The bundles of every environment under ``root`` (``<data dir>/bundles``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

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
            path = temporary / relative
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_file(path, data)
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

    def manifest(self, app: str, environment: str, version: int) -> dict[str, Any] | None:
        path = self.version_directory(app, environment, version) / MANIFEST
        try:
            loaded: dict[str, Any] = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return loaded

    def is_complete(self, app: str, environment: str, version: int) -> bool:
        """The directory exists, its manifest reads, and every file matches its digest."""
        manifest = self.manifest(app, environment, version)
        if manifest is None or manifest.get("version") != version:
            return False
        directory = self.version_directory(app, environment, version)
        return not verify_files(manifest, lambda relative: (directory / relative).read_bytes())

    def tarball(self, app: str, environment: str, version: int) -> bytes:
        """The version's directory as a gzipped tar (paths relative to the bundle root)."""
        directory = self.version_directory(app, environment, version)
        buffer = io.BytesIO()
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
            tarfile.open(fileobj=compressed, mode="w") as archive,
        ):
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                data = path.read_bytes()
                info = tarfile.TarInfo(str(path.relative_to(directory)))
                info.size = len(data)
                info.mode = 0o600
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

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
