"""Where "now" comes from: the only module that reads the system clock.

Everything else takes a `Clock` (services) or an explicit ``at`` (pure code), so
tests move time with `FixedClock` instead of patching.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of tz-aware UTC instants."""

    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and cache lifetimes)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on the system's monotonic clock."""
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """A clock that stands still until told to move (for tests)."""

    def __init__(self, at: datetime) -> None:
        self._at = _utc(at)

    def now(self) -> datetime:
        """The instant this clock was set to."""
        return self._at

    def monotonic(self) -> float:
        """Seconds since the epoch of the instant this clock was set to (moves with it)."""
        return self._at.timestamp()

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (tz-aware)."""
        self._at = _utc(at)

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new instant."""
        self._at = self._at + delta
        return self._at

    def __repr__(self) -> str:
        return f"FixedClock({self._at.isoformat()})"


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a clock needs a tz-aware datetime")
    return at.astimezone(UTC)
