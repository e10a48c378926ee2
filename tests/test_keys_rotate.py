"""``certward keys rotate``: every stored secret re-encrypted under a new master key.

Each test stores client certificates through the API of an in-process installation
(its own data directory), closes it, runs the command through ``main(argv)`` with the
environment pointing at that directory, then opens the installation again and proves
that every secret carries the expected key id and still decrypts: the environment's
restart (which decrypts and judges every stored key) succeeds.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from certward.api import create_app
from certward.cli.app import main
from certward.clock import FixedClock
from certward.errors import ConfigurationError
from certward.model import ClientCertificate
from certward.platform import Platform, open_platform
from certward.secrets import MasterKey, add_active_key, key_id_of, load_keyring_file
from certward.services.staging import key_aad, password_aad
from certward.settings import Settings
from tests.material.factory import NOW, TestCA

ADMIN_TOKEN = "cw_rotate-test-admin-token-0123456789"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENV_URL = "/api/v1/apps/shop/environments/prod"
PASSWORDS = ("first password", "second password")


@dataclass(frozen=True, slots=True)
class Stored:
    """What a certificate row holds, decrypted: to compare before and after rotation."""

    private_key: bytes
    password: bytes | None


def _set_environment(monkeypatch: pytest.MonkeyPatch, environ: Mapping[str, str]) -> Settings:
    for name in [k for k in os.environ if k.startswith("CERTWARD_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(os.environ)


@contextmanager
def opened(settings: Settings) -> Iterator[tuple[Platform, TestClient]]:
    """The installation opened as ``certward serve`` would, with an API client on it."""
    platform = open_platform(settings, clock=FixedClock(NOW))
    try:
        with TestClient(create_app(platform.context), base_url="http://certward.test") as client:
            yield platform, client
    finally:
        platform.close()


def store_certificates(settings: Settings) -> None:
    """A licensed app's environment with two PKCS12 uploads and one PEM upload, applied once."""
    ca = TestCA.root(name="rotate test CA")
    with opened(settings) as (_, client):
        created = client.post(
            "/api/v1/apps", json={"name": "shop", "plan": "licensed"}, headers=HEADERS
        )
        assert created.status_code == 201, created.text
        created = client.post(
            "/api/v1/apps/shop/environments",
            json={"name": "prod", "upstream": "http://10.0.0.1:8080"},
            headers=HEADERS,
        )
        assert created.status_code == 201, created.text
        for number, password in enumerate(PASSWORDS):
            leaf = ca.issue_leaf(f"client-{number}.example.test", eku=["clientAuth"])
            response = client.post(
                f"{ENV_URL}/client-certificates",
                files={"file": ("client.p12", leaf.pkcs12(password))},
                data={"password": password},
                headers=HEADERS,
            )
            assert response.status_code == 201, response.text
        leaf = ca.issue_leaf("pem-client.example.test", eku=["clientAuth"])
        response = client.post(
            f"{ENV_URL}/client-certificates",
            files={"file": ("client.pem", leaf.cert_pem()), "key": ("key.pem", leaf.key_pem())},
            headers=HEADERS,
        )
        assert response.status_code == 201, response.text
        restarted = client.post(f"{ENV_URL}/restart", headers=HEADERS)
        assert restarted.status_code == 200, restarted.text


def key_ids(settings: Settings) -> set[str]:
    """Every key id the database names: ``key_id`` columns and the envelopes' own headers."""
    with opened(settings) as (platform, _), platform.context.database.reading() as session:
        rows = session.scalars(select(ClientCertificate)).all()
        found = {row.key_id for row in rows}
        for row in rows:
            found.add(key_id_of(row.private_key_ciphertext))
            if row.password_ciphertext is not None:
                found.add(key_id_of(row.password_ciphertext))
    return found


