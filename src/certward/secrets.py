"""Secrets at rest: AES-256-GCM envelopes bound to their row, under a rotating keyring.

An envelope is ``version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag``.
The associated data is the envelope header followed by the caller's row identity
(`associated_data`), so a ciphertext copied to another row, or a header edited to
name another key, fails to decrypt.

Key ids are derived from the key itself: a wrong master key shows up as "unknown key
id", never as garbage. The keyring file is a small JSON document
``{"format": "certward-keyring", "active": id, "keys": {id: base64}}`` (mode 0600),
written atomically; a file holding one base64 key is read as a keyring of one key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certward.errors import ConfigurationError, SecretError
from certward.randomness import SYSTEM_RANDOMNESS

KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
ENVELOPE_VERSION = 1
HEADER_BYTES = 1 + KEY_ID_BYTES
MAX_KEYRING_FILE_BYTES = 64 * 1024
KEYRING_FORMAT = "certward-keyring"

_KEY_ID_LABEL = b"certward secret key id v1\x00"


def associated_data(table: str, row_id: object, column: str) -> bytes:
    """The row identity a ciphertext is bound to, e.g. ``client_certificates:<id>:private_key``."""
    return f"{table}:{row_id}:{column}".encode()


def private_key_aad(table: str) -> Callable[[str], bytes]:
    """The associated data of the ``private_key`` of a ``table`` row, by row id."""

    def aad(row_id: str) -> bytes:
        return associated_data(table, row_id, "private_key")

    return aad


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One 256-bit key and the id derived from it; ``repr`` shows the id only."""

    key: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ConfigurationError(
                f"A master key must be {KEY_BYTES} bytes, not {len(self.key)}."
            )
        digest = hashlib.sha256(_KEY_ID_LABEL + self.key).digest()
        object.__setattr__(self, "key_id", digest[:KEY_ID_BYTES].hex())

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random key."""
        return cls(AESGCM.generate_key(bit_length=KEY_BYTES * 8))


class Keyring:
    """Named master keys: the active one encrypts, every one decrypts."""

    __slots__ = ("_active", "_keys")

    def __init__(self, keys: Iterable[MasterKey], *, active: str | None = None) -> None:
        self._keys: dict[str, MasterKey] = {}
        for key in keys:
            self._keys.setdefault(key.key_id, key)
        if not self._keys:
            raise ConfigurationError("A keyring needs at least one key.")
        active_id = next(iter(self._keys)) if active is None else active
        if active_id not in self._keys:
            raise ConfigurationError(f"The active key {active_id} is not in the keyring.")
        self._active = self._keys[active_id]

    def __repr__(self) -> str:
        return f"Keyring(active={self._active.key_id!r}, ids={list(self._keys)!r})"

    @property
    def active(self) -> MasterKey:
        """The key new ciphertexts are made with."""
        return self._active

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id, in keyring order."""
        return tuple(self._keys)

    def get(self, key_id: str) -> MasterKey:
        """The key named ``key_id``; `SecretError` when it is not in the keyring."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise SecretError(
                f"The secret was encrypted with key {key_id}, which is not in the keyring "
                f"(wrong master key?)."
            ) from None

    def require(self, key_ids: Iterable[str]) -> None:
        """Fail loudly at start when stored secrets name keys this keyring lacks."""
        missing = sorted(set(key_ids) - set(self._keys))
        if missing:
            raise ConfigurationError(
                f"Stored secrets use key(s) {', '.join(missing)} that the master key does not "
                f"hold: wrong or missing master key."
            )

    def with_active(self, key: MasterKey) -> Keyring:
        """A new keyring with ``key`` added (if new) and made active."""
        return Keyring([key, *self._keys.values()], active=key.key_id)

    def without(self, key_id: str) -> Keyring:
        """A new keyring without ``key_id`` (after every secret was re-encrypted)."""
        if key_id == self._active.key_id:
            raise ConfigurationError("The active key cannot be removed from the keyring.")
        self.get(key_id)
        kept = [k for k in self._keys.values() if k.key_id != key_id]
        return Keyring(kept, active=self._active.key_id)

    def to_document(self) -> bytes:
        """The keyring file's content (contains key bytes: write it 0600)."""
        document = {
            "format": KEYRING_FORMAT,
            "active": self._active.key_id,
            "keys": {k: base64.b64encode(v.key).decode() for k, v in self._keys.items()},
        }
        return (json.dumps(document, indent=2) + "\n").encode()

    @classmethod
    def from_document(cls, data: bytes, *, source: str = "the keyring") -> Keyring:
        """Read a keyring document (or a single base64 key); `ConfigurationError` if wrong."""
        text = data.decode("utf-8", errors="replace").strip()
        if not text.startswith("{"):
            return cls([MasterKey(_b64_key(text, source))])
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigurationError(f"{source} is not a valid keyring document.") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or document.get("format") != KEYRING_FORMAT
            or not isinstance(keys, Mapping)
            or not isinstance(document.get("active"), str)
        ):
            raise ConfigurationError(f"{source} is not a valid keyring document.")
        if document["active"] not in keys:
            raise ConfigurationError(f"{source} does not hold its active key.")
        loaded = []
        for key_id, encoded in keys.items():
            key = MasterKey(_b64_key(encoded, source))
            if key.key_id != key_id:
                raise ConfigurationError(f"{source} lists key {key_id} with a key of another id.")
            loaded.append(key)
        return cls(loaded, active=document["active"])


