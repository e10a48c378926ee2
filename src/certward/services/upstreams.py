"""Where an environment may forward its traffic: the operator's policy, and ownership.

An upstream is admitted when it is written (created or changed), in the same
transaction that stores it:

* `certward.egress.check_url` under the operator's policy (`Settings.egress_policy`):
  no credentials, no scope ids, no unusual IPv4 spellings, no loopback, link-local or
  metadata address, no listener of the platform itself -> 422 ``upstream-not-allowed``;
* its host may not be one of the platform's own served hostnames (a default hostname,
  anything under the platform domain, a custom domain) -> 422 ``hostname-is-upstream``:
  the data plane would forward every request back to itself;
* its backend (``host:port``) belongs to one app: another app naming it gets 409
  ``upstream-taken``. An app's environments may share a backend; the claim goes when
  no environment of the app forwards there any more.

A name is checked again by the data planes when they connect (the gateway) or render
(nginx): what it resolves to is only known then.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certward.egress import Destination, EgressRefused, check_url
from certward.errors import Conflict, InvalidRequest, RefusalCode
from certward.model import App, CustomDomain, Environment, UpstreamBackend
from certward.pki.names import HostnameError, normalize_hostname
from certward.services.context import Context


def check_policy(ctx: Context, upstream: str) -> Destination:
    """``upstream`` under the operator's egress policy; 422 ``upstream-not-allowed``."""
    try:
        return check_url(ctx.settings.egress_policy(), upstream, what="upstream")
    except EgressRefused as exc:
        raise InvalidRequest(str(exc), code=RefusalCode.UPSTREAM_NOT_ALLOWED) from exc


def backend_of(destination: Destination) -> str:
    """The backend an upstream names: ``host:port`` (IPv6 in brackets)."""
    return destination.authority


def admit(session: Session, ctx: Context, app: App, upstream: str) -> Destination:
    """Check ``upstream`` for an environment of ``app`` and claim its backend."""
    with contextlib.suppress(ValueError):  # the policy says what is wrong with the URL
        _refuse_own_hostname(session, ctx, _stored_backend(upstream).rpartition(":")[0])
    destination = check_policy(ctx, upstream)
    backend = backend_of(destination)
    owner = session.get(UpstreamBackend, backend)
    if owner is None:
        session.add(UpstreamBackend(backend=backend, app_id=app.id, created_at=ctx.clock.now()))
        try:
            session.flush()
        except IntegrityError as exc:  # another app claimed it meanwhile
            raise _taken(backend) from exc
    elif owner.app_id != app.id:
        raise _taken(backend)
    return destination


def release_unused(session: Session, app: App) -> None:
    """Drop the app's backend claims no environment of the app forwards to any more."""
    session.flush()
    used: set[str] = set()
    for upstream in session.scalars(
        select(Environment.upstream).where(Environment.app_id == app.id)
    ):
        try:
            used.add(_stored_backend(upstream))
        except ValueError:
            continue
    for claim in session.scalars(select(UpstreamBackend).where(UpstreamBackend.app_id == app.id)):
        if claim.backend not in used:
            session.delete(claim)


def _stored_backend(upstream: str) -> str:
    """The backend of an upstream already stored (checked when it was written)."""
    parts = urlsplit(upstream)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        host = normalize_hostname(parts.hostname or "")
    except HostnameError as exc:
        raise ValueError(upstream) from exc
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refuse_own_hostname(session: Session, ctx: Context, host: str) -> None:
    domain = ctx.settings.platform_domain
    own = host == domain or host.endswith("." + domain)
    if not own:
        own = bool(
            session.scalar(select(Environment.id).where(Environment.hostname == host))
            or session.scalar(select(CustomDomain.id).where(CustomDomain.hostname == host))
        )
    if own:
        raise InvalidRequest(
            f"The upstream's host {host!r} is a hostname this platform serves: every "
            "request would come back to the platform. Give the address of the app's "
            "own backend.",
            code=RefusalCode.HOSTNAME_IS_UPSTREAM,
        )


def _taken(backend: str) -> Conflict:
    return Conflict(
        f"The backend {backend} is the upstream of another app: a backend belongs to one "
        "app of the platform.",
        code=RefusalCode.UPSTREAM_TAKEN,
    )
