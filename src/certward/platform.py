"""Opening a certward installation: data directory, master key, database, admin token.

`open_platform` is what ``certward serve`` (and every operator command) calls first.
A wrong or missing master key fails here, loudly, before anything is served.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from certward.authorization import generate_token
from certward.clock import Clock, SystemClock
from certward.db import Database, make_engine, stored_key_ids, upgrade_database
from certward.errors import ConfigurationError, SecretError
from certward.material_workers import MaterialWorkers
from certward.randomness import SYSTEM_RANDOMNESS, Randomness
from certward.rate_limits import UploadLimits
from certward.secrets import Keyring, SecretBox, open_keyring
from certward.services import tokens
from certward.services.context import Context
from certward.services.platform_ca import ensure_platform_ca
from certward.services.staging import reconcile_bundles
from certward.settings import Settings
from certward.trust import public_roots


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """An opened installation. ``admin_token_file`` is set when a token was generated."""

    context: Context
    engine: Engine
    admin_token_file: Path | None = None
    admin_token: str | None = field(default=None, repr=False)

    def close(self) -> None:
        self.context.material_workers.close()
        self.engine.dispose()


def open_platform(
    settings: Settings,
    *,
    clock: Clock | None = None,
    randomness: Randomness = SYSTEM_RANDOMNESS,
    bootstrap: bool = True,
) -> Platform:
    """Prepare everything a certward process needs; `ConfigurationError` if anything is off."""
    _make_private_directory(settings.data_dir)
    _prepare_sqlite_file(settings)
    engine = make_engine(settings.database_url)
    try:
        try:
            upgrade_database(engine)
            database = Database(engine)
            with database.reading() as session:
                key_ids = stored_key_ids(session)
        except DBAPIError as exc:
            raise ConfigurationError(database_failure(settings, exc)) from exc
        keyring = _keyring(settings, key_ids)
        try:
            keyring.require(key_ids)
        except SecretError as exc:
            raise ConfigurationError(
                f"The master key does not match the database: {exc} Start certward with "
                "the key file (or CERTWARD_MASTER_KEY) that encrypted it."
            ) from exc
        known_roots = public_roots()
        context = Context(
            database=database,
            secrets=SecretBox(keyring),
            clock=clock or SystemClock(),
            randomness=randomness,
            settings=settings,
            known_roots=known_roots,
            upload_limits=UploadLimits(
                upload=settings.upload_rate, failed_upload=settings.failed_upload_rate
            ),
            material_workers=MaterialWorkers(
                workers=settings.material_workers,
                cpu_seconds=settings.material_cpu_seconds,
                wall_seconds=settings.material_wall_seconds,
                known_roots=known_roots,
            ),
        )
    except BaseException:
        engine.dispose()
        raise
    try:
        ensure_platform_ca(context)
        token_file, token = _bootstrap_admin(context) if bootstrap else (None, None)
        if bootstrap:
            reconcile_bundles(context)
    except BaseException:
        context.material_workers.close()
        engine.dispose()
        raise
    return Platform(context=context, engine=engine, admin_token_file=token_file, admin_token=token)


def _keyring(settings: Settings, key_ids: set[str]) -> Keyring:
    """The master keys; a key file is generated only for a database that holds no secret."""
    try:
        if settings.master_keys or settings.master_key_file.exists() or not key_ids:
            return open_keyring(key_file=settings.master_key_file, master_keys=settings.master_keys)
    except SecretError as exc:
        raise ConfigurationError(str(exc)) from exc
    raise ConfigurationError(
        f"The master key file {settings.master_key_file} is missing, but the database holds "
        f"secrets sealed with {len(key_ids)} key(s). Restore the key file (or set "
        "CERTWARD_MASTER_KEY); certward will not create a new key that cannot open them."
    )


def upgrade_schema(settings: Settings) -> None:
    """``certward db upgrade``: apply the migrations; `ConfigurationError` if that fails.

    The data directory is made first when the database is the SQLite file inside it
    (the embedded default), as ``certward serve`` would, and a new SQLite file is
    created mode 0600 (SQLite gives its journal and write-ahead log the same mode).
    """
    _prepare_sqlite_file(settings)
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
    except DBAPIError as exc:
        raise ConfigurationError(database_failure(settings, exc)) from exc
    finally:
        engine.dispose()


def database_failure(settings: Settings, error: DBAPIError) -> str:
    """One sentence on a database that cannot be reached or used; never its password."""
    url = make_url(settings.database_url)
    reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return (
        f"The database {url.render_as_string(hide_password=True)} cannot be used: "
        f"{reason.rstrip('.')}."
    )


def _bootstrap_admin(context: Context) -> tuple[Path | None, str | None]:
    """Register CERTWARD_ADMIN_TOKEN, or generate one at first start into <data dir>/admin-token."""
    settings = context.settings
    if settings.admin_token:
        tokens.ensure_admin_token(context, settings.admin_token)
        return None, None
    if tokens.has_admin_token(context):
        return None, None
    token = generate_token(context.randomness)
    _write_private_file(settings.admin_token_file, (token + "\n").encode())
    tokens.ensure_admin_token(context, token)
    return settings.admin_token_file, token


def _make_private_directory(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"The data directory {path} cannot be created: {exc.strerror}."
        ) from exc
    if not path.is_dir():
        raise ConfigurationError(f"The data directory {path} is not a directory.")


def _prepare_sqlite_file(settings: Settings) -> None:
    """For a SQLite database: its directory if it is the data directory, and the file 0600."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    if path.absolute().parent == settings.data_dir.absolute():
        _make_private_directory(settings.data_dir)
    _create_private_database_file(path)


def _create_private_database_file(path: Path) -> None:
    """Create an empty SQLite database file readable by the owner only, unless it exists."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigurationError(
            f"The database file {path} cannot be created: {exc.strerror}."
        ) from exc
    os.close(descriptor)


def _write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600, atomically (temp file, fsync, rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
