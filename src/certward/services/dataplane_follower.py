"""A data-plane node's own state, kept current through the change feed.

`StateFollower.load` is what a gateway worker or the nginx agent calls every poll: the
first call loads a full snapshot; later ones read the sequence (one row) and, when it
moved, apply the changed sites to the state in place of a reload
(`certward.dataplane.state.with_changes`); a node the trimmed log no longer reaches
loads a full snapshot again. When the database is unreachable the last good state keeps
being served: that is logged once when it starts and once when the database is back,
not at every poll. After a successful poll, at most every ``report_seconds``, the node
reports what it serves (`certward.services.dataplane_nodes`).

`wait_for_change` is how long a node sleeps between polls: on PostgreSQL it LISTENs on
``certward_data_plane`` (the feed's triggers notify at commit) on a connection of its
own, so a change wakes the node at once; the poll interval stays the bound, and on
SQLite, or while that connection is broken, it is a plain sleep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from certward.clock import SystemClock
from certward.dataplane.state import DataPlaneState, with_changes
from certward.services import dataplane_nodes
from certward.services.dataplane_feed import DataPlaneFeed

log = logging.getLogger("certward.dataplane")

REPORT_SECONDS = 5.0
CHANNEL = "certward_data_plane"


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
        self._listener = ChangeListener(feed.ctx.database.engine)

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

    def wait_for_change(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, or sooner when a change is committed."""
        self._listener.wait(timeout)

    def close(self) -> None:
        self._listener.close()

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
        now = self.feed.ctx.clock.monotonic()
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


class ChangeListener:
    """Waits for the feed's notifications on PostgreSQL; sleeps elsewhere."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo: str | None = None
        if engine.dialect.name == "postgresql":
            url = engine.url.set(drivername="postgresql")
            self._conninfo = url.render_as_string(hide_password=False)
        self._connection: psycopg.Connection[Any] | None = None
        self._sleep = threading.Event()
        self._clock = SystemClock()  # real waiting, whatever clock the installation runs on

    def wait(self, timeout: float) -> None:
        conninfo = self._conninfo
        if conninfo is None:
            self._sleep.wait(timeout)
            return
        began = self._clock.monotonic()
        try:
            connection = self._connected(conninfo)
            for _ in connection.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            self.close()  # connect again next time; the poll interval still holds
            self._sleep.wait(max(0.0, timeout - (self._clock.monotonic() - began)))

    def _connected(self, conninfo: str) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            self._connection.execute(f"LISTEN {CHANNEL}")
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None
