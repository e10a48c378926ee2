"""An app's HSTS max-age, sent by both data planes on its HTTPS responses.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The column is served, so the data-plane change triggers on ``apps`` (revision 0007)
are made again to fire on its updates too.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from certward.migrations import revision_module

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _feed() -> ModuleType:
    """Revision 0007, whose trigger definitions this one reuses."""
    return revision_module("0007_data_plane_feed.py")


def _apps_triggers(update_of: tuple[str, ...]) -> None:
    feed = _feed()
    (apps,) = [w for w in feed.WATCHED if w.table == "apps"]
    watched = apps._replace(update_of=update_of)
    name = feed._name(watched)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON apps")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        statements = feed._postgresql(watched)
    else:
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{operation}")
        statements = feed._sqlite(watched)
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("hsts_max_age", sa.Integer(), nullable=True))
    _apps_triggers(("name", "hsts_max_age"))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("hsts_max_age")
    _apps_triggers(("name",))
