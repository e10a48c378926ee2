"""Databases for the control-plane tests: a fresh SQLite file and a private PostgreSQL schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from certward.db import Database, make_engine, upgrade_database
from tests.material.tools import DATABASE_URL_VARIABLE, DEFAULT_DATABASE_URL, in_ci


def postgres_url() -> str:
    """Where the test PostgreSQL server is (``CERTWARD_TEST_DATABASE_URL``)."""
    return os.environ.get(DATABASE_URL_VARIABLE, DEFAULT_DATABASE_URL)


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL is not reachable: {reason}")


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty SQLite database file."""
    engine = make_engine(f"sqlite:///{tmp_path / 'certward.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """An empty schema of its own on the test PostgreSQL server, dropped afterwards."""
    admin = make_engine(postgres_url(), connect_args={"connect_timeout": 5})
    schema = f"certward_test_{secrets.token_hex(6)}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        _unavailable(str(exc.orig).strip().splitlines()[0])
    engine = make_engine(postgres_url(), connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """An empty database of each kind certward runs on."""
    fixture = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    result: Engine = request.getfixturevalue(fixture)
    return result


@pytest.fixture
def database(engine: Engine) -> Database:
    """A database upgraded to the newest schema."""
    upgrade_database(engine)
    return Database(engine)
