"""Expiry webhooks: told once when a certificate enters expires-soon, expires, or fails to renew.

`scan` turns the inventory into pending deliveries (one per webhook, event and
certificate: a unique key makes a rescan harmless); `deliver_due` POSTs them as JSON
and retries failures with exponential backoff. The worker runs both periodically.
Webhook URLs are set by operators only; nothing here follows a URL from a certificate.

Webhook URLs go through the same egress policy as upstreams (`certward.egress`): when
one is registered (422 ``webhook-url-not-allowed``), and again at every delivery, when
its name is resolved and each address checked; the request then goes to a checked
address (with the URL's host as ``Host``, SNI and the name its certificate must carry),
so a name that resolves elsewhere a moment later changes nothing. Redirects are not
followed. The ``data-plane.site-excluded`` notices of
`certward.services.dataplane_exclusions` are delivered here too.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from certward.authorization import Action, Principal
from certward.egress import EgressPolicy, EgressRefused, check_addresses, check_url
from certward.errors import InvalidRequest, NotFound, RefusalCode
from certward.expiry import CertificateStatus
from certward.model import ManagedCertificate, TlsCertificate, Webhook, WebhookDelivery
from certward.services.context import Context
from certward.services.inventory import InventoryItem, list_inventory
from certward.services.lookups import require
from certward.vocabulary import Role

SYSTEM = Principal(token_id=None, role=Role.ADMIN)  # the worker, acting for the platform
MAX_BACKOFF = timedelta(hours=1)
FIRST_BACKOFF = timedelta(seconds=30)
SCAN_LIMIT = 1000
DELIVERY_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookView:
    id: str
    url: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport:
    delivered: int
    failed: int


def add_webhook(ctx: Context, principal: Principal, url: str) -> WebhookView:
    """Register ``url`` (http or https) for expiry notices (admin)."""
    require(principal, Action.ADMINISTER)
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or not c.isprintable() for c in url)
    ):
        raise InvalidRequest(
            f"The webhook URL {url!r} must be an http(s) URL.", code=RefusalCode.INVALID_URL
        )
    try:
        check_url(ctx.settings.egress_policy(), url, what="webhook URL")
    except EgressRefused as exc:
        raise InvalidRequest(str(exc), code=RefusalCode.WEBHOOK_URL_NOT_ALLOWED) from exc
    with ctx.database.transaction() as session:
        row = Webhook(url=url, created_at=ctx.clock.now())
        session.add(row)
        session.flush()
        return WebhookView(id=row.id, url=row.url, created_at=row.created_at)


def list_webhooks(ctx: Context, principal: Principal) -> list[WebhookView]:
    require(principal, Action.ADMINISTER)
    with ctx.database.reading() as session:
        return [
            WebhookView(id=w.id, url=w.url, created_at=w.created_at)
            for w in session.scalars(select(Webhook).order_by(Webhook.created_at))
        ]


def remove_webhook(ctx: Context, principal: Principal, webhook_id: str) -> None:
    require(principal, Action.ADMINISTER)
    with ctx.database.transaction() as session:
        row = session.get(Webhook, webhook_id)
        if row is None:
            raise NotFound(f"No webhook {webhook_id!r}.", code=RefusalCode.WEBHOOK_NOT_FOUND)
        session.delete(row)


def scan(ctx: Context) -> int:
    """Queue a notice for every certificate that is expiring, expired or failing to renew."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    for status, event in (
        (CertificateStatus.EXPIRES_SOON, "certificate.expires-soon"),
        (CertificateStatus.EXPIRED, "certificate.expired"),
    ):
        # A certificate certward renews is expires-soon only once its renewal is overdue
        # (`certward.services.standing`): news then, with the reason in the payload.
        for item in list_inventory(ctx, SYSTEM, status=status, limit=SCAN_LIMIT):
            events.append((event, f"{event}:{item.kind.value}:{item.id}", _describe(item)))
    with ctx.database.reading() as session:
        # Failing renewals, and first issuances still failing (a "pending" row: the
        # environment has no certificate yet, which is news too).
        for certificate in session.scalars(
            select(ManagedCertificate).where(
                ManagedCertificate.state.in_(("active", "pending")),
                ManagedCertificate.attempts > 0,
            )
        ):
            pending = certificate.state == "pending"
            events.append(
                (
                    "certificate.renewal-failed",
                    f"renewal-failed:{certificate.id}:{certificate.attempts}",
                    {
                        "kind": "managed",
                        "id": certificate.id,
                        "hostname": certificate.hostname,
                        "attempts": certificate.attempts,
                        "error": certificate.last_error,
                        "first_issuance": pending,
                        "not_after": None if pending else certificate.not_after.isoformat(),
                    },
                )
            )
        # Custom-domain certificates certward renews itself (ordered from the ACME CA).
        for tls_certificate in session.scalars(
            select(TlsCertificate).where(
                TlsCertificate.renew_after.is_not(None), TlsCertificate.attempts > 0
            )
        ):
            events.append(
                (
                    "certificate.renewal-failed",
                    f"renewal-failed:{tls_certificate.id}:{tls_certificate.attempts}",
                    {
                        "kind": "custom",
                        "id": tls_certificate.id,
                        "hostnames": list(tls_certificate.sans),
                        "attempts": tls_certificate.attempts,
                        "error": tls_certificate.last_error,
                        "first_issuance": False,
                        "not_after": None
                        if tls_certificate.not_after is None
                        else tls_certificate.not_after.isoformat(),
                    },
                )
            )
        hooks = list(session.scalars(select(Webhook.id)))
    queued = 0
    now = ctx.clock.now()
    for hook in hooks:
        for event, key, payload in events:
            try:
                with ctx.database.transaction() as session:
                    session.add(
                        WebhookDelivery(
                            webhook_id=hook,
                            event=event,
                            dedup_key=key[:255],
                            payload={"event": event, "at": now.isoformat(), "certificate": payload},
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
                queued += 1
            except IntegrityError:
                continue  # already told (or being told): once per event and certificate
    return queued


def deliver_due(ctx: Context, client: httpx.Client) -> DeliveryReport:
    """POST every due notice; a 2xx answer delivers it, anything else is retried later."""
    now = ctx.clock.now()
    with ctx.database.reading() as session:
        due = session.execute(
            select(WebhookDelivery.id, Webhook.url, WebhookDelivery.payload)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.delivered_at.is_(None), WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(DELIVERY_BATCH)
        ).all()
    delivered = failed = 0
    policy = ctx.settings.egress_policy()
    for delivery_id, url, payload in due:
        error: str | None = None
        try:
            request = checked_request(policy, url)
            response = client.post(
                request.url,
                json=payload,
                headers={"Host": request.host_header},
                extensions=request.extensions,
                timeout=10,
                follow_redirects=False,
            )
            if not response.is_success:
                error = f"HTTP {response.status_code}"
        except EgressRefused as exc:
            error = f"webhook-url-not-allowed: {exc}"[:500]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        with ctx.database.transaction() as session:
            row = session.get(WebhookDelivery, delivery_id)
            if row is None:
                continue
            if error is None:
                row.delivered_at = ctx.clock.now()
                delivered += 1
            else:
                row.attempts += 1
                row.last_error = error
                row.next_attempt_at = ctx.clock.now() + min(
                    FIRST_BACKOFF * 2 ** (row.attempts - 1), MAX_BACKOFF
                )
                failed += 1
    return DeliveryReport(delivered=delivered, failed=failed)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedRequest:
    """Where a webhook POST goes: a checked address, with the URL's own host name."""

    url: str
    host_header: str
    extensions: dict[str, Any]


def checked_request(
    policy: EgressPolicy, url: str, lookup: Any = socket.getaddrinfo
) -> CheckedRequest:
    """``url`` with its host replaced by a checked address; `EgressRefused` says why not."""
    destination = check_url(policy, url, what="webhook URL")
    if destination.address is not None:
        address = destination.address
    else:
        try:
            found = [str(info[4][0]) for info in lookup(destination.host, destination.port)]
        except OSError as exc:
            raise EgressRefused(
                f"The webhook URL's host {destination.host} does not resolve ({exc})."
            ) from exc
        address = check_addresses(policy, destination, dict.fromkeys(found), what="webhook URL")[0]
    parts = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{destination.port}"
    default_port = 443 if destination.tls else 80
    host_header = destination.host if ":" not in destination.host else f"[{destination.host}]"
    if destination.port != default_port:
        host_header += f":{destination.port}"
    extensions: dict[str, Any] = {}
    if destination.tls and destination.address is None:
        extensions["sni_hostname"] = destination.host
    return CheckedRequest(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host_header=host_header,
        extensions=extensions,
    )


def _describe(item: InventoryItem) -> dict[str, Any]:
    return {
        "kind": item.kind.value,
        "id": item.id,
        "app": item.app,
        "environment": item.environment,
        "subject": item.subject,
        "not_after": item.not_after.isoformat() if item.not_after else None,
        "status": item.status.value,
        "status_reason": item.status_reason,
        "hostnames": list(item.hostnames),
    }
