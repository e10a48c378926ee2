"""Prometheus metrics: every certificate's expiry and status
(``certward_certificate_status{status}``, 1 for the status the inventory shows, from
`certward.services.standing`), every managed certificate's renewal, the requests the
upload rate limits refused, and the sites the nginx data plane leaves out
(``certward_dataplane_excluded_sites``, from what its agent last reported), the
data-plane change sequence and each node's lag and last contact
(``certward_dataplane_sequence``, ``certward_dataplane_node_lag``,
``certward_dataplane_node_last_contact_timestamp_seconds``).

Certificates are collected from the database at each scrape, so any replica answers the
same. ``certward_rate_limited_total{limit}`` counts this process's refusals since it
started (each replica its own, like its buckets); ``limit`` is one of four fixed values
(``upload-token``, ``upload-app``, ``failed-upload-token``, ``failed-upload-app``),
never an app or token name, so the series stay four however many tenants there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from certward.expiry import Standing
from certward.model import (
    App,
    CertificateAuthority,
    ClientCertificate,
    Environment,
    ManagedCertificate,
    TlsCertificate,
)
from certward.services import dataplane_exclusions, dataplane_nodes
from certward.services.context import Context
from certward.services.standing import CertificateKind, judge, judge_row

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ["app", "env", "kind", "id"]
_STATUS_LABELS = [*_LABELS, "status"]


class CertificateCollector(Collector):
    """Reads the certificates' dates at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        expiry = GaugeMetricFamily(
            "certward_certificate_expiry_timestamp_seconds",
            "When the certificate expires (Unix time).",
            labels=_LABELS,
        )
        renewal = GaugeMetricFamily(
            "certward_certificate_renewal_timestamp_seconds",
            "When certward renews the managed certificate (Unix time).",
            labels=_LABELS,
        )
        status = GaugeMetricFamily(
            "certward_certificate_status",
            "1 for the certificate's status (valid, expires-soon, expired, upcoming), as the "
            "inventory shows it.",
            labels=_STATUS_LABELS,
        )

        def judged(labels: list[str], result: Standing) -> None:
            status.add_metric([*labels, result.status.value], 1.0)

        at = self.ctx.clock.now()
        settings = self.ctx.settings
        failures = CounterMetricFamily(
            "certward_renewal_failures",
            "Failed renewal attempts of the managed certificates in service.",
        )
        with self.ctx.database.reading() as session:
            for managed, app, env in session.execute(
                select(ManagedCertificate, App.name, Environment.name)
                .join(Environment, Environment.id == ManagedCertificate.environment_id)
                .join(App, App.id == Environment.app_id)
                .where(ManagedCertificate.state == "active")
            ):
                labels = [app, env, "managed", managed.id]
                expiry.add_metric(labels, _seconds(managed.not_after))
                renewal.add_metric(labels, _seconds(managed.renew_after))
                judged(labels, judge_row(settings, managed, at=at))
            failed = session.scalar(
                select(func.coalesce(func.sum(ManagedCertificate.attempts), 0)).where(
                    ManagedCertificate.state == "active"
                )
            )
            failures.add_metric([], float(failed or 0))
            client = ClientCertificate
            for id_, app, env, starts, expires in session.execute(
                select(client.id, App.name, Environment.name, client.not_before, client.not_after)
                .join(Environment, Environment.id == client.environment_id)
                .join(App, App.id == Environment.app_id)
                .where(client.deleted_at.is_(None))
            ):
                labels = [app, env, "client", id_]
                expiry.add_metric(labels, _seconds(expires))
                judged(labels, judge(settings, CertificateKind.CLIENT, starts, expires, at=at))
            for tls_certificate, app in session.execute(
                select(TlsCertificate, App.name)
                .join(App, App.id == TlsCertificate.app_id)
                .where(TlsCertificate.not_after.is_not(None))
            ):
                labels = [app, "", "custom-domain", tls_certificate.id]
                expiry.add_metric(labels, _seconds(tls_certificate.not_after))
                judged(labels, judge_row(settings, tls_certificate, at=at))
            for authority, app, env in session.execute(
                select(CertificateAuthority, App.name, Environment.name)
                .join(Environment, Environment.id == CertificateAuthority.environment_id)
                .join(App, App.id == Environment.app_id)
                .where(CertificateAuthority.deleted_at.is_(None))
            ):
                for summary in authority.subjects:
                    labels = [
                        app,
                        env,
                        "authority",
                        f"{authority.id}:{summary['sha256_fingerprint'][:16]}",
                    ]
                    starts = datetime.fromisoformat(summary["not_before"])
                    ends = datetime.fromisoformat(summary["not_after"])
                    expiry.add_metric(labels, ends.timestamp())
                    judged(labels, judge(settings, CertificateKind.AUTHORITY, starts, ends, at=at))
        yield expiry
        yield status
        yield renewal
        yield failures


