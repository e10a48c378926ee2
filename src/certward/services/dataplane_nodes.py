"""The data-plane nodes (gateway workers, nginx agents) as they last reported themselves.

A node upserts its row after a successful poll, at most every few seconds
(`certward.services.dataplane_follower`): the change sequence it has applied, the
digest of the state it serves, how many hostnames. Platform administrators read the
list with the current sequence and each node's lag
(``GET /api/v1/platform/data-plane/nodes``, the console's platform page, the
``certward_dataplane_node_lag`` and ``certward_dataplane_sequence`` metrics). A node
that cannot reach the database stops reporting: its ``last_contact`` ages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from certward.authorization import Action, Principal
from certward.model import DataPlaneNode, DataPlaneSequence
from certward.services.context import Context
from certward.services.lookups import require

FORGOTTEN_AFTER = timedelta(days=7)  # a node silent this long is dropped from the list


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeReport:
    id: str
    kind: str
    sequence: int
    version: str
    hostnames: int
    started_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    id: str
    kind: str
    sequence: int
    lag: int  # sequences behind the current one
    version: str
    hostnames: int
    started_at: datetime
    last_contact: datetime
    seconds_since_contact: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Nodes:
    sequence: int
    nodes: list[NodeStatus]


def report(ctx: Context, node: NodeReport) -> None:
    """Insert or update the node's row (and drop nodes silent for a week)."""
    now = ctx.clock.now()
    with ctx.database.transaction() as session:
        row = session.get(DataPlaneNode, node.id)
        if row is None:
            row = DataPlaneNode(id=node.id, started_at=node.started_at)
            session.add(row)
        row.kind = node.kind
        row.sequence = node.sequence
        row.version = node.version
        row.hostnames = node.hostnames
        row.started_at = node.started_at
        row.last_contact = now
        session.execute(
            delete(DataPlaneNode).where(DataPlaneNode.last_contact < now - FORGOTTEN_AFTER)
        )


def list_nodes(ctx: Context, principal: Principal) -> Nodes:
    """Every node with its lag behind the current sequence (platform administrators)."""
    require(principal, Action.ADMINISTER)
    return read_nodes(ctx)


def read_nodes(ctx: Context) -> Nodes:
    """The nodes and the current sequence, without an access check (the metrics)."""
    now = ctx.clock.now()
    with ctx.database.reading() as session:
        current = int(
            session.scalar(select(DataPlaneSequence.value).where(DataPlaneSequence.id == 1)) or 0
        )
        rows = session.scalars(select(DataPlaneNode).order_by(DataPlaneNode.id)).all()
        return Nodes(
            sequence=current,
            nodes=[
                NodeStatus(
                    id=row.id,
                    kind=row.kind,
                    sequence=row.sequence,
                    lag=max(0, current - row.sequence),
                    version=row.version,
                    hostnames=row.hostnames,
                    started_at=row.started_at,
                    last_contact=row.last_contact,
                    seconds_since_contact=max(0.0, (now - row.last_contact).total_seconds()),
                )
                for row in rows
            ],
        )
