"""Secrets at rest and in answers: private keys and passwords exist only as ciphertexts.

Each secret is searched for in every form it could leak in: the key's PKCS#8 and
traditional DER, its PEM base64 body (each line), its base64 and hex, the raw private
numbers; the password as UTF-8, UTF-16 (both byte orders, as PKCS12 uses BMPString)
and JSON-escaped.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from certward.authorization import hash_token
from certward.errors import SecretError
from certward.model import AuditEvent, Base, ClientCertificate
from certward.services.keys import SEALED_FILES, sealed_key_ids
from certward.services.staging import key_aad
from tests.api.conftest import ADMIN_TOKEN, API, Api, client_leaf, expect
from tests.material.factory import IssuedCert, KeyType, TestCA

RSA_PASSWORD = "rsa,Sëcret-Kx9q2-пароль"
EC_PASSWORD = "ec,Sëcret-Zt7w4-密码"
PEM_PASSWORD = "pem,Sëcret-Qm3v8-κλειδί"
WRONG_PASSWORD = "wrong,Guess-Yy5p1-ß"
PASSWORDS = (RSA_PASSWORD, EC_PASSWORD, PEM_PASSWORD, WRONG_PASSWORD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Secrets:
    """Every byte pattern that must never be found, each with a name for the failure."""

    patterns: dict[str, bytes]

    def found_in(self, data: bytes) -> list[str]:
        return [name for name, pattern in self.patterns.items() if pattern in data]


def _key_patterns(name: str, leaf: IssuedCert) -> dict[str, bytes]:
    key = leaf.private_key
    pkcs8_der = leaf.key_der()
    traditional_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    pem_lines = [
        line
        for line in leaf.key_pem().splitlines()
        if line and not line.startswith(b"-----") and len(line) >= 40
    ]
    patterns = {
        f"{name} key PKCS#8 DER": pkcs8_der,
        f"{name} key traditional DER": traditional_der,
        f"{name} key base64": base64.b64encode(pkcs8_der),
        f"{name} key hex": pkcs8_der.hex().encode(),
        **{f"{name} key PEM line {i}": line for i, line in enumerate(pem_lines)},
    }
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        for label, value in [("d", numbers.d), ("p", numbers.p), ("q", numbers.q)]:
            patterns[f"{name} RSA {label}"] = value.to_bytes((value.bit_length() + 7) // 8, "big")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        patterns[f"{name} EC private value"] = value.to_bytes((key.curve.key_size + 7) // 8, "big")
    return patterns


def _password_patterns(password: str) -> dict[str, bytes]:
    return {
        f"password {password!r} UTF-8": password.encode("utf-8"),
        f"password {password!r} UTF-16-BE": password.encode("utf-16-be"),
        f"password {password!r} UTF-16-LE": password.encode("utf-16-le"),
        f"password {password!r} JSON": json.dumps(password).encode("ascii"),
        f"password {password!r} core": password.split("-")[1].encode("ascii"),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Uploaded:
    secrets: Secrets
    ids: dict[str, str]  # "rsa", "ec", "pem" -> certificate id


def _upload_all(api: Api, ca: TestCA) -> Uploaded:
    """An RSA PKCS12 (legacy), an EC PKCS12 (modern) and a PEM pair with an encrypted key."""
    api.create_app_and_environment("shop", "prod")
    rsa_leaf = client_leaf(ca, "rsa.client.example.test", key_type=KeyType.RSA_2048)
    ec_leaf = client_leaf(ca, "ec.client.example.test", key_type=KeyType.EC_P256)
    pem_leaf = client_leaf(ca, "pem.client.example.test", key_type=KeyType.EC_P384)
    ids = {
        "rsa": expect(
            api.upload_client_certificate(
                "shop",
                "prod",
                rsa_leaf.pkcs12(RSA_PASSWORD, legacy=True),
                password=RSA_PASSWORD,
                pins=["rsa.partner.example"],
            ),
            201,
        )["id"],
        "ec": expect(
            api.upload_client_certificate(
                "shop",
                "prod",
                ec_leaf.pkcs12(EC_PASSWORD),
                password=EC_PASSWORD,
                pins=["ec.partner.example"],
                call_name="ec-partner",
            ),
            201,
        )["id"],
        "pem": expect(
            api.upload_client_certificate(
                "shop",
                "prod",
                pem_leaf.cert_pem(),
                filename="client.pem",
                key=pem_leaf.key_pem(PEM_PASSWORD),
                chain=pem_leaf.chain_pem(),
                password=PEM_PASSWORD,
            ),
            201,
        )["id"],
    }
    patterns = {
        **_key_patterns("RSA", rsa_leaf),
        **_key_patterns("EC", ec_leaf),
        **_key_patterns("PEM", pem_leaf),
    }
    for password in PASSWORDS:
        patterns.update(_password_patterns(password))
    secrets = Secrets(patterns=patterns)
    for leaf in (rsa_leaf, ec_leaf, pem_leaf):  # the detector itself works
        assert secrets.found_in(json.dumps({"key": leaf.key_pem().decode()}).encode())
        assert secrets.found_in(leaf.key_der())
    assert secrets.found_in(RSA_PASSWORD.encode("utf-16-be"))
    return Uploaded(secrets=secrets, ids=ids)


def _lifecycle(api: Api, ca: TestCA, uploaded: Uploaded) -> None:
    """Touch every kind of answer: reads, edits, refusals, restart, rollback, audit."""
    certificates = api.env_url("shop", "prod", "/client-certificates")
    rsa_url = f"{certificates}/{uploaded.ids['rsa']}"
    other = client_leaf(ca, "other.client.example.test")
    expect(
        api.upload_client_certificate(
            "shop", "prod", other.pkcs12(EC_PASSWORD), password=WRONG_PASSWORD
        ),
        422,
    )
    expect(
        api.upload_client_certificate(
            "shop",
            "prod",
            other.pkcs12(EC_PASSWORD),
            password=EC_PASSWORD,
            pins=["rsa.partner.example"],
        ),
        409,
    )
    expect(
        api.client.post(
            f"{API}/apps",
            json={"name": "x", "plan": "free", "password": RSA_PASSWORD},
            headers=api.admin_headers,
        ),
        422,
    )
    expect(api.client.get(certificates, headers=api.admin_headers), 200)
    for certificate_id in uploaded.ids.values():
        expect(api.client.get(f"{certificates}/{certificate_id}", headers=api.admin_headers), 200)
    expect(api.client.get(api.env_url("shop", "prod", "/changes"), headers=api.admin_headers), 200)
    api.restart("shop", "prod")
    expect(
        api.client.patch(rsa_url, json={"description": "rotated"}, headers=api.admin_headers), 200
    )
    expect(api.client.delete(rsa_url, headers=api.admin_headers), 204)
    expect(api.client.get(api.env_url("shop", "prod", "/changes"), headers=api.admin_headers), 200)
    api.restart("shop", "prod")
    expect(
        api.client.post(
            api.env_url("shop", "prod", "/rollback"), json={"version": 1}, headers=api.admin_headers
        ),
        200,
    )
    expect(api.client.get(api.env_url("shop", "prod", "/versions"), headers=api.admin_headers), 200)
    expect(api.client.get(f"{API}/audit", headers=api.admin_headers), 200)
    expect(api.client.get(f"{API}/tokens", headers=api.admin_headers), 200)
    expect(api.client.get(f"{API}/openapi.json"), 200)


def _leaks(responses: Iterable[httpx.Response], secrets: Secrets) -> list[str]:
    leaks = []
    for response in responses:
        headers = "".join(f"{k}: {v}\n" for k, v in response.headers.items()).encode()
        found = secrets.found_in(response.content + headers)
        if found:
            request = response.request
            leaks.append(f"{request.method} {request.url.path} -> {response.status_code}: {found}")
    return leaks


def _database_rows(api: Api) -> bytes:
    """Every value of every row of every table, as bytes (a logical dump)."""
    chunks: list[bytes] = []
    with api.context.database.reading() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    chunks.append(_as_bytes(value))
    return b"\n".join(chunks)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).encode()
    return str(value).encode()


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_sqlite_files_hold_neither_private_keys_nor_passwords(api: Api, client_ca: TestCA) -> None:
    """After RSA and EC uploads with passwords, the SQLite file and its WAL (and every other
    file of the data directory) hold no key bytes, PEM body or password in any encoding, and
    the master key file is mode 0600."""
    uploaded = _upload_all(api, client_ca)
    _lifecycle(api, client_ca, uploaded)
    database = api.settings.data_dir / "certward.db"
    wal = database.with_name("certward.db-wal")
    assert database.stat().st_size > 0
    assert wal.stat().st_size > 0, "the write-ahead log is part of the database at rest"
    database_files = sorted(api.settings.data_dir.glob("certward.db*"))
    assert database in database_files
    assert wal in database_files
    for path in database_files:
        assert not uploaded.secrets.found_in(path.read_bytes()), f"{path.name} holds secrets"
    for path in api.settings.data_dir.rglob("*"):  # runtime bundles re-encrypt keys too
        if path.is_file() and path != api.settings.master_key_file:
            assert not uploaded.secrets.found_in(path.read_bytes()), f"{path} holds secrets"
    key_mode = stat.S_IMODE(api.settings.master_key_file.stat().st_mode)
    assert key_mode == 0o600, f"master key file mode {key_mode:04o}"


def test_database_rows_hold_only_ciphertexts_bound_to_the_active_key(
    api: Api, client_ca: TestCA
) -> None:
    """Every stored value (a logical dump of all tables) is free of keys, passwords and token
    values, and each key and password is an envelope of the active master key."""
    uploaded = _upload_all(api, client_ca)
    _lifecycle(api, client_ca, uploaded)
    tokens = [api.create_token("member", app="shop"), api.create_token("viewer", app="shop")]
    rows = _database_rows(api)
    assert not uploaded.secrets.found_in(rows)
    for value in [ADMIN_TOKEN, *(t.value for t in tokens)]:  # tokens are stored as hashes
        assert value.encode() not in rows
        assert hash_token(value).encode() in rows
    active = api.context.secrets.keyring.active.key_id
    with api.context.database.reading() as session:
        # Every registered sealed column and file names the active key (the registry that
        # key rotation reads), and the store holds the bundle of the restarts.
        assert set(sealed_key_ids(session, api.settings, api.context.secrets)) == {active}
        bundle_files = [
            path
            for files in SEALED_FILES
            for path, _ in files.files(api.settings, api.context.secrets)
            if "bundles" in path.parts
        ]
        assert bundle_files
        rows = session.scalars(select(ClientCertificate)).all()
        assert {row.id for row in rows} >= set(uploaded.ids.values())
        for row in rows:
            assert row.key_id == active
            assert row.private_key_ciphertext[1:9].hex() == active
            assert row.password_ciphertext is not None
            assert row.password_ciphertext[1:9].hex() == active


def test_no_api_response_or_audit_detail_carries_a_secret(api: Api, client_ca: TestCA) -> None:
    """No response of a whole lifecycle (successes and refusals alike) and no audit entry
    contains key material or a password, the wrong one included."""
    uploaded = _upload_all(api, client_ca)
    _lifecycle(api, client_ca, uploaded)
    assert len(api.responses) >= 20
    assert not _leaks(api.responses, uploaded.secrets)
    events = expect(api.client.get(f"{API}/audit", headers=api.admin_headers), 200)
    assert {e["action"] for e in events} >= {
        "client_certificate.upload",
        "client_certificate.update",
        "client_certificate.delete",
        "environment.restart",
        "environment.rollback",
    }
    for event in events:
        assert not uploaded.secrets.found_in(json.dumps(event, ensure_ascii=False).encode())
        assert not uploaded.secrets.found_in(json.dumps(event).encode())
    with api.context.database.reading() as session:
        for detail in session.scalars(select(AuditEvent.detail)):
            assert not uploaded.secrets.found_in(_as_bytes(detail))


def test_key_ciphertext_copied_to_another_row_makes_restart_refuse(
    api: Api, client_ca: TestCA
) -> None:
    """A private-key ciphertext moved to another certificate's row fails to decrypt there,
    so restart answers 422 ``apply-refused`` naming the certificate and applies nothing."""
    uploaded = _upload_all(api, client_ca)
    first = api.restart("shop", "prod")
    victim, donor = uploaded.ids["rsa"], uploaded.ids["ec"]
    with api.context.database.transaction() as session:
        donor_row = session.get(ClientCertificate, donor)
        victim_row = session.get(ClientCertificate, victim)
        assert donor_row is not None
        assert victim_row is not None
        stolen = donor_row.private_key_ciphertext
        victim_row.private_key_ciphertext = stolen
    with pytest.raises(SecretError):
        api.context.secrets.decrypt(stolen, aad=key_aad(victim))

    response = api.client.post(api.env_url("shop", "prod", "/restart"), headers=api.admin_headers)
    body = expect(response, 422)
    assert body["code"] == "apply-refused"
    corrupted = [p for p in body["problems"] if p["code"] == "corrupted"]
    assert len(corrupted) == 1
    assert victim in corrupted[0]["message"]
    assert "cannot be decrypted" in corrupted[0]["message"]
    assert not uploaded.secrets.found_in(response.content)
    versions = expect(
        api.client.get(api.env_url("shop", "prod", "/versions"), headers=api.admin_headers), 200
    )
    assert [(v["version"], v["digest"]) for v in versions] == [(1, first["digest"])]
