"""Alembic environment: run programmatically by `certward.db.upgrade_database`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from certward.db import make_engine
from certward.model import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "Run migrations with certward.db.upgrade_database(), or set sqlalchemy.url."
        )
    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=Base.metadata, render_as_batch=True, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