class RateLimitCollector(Collector):
    """This process's rate-limit refusals, by limit."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[CounterMetricFamily]:
        refused = CounterMetricFamily(
            "certward_rate_limited",
            "Requests refused with 429 by a rate limit, since this process started.",
            labels=["limit"],
        )
        for limit, count in self.ctx.upload_limits.refusals().items():
            refused.add_metric([limit.value], float(count))
        yield refused


class MaterialWorkerCollector(Collector):
    """The workers that read uploads: jobs by outcome, CPU spent, processes started, load."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        numbers = self.ctx.material_workers.statistics()
        jobs = CounterMetricFamily(
            "certward_material_jobs",
            "Uploads read by a material worker since start, by outcome (read, cpu-budget, "
            "wall-deadline, crashed, busy).",
            labels=["outcome"],
        )
        for outcome in ("read", "cpu-budget", "wall-deadline", "crashed", "busy"):
            jobs.add_metric([outcome], numbers.get(f"jobs:{outcome}", 0.0))
        yield jobs
        yield CounterMetricFamily(
            "certward_material_cpu_seconds",
            "CPU seconds the material workers spent on uploads (a killed job counts its budget).",
            value=numbers["cpu_seconds"],
        )
        yield CounterMetricFamily(
            "certward_material_workers_started",
            "Material worker processes started (the first ones, then one per killed job).",
            value=numbers["started"],
        )
        yield GaugeMetricFamily(
            "certward_material_jobs_in_flight",
            "Uploads being read now.",
            value=numbers["in_flight"],
        )
        yield GaugeMetricFamily(
            "certward_material_jobs_waiting",
            "Uploads waiting for a free material worker.",
            value=numbers["waiting"],
        )


class DataPlaneCollector(Collector):
    """The sites the nginx data plane leaves out, as its agent last reported, and the
    change sequence with each node's lag and last contact."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        excluded = GaugeMetricFamily(
            "certward_dataplane_excluded_sites",
            "Sites the nginx data plane leaves out of its configuration "
            "(see GET /api/v1/platform/data-plane/excluded-sites).",
        )
        excluded.add_metric([], float(dataplane_exclusions.count(self.ctx)))
        yield excluded
        nodes = dataplane_nodes.read_nodes(self.ctx)
        yield GaugeMetricFamily(
            "certward_dataplane_sequence",
            "The current data-plane change sequence.",
            value=float(nodes.sequence),
        )
        lag = GaugeMetricFamily(
            "certward_dataplane_node_lag",
            "Change sequences a data-plane node is behind the current one, as it last "
            "reported (see GET /api/v1/platform/data-plane/nodes).",
            labels=["node", "kind"],
        )
        contact = GaugeMetricFamily(
            "certward_dataplane_node_last_contact_timestamp_seconds",
            "When the data-plane node last reported (Unix time); a node that cannot reach "
            "the database serves its last state and stops reporting.",
            labels=["node", "kind"],
        )
        for node in nodes.nodes:
            lag.add_metric([node.id, node.kind], float(node.lag))
            contact.add_metric([node.id, node.kind], node.last_contact.timestamp())
        yield lag
        yield contact


def render(ctx: Context) -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CertificateCollector(ctx))
    registry.register(RateLimitCollector(ctx))
    registry.register(MaterialWorkerCollector(ctx))
    registry.register(DataPlaneCollector(ctx))
    return generate_latest(registry)


def _seconds(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else float("nan")