def decrypt_everything(settings: Settings) -> dict[str, Stored]:
    """Open the installation, restart the environment through the API, decrypt every secret."""
    with opened(settings) as (platform, client):
        restarted = client.post(f"{ENV_URL}/restart", headers=HEADERS)
        assert restarted.status_code == 200, restarted.text
        box = platform.context.secrets
        with platform.context.database.reading() as session:
            rows = session.scalars(select(ClientCertificate)).all()
            assert len(rows) == 3
            return {
                row.id: Stored(
                    private_key=box.decrypt(row.private_key_ciphertext, aad=key_aad(row.id)),
                    password=None
                    if row.password_ciphertext is None
                    else box.decrypt(row.password_ciphertext, aad=password_aad(row.id)),
                )
                for row in rows
            }


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An installation with a keyring file and three stored client certificates."""
    settings = _set_environment(
        monkeypatch,
        {"CERTWARD_DATA_DIR": str(tmp_path / "certward-data"), "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    store_certificates(settings)
    return settings


def test_rotate_re_encrypts_every_secret_under_a_new_key_kept_beside_the_old_one(
    installation: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ``keys rotate`` every secret names the new key, the file holds both, all decrypts."""
    old = load_keyring_file(installation.master_key_file).active.key_id
    assert key_ids(installation) == {old}
    before = decrypt_everything(installation)
    assert sorted(s.password for s in before.values() if s.password) == [
        p.encode() for p in PASSWORDS
    ]

    assert main(["keys", "rotate"]) == 0

    keyring = load_keyring_file(installation.master_key_file)
    new = keyring.active.key_id
    assert new != old
    assert set(keyring.ids) == {new, old}
    assert key_ids(installation) == {new}
    assert decrypt_everything(installation) == before
    output = capsys.readouterr().out
    assert new in output
    # three client keys, two passwords, the platform CA's two keys, the managed certificate's key
    assert "8 secret(s)" in output


def test_rotate_with_retire_removes_the_old_key_and_the_platform_still_opens(
    installation: Settings,
) -> None:
    """``keys rotate --retire`` leaves one key in the file, the one every secret uses."""
    old = load_keyring_file(installation.master_key_file).active.key_id
    before = decrypt_everything(installation)

    assert main(["keys", "rotate", "--retire"]) == 0

    keyring = load_keyring_file(installation.master_key_file)
    assert keyring.ids == (keyring.active.key_id,)
    assert old not in keyring.ids
    assert key_ids(installation) == {keyring.active.key_id}
    assert decrypt_everything(installation) == before


def test_retire_after_an_earlier_rotation_drops_only_unused_keys(installation: Settings) -> None:
    """A plain rotation then ``--retire`` ends with the newest key alone, still decrypting."""
    before = decrypt_everything(installation)
    assert main(["keys", "rotate"]) == 0
    assert len(load_keyring_file(installation.master_key_file).ids) == 2

    assert main(["keys", "rotate", "--retire"]) == 0

    keyring = load_keyring_file(installation.master_key_file)
    assert keyring.ids == (keyring.active.key_id,)
    assert key_ids(installation) == {keyring.active.key_id}
    assert decrypt_everything(installation) == before


def test_a_crash_after_adding_the_key_leaves_a_working_platform_and_a_rerun_finishes(
    installation: Settings,
) -> None:
    """A new key in the file but nothing re-encrypted yet still opens; rotating again completes."""
    old = load_keyring_file(installation.master_key_file).active.key_id
    before = decrypt_everything(installation)

    crashed = add_active_key(installation.master_key_file)  # the first step of rotate, alone
    assert crashed.active.key_id != old
    assert key_ids(installation) == {old}
    assert decrypt_everything(installation) == before

    assert main(["keys", "rotate"]) == 0

    keyring = load_keyring_file(installation.master_key_file)
    assert old in keyring.ids
    assert key_ids(installation) == {keyring.active.key_id}
    assert decrypt_everything(installation) == before


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_rotate_with_keys_from_the_environment_re_encrypts_to_the_first_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With CERTWARD_MASTER_KEY="new,old", rotate moves every secret to ``new``; old alone fails."""
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    environ = {
        "CERTWARD_DATA_DIR": str(tmp_path / "certward-data"),
        "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "CERTWARD_MASTER_KEY": _b64(old),
    }
    settings = _set_environment(monkeypatch, environ)
    store_certificates(settings)
    assert key_ids(settings) == {MasterKey(old).key_id}
    before = decrypt_everything(settings)

    settings = _set_environment(
        monkeypatch, {**environ, "CERTWARD_MASTER_KEY": f"{_b64(new)},{_b64(old)}"}
    )
    assert main(["keys", "rotate"]) == 0
    assert main(["keys", "rotate", "--retire"]) == 1  # retiring is the operator's edit here
    assert "remov" in capsys.readouterr().err

    assert not settings.master_key_file.exists()
    assert key_ids(settings) == {MasterKey(new).key_id}
    settings = _set_environment(monkeypatch, {**environ, "CERTWARD_MASTER_KEY": _b64(new)})
    assert decrypt_everything(settings) == before
    settings = _set_environment(monkeypatch, environ)  # the old key alone
    with pytest.raises(ConfigurationError, match="master key"):
        open_platform(settings)
