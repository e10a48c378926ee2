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
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from certward.dataplane.nginx import STATE_PATH
from certward.dataplane.nginx_directory import NginxDirectory, NginxOptions
from certward.dataplane.nginx_install import InstallOutcome, install
from certward.dataplane.state import DataPlaneState

log = logging.getLogger("certward.nginx")


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
