"""Which sites make ``nginx -t`` refuse a set: those its message names (a site file it
cannot load), else those found by bisection -- subsets of the sites rendered and
tested until the ones it refuses are found -- so one broken site does not hold back
every other tenant's change or renewal.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from certward.dataplane.nginx import CONFIG_FILE, RenderedSet
from certward.dataplane.nginx_directory import NginxDirectory, NginxOptions, render_into
from certward.dataplane.nginx_upstreams import UpstreamChecks
from certward.dataplane.state import DataPlaneState

VALIDATION_TIMEOUT = 120.0
MAX_BISECT_TRIALS = 200  # nginx -t runs one install may spend finding refused sites


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


def trial(
    nginx: str,
    state: DataPlaneState,
    directory: NginxDirectory,
    options: NginxOptions,
    checks: UpstreamChecks,
    exclude: Mapping[str, str],
) -> tuple[Validation, RenderedSet]:
    """``nginx -t`` on a scratch set of ``state`` without the sites in ``exclude``, its
    certificates named in the set (so nginx loads each one now); the set is deleted
    after."""
    set_path = directory.new_set_path(state.version)
    rendered = render_into(state, options, checks, set_path, exclude)
    directory.write_set(set_path, rendered.files)
    try:
        return validate(nginx, directory, set_path), rendered
    finally:
        shutil.rmtree(set_path, ignore_errors=True)


def refusals(
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
        return trial(nginx, state, directory, options, checks, exclude)[0]

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
