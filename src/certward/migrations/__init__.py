"""The Alembic migrations of certward's schema (``versions/``), run by `certward.db`,
and the column and constraint shapes their revisions share."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

VERSIONS = Path(__file__).resolve().parent / "versions"

WHEN = sa.DateTime(timezone=True)
"""The type of every timestamp column: timezone-aware."""


def revision_module(filename: str) -> ModuleType:
    """An earlier revision's module (``versions/FILENAME``), whose definitions a later
    revision reuses (e.g. the data-plane change triggers of revision 0007)."""
    path = VERSIONS / filename
    spec = importlib.util.spec_from_file_location(f"certward_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def identifier(name: str = "id", *, nullable: bool = False) -> sa.Column[str]:
    """A 36-character identifier column (a UUID): a row's own ``id``, or a reference."""
    return sa.Column(name, sa.String(length=36), nullable=nullable)


def owned_by(table: str, column: str, owner: str) -> sa.ForeignKeyConstraint:
    """``TABLE.COLUMN`` references ``OWNER.id``, and the row goes when its owner goes;
    named as the model's naming convention names it."""
    return sa.ForeignKeyConstraint(
        [column],
        [f"{owner}.id"],
        name=op.f(f"fk_{table}_{column}_{owner}"),
        ondelete="CASCADE",
    )


def primary_key(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    """The primary key of TABLE over COLUMNS (``id`` when none are given)."""
    return sa.PrimaryKeyConstraint(*(columns or ("id",)), name=op.f(f"pk_{table}"))
