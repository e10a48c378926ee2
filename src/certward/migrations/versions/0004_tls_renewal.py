"""Automatic renewal of TLS certificates ordered from the ACME CA: when each is due,
who holds it, and how its last attempts went.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from certward.migrations import WHEN

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tls_certificates") as table:
        table.add_column(sa.Column("renew_after", WHEN, nullable=True))
        table.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        table.add_column(sa.Column("next_attempt_at", WHEN, nullable=True))
        table.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        table.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("claimed_until", WHEN, nullable=True))
        table.create_index(op.f("ix_tls_certificates_renew_after"), ["renew_after"])


def downgrade() -> None:
    with op.batch_alter_table("tls_certificates") as table:
        table.drop_index(op.f("ix_tls_certificates_renew_after"))
        for column in (
            "claimed_until",
            "claimed_by",
            "last_error",
            "next_attempt_at",
            "attempts",
            "renew_after",
        ):
            table.drop_column(column)
