"""The renewal worker: renews due certificates, pass after pass, until stopped.

Each pass renews due managed certificates (and issues those whose first ACME order
failed), then due ACME certificates of custom domains
(`certward.services.tls_acme.renew_due_acme`), deletes HTTP-01 challenges
that expired (left by orders that died), and queues and sends expiry webhooks
(`certward.services.notifications`): delivered at least once, retried with backoff.

``certward worker`` runs it in the foreground (until SIGTERM or SIGINT); ``certward
serve`` runs the same loop in a background thread that stops with the server. Any
number of workers may run against one database: `certward.services.managed.renew_due`
makes sure no certificate is renewed twice. A pass that fails (the database is away)
is logged and retried after the interval; the loop itself never dies of it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

import httpx

from certward.randomness import Randomness
from certward.services import notifications
from certward.services.acme_issuing import sweep_challenges
from certward.services.client_ca_crls import reconcile_stale_crls
from certward.services.context import Context
from certward.services.dataplane_feed import trim_changes
from certward.services.managed import renew_due
from certward.services.renewal_queue import RenewalReport
from certward.services.tls_acme import renew_due_acme

BATCH = 500  # certificates claimed per transaction (issued in ~0.1 s, far within the lease)
log = logging.getLogger("certward.worker")


@dataclass(frozen=True, slots=True, kw_only=True)
class PassReport:
    """What one pass (every due certificate, batch after batch) did."""

    renewed: int = 0
    failed: int = 0
    lost: int = 0

    def add(self, report: RenewalReport) -> PassReport:
        return PassReport(
            renewed=self.renewed + report.renewed,
            failed=self.failed + report.failed,
            lost=self.lost + report.lost,
        )


def worker_name(randomness: Randomness) -> str:
    """``host:pid:random``: tells the rows this worker claims from other workers' (≤ 64)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{randomness.token_hex(4)}"


class RenewalWorker:
    """Renews due certificates every ``ctx.settings.renewal_interval``."""

    def __init__(self, ctx: Context, *, name: str | None = None, batch: int = BATCH) -> None:
        self.ctx = ctx
        self.name = name or worker_name(ctx.randomness)
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RenewalWorker(name={self.name!r})"

    def run_pass(self) -> PassReport:
        """Renew batches until fewer than a batch are due (what failed waits for backoff),
        managed certificates first, then ACME certificates of custom domains; then sweep
        expired challenges."""
        total = PassReport()
        for renew in (renew_due, renew_due_acme):
            while not self._stop.is_set():
                report = renew(self.ctx, worker=self.name, limit=self.batch)
                total = total.add(report)
                if report.claimed < self.batch:
                    break
        swept = sweep_challenges(self.ctx)
        if swept:
            log.info("deleted %d expired ACME challenge(s)", swept)
        reconcile_stale_crls(self.ctx)
        trim_changes(self.ctx, self.ctx.settings.data_plane_changes_kept)
        return total

    def notify(self, client: httpx.Client) -> None:
        """Queue notices for expiring, expired and failing certificates; send what is due."""
        queued = notifications.scan(self.ctx)
        sent = notifications.deliver_due(self.ctx, client)
        if queued or sent.delivered or sent.failed:
            log.info(
                "webhooks: %d queued, %d delivered, %d to retry",
                queued,
                sent.delivered,
                sent.failed,
            )

    def run(self) -> None:
        """Pass after pass until `stop` is called."""
        interval = self.ctx.settings.renewal_interval.total_seconds()
        log.info("renewal worker %s started (every %s s)", self.name, interval)
        with httpx.Client(follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    report = self.run_pass()
                    self.notify(client)
                except Exception:  # the loop outlives a failed pass; the next one retries
                    log.exception("renewal pass of %s failed", self.name)
                else:
                    if report.renewed or report.failed:
                        log.info(
                            "renewed %d certificate(s), %d failed (retried with backoff)",
                            report.renewed,
                            report.failed,
                        )
                self._stop.wait(interval)
        log.info("renewal worker %s stopped", self.name)

    def start(self) -> None:
        """Run in a background (daemon) thread."""
        self._thread = threading.Thread(target=self.run, name=f"renewal {self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the loop to stop after its current batch, and wait for the thread if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
