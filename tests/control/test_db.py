"""The schema, its migrations and the rules the database enforces, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from certward.db import (
    MIGRATIONS,
    Database,
    database_revision,
    head_revision,
    make_engine,
    stored_key_ids,
    upgrade_database,
    violated_constraint,
)
from certward.model import (
    App,
    Base,
    ClientCertificate,
    ClientCertificatePin,
    Environment,
    EnvironmentVersion,
    Token,
)
from certward.pki.convert import Pkcs12Profile
from certward.vocabulary import Plan, Role

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_app(session: Session, name: str = "shop") -> App:
    app = App(name=name, plan=Plan.LICENSED, created_at=AT)
    session.add(app)
    session.flush()
    return app


def add_environment(session: Session, app: App, name: str = "production") -> Environment:
    env = Environment(
        app_id=app.id,
        name=name,
        upstream="http://127.0.0.1:8080",
        hostname=f"{name}-{app.name}.apps.localhost",
        created_at=AT,
    )
    session.add(env)
    session.flush()
    return env


def client_certificate(
    env: Environment | str, *, call_name: str | None = None, pins: tuple[str, ...] = ()
) -> ClientCertificate:
    cert = ClientCertificate(
        environment_id=env if isinstance(env, str) else env.id,
        call_name=call_name,
        subject="CN=client",
        issuer="CN=issuer",
        serial="01",
        not_before=AT,
        not_after=AT + timedelta(days=365),
        sha256_fingerprint="ab" * 32,
        certificate_pem="-----BEGIN CERTIFICATE-----\n...",
        private_key_ciphertext=b"\x01" + bytes(40),
        key_id="0123456789abcdef",
        created_at=AT,
        updated_at=AT,
    )
    cert.pins = [ClientCertificatePin(pin=pin) for pin in pins]
    return cert


def test_upgrade_creates_every_table_and_records_the_head(database: Database) -> None:
    """A fresh database ends at the newest revision with every table of the model."""
    assert database_revision(database.engine) == head_revision()
    assert set(inspect(database.engine).get_table_names()) >= set(Base.metadata.tables)


def test_upgrade_twice_is_harmless(database: Database) -> None:
    """Upgrading an up-to-date database changes nothing."""
    upgrade_database(database.engine)
    assert database_revision(database.engine) == head_revision()


def test_migrations_match_the_models(database: Database) -> None:
    """What the migrations build is exactly what the models describe."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_accepts_a_url(tmp_path: Path) -> None:
    """`upgrade_database` also takes a URL, as ``certward db upgrade`` will."""
    url = f"sqlite:///{tmp_path / 'by-url.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    try:
        assert database_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_connections_enforce_foreign_keys_in_wal_mode(sqlite_engine: Engine) -> None:
    """Every SQLite connection has foreign keys on and the WAL journal."""
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_foreign_keys_are_enforced(database: Database) -> None:
    """An environment of an app that does not exist is refused."""
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(
            Environment(
                app_id="no-such-app", name="x", upstream="http://x", hostname="x", created_at=AT
            )
        )


def test_a_failed_use_case_leaves_nothing_behind(database: Database) -> None:
    """An error inside a transaction rolls back everything it wrote."""

    def write_then_crash() -> None:
        with database.transaction() as session:
            add_app(session, "half-written")
            raise RuntimeError("crash after the first write")

    with pytest.raises(RuntimeError):
        write_then_crash()
    with database.reading() as session:
        assert session.scalars(select(App)).all() == []


def test_timestamps_come_back_aware_and_in_utc(database: Database) -> None:
    """A timestamp written in any zone is read back as the same instant, in UTC."""
    cet = timezone(timedelta(hours=1))
    with database.transaction() as session:
        app = App(name="zoned", plan=Plan.FREE, created_at=datetime(2026, 3, 1, 13, 0, tzinfo=cet))
        session.add(app)
    with database.reading() as session:
        stored = session.scalars(select(App.created_at)).one()
    assert stored == AT
    assert stored.tzinfo is UTC


def test_naive_timestamps_are_refused(database: Database) -> None:
    """A naive datetime never reaches the database."""
    with pytest.raises(StatementError, match="tz-aware"), database.transaction() as session:
        session.add(App(name="naive", plan=Plan.FREE, created_at=datetime(2026, 3, 1)))


