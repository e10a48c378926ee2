"""A rotated platform root's cross-certificate: its key certified by the root it replaced.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

The data plane serves the cross-certificate above what the new root's intermediates
issue while the old root is not retired, so a change of a root's state is a served
change: a trigger on ``platform_cas`` (made by revision 0007's definitions) lists the
hostnames of the active managed certificates below the roots it cross-certified.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from certward.migrations import revision_module

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BRIDGED_HOSTNAMES = (
    "SELECT e.hostname AS h FROM platform_cas r"
    " JOIN platform_cas i ON i.issuer_id = r.id"
    " JOIN managed_certificates m ON m.issuing_ca_id = i.id AND m.state = 'active'"
    " JOIN environments e ON e.id = m.environment_id"
    " WHERE r.cross_issuer_id = {r}.id"
)


def _feed() -> ModuleType:
    """Revision 0007, whose trigger definitions this one reuses."""
    return revision_module("0007_data_plane_feed.py")


def upgrade() -> None:
    with op.batch_alter_table("platform_cas") as batch:
        batch.add_column(sa.Column("cross_issuer_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("cross_certificate_pem", sa.Text(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_platform_cas_cross_issuer_id_platform_cas"),
            "platform_cas",
            ["cross_issuer_id"],
            ["id"],
        )
    feed = _feed()
    watched = feed.Watched("platform_cas", _BRIDGED_HOSTNAMES, update_of=("state",), insert=False)
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in feed._postgresql(watched) if postgresql else feed._sqlite(watched):
        op.execute(statement)


def downgrade() -> None:
    name = "data_plane_changed_platform_cas"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON platform_cas")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{operation}")
    with op.batch_alter_table("platform_cas") as batch:
        batch.drop_constraint(
            op.f("fk_platform_cas_cross_issuer_id_platform_cas"), type_="foreignkey"
        )
        batch.drop_column("cross_certificate_pem")
        batch.drop_column("cross_issuer_id")
