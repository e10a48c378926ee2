"""Installing a state in the nginx directory: the set rendered and checked, changed
certificates written in place, and a new set made the active one when the
configuration changed (see `certward.dataplane.nginx_agent`).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from certward.clock import SystemClock
from certward.dataplane.nginx import RenderedSet
from certward.dataplane.nginx_certificates import CertificateDirectory
from certward.dataplane.nginx_directory import (
    CertificateLoading,
    NginxDirectory,
    NginxOptions,
    render_into,
)
from certward.dataplane.nginx_refusals import Validation, refusals, trial, validate
from certward.dataplane.nginx_upstreams import Lookup, UpstreamChecks, check_upstreams
from certward.dataplane.session_tickets import ticket_key_files
from certward.dataplane.state import DataPlaneState

MAX_EXCLUSION_ROUNDS = 5
TICKET_KEYS_DIRECTORY = "ticket-keys"


def resolve_host(host: str, port: int) -> Sequence[str]:
    """The addresses of ``host`` (`OSError` when it does not resolve)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in found]


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
            candidate = render_into(
                state, options, checks, active, excluded, live=live, served_as=active_version
            )
            if directory.holds(candidate.files):
                in_place = candidate  # only its certificates and skipped sites are used
        same_config = in_place is not None
        rendered = in_place or render_into(state, options, checks, set_path, excluded, live=live)
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
                reasons = refusals(
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
    check, rendered = trial(nginx, state, directory, options, checks, exclude)
    if check.ok:
        return check, {}
    return check, refusals(nginx, check, state, directory, options, checks, exclude, rendered)
