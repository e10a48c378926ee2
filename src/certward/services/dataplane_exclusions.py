"""The sites the nginx data plane leaves out, as the nginx agent reports them.

After every install the agent (`certward nginx sync|render`) records the sites the
active configuration does not serve, with the reason: an upstream the egress policy
refuses or that does not resolve, a site ``nginx -t`` rejects. A site excluded for the
first time queues a ``data-plane.site-excluded`` webhook notice; a site served again
is simply no longer listed. Platform administrators read the list in the API
(``GET /api/v1/platform/data-plane/excluded-sites``), the console's platform page and
the ``certward_dataplane_excluded_sites`` metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from certward.authorization import Action, Principal
from certward.dataplane.state import DataPlaneState
from certward.model import DataPlaneExclusion, Webhook, WebhookDelivery
from certward.services.context import Context
from certward.services.lookups import require

EVENT = "data-plane.site-excluded"
MAX_REASON = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class ExcludedSite:
    hostname: str
    app: str
    environment: str
    reason: str
    since: datetime


def record(ctx: Context, state: DataPlaneState, skipped: Mapping[str, str]) -> list[str]:
    """Make the stored list exactly ``skipped``; returns the hostnames newly excluded."""
    now = ctx.clock.now()
    added: list[str] = []
    with ctx.database.transaction() as session:
        rows = {row.hostname: row for row in session.scalars(select(DataPlaneExclusion))}
        for hostname, gone in rows.items():
            if hostname not in skipped:
                session.delete(gone)
        hooks = list(session.scalars(select(Webhook.id)))
        for hostname, reason in sorted(skipped.items()):
            text = reason[:MAX_REASON]
            existing = rows.get(hostname)
            if existing is not None:
                existing.reason = text
                continue
            site = state.sites.get(hostname)
            row = DataPlaneExclusion(
                hostname=hostname,
                app=site.app if site else "",
                environment=site.environment if site else "",
                reason=text,
                since=now,
            )
            session.add(row)
            added.append(hostname)
            payload = {"event": EVENT, "at": now.isoformat(), "site": _describe(row)}
            for hook in hooks:
                session.add(
                    WebhookDelivery(
                        webhook_id=hook,
                        event=EVENT,
                        dedup_key=f"site-excluded:{hostname}:{now.isoformat()}"[:255],
                        payload=payload,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
    return added


def list_excluded(ctx: Context, principal: Principal) -> list[ExcludedSite]:
    """Every site the nginx data plane leaves out (platform administrators)."""
    require(principal, Action.ADMINISTER)
    with ctx.database.reading() as session:
        return [
            ExcludedSite(
                hostname=row.hostname,
                app=row.app,
                environment=row.environment,
                reason=row.reason,
                since=row.since,
            )
            for row in session.scalars(
                select(DataPlaneExclusion).order_by(DataPlaneExclusion.hostname)
            )
        ]


def count(ctx: Context) -> int:
    with ctx.database.reading() as session:
        return len(list(session.scalars(select(DataPlaneExclusion.hostname))))


def _describe(row: DataPlaneExclusion) -> dict[str, str]:
    return {
        "hostname": row.hostname,
        "app": row.app,
        "environment": row.environment,
        "reason": row.reason,
        "since": row.since.isoformat(),
    }
