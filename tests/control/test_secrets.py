"""Secrets at rest: envelopes bound to their row, key ids, the keyring file and rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certward.errors import ConfigurationError, SecretError
from certward.model import Base
from certward.secrets import (
    Keyring,
    MasterKey,
    SecretBox,
    add_active_key,
    associated_data,
    create_keyring_file,
    key_id_of,
    load_keyring_file,
    load_or_create_keyring,
    open_keyring,
    remove_key,
)
from certward.services.keys import SEALED_COLUMNS

ROW = associated_data("client_certificates", "7f8e", "private_key")
KEY = MasterKey(bytes(range(32)))


def box(*keys: MasterKey) -> SecretBox:
    return SecretBox(Keyring(keys or (KEY,)))


@given(st.binary(max_size=4096))
def test_round_trip(plaintext: bytes) -> None:
    """Whatever is encrypted for a row decrypts for that row."""
    secret_box = box()
    assert secret_box.decrypt(secret_box.encrypt(plaintext, aad=ROW), aad=ROW) == plaintext


def test_every_envelope_is_different() -> None:
    """A fresh random nonce makes two encryptions of one secret unrelated."""
    secret_box = box()
    assert secret_box.encrypt(b"same", aad=ROW) != secret_box.encrypt(b"same", aad=ROW)


def test_envelope_names_its_key_and_hides_the_plaintext() -> None:
    """The envelope carries the key id, not the secret."""
    envelope = box().encrypt(b"-----BEGIN PRIVATE KEY-----", aad=ROW)
    assert key_id_of(envelope) == KEY.key_id
    assert b"PRIVATE KEY" not in envelope


def test_a_ciphertext_copied_to_another_row_fails() -> None:
    """Associated data binds a ciphertext to its row and column."""
    secret_box = box()
    envelope = secret_box.encrypt(b"key", aad=ROW)
    for other in (
        associated_data("client_certificates", "7f8f", "private_key"),
        associated_data("client_certificates", "7f8e", "password"),
    ):
        with pytest.raises(SecretError, match="belongs to another row"):
            secret_box.decrypt(envelope, aad=other)


@pytest.mark.parametrize("position", [0, 5, 10, 21, -1])
def test_a_tampered_ciphertext_fails(position: int) -> None:
    """Flipping a bit of the version, key id, nonce, body or tag is detected."""
    secret_box = box()
    envelope = bytearray(secret_box.encrypt(b"key material", aad=ROW))
    envelope[position] ^= 0x01
    with pytest.raises(SecretError):
        secret_box.decrypt(bytes(envelope), aad=ROW)


def test_an_edited_key_id_is_unknown_or_fails() -> None:
    """The header is authenticated too: naming another known key does not decrypt."""
    other = MasterKey(bytes(32))
    secret_box = box(KEY, other)
    envelope = secret_box.encrypt(b"key", aad=ROW)
    forged = envelope[:1] + bytes.fromhex(other.key_id) + envelope[9:]
    with pytest.raises(SecretError):
        secret_box.decrypt(forged, aad=ROW)


def test_a_wrong_master_key_is_reported_as_unknown_key_id() -> None:
    """Decrypting with another master key says which key is missing, not garbage."""
    envelope = box().encrypt(b"key", aad=ROW)
    with pytest.raises(SecretError, match=f"encrypted with key {KEY.key_id}.*wrong master key"):
        box(MasterKey(bytes(32))).decrypt(envelope, aad=ROW)


@pytest.mark.parametrize("envelope", [b"", b"\x01" + bytes(20), b"\x02" + bytes(60)])
def test_something_that_is_no_envelope_is_refused(envelope: bytes) -> None:
    """Short data or an unknown envelope version is a `SecretError`."""
    with pytest.raises(SecretError):
        box().decrypt(envelope, aad=ROW)


def test_empty_associated_data_is_refused() -> None:
    """A secret must always be bound to a row."""
    with pytest.raises(ValueError, match="aad"):
        box().encrypt(b"key", aad=b"")


def test_key_ids_derive_from_the_key() -> None:
    """The same key always has the same 16-hex-digit id; another key another id."""
    assert MasterKey(bytes(range(32))).key_id == KEY.key_id
    assert len(KEY.key_id) == 16
    assert MasterKey(bytes(32)).key_id != KEY.key_id


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_a_key_of_the_wrong_size_is_refused(size: int) -> None:
    """Only 256-bit keys are master keys."""
    with pytest.raises(ConfigurationError, match="32 bytes"):
        MasterKey(bytes(size))


def test_repr_never_shows_key_bytes() -> None:
    """Keys, keyrings and boxes show key ids only."""
    key = MasterKey(b"\xab" * 32)
    shown = repr(key) + repr(Keyring([key])) + repr(SecretBox(Keyring([key])))
    assert key.key_id in shown
    for leak in ("ab" * 8, "\\xab", base64.b64encode(key.key).decode()[:12]):
        assert leak not in shown


def test_rotation_keeps_old_secrets_readable() -> None:
    """After a new key becomes active, old envelopes decrypt and re-encrypt under it."""
    old_box = box()
    old_envelope = old_box.encrypt(b"key", aad=ROW)
    new_key = MasterKey.generate()
    rotated = SecretBox(old_box.keyring.with_active(new_key))
    assert rotated.decrypt(old_envelope, aad=ROW) == b"key"
    assert rotated.needs_rotation(old_envelope)
    new_envelope = rotated.reencrypt(old_envelope, aad=ROW)
    assert key_id_of(new_envelope) == new_key.key_id
    assert not rotated.needs_rotation(new_envelope)
    retired = SecretBox(rotated.keyring.without(KEY.key_id))
    assert retired.decrypt(new_envelope, aad=ROW) == b"key"
    with pytest.raises(SecretError, match="not in the keyring"):
        retired.decrypt(old_envelope, aad=ROW)


def test_the_active_key_cannot_be_removed() -> None:
    """Removing the active key would leave nothing to encrypt with."""
    with pytest.raises(ConfigurationError):
        Keyring([KEY]).without(KEY.key_id)


def test_require_fails_loudly_on_missing_keys() -> None:
    """Stored secrets under a key the keyring lacks stop the start."""
    keyring = Keyring([KEY])
    keyring.require([KEY.key_id])
    with pytest.raises(ConfigurationError, match="wrong or missing master key"):
        keyring.require([KEY.key_id, "00112233aabbccdd"])


def test_the_key_file_is_created_0600_and_loaded_afterwards(tmp_path: Path) -> None:
    """First start writes a private keyring file; later starts read the same keys."""
    path = tmp_path / "data" / "master.key"
    first = load_or_create_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create_keyring(path)
    assert again.ids == first.ids
    assert again.active.key == first.active.key
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    """Creating a keyring where one exists fails rather than losing keys."""
    path = tmp_path / "master.key"
    create_keyring_file(path)
    with pytest.raises(FileExistsError):
        create_keyring_file(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """Group or other access to the master key file stops the start."""
    path = tmp_path / "master.key"
    create_keyring_file(path)
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_or_create_keyring(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not base64!",
        base64.b64encode(bytes(16)),
        base64.b64encode(bytes(64)),
        b"{not json",
        b'{"format": "something-else", "active": "x", "keys": {}}',
        b'{"format": "certward-keyring", "active": "x", "keys": []}',
        b'{"format": "certward-keyring", "active": "0011223344556677", "keys": {}}',
        bytes(range(32)),
    ],
)
def test_a_malformed_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    """A key file of the wrong size or format fails loudly with `ConfigurationError`."""
    path = tmp_path / "master.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="master key"):
        load_keyring_file(path)


def test_a_key_listed_under_the_wrong_id_is_refused(tmp_path: Path) -> None:
    """An edited keyring whose ids do not match its keys is refused."""
    path = tmp_path / "master.key"
    document = {
        "format": "certward-keyring",
        "active": "0011223344556677",
        "keys": {"0011223344556677": base64.b64encode(KEY.key).decode()},
    }
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="another id"):
        load_keyring_file(path)


def test_a_single_base64_key_file_is_a_keyring_of_one(tmp_path: Path) -> None:
    """``openssl rand -base64 32 > master.key`` is a valid key file."""
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(KEY.key).decode() + "\n")
    path.chmod(0o600)
    assert load_keyring_file(path).active == KEY


def test_a_missing_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    """Loading (not creating) a keyring that is not there says so."""
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_keyring_file(tmp_path / "absent.key")


def test_adding_a_key_rotates_the_file_and_keeps_old_keys(tmp_path: Path) -> None:
    """A new active key is added atomically; the old ones stay until removed."""
    path = tmp_path / "master.key"
    first = create_keyring_file(path)
    envelope = SecretBox(first).encrypt(b"key", aad=ROW)
    second = add_active_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_keyring_file(path)
    assert loaded.active.key_id == second.active.key_id != first.active.key_id
    assert set(loaded.ids) == {first.active.key_id, second.active.key_id}
    assert SecretBox(loaded).decrypt(envelope, aad=ROW) == b"key"
    after = remove_key(path, first.active.key_id)
    assert load_keyring_file(path).ids == after.ids == (second.active.key_id,)
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_keys_from_the_environment_take_precedence(tmp_path: Path) -> None:
    """Keys given in the environment are used, and no file is created."""
    other = MasterKey(bytes(32))
    keyring = open_keyring(key_file=tmp_path / "master.key", master_keys=[KEY.key, other.key])
    assert keyring.active == KEY
    assert keyring.ids == (KEY.key_id, other.key_id)
    assert not (tmp_path / "master.key").exists()


def test_without_environment_keys_the_file_is_created(tmp_path: Path) -> None:
    """With no key in the environment, the key file is made at first start."""
    keyring = open_keyring(key_file=tmp_path / "master.key")
    assert load_keyring_file(tmp_path / "master.key").ids == keyring.ids


def test_the_key_file_content_is_valid_base64_json(tmp_path: Path) -> None:
    """The keyring file is a small JSON document an operator can back up and read."""
    path = tmp_path / "master.key"
    keyring = create_keyring_file(path)
    document = json.loads(path.read_text())
    assert document["format"] == "certward-keyring"
    assert document["active"] == keyring.active.key_id
    assert base64.b64decode(document["keys"][keyring.active.key_id]) == keyring.active.key


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A key file the service cannot read stops the start with a clear message."""
    path = tmp_path / "master.key"
    create_keyring_file(path)
    path.chmod(0o000)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_keyring_file(path)


def test_every_sealed_column_of_the_schema_is_in_the_rotation_registry() -> None:
    """A column of envelopes (``*_ciphertext``) that the registry misses would never be
    rotated, and ``--retire`` would delete the key that opens it."""
    registered = {(c.model.__tablename__, c.column) for c in SEALED_COLUMNS}
    in_schema = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("ciphertext")
    }
    assert in_schema == registered
    for sealed in SEALED_COLUMNS:
        assert "key_id" in sealed.model.__table__.columns, sealed.model.__tablename__
