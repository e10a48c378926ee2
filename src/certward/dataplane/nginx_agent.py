"""Keeping Debian's nginx in step with the data plane state: the IO around
`certward.dataplane.nginx.render`.

A directory holds everything (``certward nginx render|sync --out DIR``; nginx runs as
``nginx -c DIR/nginx.conf -p DIR``)::

    DIR/nginx.conf -> sets/000007-3f2a.../nginx.conf   (a symlink, swapped atomically)
    DIR/sets/000007-3f2a.../   one rendered set: nginx.conf, client-ca/, state-version
    DIR/certificates/<host>.pem   chain and key, read by nginx at every handshake (0600)
    DIR/state-version          the state whose configuration and certificates are in place
    DIR/logs/ DIR/run/ DIR/tmp/   error and access logs, pid file, nginx's temp files

Certificates are not part of a set: nginx loads each one per handshake from
``certificates/`` (`certward.dataplane.nginx_certificates`), so a renewal or a replaced
certificate is a file renamed into place and needs no reload; nginx is reloaded only
when the configuration itself changes (a hostname added or removed, rules, client CAs,
upstreams), because a reload closes every idle keep-alive connection. The
configuration answers the version of the state it was rendered from, which stays the
same while only certificates change (``served_as``).

Before anything is written where nginx reads it, new certificates are checked with
``nginx -t`` on a scratch set that loads them the static way (``ssl_certificate``
naming the files); those already in place were checked when they were written. A set
is written into a temporary directory (every file fsynced) and renamed into place
whole, then validated with ``nginx -t`` on its own ``nginx.conf``, and only then does
the ``nginx.conf`` symlink move to it; so nginx never reads half a set, and a set
nginx refuses is deleted while the last good one stays in service. The configuration
names its files by absolute path inside its set, so a reload that reads while the
symlink moves still gets one consistent set. nginx is reloaded with SIGHUP to the pid
in ``run/nginx.pid``, and the reload is confirmed by asking the plain-HTTP listener
which state version it serves.

Upstream names are resolved here, once per install, and every address checked against
the operator's egress policy (`certward.dataplane.nginx_upstreams`): a site whose
upstream is refused or does not resolve is left out before nginx sees it. When
``nginx -t`` still refuses a set, the sites it names (a certificate it cannot load) are
left out; when it names none, the sites are bisected -- subsets rendered and tested
-- until the ones it refuses are found, and the rest is installed. One broken site
does not hold back every other tenant's change or renewal. The sites left out are
handed to the ``report`` callback of `NginxSync` (the CLI stores them for the API, the
console, the metrics and the webhooks: `certward.services.dataplane_exclusions`).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from certward.clock import SystemClock
from certward.dataplane.nginx import (
    CONFIG_FILE,
    STATE_PATH,
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
from certward.dataplane.nginx_upstreams import Lookup, UpstreamChecks, check_upstreams
from certward.dataplane.session_tickets import DEFAULT_ROTATION, ticket_key_files
from certward.dataplane.state import DataPlaneState
from certward.dataplane.tls_policy import INTERMEDIATE, NginxTls, TlsPolicy
from certward.egress import EgressPolicy
from certward.randomness import SYSTEM_RANDOMNESS

_write_file = write_new_file
_fsync_directory = fsync_directory

log = logging.getLogger("certward.nginx")

KEPT_SETS = 3  # the active set and the ones before it (a reload may still be reading one)
VALIDATION_TIMEOUT = 120.0
MAX_EXCLUSION_ROUNDS = 5
TICKET_KEYS_DIRECTORY = "ticket-keys"
MAX_BISECT_TRIALS = 200  # nginx -t runs one install may spend finding refused sites
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


def resolve_host(host: str, port: int) -> Sequence[str]:
    """The addresses of ``host`` (`OSError` when it does not resolve)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in found]


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


# -- validation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validation:
    """What ``nginx -t`` said about a set."""

    ok: bool
    output: str


