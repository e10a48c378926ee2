"""When to renew a certificate, and when to try again after a failure. Pure.

A certificate is renewed at two thirds of its own lifetime, read from its own
``notBefore`` and ``notAfter`` (so a CA that shortens the lifetime asked for simply
moves the schedule earlier), spread later by a random jitter of up to `DEFAULT_JITTER`
of the lifetime so that thousands of certificates issued together are not all renewed
in the same minute, and never later than `SAFETY_FRACTION` of the lifetime before it
expires. The jitter only ever moves renewal later: never before two thirds of the
lifetime have passed, so a 6-day certificate is renewed at most every 4 days (a
jitter either way once let two renewals come 3.4 days apart).

When the ACME CA suggests a renewal window (RFC 9773, ACME Renewal Information), the
moment is drawn uniformly from that window instead (`renewal_moment`): a window
already over means now, an inverted one is ignored (the rule above applies), and one
reaching past the safety margin is cut there. `ari_retry_at` says when to ask the CA
for its window again. A failed renewal is retried with exponential backoff, capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certward.randomness import Randomness

RENEWAL_FRACTION = 2 / 3
SAFETY_FRACTION = 1 / 6  # renewal is due at the latest with this much lifetime left
DEFAULT_JITTER = 0.1  # of the lifetime, later than RENEWAL_FRACTION only
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
# Never due again sooner than this after issuance (`renew_after`'s ``earliest``):
MANAGED_RENEWAL_MIN_DELAY = timedelta(minutes=1)  # an environment's managed certificate
CUSTOM_DOMAIN_RENEWAL_MIN_DELAY = timedelta(hours=1)  # an ACME certificate of custom domains
# How often to ask for a certificate's renewal information (RFC 9773 §4.3.3): the CA's
# Retry-After, held between a minute and a day; six hours when it sends none.
ARI_DEFAULT_RETRY = timedelta(hours=6)
ARI_MIN_RETRY = timedelta(minutes=1)
ARI_MAX_RETRY = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalWindow:
    """A renewal window an ACME CA suggests (``suggestedWindow``), as it sent it."""

    start: datetime
    end: datetime


def renewal_moment(
    not_before: datetime,
    not_after: datetime,
    *,
    now: datetime,
    draw: float,
    window: RenewalWindow | None = None,
    jitter: float = DEFAULT_JITTER,
) -> datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` should be renewed.

    ``draw`` is a random number in [0, 1]. With a usable ``window`` (its start not after
    its end): the moment ``draw`` of the way through it, the window cut at the latest
    moment (``SAFETY_FRACTION`` of the lifetime before ``not_after``), and ``now`` when
    that moment has passed. Otherwise ``RENEWAL_FRACTION`` of the lifetime after
    ``not_before`` plus ``draw`` times ``jitter`` of the lifetime, at the latest that
    same latest moment (``now`` plays no part: a moment past is simply due).
    """
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter is a fraction of the lifetime in [0, 1), not {jitter}")
    if not 0 <= draw <= 1:
        raise ValueError(f"a random draw is in [0, 1], not {draw}")
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        raise ValueError("a certificate's notAfter must come after its notBefore")
    latest = not_after - lifetime * SAFETY_FRACTION
    if window is not None and window.start <= window.end:
        start, end = min(window.start, latest), min(window.end, latest)
        return max(now, start + (end - start) * draw)
    target = not_before + lifetime * (RENEWAL_FRACTION + jitter * draw)
    return max(not_before, min(target, latest))


def renew_after(
    not_before: datetime,
    not_after: datetime,
    *,
    jitter: float = DEFAULT_JITTER,
    rng: Randomness,
    earliest: datetime | None = None,
    window: RenewalWindow | None = None,
    now: datetime | None = None,
) -> datetime:
    """`renewal_moment` with a draw from ``rng`` (``now`` defaulting to ``not_before``).

    ``earliest`` (e.g. a minute after issuance) wins over everything: a certificate that
    a CA made too short, or whose window is over already, is renewed soon, but not in a
    loop.
    """
    due = renewal_moment(
        not_before,
        not_after,
        now=not_before if now is None else now,
        draw=min(1.0, max(0.0, rng.uniform(0, 1))),
        window=window,
        jitter=jitter,
    )
    return due if earliest is None else max(due, earliest)


def ari_retry_at(now: datetime, retry_after: str | None) -> datetime:
    """When to ask for renewal information again, from a ``Retry-After`` header (seconds
    or an HTTP date; `ARI_DEFAULT_RETRY` when absent or unreadable), held between
    `ARI_MIN_RETRY` and `ARI_MAX_RETRY` from ``now``."""
    wait = ARI_DEFAULT_RETRY
    text = (retry_after or "").strip()
    if text.isascii() and text.isdigit():
        wait = timedelta(seconds=min(int(text), int(ARI_MAX_RETRY.total_seconds())))
    elif text:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            wait = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) - now
    return now + min(ARI_MAX_RETRY, max(ARI_MIN_RETRY, wait))


def retry_at(
    now: datetime,
    attempts: int,
    *,
    base: timedelta = RETRY_BASE,
    cap: timedelta = RETRY_CAP,
) -> datetime:
    """When to try again after ``attempts`` failed attempts in a row (1 for the first).

    ``base`` doubled for every further failure, never more than ``cap``.
    """
    if attempts < 1:
        raise ValueError(f"attempts counts failures so far, at least 1, not {attempts}")
    exponent = min(attempts - 1, 32)  # 2**32 minutes is far beyond any sane cap
    return now + min(cap, base * (1 << exponent))
