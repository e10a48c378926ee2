"""Token buckets for uploads: per token and per app, for uploads and for failed uploads.

Pure: callers pass the moment (from the `Clock`), nothing here reads the clock. The
buckets live in the memory of one process: each replica (and each restart) has its own,
so a caller spread over N replicas gets up to N times the rate. That is the trade for
needing no shared store; the limits bound what one process spends on one tenant.

A bucket holds up to ``count`` tokens and refills at ``count / period``; a request takes
one token, or is refused with the seconds until one is back (``Retry-After``). Buckets
that are full again are dropped, so memory follows the callers active in the last period.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

_RATE = re.compile(r"^([0-9]{1,9})\s*/\s*([0-9]{0,6})\s*(s|sec|second|m|min|minute|h|hour)s?$")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
MAX_BUCKETS = 100_000  # per limit; beyond that the fullest are forgotten first


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """``count`` requests per ``period`` (a burst of ``count``, then ``count / period``)."""

    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= timedelta(0):
            raise ValueError("a rate needs a positive count and period")

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``30/minute``, ``10/min``, ``100/hour``, ``5/s``, ``20/10m``; None if not a rate."""
        match = _RATE.fullmatch(text.strip().lower())
        if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
            return None
        multiple = int(match.group(2) or 1)
        seconds = multiple * _UNITS[match.group(3)]
        return cls(count=int(match.group(1)), period=timedelta(seconds=seconds))

    def __str__(self) -> str:
        return f"{self.count}/{int(self.period.total_seconds())}s"


class Limit(StrEnum):
    """Which bucket refused: the label value of ``certward_rate_limited_total``."""

    UPLOADS_OF_CALLER = "upload-token"
    UPLOADS_OF_APP = "upload-app"
    FAILURES_OF_CALLER = "failed-upload-token"
    FAILURES_OF_APP = "failed-upload-app"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """One rate's token buckets, by key (a token id or an app id). Thread-safe."""

    __slots__ = ("_buckets", "_lock", "_per_second", "rate")

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._per_second = rate.count / rate.period.total_seconds()
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def wait(self, key: str, now: datetime) -> int:
        """Seconds until ``key`` may go again (0: now), taking nothing."""
        with self._lock:
            return self._wait(self._refilled(key, now.timestamp()))

    def take(self, key: str, now: datetime) -> None:
        """Take one token of ``key`` (it may go below zero: a failure after the fact)."""
        with self._lock:
            bucket = self._refilled(key, now.timestamp())
            bucket.tokens -= 1
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now.timestamp())

    def _refilled(self, key: str, at: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            return _Bucket(tokens=float(self.rate.count), at=at)
        elapsed = max(0.0, at - bucket.at)
        bucket.tokens = min(float(self.rate.count), bucket.tokens + elapsed * self._per_second)
        bucket.at = max(at, bucket.at)
        if bucket.tokens >= self.rate.count:
            del self._buckets[key]
        return bucket

    def _wait(self, bucket: _Bucket) -> int:
        if bucket.tokens >= 1:
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._per_second))

    def _forget_full(self, at: float) -> None:
        for key in list(self._buckets):
            self._refilled(key, at)
        while len(self._buckets) > MAX_BUCKETS:  # still too many: forget the fullest
            fullest = max(self._buckets, key=lambda k: self._buckets[k].tokens)
            del self._buckets[fullest]


class UploadLimits:
    """The four upload buckets of one process and how often each refused."""

    __slots__ = (
        "_failed_app",
        "_failed_token",
        "_lock",
        "_refused",
        "_upload_app",
        "_upload_token",
    )

    def __init__(self, *, upload: Rate, failed_upload: Rate) -> None:
        self._upload_token = Buckets(upload)
        self._upload_app = Buckets(upload)
        self._failed_token = Buckets(failed_upload)
        self._failed_app = Buckets(failed_upload)
        self._refused: Counter[Limit] = Counter()
        self._lock = threading.Lock()

    def admit(
        self, *, token: str | None, app: str | None, now: datetime
    ) -> tuple[Limit, int] | None:
        """Take an upload token of ``token`` and ``app``; or the limit that refuses and the
        seconds to wait (nothing taken then). A None key is not limited on that side."""
        checks = [
            (Limit.FAILURES_OF_CALLER, self._failed_token, token),
            (Limit.FAILURES_OF_APP, self._failed_app, app),
            (Limit.UPLOADS_OF_CALLER, self._upload_token, token),
            (Limit.UPLOADS_OF_APP, self._upload_app, app),
        ]
        with self._lock:  # check every bucket, then take from both, as one step
            for limit, buckets, key in checks:
                if key is not None:
                    wait = buckets.wait(key, now)
                    if wait:
                        self._refused[limit] += 1
                        return limit, wait
            for buckets, key in ((self._upload_token, token), (self._upload_app, app)):
                if key is not None:
                    buckets.take(key, now)
        return None

    def failed(self, *, token: str | None, app: str | None, now: datetime) -> None:
        """Count a refused upload against ``token`` and ``app``."""
        with self._lock:
            for buckets, key in ((self._failed_token, token), (self._failed_app, app)):
                if key is not None:
                    buckets.take(key, now)

    def refusals(self) -> dict[Limit, int]:
        """How many requests each limit refused since start."""
        with self._lock:
            return {limit: self._refused[limit] for limit in Limit}
