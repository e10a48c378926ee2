"""The certificates nginx reads at every handshake: ``DIR/certificates/<hostname>.pem``.

The configuration `certward.dataplane.nginx.render_set` writes with ``certificates=``
names each site's certificate through ``$server_name``, so nginx opens the file at
each full handshake instead of once at a reload. A renewal, a replaced custom-domain
certificate or a first certificate is then a file renamed into place here: the next
handshake presents it, and no connection is closed, because nothing is reloaded.

Each file holds the chain and the private key (`certificate_file`): nginx opens the
path twice per handshake (once for the chain, once for the key), and one file renamed
whole changes both at once. A handshake whose two opens straddle the rename reads the
old chain and the new key and fails; the window is the time nginx takes to parse the
chain (tens of microseconds; measured in ``benchmarks/bench_nginx_certificates.py``).

Files are written as keys must be: created 0600 under a temporary name (``O_EXCL``),
fsynced, renamed over the old one, the directory fsynced. The directory is 0700 and
the files 0600, owned by the user nginx's workers run as, who read them: the agent's
own user when nginx runs as that user, or -- when the agent runs as root, as nginx's
master then does -- nginx's worker user (``owner``). Nothing here logs content.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from certward.dataplane.nginx import CERTIFICATE_SUFFIX, RenderedFile
from certward.randomness import SYSTEM_RANDOMNESS

_TEMPORARY_PREFIX = ".tmp-"


def write_new_file(path: Path, rendered: RenderedFile, *, owner: int | None = None) -> None:
    """Create ``path`` (it must not exist) with the rendered bytes and mode, fsynced;
    owned by the user ``owner`` when given (the agent then runs as root)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, rendered.mode)
    if owner is not None:
        os.fchown(descriptor, owner, -1)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(rendered.content)
        stream.flush()
        os.fsync(stream.fileno())
    os.chmod(path, rendered.mode)  # whatever the umask took away


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True, slots=True)
class CertificateDirectory:
    """``DIR/certificates``: one file per hostname, replaced whole. ``owner`` is the
    user id given the directory and files (None: the agent's own)."""

    path: Path
    owner: int | None = None

    @classmethod
    def for_workers(cls, path: Path, worker_user: str) -> CertificateDirectory:
        """``path`` as nginx's workers must read it: owned by ``worker_user`` when this
        process is root (`ValueError` when that user does not exist or cannot enter
        ``path``), by this process's user otherwise."""
        if os.geteuid() != 0:
            return cls(path)
        try:
            worker = pwd.getpwnam(worker_user)
        except KeyError:
            raise ValueError(f"nginx's worker user {worker_user!r} does not exist") from None
        for parent in path.parents:
            if not _may_enter(parent, worker.pw_uid, worker.pw_gid):
                raise ValueError(
                    f"nginx's workers (user {worker_user}) read the certificates in {path} at "
                    f"every handshake, but cannot enter {parent} "
                    f"(mode {stat.S_IMODE(parent.stat().st_mode):o})"
                )
        return cls(path, worker.pw_uid)

    def prepare(self) -> None:
        """Create the directory (0700); drop files a crash left half-written."""
        self.path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        if self.owner is not None:
            os.chown(self.path, self.owner, -1)
        for leftover in self.path.glob(f"{_TEMPORARY_PREFIX}*"):
            leftover.unlink(missing_ok=True)

    def file_of(self, hostname: str) -> Path:
        return self.path / f"{hostname}{CERTIFICATE_SUFFIX}"

    def changed(self, wanted: Mapping[str, RenderedFile]) -> dict[str, RenderedFile]:
        """The entries of ``wanted`` (by hostname) whose file is missing or differs."""
        out: dict[str, RenderedFile] = {}
        for hostname, rendered in wanted.items():
            try:
                present = self.file_of(hostname).read_bytes()
            except OSError:
                present = None
            if present != rendered.content:
                out[hostname] = rendered
        return out

    def write(self, files: Mapping[str, RenderedFile]) -> None:
        """Replace each hostname's file in one rename, then fsync the directory once."""
        if not files:
            return
        for hostname, rendered in sorted(files.items()):
            temporary = self.path / f"{_TEMPORARY_PREFIX}{SYSTEM_RANDOMNESS.token_hex(6)}"
            try:
                write_new_file(temporary, rendered, owner=self.owner)
                os.replace(temporary, self.file_of(hostname))
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        fsync_directory(self.path)

    def keep_only(self, hostnames: Collection[str]) -> list[str]:
        """Delete the files of every other hostname; the hostnames deleted."""
        keep = set(hostnames)
        removed: list[str] = []
        for entry in self.path.glob(f"*{CERTIFICATE_SUFFIX}"):
            hostname = entry.name[: -len(CERTIFICATE_SUFFIX)]
            if hostname not in keep and not entry.name.startswith(_TEMPORARY_PREFIX):
                entry.unlink(missing_ok=True)
                removed.append(hostname)
        if removed:
            fsync_directory(self.path)
        return sorted(removed)


def _may_enter(directory: Path, uid: int, gid: int) -> bool:
    """Whether the user ``uid`` (primary group ``gid``) may traverse ``directory``."""
    info = directory.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)
