"""A data-plane node's own state, kept current through the change feed.

`StateFollower.load` is what a gateway worker or the nginx agent calls every poll: the
first call loads a full snapshot; later ones read the sequence (one row) and, when it
moved, apply the changed sites to the state in place of a reload
(`certward.dataplane.state.with_changes`); a node the trimmed log no longer reaches
loads a full snapshot again. When the database is unreachable the last good state keeps
being served: that is logged once when it starts and once when the database is back,
not at every poll. After a successful poll, at most every ``report_seconds``, the node
reports what it serves (`certward.services.dataplane_nodes`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from certward.dataplane.state import DataPlaneState, with_changes
from certward.services import dataplane_nodes
from certward.services.dataplane_feed import DataPlaneFeed

log = logging.getLogger("certward.dataplane")

REPORT_SECONDS = 5.0


def node_id(kind: str) -> str:
    """This process as a node: host name, kind and process id."""
    return f"{socket.gethostname()}/{kind}/{os.getpid()}"


class StateFollower:
    """Serves `load` (and `challenge`) to the gateway or the nginx agent from a feed."""

    def __init__(
        self,
        feed: DataPlaneFeed,
        *,
        kind: str,
        node: str | None = None,
        report_seconds: float = REPORT_SECONDS,
    ) -> None:
        self.feed = feed
        self.kind = kind
        self.node = node or node_id(kind)
        self.report_seconds = report_seconds
        self.state: DataPlaneState | None = None
        self.database_unreachable = False
        self.full_loads = 0
        self._reported_at: float | None = None
        self._started = feed.ctx.clock.now()
        self._lock = threading.Lock()

    def load(self) -> DataPlaneState:
        """The state to serve now. Raises only when no state was ever loaded."""
        with self._lock:
            try:
                state = self._refresh()
            except Exception as exc:
                if self.state is None:
                    raise
                if not self.database_unreachable:
                    self.database_unreachable = True
                    log.error(
                        "the database is unreachable (%s); serving the last good state %s "
                        "(sequence %d) until it is back",
                        type(exc).__name__,
                        self.state.version[:12],
                        self.state.sequence,
                    )
                return self.state
            if self.database_unreachable:
                self.database_unreachable = False
                log.warning(
                    "the database is reachable again; serving state %s (sequence %d)",
                    state.version[:12],
                    state.sequence,
                )
            self.state = state
            self._report(state)
            return state

    def challenge(self, token: str) -> str | None:
        return self.feed.challenge(token)

    def _refresh(self) -> DataPlaneState:
        state = self.state
        if state is None or state.digests is None:
            return self._full()
        if self.feed.poll() == state.sequence:
            return state
        changes = self.feed.changes_since(state.sequence)
        if changes is None:
            log.info("the change log no longer reaches sequence %d: loading it all", state.sequence)
            return self._full()
        return with_changes(
            state, sequence=changes.sequence, changed=changes.changed, removed=changes.removed
        )

    def _full(self) -> DataPlaneState:
        self.full_loads += 1
        return self.feed.load()

    def _report(self, state: DataPlaneState) -> None:
        now = time.monotonic()
        if self._reported_at is not None and now - self._reported_at < self.report_seconds:
            return
        self._reported_at = now
        try:
            dataplane_nodes.report(
                self.feed.ctx,
                dataplane_nodes.NodeReport(
                    id=self.node,
                    kind=self.kind,
                    sequence=state.sequence,
                    version=state.version,
                    hostnames=len(state.sites),
                    started_at=self._started,
                ),
            )
        except Exception:  # serving matters more than being seen; the next poll retries
            log.warning("could not report node %s", self.node, exc_info=True)
            self._reported_at = None