def test_enum_defaults_and_values_are_stored_as_words(database: Database) -> None:
    """Enums are stored by value, and a new environment reads modern PKCS12."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        env_id = env.id
    with database.reading() as session:
        row = session.execute(text("SELECT plan FROM apps")).one()
        env = session.get_one(Environment, env_id)
    assert row.plan == "licensed"
    assert env.pkcs12_profile is Pkcs12Profile.MODERN


def test_unknown_enum_values_are_refused_by_the_database(database: Database) -> None:
    """A plan outside the enum is refused even by raw SQL."""
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(
            text("INSERT INTO apps (id, name, plan, created_at) VALUES ('x', 'x', 'gold', :at)"),
            {"at": AT},
        )


def test_a_pin_used_twice_in_an_environment_is_refused(database: Database) -> None:
    """Two certificates of one environment cannot share a pin."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        session.add(client_certificate(env, pins=("partner.example.com", "Module.Service")))
        env_id = env.id
    with pytest.raises(IntegrityError) as caught, database.transaction() as session:
        session.add(client_certificate(env_id, pins=("partner.example.com",)))
    assert violated_constraint(caught.value) == "uq_client_certificate_pins_environment_id_pin"


def test_the_same_pin_in_two_environments_is_fine(database: Database) -> None:
    """Pins are unique per environment, not across them."""
    with database.transaction() as session:
        app = add_app(session)
        for name in ("acceptance", "production"):
            env = add_environment(session, app, name)
            session.add(client_certificate(env, pins=("partner.example.com",)))
    with database.reading() as session:
        assert len(session.scalars(select(ClientCertificatePin)).all()) == 2


def test_a_call_name_used_twice_in_an_environment_is_refused(database: Database) -> None:
    """Two certificates of one environment cannot share a call name."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        session.add(client_certificate(env, call_name="payments"))
        env_id = env.id
    with pytest.raises(IntegrityError) as caught, database.transaction() as session:
        session.add(client_certificate(env_id, call_name="payments"))
    assert violated_constraint(caught.value) == "uq_client_certificates_environment_id_call_name"


def test_certificates_without_call_name_do_not_collide(database: Database) -> None:
    """Any number of certificates may have no call name."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        session.add_all([client_certificate(env), client_certificate(env)])
    with database.reading() as session:
        assert len(session.scalars(select(ClientCertificate)).all()) == 2


def test_a_pin_cannot_claim_another_environment(database: Database) -> None:
    """A pin's environment is always its certificate's (composite foreign key)."""
    with database.transaction() as session:
        app = add_app(session)
        env = add_environment(session, app, "acceptance")
        other = add_environment(session, app, "production")
        cert = client_certificate(env)
        session.add(cert)
        session.flush()
        cert_id, other_id = cert.id, other.id
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(
            ClientCertificatePin(client_certificate_id=cert_id, environment_id=other_id, pin="a")
        )


def test_deleting_a_certificate_deletes_its_pins(database: Database) -> None:
    """Pins go with their certificate."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        session.add(client_certificate(env, pins=("a.example", "b.example")))
    with database.transaction() as session:
        session.delete(session.scalars(select(ClientCertificate)).one())
    with database.reading() as session:
        assert session.scalars(select(ClientCertificatePin)).all() == []


def test_a_version_number_is_used_once_per_environment(database: Database) -> None:
    """Two applied versions of one environment cannot have the same number."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        env_id = env.id
        session.add(
            EnvironmentVersion(
                environment_id=env_id, version=1, digest="0" * 64, snapshot={}, applied_at=AT
            )
        )
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(
            EnvironmentVersion(
                environment_id=env_id, version=1, digest="1" * 64, snapshot={}, applied_at=AT
            )
        )


@pytest.mark.parametrize(
    ("role", "scoped_to_app", "scoped_to_env", "accepted"),
    [
        (Role.ADMIN, False, False, True),
        (Role.ADMIN, True, False, False),
        (Role.MEMBER, True, False, True),
        (Role.MEMBER, False, False, False),
        (Role.VIEWER, True, True, False),
        (Role.RUNTIME, True, True, True),
        (Role.RUNTIME, True, False, False),
    ],
)
def test_token_scope_matches_its_role(
    database: Database, role: Role, scoped_to_app: bool, scoped_to_env: bool, accepted: bool
) -> None:
    """The database refuses a token scoped wrongly for its role."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        app_id, env_id = env.app_id, env.id
    token = Token(
        token_hash="f" * 64,
        role=role,
        app_id=app_id if scoped_to_app else None,
        environment_id=env_id if scoped_to_env else None,
        created_at=AT,
    )
    if accepted:
        with database.transaction() as session:
            session.add(token)
    else:
        with pytest.raises(IntegrityError), database.transaction() as session:
            session.add(token)


def test_a_runtime_token_environment_belongs_to_its_app(database: Database) -> None:
    """A runtime token cannot pair one app with another app's environment."""
    with database.transaction() as session:
        env = add_environment(session, add_app(session, "shop"))
        other = add_app(session, "other")
        env_id, other_id = env.id, other.id
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(
            Token(
                token_hash="e" * 64,
                role=Role.RUNTIME,
                app_id=other_id,
                environment_id=env_id,
                created_at=AT,
            )
        )


