"""Shared timing for the benchmark scripts: medians of interleaved batches.

Interleaving the measured function with its baseline, batch by batch, makes the two
share whatever else the machine is doing; the ratio of medians is what we report.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The benchmarks reuse the test material builders (tests/material).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call_seconds(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def compare(
    measured: Callable[[], object],
    baseline: Callable[[], object],
    *,
    calls: int = 50,
    batches: int = 15,
) -> tuple[float, float]:
    """Median seconds per call of ``measured`` and ``baseline``, interleaved."""
    measured(), baseline()  # warm up
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(batches):
        theirs.append(per_call_seconds(baseline, calls))
        ours.append(per_call_seconds(measured, calls))
    return statistics.median(ours), statistics.median(theirs)


def row(label: str, ours: float, baseline: float, target: float | None = None) -> str:
    ratio = ours / baseline
    verdict = "" if target is None else ("  ok" if ratio <= target else f"  ABOVE {target}x")
    return (
        f"{label:<44} {ours * 1e3:9.3f} ms  vs {baseline * 1e3:9.3f} ms  "
        f"ratio {ratio:7.3g}x{verdict}"
    )
