"""Master key rotation: every stored secret re-encrypted under a new key.

`SEALED_COLUMNS` and `SEALED_FILES` are the one registry of everything certward seals
with the master key: database columns of envelopes, and files of the data directory
that hold one envelope each (the ACME account key, the runtime bundle store). Rotation,
``--retire`` and the secrets-at-rest tests all read this registry, so a new kind of
secret is added here or it is not rotated.

Order of operations, so that a crash at any point loses nothing: the new key is added
to the keyring file first (old keys stay, so everything still decrypts); then one
database transaction re-encrypts every sealed column; then every sealed file is
re-sealed, each by one atomic rename; only then, if asked, old keys are retired from
the file, and only keys that seal nothing any more: ``--retire`` refuses while any
envelope (row or file) still names the key. Re-running after a crash finishes the job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.bundles.store import BundleStore
from certward.db import Database
from certward.errors import ConfigurationError
from certward.model import Base, ClientCertificate, ManagedCertificate, PlatformCa, TlsCertificate
from certward.secrets import (
    Keyring,
    SecretBox,
    add_active_key,
    key_id_of,
    private_key_aad,
    remove_key,
    reseal_file,
)
from certward.services.acme_issuing import ACCOUNT_KEY_AAD, ACCOUNT_KEY_FILE
from certward.services.staging import key_aad, password_aad
from certward.settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedColumn:
    """A column of envelopes; its model has ``id`` and ``key_id`` columns too."""

    model: type[Base]
    column: str
    aad: Callable[[str], bytes]  # the associated data of a row, by row id


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedFiles:
    """Files of the data directory holding one envelope each, with their associated data."""

    name: str
    files: Callable[[Settings, SecretBox], Iterable[tuple[Path, bytes]]]


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(model=ClientCertificate, column="private_key_ciphertext", aad=key_aad),
    SealedColumn(model=ClientCertificate, column="password_ciphertext", aad=password_aad),
    SealedColumn(
        model=PlatformCa, column="private_key_ciphertext", aad=private_key_aad("platform_cas")
    ),
    SealedColumn(
        model=ManagedCertificate,
        column="private_key_ciphertext",
        aad=private_key_aad("managed_certificates"),
    ),
    SealedColumn(
        model=TlsCertificate,
        column="private_key_ciphertext",
        aad=private_key_aad("tls_certificates"),
    ),
)


def _acme_account_key(settings: Settings, _box: SecretBox) -> Iterable[tuple[Path, bytes]]:
    path = settings.data_dir / ACCOUNT_KEY_FILE
    return [(path, ACCOUNT_KEY_AAD)] if path.is_file() else []


def _bundle_files(settings: Settings, box: SecretBox) -> Iterable[tuple[Path, bytes]]:
    return BundleStore(settings.data_dir / "bundles", box).sealed_files()


SEALED_FILES: tuple[SealedFiles, ...] = (
    SealedFiles(name="ACME account key", files=_acme_account_key),
    SealedFiles(name="runtime bundle files", files=_bundle_files),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    active_key_id: str
    secrets_reencrypted: int
    files_resealed: int
    retired_key_ids: tuple[str, ...]


def sealed_key_ids(session: Session, settings: Settings, box: SecretBox) -> Counter[str]:
    """How many envelopes each key id seals, over every registered column and file."""
    counts: Counter[str] = Counter()
    for sealed in SEALED_COLUMNS:
        column = getattr(sealed.model, sealed.column)
        for envelope in session.scalars(select(column).where(column.is_not(None))):
            counts[key_id_of(envelope)] += 1
    for files in SEALED_FILES:
        for path, _aad in files.files(settings, box):
            try:
                envelope = path.read_bytes()
            except FileNotFoundError:  # removed meanwhile (an environment deleted)
                continue
            counts[key_id_of(envelope)] += 1
    return counts


def rotate(settings: Settings, database: Database, keyring: Keyring, *, retire: bool) -> Rotation:
    """Make a new active key (file mode) and re-seal every secret with the active key."""
    if settings.master_keys:
        # Keys from the environment: the operator put the new key first; nothing to write.
        if retire:
            raise ConfigurationError(
                "With CERTWARD_MASTER_KEY, retire old keys by removing them from the variable."
            )
    else:
        keyring = add_active_key(settings.master_key_file)
    box = SecretBox(keyring)
    count = 0
    with database.transaction() as session:
        for sealed in SEALED_COLUMNS:
            for row in session.scalars(select(sealed.model)):
                envelope = getattr(row, sealed.column)
                if envelope:
                    row_id = str(row.id)  # type: ignore[attr-defined]
                    setattr(row, sealed.column, box.reencrypt(envelope, aad=sealed.aad(row_id)))
                    row.key_id = keyring.active.key_id  # type: ignore[attr-defined]
                    count += 1
    resealed = 0
    for files in SEALED_FILES:
        for path, aad in files.files(settings, box):
            try:
                resealed += reseal_file(box, path, aad=aad)
            except FileNotFoundError:  # removed meanwhile (an environment deleted)
                continue
    retired: list[str] = []
    if retire:
        with database.reading() as session:
            in_use = sealed_key_ids(session, settings, box)
        old = [k for k in keyring.ids if k != keyring.active.key_id]
        still = {k: in_use[k] for k in old if in_use[k]}
        if still:
            listed = ", ".join(f"{k} ({n} envelope(s))" for k, n in sorted(still.items()))
            raise ConfigurationError(
                f"Not retiring: key(s) {listed} still seal secrets (a running certward wrote "
                "them with its old keyring?). Restart certward, run `certward keys rotate` "
                "again, then retire."
            )
        for key_id in old:
            remove_key(settings.master_key_file, key_id)
            retired.append(key_id)
    return Rotation(
        active_key_id=keyring.active.key_id,
        secrets_reencrypted=count,
        files_resealed=resealed,
        retired_key_ids=tuple(retired),
    )