def validate(nginx: str, directory: NginxDirectory, set_path: Path) -> Validation:
    """``nginx -t`` on the set's own configuration, with the directory as prefix."""
    command = [nginx, "-t", "-c", str(set_path / CONFIG_FILE), "-p", f"{directory.root}/"]
    try:
        completed = subprocess.run(  # noqa: S603 - a fixed program and our own paths
            command,
            capture_output=True,
            text=True,
            timeout=VALIDATION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Validation(ok=False, output=f"{' '.join(command)} could not run: {exc}")
    return Validation(ok=completed.returncode == 0, output=(completed.stderr or "").strip())


_SITE_FILE = re.compile(r"/(?:tls|client-ca)/([a-z0-9.-]+?)\.(?:crt|key|pem)\b")


def sites_named_in(output: str, state: DataPlaneState) -> set[str]:
    """The hostnames an ``nginx -t`` failure names: a site file it could not load.
    (Upstreams are rendered as checked addresses: nginx resolves no site's name.)"""
    return {match.group(1) for match in _SITE_FILE.finditer(output)} & set(state.sites)


# -- installing a state -------------------------------------------------------------------------


class InstallOutcome(StrEnum):
    UNCHANGED = "unchanged"  # the active set and the certificates already are this state
    CERTIFICATES = "certificates"  # only certificates changed: replaced in place, no reload
    INSTALLED = "installed"  # a new set is active (a reload puts it in effect)
    REJECTED = "rejected"  # nginx refused it; the last good set stays active


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    """What `install` did. ``certificates`` are the hostnames whose certificate file
    was written; ``config_version`` is what the active configuration answers on the
    state path (`wait_until_serving` after a reload)."""

    outcome: InstallOutcome
    set_path: Path | None
    skipped: Mapping[str, str] = field(default_factory=dict)
    problem: str | None = None
    certificates: tuple[str, ...] = ()
    config_version: str | None = None


def install(
    state: DataPlaneState,
    directory: NginxDirectory,
    options: NginxOptions,
    *,
    lookup: Lookup = resolve_host,
) -> Installed:
    """Render ``state``, check it, write the changed certificates in place and, when the
    configuration changed, make a new set the active one.

    Upstream names are resolved once through ``lookup`` and checked against the policy.
    Sites ``nginx -t`` names are left out and the set rendered again; when it names
    none, the sites are bisected to find the ones it refuses. Nothing is reloaded here:
    the caller reloads when the outcome is `InstallOutcome.INSTALLED`. With
    `CertificateLoading.STATIC` certificates are files of the set, as the configuration
    is, so every certificate change is a new set.
    """
    directory.prepare()
    if options.ticket_rotation is not None:
        files = ticket_key_files(
            directory.root / TICKET_KEYS_DIRECTORY,
            rotation=options.ticket_rotation,
            now=SystemClock().now().timestamp(),
        )
        options = replace(options, ticket_key_files=files)
    per_handshake = options.certificates is CertificateLoading.PER_HANDSHAKE
    store = directory.certificates_for(options) if per_handshake else directory.certificates
    if per_handshake:
        store.prepare()
    live = store if per_handshake else None
    checks = check_upstreams(
        (site.upstream for site in state.sites.values()), options.policy, lookup
    )
    excluded: dict[str, str] = {}
    for _ in range(MAX_EXCLUSION_ROUNDS + 1):
        set_path = directory.new_set_path(state.version)
        active = directory.active_set()
        active_version = directory.config_version()
        in_place: RenderedSet | None = None
        if active is not None and active_version is not None:
            # Rendered into the active set's place, answering its version: like with like.
            candidate = _render(
                state, options, checks, active, excluded, live=live, served_as=active_version
            )
            if directory.holds(candidate.files):
                in_place = candidate  # only its certificates and skipped sites are used
        same_config = in_place is not None
        rendered = in_place or _render(state, options, checks, set_path, excluded, live=live)
        changed = store.changed(rendered.certificates)
        if same_config and not changed:
            _settle(directory, store, rendered, state, per_handshake=per_handshake)
            return Installed(
                outcome=InstallOutcome.UNCHANGED,
                set_path=active,
                skipped=rendered.skipped,
                config_version=active_version,
            )
        if options.nginx is not None and changed:
            # nginx -t of the set does not load them: the new ones are checked the
            # static way (those in place were checked when they were written).
            check, reasons = _check(
                options.nginx, state, directory, options, checks, excluded, scope=set(changed)
            )
            if not check.ok:
                if not reasons:
                    return _rejected(active, rendered, check.output)
                excluded |= reasons
                continue
        # Written before a configuration naming a new hostname goes live.
        store.write(changed)
        if same_config:
            _settle(directory, store, rendered, state, per_handshake=per_handshake)
            return Installed(
                outcome=InstallOutcome.CERTIFICATES,
                set_path=active,
                skipped=rendered.skipped,
                certificates=tuple(sorted(changed)),
                config_version=active_version,
            )
        directory.write_set(set_path, rendered.files)
        if options.nginx is not None:
            check = validate(options.nginx, directory, set_path)
            if not check.ok:
                shutil.rmtree(set_path, ignore_errors=True)
                reasons = _refusals(
                    options.nginx, check, state, directory, options, checks, excluded, rendered
                )
                if not reasons:
                    return _rejected(active, rendered, check.output)
                excluded |= reasons
                continue
        directory.activate(set_path)
        directory.prune()
        _settle(directory, store, rendered, state, per_handshake=per_handshake)
        return Installed(
            outcome=InstallOutcome.INSTALLED,
            set_path=set_path,
            skipped=rendered.skipped,
            certificates=tuple(sorted(changed)),
            config_version=state.version,
        )
    return Installed(
        outcome=InstallOutcome.REJECTED,
        set_path=directory.active_set(),
        skipped=excluded,
        problem="too many sites refused by nginx -t",
    )


def _rejected(active: Path | None, rendered: RenderedSet, problem: str) -> Installed:
    return Installed(
        outcome=InstallOutcome.REJECTED, set_path=active, skipped=rendered.skipped, problem=problem
    )


def _settle(
    directory: NginxDirectory,
    store: CertificateDirectory,
    rendered: RenderedSet,
    state: DataPlaneState,
    *,
    per_handshake: bool,
) -> None:
    """After an install: no certificate file of a site no longer served, and the
    state recorded as the one in place."""
    if per_handshake:
        store.keep_only(rendered.certificates)
    elif store.path.is_dir():  # loaded from the sets now: no key left behind
        store.keep_only(())
    directory.record_version(state.version)


def _check(
    nginx: str,
    state: DataPlaneState,
    directory: NginxDirectory,
    options: NginxOptions,
    checks: UpstreamChecks,
    excluded: Mapping[str, str],
    *,
    scope: Collection[str],
) -> tuple[Validation, dict[str, str]]:
    """``nginx -t`` on a scratch set loading the certificates of the sites in ``scope``
    the static way, so nginx reads each one now; with the sites it refuses, each with
    nginx's words (empty when the fault is no site's)."""
    exclude = dict(excluded)
    exclude |= {hostname: "unchanged" for hostname in state.sites if hostname not in scope}
    check_path = directory.new_set_path(state.version)
    rendered = _render(state, options, checks, check_path, exclude)
    directory.write_set(check_path, rendered.files)
    try:
        check = validate(nginx, directory, check_path)
    finally:
        shutil.rmtree(check_path, ignore_errors=True)
    if check.ok:
        return check, {}
    return check, _refusals(nginx, check, state, directory, options, checks, exclude, rendered)


def _refusals(
    nginx: str,
    check: Validation,
    state: DataPlaneState,
    directory: NginxDirectory,
    options: NginxOptions,
    checks: UpstreamChecks,
    exclude: Mapping[str, str],
    rendered: RenderedSet,
) -> dict[str, str]:
    """The sites of a refused set nginx -t named, else found by bisection."""
    culprits = sites_named_in(check.output, state) - set(exclude)
    reasons = {hostname: f"nginx refused it: {_last_line(check.output)}" for hostname in culprits}
    if not reasons:
        served = [h for h in sorted(state.sites) if h not in rendered.skipped]
        reasons = _bisect(nginx, state, directory, options, checks, exclude, served)
    return reasons


def _render(
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


def _bisect(
    nginx: str,
    state: DataPlaneState,
    directory: NginxDirectory,
    options: NginxOptions,
    checks: UpstreamChecks,
    excluded: Mapping[str, str],
    candidates: list[str],
) -> dict[str, str]:
    """The sites among ``candidates`` that ``nginx -t`` refuses, each with nginx's words.

    Sets of sites are rendered and tested, halving the suspects each time: about
    2·k·log2(n) runs of ``nginx -t`` for k bad sites among n. Empty when the set fails
    without any site (the fault is elsewhere: an option, the ACME upstream).
    """
    trials = [0]

    def passes(included: Sequence[str]) -> Validation:
        trials[0] += 1
        keep = set(included)
        exclude = {**excluded, **{h: "bisect" for h in candidates if h not in keep}}
        set_path = directory.new_set_path(state.version)
        directory.write_set(set_path, _render(state, options, checks, set_path, exclude).files)
        try:
            return validate(nginx, directory, set_path)
        finally:
            shutil.rmtree(set_path, ignore_errors=True)

    if not passes([]).ok:
        return {}
    bad: dict[str, str] = {}
    good: list[str] = []

    def search(suspects: list[str]) -> None:
        if not suspects or trials[0] >= MAX_BISECT_TRIALS:
            return
        check = passes(good + suspects)
        if check.ok:
            good.extend(suspects)
            return
        if len(suspects) == 1:
            bad[suspects[0]] = f"nginx refused it: {_last_line(check.output)}"
            return
        middle = len(suspects) // 2
        search(suspects[:middle])
        search(suspects[middle:])

    search(candidates)
    return bad


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "[emerg]" in line] or output.splitlines()
    return lines[0].strip() if lines else "no output"


# -- reloading ---------------------------------------------------------------------------------


def reload(directory: NginxDirectory) -> bool:
    """SIGHUP to the master process in ``run/nginx.pid``; False when nginx is not running."""
    try:
        pid = int(directory.pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


def serving_version(http_listen: str, *, timeout: float = 2.0) -> str | None:
    """The state version nginx's plain-HTTP listener answers with, or None."""
    host, _, port = http_listen.rpartition(":")
    host = host.strip("[]")
    if host in {"0.0.0.0", "*", ""}:  # noqa: S104 - a wildcard listen, reached on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", STATE_PATH, headers={"Host": "certward-state.invalid"})
        response = connection.getresponse()
        body = response.read().decode("ascii", "replace").strip()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def wait_until_serving(
    http_listen: str, version: str, *, attempts: int = 100, pause: float = 0.1
) -> bool:
    """Ask until nginx serves ``version`` (a reload takes a moment); False if it never does."""
    waiter = threading.Event()
    for _ in range(attempts):
        if serving_version(http_listen) == version:
            return True
        waiter.wait(pause)
    return False


# -- the sync loop --------------------------------------------------------------------------------


class SyncOutcome(StrEnum):
    UNCHANGED = "unchanged"
    APPLIED = "applied"
    REJECTED = "rejected"
    LOAD_FAILED = "load-failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """``confirmed``: the state is in effect (nginx answered the reloaded configuration's
    version, or only certificates changed, which nginx reads at every handshake)."""

    outcome: SyncOutcome
    version: str | None = None
    reloaded: bool = False
    confirmed: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (SyncOutcome.UNCHANGED, SyncOutcome.APPLIED)


class NginxSync:
    """Polls the state; renders, validates, activates and reloads when it changes.

    A version nginx refused is not tried again until the state changes (its reason is
    logged once); the set before it keeps serving. After each install, ``report`` (if
    given) is told which sites the active set leaves out and why.
    """

    def __init__(
        self,
        load_state: Callable[[], DataPlaneState],
        directory: NginxDirectory,
        options: NginxOptions,
        *,
        confirm_attempts: int = 100,
        report: Callable[[DataPlaneState, Mapping[str, str]], None] | None = None,
    ) -> None:
        self.load_state = load_state
        self.report = report
        self.directory = directory
        self.options = options
        self.confirm_attempts = confirm_attempts
        self._applied: str | None = None
        self._rejected: str | None = None
        self._unreported: Mapping[str, str] | None = None  # exclusions still to report
        self._stop = threading.Event()

    def sync_once(self) -> SyncReport:
        """One look at the state, and whatever it takes to serve it."""
        try:
            state = self.load_state()
        except Exception:  # the loop outlives a database that is away; the next poll retries
            log.exception("could not load the data plane state; nginx keeps serving the last one")
            return SyncReport(outcome=SyncOutcome.LOAD_FAILED)
        if state.version == self._applied:
            if self._unreported is not None:
                self._report(state, self._unreported)
            return SyncReport(outcome=SyncOutcome.UNCHANGED, version=state.version)
        if state.version == self._rejected:
            return SyncReport(outcome=SyncOutcome.REJECTED, version=state.version)
        installed = install(state, self.directory, self.options)
        for hostname, reason in sorted(installed.skipped.items()):
            log.error("%s is not served by nginx: %s", hostname, reason)
        if installed.outcome is InstallOutcome.REJECTED:
            self._rejected = state.version
            log.error(
                "nginx refused the configuration of state %s; still serving %s:\n%s",
                state.version[:12],
                installed.set_path or "nothing",
                installed.problem,
            )
            return SyncReport(outcome=SyncOutcome.REJECTED, version=state.version)
        self._applied = state.version
        self._rejected = None
        self._report(state, installed.skipped)
        if installed.outcome is InstallOutcome.UNCHANGED:
            log.info("state %s is already in %s", state.version[:12], installed.set_path)
            return SyncReport(outcome=SyncOutcome.UNCHANGED, version=state.version)
        if installed.outcome is InstallOutcome.CERTIFICATES:
            # Read at the next handshake: nothing to reload, no connection closed.
            log.info(
                "state %s: certificates of %d hostname(s) replaced in place, no reload",
                state.version[:12],
                len(installed.certificates),
            )
            return SyncReport(outcome=SyncOutcome.APPLIED, version=state.version, confirmed=True)
        log.info(
            "state %s (%d hostnames) written to %s",
            state.version[:12],
            len(state.sites),
            installed.set_path,
        )
        if not reload(self.directory):
            log.warning(
                "nginx is not running (no live pid in %s); it reads %s when it starts",
                self.directory.pid_file,
                self.directory.config,
            )
            return SyncReport(outcome=SyncOutcome.APPLIED, version=state.version)
        confirmed = wait_until_serving(
            self.options.http_listen,
            installed.config_version or state.version,
            attempts=self.confirm_attempts,
        )
        if confirmed:
            log.info("nginx reloaded: serving state %s", state.version[:12])
        else:
            log.error(
                "nginx was told to reload but does not serve state %s; see %s",
                state.version[:12],
                self.directory.error_log,
            )
        return SyncReport(
            outcome=SyncOutcome.APPLIED, version=state.version, reloaded=True, confirmed=confirmed
        )

    def _report(self, state: DataPlaneState, skipped: Mapping[str, str]) -> None:
        if self.report is None:
            return
        try:
            self.report(state, skipped)
        except Exception:  # the database away, say: nginx is served all the same
            if self._unreported is None:  # said once, not at every poll
                log.exception("could not report the sites nginx leaves out; retrying")
            self._unreported = skipped  # report again at the next poll
        else:
            self._unreported = None

    def run(self, interval: float) -> None:
        """`sync_once` every ``interval`` seconds until `stop`."""
        log.info("syncing nginx in %s every %s s", self.directory.root, interval)
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:  # a full disk, say: logged, and the next poll tries again
                log.exception("nginx sync failed")
            self._stop.wait(interval)
        log.info("nginx sync stopped")

    def stop(self) -> None:
        self._stop.set()
