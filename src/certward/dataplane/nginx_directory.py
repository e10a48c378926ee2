"""The directory nginx runs from (its ``-p`` prefix), the rendered sets inside it,
and the options a set is rendered with (see `certward.dataplane.nginx_agent` for the
layout). Sets are written whole under a temporary name and renamed into place; the
``nginx.conf`` symlink moves to a set in one rename.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from certward.dataplane.nginx import (
    CONFIG_FILE,
    VERSION_FILE,
    RenderedFile,
    RenderedSet,
    render_set,
)
from certward.dataplane.nginx_certificates import (
    CertificateDirectory,
    fsync_directory,
    write_new_file,
)
from certward.dataplane.nginx_upstreams import UpstreamChecks
from certward.dataplane.session_tickets import DEFAULT_ROTATION
from certward.dataplane.state import DataPlaneState
from certward.dataplane.tls_policy import INTERMEDIATE, NginxTls, TlsPolicy
from certward.egress import EgressPolicy
from certward.randomness import SYSTEM_RANDOMNESS

_write_file = write_new_file
_fsync_directory = fsync_directory

KEPT_SETS = 3  # the active set and the ones before it (a reload may still be reading one)
_SET_NAME = re.compile(r"^(\d{6})-[A-Za-z0-9]+$")


class CertificateLoading(StrEnum):
    """How nginx gets site certificates (figures: ``benchmarks/bench_nginx_certificates.py``).

    ``per-handshake`` (the default): read from ``certificates/`` at every full
    handshake, so certificate changes need no reload and close no connection; a full
    handshake costs 2.7-3.6x the CPU. ``static``: part of the set, loaded at a reload;
    every renewal is a reload, which closes idle keep-alive connections.
    """

    PER_HANDSHAKE = "per-handshake"
    STATIC = "static"


@dataclass(frozen=True, slots=True, kw_only=True)
class NginxOptions:
    """How the configuration is rendered and checked.

    ``nginx`` is the program used for ``nginx -t``; None skips validation (rendering on
    a machine without nginx). ``policy`` is the operator's egress policy every upstream
    address must pass; ``upstream_trust_pem`` the CA certificates that verify https
    upstreams (`certward.trust.upstream_trust_pem`). ``worker_user`` is the user nginx's
    worker processes run as when its master runs as root (nginx's built-in default,
    ``nobody``, on Debian): they read the certificate files at every handshake, so an
    agent running as root makes that user their owner. ``certificates`` is how nginx
    loads them (`CertificateLoading`). ``tls`` is the TLS policy
    (`certward.dataplane.tls_policy`); session-ticket keys are rotated every
    ``ticket_rotation`` (`certward.dataplane.session_tickets`; None: no tickets, the
    shared session cache only). ``ticket_key_files`` is filled in by `install`.
    """

    https_listen: str
    http_listen: str
    acme_upstream: str
    nginx: str | None = None
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    upstream_trust_pem: bytes = field(default=b"", repr=False)
    worker_user: str = "nobody"
    certificates: CertificateLoading = CertificateLoading.PER_HANDSHAKE
    tls: TlsPolicy = INTERMEDIATE
    ticket_rotation: timedelta | None = DEFAULT_ROTATION
    ticket_key_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NginxDirectory:
    """The directory nginx runs from (its ``-p`` prefix) and the sets inside it."""

    root: Path

    @property
    def config(self) -> Path:
        """What nginx is started with (``-c``): a symlink to the active set's file."""
        return self.root / CONFIG_FILE

    @property
    def sets(self) -> Path:
        return self.root / "sets"

    @property
    def certificates(self) -> CertificateDirectory:
        """Where nginx reads each hostname's certificate at every handshake."""
        return CertificateDirectory(self.root.absolute() / "certificates")

    def certificates_for(self, options: NginxOptions) -> CertificateDirectory:
        """`certificates`, owned by nginx's worker user when this process is root."""
        return CertificateDirectory.for_workers(self.certificates.path, options.worker_user)

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.root / "logs" / "access.log"

    def prepare(self) -> None:
        """Create the directories nginx and the sets need; drop half-written sets."""
        if not self.root.is_dir():
            self.root.mkdir(parents=True)
            self.root.chmod(0o755)  # nginx's workers enter it (whatever the umask)
        self.sets.mkdir(mode=0o700, exist_ok=True)
        for name in ("logs", "run", "tmp"):
            (self.root / name).mkdir(mode=0o755, exist_ok=True)
        for leftover in self.sets.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def active_set(self) -> Path | None:
        """The set ``nginx.conf`` points to, if any."""
        if not self.config.is_symlink():
            return None
        target = (self.root / os.readlink(self.config)).parent
        return target if target.is_dir() else None

    def config_version(self) -> str | None:
        """The state version the active set's configuration was rendered from (what it
        answers on the state path)."""
        active = self.active_set()
        if active is None:
            return None
        try:
            return (active / VERSION_FILE).read_text().strip()
        except OSError:
            return None

    def served_version(self) -> str | None:
        """The state whose configuration and certificates are in place (newer than
        `config_version` when only certificates changed since the last reload)."""
        try:
            return (self.root / VERSION_FILE).read_text().strip()
        except OSError:
            return self.config_version()

    def record_version(self, version: str) -> None:
        """Write `served_version` (a new file renamed over the old)."""
        temporary = self.root / f".{VERSION_FILE}.{SYSTEM_RANDOMNESS.token_hex(6)}"
        try:
            _write_file(temporary, RenderedFile(version.encode("ascii") + b"\n"))
            os.replace(temporary, self.root / VERSION_FILE)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(self.root)

    def holds(self, files: Mapping[str, RenderedFile]) -> bool:
        """Whether the active set is exactly ``files`` (nothing to write or reload)."""
        active = self.active_set()
        if active is None:
            return False
        present = {str(path.relative_to(active)) for path in active.rglob("*") if path.is_file()}
        if present != set(files):
            return False
        try:
            return all((active / name).read_bytes() == f.content for name, f in files.items())
        except OSError:
            return False

    def new_set_path(self, version: str) -> Path:
        """Where the next set goes: a sequence number, then the state version's start."""
        numbers = [
            int(match.group(1))
            for entry in self.sets.iterdir()
            if (match := _SET_NAME.match(entry.name))
        ]
        tag = re.sub(r"[^A-Za-z0-9]", "", version)[:16] or "state"
        return self.sets / f"{max(numbers, default=0) + 1:06d}-{tag}"

    def write_set(self, destination: Path, files: Mapping[str, RenderedFile]) -> None:
        """Write ``files`` under a temporary name, fsync them, then rename the directory
        to ``destination`` in one step."""
        temporary = self.sets / f".tmp-{SYSTEM_RANDOMNESS.token_hex(6)}"
        temporary.mkdir(mode=0o700)
        try:
            directories = {temporary}
            for name, rendered in sorted(files.items()):
                path = temporary / name
                for parent in reversed(path.relative_to(temporary).parents[:-1]):
                    (temporary / parent).mkdir(mode=0o700, exist_ok=True)
                    directories.add(temporary / parent)
                _write_file(path, rendered)
            for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
                _fsync_directory(directory)
            os.rename(temporary, destination)
            _fsync_directory(self.sets)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    def activate(self, set_path: Path) -> None:
        """Point ``nginx.conf`` at ``set_path`` (a new symlink renamed over the old)."""
        link = self.root / f".{CONFIG_FILE}.{SYSTEM_RANDOMNESS.token_hex(6)}"
        os.symlink(os.path.relpath(set_path / CONFIG_FILE, self.root), link)
        try:
            os.replace(link, self.config)
        except BaseException:
            link.unlink(missing_ok=True)
            raise
        _fsync_directory(self.root)

    def prune(self, keep: int = KEPT_SETS) -> None:
        """Delete all but the newest ``keep`` sets, never the active one."""
        active = self.active_set()
        named = sorted(
            (entry for entry in self.sets.iterdir() if _SET_NAME.match(entry.name)),
            key=lambda entry: entry.name,
        )
        for entry in named[:-keep] if keep else named:
            if active is None or entry.resolve() != active.resolve():
                shutil.rmtree(entry, ignore_errors=True)


def render_into(
    state: DataPlaneState,
    options: NginxOptions,
    checks: UpstreamChecks,
    set_path: Path,
    exclude: Mapping[str, str] | Collection[str],
    *,
    live: CertificateDirectory | None = None,
    served_as: str | None = None,
) -> RenderedSet:
    """The set for ``set_path``: with ``live``, certificates loaded per handshake from
    that directory (what nginx serves); without, named in the set (what is checked)."""
    return render_set(
        state,
        https_listen=options.https_listen,
        http_listen=options.http_listen,
        acme_upstream=options.acme_upstream,
        prefix=str(set_path.absolute()),
        policy=options.policy,
        upstreams=checks,
        upstream_trust_pem=options.upstream_trust_pem,
        exclude=exclude,
        certificates=None if live is None else str(live.path),
        served_as=served_as,
        tls=NginxTls(options.tls, options.ticket_key_files),
    )
