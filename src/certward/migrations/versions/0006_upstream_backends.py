"""Backends belong to one app, and the sites the nginx data plane leaves out.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Existing environments claim their backends in the order they were created: when two
apps already share one, the older app keeps it and the newer one is refused at its
next upstream change.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

from certward.migrations import WHEN, identifier, owned_by, primary_key

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    backends = op.create_table(
        "upstream_backends",
        sa.Column("backend", sa.String(length=300), nullable=False),
        identifier("app_id"),
        sa.Column("created_at", WHEN, nullable=False),
        owned_by("upstream_backends", "app_id", "apps"),
        primary_key("upstream_backends", "backend"),
    )
    op.create_index(op.f("ix_upstream_backends_app_id"), "upstream_backends", ["app_id"])
    op.create_table(
        "data_plane_exclusions",
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", WHEN, nullable=False),
        primary_key("data_plane_exclusions", "hostname"),
    )
    environments = sa.table(
        "environments",
        sa.column("app_id", sa.String),
        sa.column("upstream", sa.String),
        sa.column("created_at", WHEN),
    )
    claimed: dict[str, tuple[str, datetime]] = {}
    rows = op.get_bind().execute(
        sa.select(
            environments.c.app_id, environments.c.upstream, environments.c.created_at
        ).order_by(environments.c.created_at)
    )
    for app_id, upstream, created_at in rows:
        backend = _backend(upstream)
        if backend is not None:
            # Claimed when its first environment was created.
            claimed.setdefault(backend, (app_id, created_at))
    if claimed:
        op.bulk_insert(
            backends,
            [
                {"backend": backend, "app_id": app_id, "created_at": created_at}
                for backend, (app_id, created_at) in sorted(claimed.items())
            ],
        )


def downgrade() -> None:
    op.drop_table("data_plane_exclusions")
    op.drop_table("upstream_backends")


def _backend(upstream: str) -> str | None:
    """``host:port`` as `certward.services.upstreams.backend_of` spells it (frozen here)."""
    try:
        parts = urlsplit(upstream)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return None
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
