"""Master key rotation: every stored secret re-encrypted under a new key, in one transaction.

Order of operations, so that a crash at any point loses nothing: the new key is added
to the keyring file first (old keys stay, so everything still decrypts); then one
database transaction re-encrypts every secret; only then, if asked, old keys are
retired from the file. Re-running after a crash simply finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from certward.db import Database, stored_key_ids
from certward.errors import ConfigurationError
from certward.model import Base, ClientCertificate, ManagedCertificate, PlatformCa, TlsCertificate
from certward.secrets import Keyring, SecretBox, add_active_key, private_key_aad, remove_key
from certward.services.staging import key_aad, password_aad
from certward.settings import Settings

# Every encrypted column: (model, column, associated data of a row id). Each such
# model also has ``id`` and ``key_id`` columns.
SECRET_COLUMNS: list[tuple[type[Base], str, Callable[[str], bytes]]] = [
    (ClientCertificate, "private_key_ciphertext", key_aad),
    (ClientCertificate, "password_ciphertext", password_aad),
    (PlatformCa, "private_key_ciphertext", private_key_aad("platform_cas")),
    (ManagedCertificate, "private_key_ciphertext", private_key_aad("managed_certificates")),
    (TlsCertificate, "private_key_ciphertext", private_key_aad("tls_certificates")),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    active_key_id: str
    secrets_reencrypted: int
    retired_key_ids: tuple[str, ...]


def rotate(settings: Settings, database: Database, keyring: Keyring, *, retire: bool) -> Rotation:
    """Make a new active key (file mode) and re-encrypt every secret with the active key."""
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
        for model, column, aad in SECRET_COLUMNS:
            for row in session.scalars(select(model)):
                envelope = getattr(row, column)
                if envelope:
                    row_id = str(row.id)  # type: ignore[attr-defined]
                    setattr(row, column, box.reencrypt(envelope, aad=aad(row_id)))
                    row.key_id = keyring.active.key_id  # type: ignore[attr-defined]
                    count += 1
    retired: list[str] = []
    if retire:
        with database.reading() as session:
            in_use = stored_key_ids(session)
        for key_id in keyring.ids:
            if key_id != keyring.active.key_id and key_id not in in_use:
                remove_key(settings.master_key_file, key_id)
                retired.append(key_id)
    return Rotation(
        active_key_id=keyring.active.key_id,
        secrets_reencrypted=count,
        retired_key_ids=tuple(retired),
    )
