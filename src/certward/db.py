"""Engines, transactions and schema upgrades, for SQLite and PostgreSQL.

One use case is one transaction: ``with database.transaction() as session: ...``
commits when the block ends and rolls everything back when it raises. On SQLite a
writing transaction starts with ``BEGIN IMMEDIATE`` (so a read-then-write use case
never fails half-way on a lock upgrade) and every connection enforces foreign keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    PrimaryKeyConstraint,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from certward.errors import ConfigurationError, Conflict
from certward.model import Base

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000

_BEGIN_OPTION = "certward_sqlite_begin"


def make_engine(url: str | URL, **engine_options: Any) -> Engine:
    """An engine for ``url`` (``postgresql://`` means psycopg 3), set up for certward."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **engine_options)
        _set_up_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
        return engine
    return create_engine(parsed, **{"pool_pre_ping": True, **engine_options})


def _set_up_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        if mode not in {"DEFERRED", "IMMEDIATE"}:
            raise ValueError(f"unknown SQLite transaction mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """The unit of work of certward: one transaction per use case."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        writer = engine
        if engine.dialect.name == "sqlite":
            writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._write = sessionmaker(writer, expire_on_commit=False)
        self._read = sessionmaker(engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose changes are committed together, or not at all."""
        with self._write.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads; closing it rolls back whatever it changed."""
        with self._read() as session:
            yield session


def upgrade_database(target: Engine | str | URL, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the packaged Alembic migrations."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # batch migrations copy tables: check foreign keys after, not during
                _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    command.upgrade(_alembic_config(connection), revision)
                    if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                        raise ConfigurationError(
                            "The database upgrade would break foreign keys; nothing was changed."
                        )
            finally:
                if sqlite:
                    _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
    finally:
        if engine is not target:
            engine.dispose()


def database_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest schema revision this version of certward knows."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    if head is None:
        raise ConfigurationError("certward's migrations are missing from the installation.")
    return head


def stored_key_ids(session: Session) -> set[str]:
    """Ids of every key that sealed a stored secret (tables with a ``key_id`` column)."""
    found: set[str] = set()
    for table in Base.metadata.sorted_tables:
        if "key_id" in table.c:
            found.update(session.scalars(select(table.c.key_id).distinct()))
    return found


def violated_constraint(error: IntegrityError) -> str | None:
    """The name of the unique constraint ``error`` violated, on SQLite and PostgreSQL."""
    diag = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str):
        return name
    match = re.search(r"UNIQUE constraint failed: (.+)$", str(error.orig))
    if match is None:
        return None
    qualified = [c.strip().split(".") for c in match.group(1).split(",")]
    table, columns = qualified[0][0], [c[-1] for c in qualified]
    for constraint in Base.metadata.tables[table].constraints:
        if (
            isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint)
            and [c.name for c in constraint.columns] == columns
            and isinstance(constraint.name, str)
        ):
            return constraint.name
    return None


def _alembic_config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _sqlite_pragma(connection: Connection, statement: str) -> None:
    """Run a PRAGMA outside any transaction (where SQLite honours it)."""
    dbapi = connection.connection.dbapi_connection
    if dbapi is None:
        raise RuntimeError("the connection is closed")
    cursor = dbapi.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def flush_or_conflict(session: Session, message: str, *, code: str | None = None) -> None:
    """Flush, turning a unique-constraint race into the same 409 its pre-check gives."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(message, code=code) from exc
