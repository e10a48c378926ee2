"""Clocks: the system clock is aware UTC; the fixed clock moves only when told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from certward.clock import Clock, FixedClock, SystemClock

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_system_clock_is_aware_utc() -> None:
    """The real clock returns tz-aware UTC instants."""
    clock: Clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is UTC


def test_fixed_clock_stands_still_until_moved() -> None:
    """A fixed clock repeats its instant; ``advance`` and ``set`` move it."""
    clock = FixedClock(START)
    assert clock.now() == clock.now() == START
    assert clock.advance(timedelta(days=2)) == START + timedelta(days=2)
    assert clock.now() == START + timedelta(days=2)
    clock.set(START)
    assert clock.now() == START


def test_fixed_clock_converts_to_utc() -> None:
    """An instant given in another zone is kept as the same instant, in UTC."""
    clock = FixedClock(datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    assert clock.now() == START
    assert clock.now().tzinfo is UTC


def test_fixed_clock_refuses_naive_datetimes() -> None:
    """A naive datetime is ambiguous, so it is refused."""
    with pytest.raises(ValueError, match="tz-aware"):
        FixedClock(datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="tz-aware"):
        FixedClock(START).set(datetime(2026, 3, 1))
