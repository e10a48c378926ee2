"""The ``modern2026`` PKCS12 profile (PBMAC1 integrity) for an environment's runtimes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``environments.pkcs12_profile`` is a VARCHAR with a CHECK constraint listing the
profiles; the constraint is replaced by one that admits ``modern2026`` too. SQLite
cannot alter a CHECK constraint, so there the table is rebuilt (a batch migration),
around which the data-plane triggers (revisions 0007 to 0009) are dropped and made
again from their stored definitions.

A downgrade turns ``modern2026`` environments back into ``modern`` (the same
encryption under an RFC 7292 MAC, which every ``modern2026`` reader also reads).
Applied versions keep their snapshots, digests included: they are history.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONSTRAINT = "ck_environments_pkcs12_profile"


def _allow(*profiles: str) -> None:
    listed = ", ".join(f"'{profile}'" for profile in profiles)
    condition = f"pkcs12_profile IN ({listed})"
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f(_CONSTRAINT), "environments", type_="check")
        op.create_check_constraint(op.f(_CONSTRAINT), "environments", condition)
        return
    # Triggers of other tables read ``environments``: SQLite refuses to rename the
    # rebuilt table under them, so every trigger is dropped and made again, as it was.
    triggers = op.get_bind().exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    )
    saved = [(str(name), str(sql)) for name, sql in triggers]
    for name, _ in saved:
        op.execute(f'DROP TRIGGER IF EXISTS "{name}"')
    with op.batch_alter_table("environments", recreate="always") as batch:
        batch.drop_constraint(op.f(_CONSTRAINT), type_="check")
        batch.create_check_constraint(op.f(_CONSTRAINT), condition)
    for _, sql in saved:
        op.execute(sql)


def upgrade() -> None:
    _allow("modern", "legacy", "modern2026")


def downgrade() -> None:
    op.execute(
        "UPDATE environments SET pkcs12_profile = 'modern' WHERE pkcs12_profile = 'modern2026'"
    )
    _allow("modern", "legacy")
