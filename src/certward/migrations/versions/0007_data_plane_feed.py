"""The data-plane change feed: one sequence, the hostnames each change touched, the nodes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Triggers on every table the data plane serves from add one to
``data_plane_sequence.value`` and list the hostnames the row touches in
``data_plane_changes``, in the transaction that changed the row: ORM flushes, Core
statements and cascaded deletes alike, so no write path can forget them. On
PostgreSQL the ``UPDATE`` of the one sequence row also orders concurrent writers (the
second waits for the first to commit), and ``pg_notify('certward_data_plane')`` wakes
listening nodes at commit.

A table rebuilt by a later SQLite batch migration loses its triggers: such a migration
must create them again (``tests/control/test_data_plane_changes.py`` checks that every
watched table has its triggers at head).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

from certward.migrations import WHEN, primary_key

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENVIRONMENT_HOSTNAMES = (
    "SELECT hostname AS h FROM environments WHERE id = {env}"
    " UNION SELECT hostname AS h FROM custom_domains WHERE environment_id = {env}"
)
_APP_HOSTNAMES = (
    "SELECT hostname AS h FROM environments WHERE app_id = {app}"
    " UNION SELECT d.hostname AS h FROM custom_domains d"
    " JOIN environments e ON e.id = d.environment_id WHERE e.app_id = {app}"
)


class Watched(NamedTuple):
    """A served table: which updates matter, and the hostnames a row ``{r}`` touches."""

    table: str
    hostnames: str  # a SELECT of one column ``h``; ``{r}`` is NEW or OLD
    update_of: tuple[str, ...] = ()  # empty: every update
    insert: bool = True


WATCHED = (
    Watched(
        "environments",
        "SELECT {r}.hostname AS h UNION SELECT hostname AS h FROM custom_domains"
        " WHERE environment_id = {r}.id",
        update_of=("hostname", "upstream", "applied_version", "name", "app_id"),
    ),
    Watched("apps", _APP_HOSTNAMES.format(app="{r}.id"), update_of=("name",), insert=False),
    Watched(
        "managed_certificates",
        "SELECT hostname AS h FROM environments WHERE id = {r}.environment_id",
        update_of=("state", "certificate_pem", "chain_pem", "private_key_ciphertext"),
    ),
    Watched(
        "tls_certificates",
        "SELECT hostname AS h FROM custom_domains WHERE tls_certificate_id = {r}.id",
        update_of=("certificate_pem", "chain_pem", "private_key_ciphertext"),
        insert=False,
    ),
    Watched("custom_domains", "SELECT {r}.hostname AS h"),
    Watched("access_profiles", _APP_HOSTNAMES.format(app="{r}.app_id")),
    Watched(
        "access_profile_cas",
        _APP_HOSTNAMES.format(app="(SELECT app_id FROM access_profiles WHERE id = {r}.profile_id)"),
    ),
    Watched("ip_deny_profiles", _APP_HOSTNAMES.format(app="{r}.app_id"), insert=False),
    Watched("environment_ip_denies", _ENVIRONMENT_HOSTNAMES.format(env="{r}.environment_id")),
    Watched(
        "environment_versions",
        _ENVIRONMENT_HOSTNAMES.format(env="{r}.environment_id"),
        update_of=("snapshot", "digest"),
    ),
)


def upgrade() -> None:
    op.create_table(
        "data_plane_sequence",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("trimmed", sa.BigInteger(), server_default="0", nullable=False),
        primary_key("data_plane_sequence"),
    )
    op.execute("INSERT INTO data_plane_sequence (id, value, trimmed) VALUES (1, 0, 0)")
    op.create_table(
        "data_plane_changes",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        primary_key("data_plane_changes", "sequence", "hostname"),
    )
    op.create_table(
        "data_plane_nodes",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("hostnames", sa.Integer(), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("last_contact", WHEN, nullable=False),
        primary_key("data_plane_nodes"),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for watched in WATCHED:
        for statement in _postgresql(watched) if postgresql else _sqlite(watched):
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for watched in WATCHED:
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS {_name(watched)} ON {watched.table}")
            op.execute(f"DROP FUNCTION IF EXISTS {_name(watched)}()")
        else:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {_name(watched)}_{operation}")
    op.drop_table("data_plane_nodes")
    op.drop_table("data_plane_changes")
    op.drop_table("data_plane_sequence")


def _name(watched: Watched) -> str:
    return f"data_plane_changed_{watched.table}"


def _sqlite(watched: Watched) -> list[str]:
    """Three triggers (insert, update, delete), each bumping the sequence once per row."""

    def body(hostnames: str) -> str:
        bump = "UPDATE data_plane_sequence SET value = value + 1 WHERE id = 1"
        current = "(SELECT value FROM data_plane_sequence WHERE id = 1)"
        into = "INSERT OR IGNORE INTO data_plane_changes (sequence, hostname)"
        rows = f"SELECT {current}, h FROM ({hostnames}) WHERE h IS NOT NULL"  # noqa: S608
        return f" BEGIN {bump}; {into} {rows}; END"

    name, table, select = _name(watched), watched.table, watched.hostnames
    columns = f" OF {', '.join(watched.update_of)}" if watched.update_of else ""
    both = f"{select.format(r='NEW')} UNION {select.format(r='OLD')}"
    statements = [
        f"CREATE TRIGGER {name}_update AFTER UPDATE{columns} ON {table}{body(both)}",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table}{body(select.format(r='OLD'))}",
    ]
    if watched.insert:
        statements.append(
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table}{body(select.format(r='NEW'))}"
        )
    return statements


def _postgresql(watched: Watched) -> list[str]:
    """One row trigger function; the sequence row's lock orders concurrent writers."""

    def record(hostnames: str) -> str:
        into = "INSERT INTO data_plane_changes (sequence, hostname)"
        rows = f"SELECT seq, s.h FROM ({hostnames}) AS s WHERE s.h IS NOT NULL"  # noqa: S608
        return f"{into} {rows} ON CONFLICT DO NOTHING;"

    name, table, select = _name(watched), watched.table, watched.hostnames
    both = f"{select.format(r='NEW')} UNION {select.format(r='OLD')}"
    columns = f" OF {', '.join(watched.update_of)}" if watched.update_of else ""
    events = ["DELETE", f"UPDATE{columns}"]
    if watched.insert:
        events.append("INSERT")
    function = f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE seq bigint;
BEGIN
  UPDATE data_plane_sequence SET value = value + 1 WHERE id = 1 RETURNING value INTO seq;
  IF TG_OP = 'INSERT' THEN {record(select.format(r="NEW"))}
  ELSIF TG_OP = 'DELETE' THEN {record(select.format(r="OLD"))}
  ELSE {record(both)}
  END IF;
  PERFORM pg_notify('certward_data_plane', '');
  RETURN NULL;
END $$"""  # noqa: S608 - fixed table and column names of this module
    trigger = (
        f"CREATE TRIGGER {name} AFTER {' OR '.join(events)} ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {name}()"
    )
    return [function, trigger]
