"""A certificate revocation list per client CA of an access profile.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

The CRL is stored as uploaded (DER) with what was read from it, and when a stale one
was set aside (``CERTWARD_EXPIRED_CRL=warn``). Its columns are in
``access_profile_cas``, whose data-plane change triggers (revision 0007) fire on every
update, so a CRL replaced live reaches the data plane without new triggers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from certward.migrations import revision_module

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "crl_der",
    "crl_issuer",
    "crl_this_update",
    "crl_next_update",
    "crl_revoked",
    "crl_set_aside_at",
)


def upgrade() -> None:
    op.add_column("access_profile_cas", sa.Column("crl_der", sa.LargeBinary(), nullable=True))
    op.add_column("access_profile_cas", sa.Column("crl_issuer", sa.Text(), nullable=True))
    for column in ("crl_this_update", "crl_next_update", "crl_set_aside_at"):
        op.add_column(
            "access_profile_cas", sa.Column(column, sa.DateTime(timezone=True), nullable=True)
        )
    op.add_column("access_profile_cas", sa.Column("crl_revoked", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_profile_cas") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
    if op.get_bind().dialect.name == "sqlite":  # the table was copied: its triggers too
        feed = revision_module("0007_data_plane_feed.py")
        (watched,) = [w for w in feed.WATCHED if w.table == "access_profile_cas"]
        name = feed._name(watched)
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{operation}")
        for statement in feed._sqlite(watched):
            op.execute(statement)