class SecretBox:
    """Encrypts and decrypts secrets with a `Keyring`; ``repr`` shows key ids only."""

    __slots__ = ("_keyring",)

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def __repr__(self) -> str:
        return f"SecretBox({self._keyring!r})"

    @property
    def keyring(self) -> Keyring:
        """The keys in use."""
        return self._keyring

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Seal ``plaintext`` under the active key, bound to the row identity ``aad``."""
        if not aad:
            raise ValueError("a secret must be bound to its row: aad is empty")
        key = self._keyring.active
        header = bytes([ENVELOPE_VERSION]) + bytes.fromhex(key.key_id)
        nonce = SYSTEM_RANDOMNESS.token_bytes(NONCE_BYTES)
        return header + nonce + AESGCM(key.key).encrypt(nonce, plaintext, header + aad)

    def decrypt(self, envelope: bytes, *, aad: bytes) -> bytes:
        """Open an envelope made for the row identity ``aad``; `SecretError` otherwise."""
        key = self._keyring.get(key_id_of(envelope))
        header, nonce = envelope[:HEADER_BYTES], envelope[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        body = envelope[HEADER_BYTES + NONCE_BYTES :]
        try:
            return AESGCM(key.key).decrypt(nonce, body, header + aad)
        except InvalidTag:
            raise SecretError(
                f"The secret for {aad.decode(errors='replace')} does not decrypt: it was altered "
                f"or belongs to another row."
            ) from None

    def reencrypt(self, envelope: bytes, *, aad: bytes) -> bytes:
        """The same secret sealed under the active key (for key rotation)."""
        return self.encrypt(self.decrypt(envelope, aad=aad), aad=aad)

    def needs_rotation(self, envelope: bytes) -> bool:
        """Whether ``envelope`` was made with a key other than the active one."""
        return key_id_of(envelope) != self._keyring.active.key_id


def key_id_of(envelope: bytes) -> str:
    """The id of the key an envelope was made with; `SecretError` if it is no envelope."""
    if len(envelope) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
        raise SecretError("The stored secret is too short to be a certward envelope.")
    if envelope[0] != ENVELOPE_VERSION:
        raise SecretError(f"The stored secret has unknown envelope version {envelope[0]}.")
    return envelope[1:HEADER_BYTES].hex()


def open_keyring(*, key_file: Path, master_keys: Iterable[bytes] = ()) -> Keyring:
    """The keyring from the environment's keys if any, else from ``key_file`` (made if absent)."""
    keys = [MasterKey(k) for k in master_keys]
    return Keyring(keys) if keys else load_or_create_keyring(key_file)


def load_or_create_keyring(path: Path) -> Keyring:
    """Load the keyring file, or create one with a fresh key on first start."""
    try:
        return create_keyring_file(path)
    except FileExistsError:
        return load_keyring_file(path)


def load_keyring_file(path: Path) -> Keyring:
    """Read a keyring file, refusing one that group or others can read."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigurationError(f"The master key file {path} is not a regular file.")
            if stat.S_IMODE(mode) & 0o077:
                raise ConfigurationError(
                    f"The master key file {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
                )
            data = handle.read(MAX_KEYRING_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigurationError(f"The master key file {path} does not exist.") from None
    except OSError as exc:
        raise ConfigurationError(
            f"The master key file {path} cannot be read: {exc.strerror}."
        ) from exc
    if len(data) > MAX_KEYRING_FILE_BYTES:
        raise ConfigurationError(f"The master key file {path} is too large to be a keyring.")
    return Keyring.from_document(data, source=f"The master key file {path}")


def create_keyring_file(path: Path, keyring: Keyring | None = None) -> Keyring:
    """Write a new keyring file (0600) atomically; `FileExistsError` if there is one."""
    keyring = keyring or Keyring([MasterKey.generate()])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = _write_temp(path, keyring.to_document())
    try:
        os.link(temp, path)  # atomic, and refuses to replace a key another process wrote
    finally:
        temp.unlink()
    _fsync_dir(path.parent)
    return keyring


def add_active_key(path: Path, key: MasterKey | None = None) -> Keyring:
    """Add ``key`` (or a fresh one) to the keyring file as its active key."""
    keyring = load_keyring_file(path).with_active(key or MasterKey.generate())
    _replace(path, keyring)
    return keyring


def remove_key(path: Path, key_id: str) -> Keyring:
    """Drop a retired key from the keyring file once no secret uses it."""
    keyring = load_keyring_file(path).without(key_id)
    _replace(path, keyring)
    return keyring


def reseal_file(box: SecretBox, path: Path, *, aad: bytes) -> bool:
    """Re-seal the envelope in ``path`` under the active key, atomically; whether it changed.

    The file is replaced by one rename (a reader sees the old envelope or the new one,
    both opening to the same content while the old key is still in the keyring).
    """
    envelope = path.read_bytes()
    if not box.needs_rotation(envelope):
        return False
    _replace_bytes(path, box.reencrypt(envelope, aad=aad))
    return True


def _replace(path: Path, keyring: Keyring) -> None:
    _replace_bytes(path, keyring.to_document())


def _replace_bytes(path: Path, data: bytes) -> None:
    temp = _write_temp(path, data)
    try:
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_temp(path: Path, data: bytes) -> Path:
    temp = path.with_name(f".{path.name}.{SYSTEM_RANDOMNESS.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def _b64_key(value: object, source: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigurationError(f"{source} holds a key that is not base64 text.")
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} holds a key that is not valid base64.") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(
            f"{source} holds a key of {len(key)} bytes; a master key has {KEY_BYTES}."
        )
    return key
