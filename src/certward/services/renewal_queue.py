"""The renewal queue: certificates that renew themselves, claimed by workers with a lease.

A table whose rows renew has ``renew_after``, ``attempts``, ``next_attempt_at``,
``last_error``, ``claimed_by`` and ``claimed_until``. A row is due once its
``renew_after`` has passed, its ``next_attempt_at`` (after a failure) too, and no
worker's lease on it is running. Any number of workers share a queue:

* `claim` marks up to ``limit`` due rows as one worker's until ``now + CLAIM_LEASE``, in
  one UPDATE whose subquery picks them (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
  concurrent workers claim disjoint rows; on SQLite writers take turns anyway);
* the worker then issues with no transaction open, and stores each outcome with a
  compare-and-set on ``claimed_by``: a worker whose lease expired stores nothing;
* `record_failure` backs off a row the worker still holds (`certward.issuing.renewal`
  says when it is due again) and keeps the error.
* a row whose ACME CA suggests a renewal window still ahead (RFC 9773) is only given its
  next ``renew_after`` and released (`RenewalReport.rescheduled`).

Managed certificates (`certward.services.managed`) and the ACME certificates of custom
domains (`certward.services.tls_acme`) are the two queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Table, or_, select, update

from certward.issuing.renewal import retry_at

CLAIM_LEASE = timedelta(minutes=5)
MAX_ERROR_LENGTH = 1000
RELEASED: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
"""The values that end a claim."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalReport:
    """What one renewal pass did."""

    claimed: int
    renewed: int
    failed: int
    lost: int  # claims another worker took over (lease expired) or rows deleted meanwhile
    rescheduled: int = 0  # not due after all: the CA's renewal window is still ahead


def claim(
    connection: Connection,
    table: Table,
    *,
    worker: str,
    now: datetime,
    limit: int,
    returning: Sequence[ColumnElement[Any]],
    eligible: Sequence[ColumnElement[bool]] = (),
) -> list[Row[Any]]:
    """Mark up to ``limit`` due rows of ``table`` (those meeting ``eligible`` too) as
    ``worker``'s, the most overdue first, and return ``returning`` of each, in the
    caller's transaction."""
    due = (
        select(table.c.id)
        .where(
            *eligible,
            table.c.renew_after <= now,
            or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now),
            or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
        )
        .order_by(table.c.renew_after)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(
        connection.execute(
            update(table)
            .where(table.c.id.in_(due))
            .values(claimed_by=worker, claimed_until=now + CLAIM_LEASE)
            .returning(*returning)
        )
    )


def record_failure(
    connection: Connection,
    table: Table,
    row_id: str,
    *,
    worker: str,
    attempts: int,
    error: str,
    now: datetime,
) -> bool:
    """Back off on a row ``worker`` still holds, which failed after ``attempts`` failed
    attempts before (its claim ends); False when the claim was lost meanwhile."""
    failures = attempts + 1
    result = connection.execute(
        update(table)
        .where(table.c.id == row_id, table.c.claimed_by == worker)
        .values(
            attempts=failures,
            next_attempt_at=retry_at(now, failures),
            last_error=error[:MAX_ERROR_LENGTH],
            **RELEASED,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