def test_token_hashes_are_unique(database: Database) -> None:
    """The same token hash cannot be stored twice."""
    with database.transaction() as session:
        session.add(Token(token_hash="d" * 64, role=Role.ADMIN, created_at=AT))
    with pytest.raises(IntegrityError) as caught, database.transaction() as session:
        session.add(Token(token_hash="d" * 64, role=Role.ADMIN, created_at=AT))
    assert violated_constraint(caught.value) == "uq_tokens_token_hash"


def test_stored_key_ids_lists_the_keys_of_every_secret(database: Database) -> None:
    """The start-up check sees which keys sealed the stored secrets."""
    with database.reading() as session:
        assert stored_key_ids(session) == set()
    with database.transaction() as session:
        env = add_environment(session, add_app(session))
        session.add(client_certificate(env))
    with database.reading() as session:
        assert stored_key_ids(session) == {"0123456789abcdef"}


def test_deleting_an_app_deletes_what_it_owns(database: Database) -> None:
    """Environments, certificates and tokens of a deleted app go with it."""
    with database.transaction() as session:
        app = add_app(session)
        env = add_environment(session, app)
        session.add(client_certificate(env, pins=("a.example",)))
        session.add(Token(token_hash="c" * 64, role=Role.VIEWER, app_id=app.id, created_at=AT))
    with database.transaction() as session:
        session.execute(text("DELETE FROM apps"))
    with database.reading() as session:
        for model in (Environment, ClientCertificate, ClientCertificatePin, Token):
            assert session.scalars(select(model)).all() == []


def test_reading_sessions_do_not_persist_changes(database: Database) -> None:
    """Whatever a read-only session changes is thrown away."""
    with database.reading() as session:
        add_app(session, "ghost")
    with database.reading() as session:
        assert session.scalars(select(App)).all() == []


def test_database_repr_hides_the_password() -> None:
    """A database URL's password never shows in ``repr``."""
    engine = make_engine("postgresql://certward:hunter2-secret@db.example/certward")
    try:
        assert "hunter2-secret" not in repr(Database(engine))
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_up_front(sqlite_engine: Engine) -> None:
    """A use case on SQLite starts with BEGIN IMMEDIATE; a read with a plain BEGIN."""
    upgrade_database(sqlite_engine)
    database = Database(sqlite_engine)
    statements: list[str] = []

    @event.listens_for(sqlite_engine, "before_cursor_execute")
    def record(*args: object) -> None:
        statements.append(str(args[2]))

    with database.transaction() as session:
        session.scalars(select(App)).all()
    with database.reading() as session:
        session.scalars(select(App)).all()
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


def _triggers(engine: Engine) -> list[tuple[str, str]]:
    """Every trigger's name and definition (SQLite) or name and table (PostgreSQL)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        else:
            query = (
                "SELECT DISTINCT trigger_name, event_object_table FROM information_schema.triggers"
                " WHERE trigger_schema = current_schema() ORDER BY trigger_name"
            )
        return [(str(a), str(b)) for a, b in connection.exec_driver_sql(query)]


def test_revision_0010_admits_modern2026_and_keeps_rows_and_triggers(engine: Engine) -> None:
    """From 0009, environments keep their profiles and the data-plane triggers stay as
    they were; ``modern2026`` is admitted after, and a downgrade turns it into ``modern``."""
    upgrade_database(engine, "0009")
    with Session(engine) as session, session.begin():
        app = add_app(session)
        legacy = add_environment(session, app, "legacy")
        legacy.pkcs12_profile = Pkcs12Profile.LEGACY
        add_environment(session, app, "modern")
    before = _triggers(engine)
    assert before

    upgrade_database(engine)
    assert _triggers(engine) == before
    with Session(engine) as session, session.begin():
        query = select(Environment.name, Environment.pkcs12_profile)
        profiles = dict(session.execute(query).all())
        assert profiles == {"legacy": Pkcs12Profile.LEGACY, "modern": Pkcs12Profile.MODERN}
        session.execute(
            text("UPDATE environments SET pkcs12_profile = 'modern2026' WHERE name = 'modern'")
        )
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.execute(text("UPDATE environments SET pkcs12_profile = 'modern2027'"))

    with engine.connect() as connection, connection.begin():
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    assert _triggers(engine) == before
    with engine.connect() as connection:
        query = text("SELECT name, pkcs12_profile FROM environments")
        rows = dict(connection.execute(query).all())
    assert rows == {"legacy": "legacy", "modern": "modern"}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE environments SET pkcs12_profile = 'modern2026'"))
