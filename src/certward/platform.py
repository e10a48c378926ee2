"""Opening a certward installation: data directory, master key, database, admin token.

`open_platform` is what ``certward serve`` (and every operator command) calls first.
A wrong or missing master key fails here, loudly, before anything is served.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from certward.access import generate_token
from certward.clock import Clock, SystemClock
from certward.db import Database, make_engine, stored_key_ids, upgrade_database
from certward.errors import ConfigurationError, SecretError
from certward.secrets import SecretBox, open_keyring
from certward.services import tokens
from certward.services.context import Context
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
        self.engine.dispose()


def open_platform(
    settings: Settings, *, clock: Clock | None = None, bootstrap: bool = True
) -> Platform:
    """Prepare everything a certward process needs; `ConfigurationError` if anything is off."""
    _make_private_directory(settings.data_dir)
    try:
        keyring = open_keyring(key_file=settings.master_key_file, master_keys=settings.master_keys)
    except SecretError as exc:
        raise ConfigurationError(str(exc)) from exc
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
        database = Database(engine)
        with database.reading() as session:
            try:
                keyring.require(stored_key_ids(session))
            except SecretError as exc:
                raise ConfigurationError(
                    f"The master key does not match the database: {exc} Start certward with "
                    "the key file (or CERTWARD_MASTER_KEY) that encrypted it."
                ) from exc
        context = Context(
            database=database,
            secrets=SecretBox(keyring),
            clock=clock or SystemClock(),
            settings=settings,
            known_roots=public_roots(),
        )
        token_file, token = _bootstrap_admin(context) if bootstrap else (None, None)
    except BaseException:
        engine.dispose()
        raise
    return Platform(context=context, engine=engine, admin_token_file=token_file, admin_token=token)


def _bootstrap_admin(context: Context) -> tuple[Path | None, str | None]:
    """Register CERTWARD_ADMIN_TOKEN, or generate one at first start into <data dir>/admin-token."""
    settings = context.settings
    if settings.admin_token:
        tokens.ensure_admin_token(context, settings.admin_token)
        return None, None
    if tokens.has_admin_token(context):
        return None, None
    token = generate_token()
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
