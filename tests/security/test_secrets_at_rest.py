"""Secrets at rest: the data directory without the master key yields no client key.

Replays: a runtime bundle kept in the store as ``client-certificates/<id>.p12`` with its
password in ``manifest.json`` beside it (the data directory alone opened every client
key); ``keys rotate`` leaving the ACME account key sealed under the old key, and
``--retire`` then deleting the key that still opened it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.cli.app import main
from certward.secrets import SecretBox, key_id_of, load_keyring_file
from certward.services import keys
from certward.services.acme_issuing import load_or_create_account_key
from certward.services.keys import SEALED_COLUMNS, SEALED_FILES, sealed_key_ids
from certward.settings import Settings
from tests.api.conftest import Api, client_leaf, expect
from tests.material.factory import TestCA
from tests.test_keys_rotate import installation, opened

__all__ = ["installation"]

PASSWORD = "upload-Pw-7261"


def _every_string(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _every_string(v)]
    if isinstance(value, list):
        return [s for v in value for s in _every_string(v)]
    return []


def _candidate_passwords(files: list[Path]) -> set[str]:
    """Every string of every JSON file of the store, and every word-like run of the others."""
    found: set[str] = {""}
    for path in files:
        data = path.read_bytes()
        try:
            found.update(_every_string(json.loads(data)))
        except ValueError:
            found.update(w.decode() for w in re.findall(rb"[A-Za-z0-9]{16,64}", data))
    return found


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_the_bundle_store_alone_opens_no_client_key(api: Api, client_ca: TestCA) -> None:
    """After a restart the store holds the bundle; no file of it is a PKCS12 or PEM key
    that any password found anywhere in the store opens."""
    api.create_app_and_environment("shop", "prod")
    leaf = client_leaf(client_ca, "client.example.test")
    expect(
        api.upload_client_certificate(
            "shop", "prod", leaf.pkcs12(PASSWORD), password=PASSWORD, pins=["p.example"]
        ),
        201,
    )
    api.restart("shop", "prod")
    store = api.settings.data_dir / "bundles"
    files = [p for p in store.rglob("*") if p.is_file()]
    assert files, "the restart wrote the bundle into the store"
    passwords = _candidate_passwords(files)
    opened_keys = []
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, f"{path} holds a PEM key"
        for password in passwords:
            try:
                key, _, _ = pkcs12.load_key_and_certificates(data, password.encode())
            except ValueError:
                continue
            if key is not None:
                opened_keys.append(path.name)
    assert not opened_keys, f"keys opened from the store alone: {opened_keys}"
    # The download still carries the working bundle.
    bundle = expect(
        api.client.get(api.env_url("shop", "prod", "/runtime-bundle"), headers=api.admin_headers),
        200,
    )
    assert bundle[:2] == b"\x1f\x8b"


def _envelope_key_ids(settings: Settings) -> dict[str, set[str]]:
    """Key ids of every registered sealed file, by registry entry."""
    with opened(settings) as (platform, _):
        box = platform.context.secrets
        return {
            files.name: {key_id_of(path.read_bytes()) for path, _ in files.files(settings, box)}
            for files in SEALED_FILES
        }


def test_rotation_reseals_every_registered_file_the_acme_account_key_included(
    installation: Settings,
) -> None:
    """After ``keys rotate`` the ACME account key and every bundle file name the new key."""
    old = load_keyring_file(installation.master_key_file)
    load_or_create_account_key(installation.data_dir, SecretBox(old))
    before = _envelope_key_ids(installation)
    assert before["ACME account key"] == {old.active.key_id}
    assert before["runtime bundle files"] == {old.active.key_id}

    assert main(["keys", "rotate"]) == 0

    new = load_keyring_file(installation.master_key_file).active.key_id
    assert _envelope_key_ids(installation) == {
        "ACME account key": {new},
        "runtime bundle files": {new},
    }


def test_retire_refuses_while_a_file_is_still_sealed_under_the_old_key(
    installation: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file sealed under the old key behind the re-seal (a server still running with its
    old keyring) keeps ``--retire`` from deleting that key, which still opens it."""
    old_keyring = load_keyring_file(installation.master_key_file)
    reseal = keys.reseal_file

    def reseal_then_a_running_server_writes(box: SecretBox, path: Path, *, aad: bytes) -> bool:
        changed = reseal(box, path, aad=aad)
        load_or_create_account_key(installation.data_dir, SecretBox(old_keyring))
        return changed

    monkeypatch.setattr(keys, "reseal_file", reseal_then_a_running_server_writes)
    assert main(["keys", "rotate", "--retire"]) != 0

    keyring = load_keyring_file(installation.master_key_file)
    assert old_keyring.active.key_id in keyring.ids
    load_or_create_account_key(installation.data_dir, SecretBox(keyring))  # still opens
    monkeypatch.setattr(keys, "reseal_file", reseal)
    assert main(["keys", "rotate", "--retire"]) == 0  # once re-sealed, the old keys go
    keyring = load_keyring_file(installation.master_key_file)
    assert keyring.ids == (keyring.active.key_id,)
    load_or_create_account_key(installation.data_dir, SecretBox(keyring))


def test_the_registry_counts_every_envelope_of_the_installation(installation: Settings) -> None:
    """Every column with envelopes is registered: the counts match a scan of the rows."""
    with opened(installation) as (platform, _), platform.context.database.reading() as session:
        counts = sealed_key_ids(session, installation, platform.context.secrets)
    assert {(c.model.__tablename__, c.column) for c in SEALED_COLUMNS} >= {
        ("client_certificates", "private_key_ciphertext"),
        ("client_certificates", "password_ciphertext"),
        ("platform_cas", "private_key_ciphertext"),
    }
    assert sum(counts.values()) > 8  # 8 column secrets and the bundle's files
