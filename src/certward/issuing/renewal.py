"""When to renew a certificate, and when to try again after a failure. Pure.

A certificate is renewed at about two thirds of its own lifetime, read from its own
``notBefore`` and ``notAfter`` (so a CA that shortens the lifetime asked for simply
moves the schedule earlier), spread by a random jitter so that thousands of
certificates issued together are not all renewed in the same minute, and never later
than `SAFETY_FRACTION` of the lifetime before it expires. A failed renewal is retried
with exponential backoff, capped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certward.randomness import Randomness

RENEWAL_FRACTION = 2 / 3
SAFETY_FRACTION = 1 / 6  # renewal is due at the latest with this much lifetime left
DEFAULT_JITTER = 0.1  # of the lifetime, either way
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
# Never due again sooner than this after issuance (`renew_after`'s ``earliest``):
MANAGED_RENEWAL_MIN_DELAY = timedelta(minutes=1)  # an environment's managed certificate
CUSTOM_DOMAIN_RENEWAL_MIN_DELAY = timedelta(hours=1)  # an ACME certificate of custom domains


def renew_after(
    not_before: datetime,
    not_after: datetime,
    *,
    jitter: float = DEFAULT_JITTER,
    rng: Randomness,
    earliest: datetime | None = None,
) -> datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` should be renewed.

    About ``RENEWAL_FRACTION`` of the lifetime after ``not_before``, moved by up to
    ``jitter`` of the lifetime either way (drawn from ``rng``), at the latest
    ``SAFETY_FRACTION`` of the lifetime before ``not_after``. ``earliest`` (e.g. a
    minute after issuance) wins over everything: a certificate that a CA made too
    short is renewed soon, but not in a loop.
    """
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter is a fraction of the lifetime in [0, 1), not {jitter}")
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        raise ValueError("a certificate's notAfter must come after its notBefore")
    target = not_before + lifetime * RENEWAL_FRACTION + lifetime * rng.uniform(-jitter, jitter)
    latest = not_after - lifetime * SAFETY_FRACTION
    due = max(not_before, min(target, latest))
    return due if earliest is None else max(due, earliest)


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
