"""The guard sees inside encrypted safes, and the MAC check is cheap.

Counts inside an encrypted certificate safe (a shrouded key bag, a nested safe) were
invisible to the pre-parse: pyca then derived the key with 2^31-1 rounds. Now the MAC
is verified first, each safe is decrypted with its own capped parameters and its bags
walked under the same caps. The wrong-password explanation stays under 50 ms of CPU at
the MAC cap because the RFC 7292 KDF runs in libcrypto.
"""

from __future__ import annotations

import os
import time

import pytest

from certward.errors import MaterialError
from certward.pki import pkcs12_crypto
from certward.pki.limits import DEFAULT_MAX_MAC_ITERATIONS, Limits
from certward.pki.material import MaterialKind, load_material
from certward.pki.pkcs12_structure import open_encrypted_safes, read_pkcs12_structure
from tests.material import hostile

PASSWORD = hostile.HOSTILE_PASSWORD.encode()


def _refusal(data: bytes, password: bytes | None, limits: Limits | None = None) -> MaterialError:
    with pytest.raises(MaterialError) as caught:
        load_material(data, password=password, limits=limits)
    return caught.value


@pytest.mark.parametrize(
    ("nested_safe", "password"),
    [(False, hostile.HOSTILE_PASSWORD), (True, hostile.HOSTILE_PASSWORD), (False, "")],
    ids=["key-bag-in-safe", "nested-safe-in-safe", "empty-password"],
)
def test_a_count_inside_the_encrypted_safe_is_refused_before_any_derivation(
    nested_safe: bool, password: str
) -> None:
    data = hostile.kdf_inside_encrypted_safe(nested_safe=nested_safe, password=password)
    outside = read_pkcs12_structure(data, limits=Limits())
    assert outside.max_iterations == 2048  # nothing to see from outside
    assert not outside.inspected
    start = time.process_time()
    error = _refusal(data, password.encode() or None)
    assert time.process_time() - start < 0.05
    assert error.code == "too-expensive"
    assert "2,147,483,647" in str(error)
    assert "CERTWARD_MAX_PKCS12_ITERATIONS" in str(error)


def test_an_ordinary_count_inside_the_encrypted_safe_still_loads() -> None:
    data = hostile.kdf_inside_encrypted_safe(iterations=2048)
    structure = open_encrypted_safes(
        read_pkcs12_structure(data, limits=Limits()), PASSWORD, limits=Limits()
    )
    assert structure.inspected
    assert structure.certificate_bags == 1
    assert structure.total_iterations == 2 * 2048  # the safe's and the key bag's
    material = load_material(data, password=PASSWORD)
    assert material.kind is MaterialKind.PKCS12
    assert material.private_key is not None


def test_the_cap_inside_the_safe_follows_the_limits() -> None:
    data = hostile.kdf_inside_encrypted_safe(iterations=60_000)
    assert _refusal(data, PASSWORD, Limits(max_iterations=40_000)).code == "too-expensive"
    # Admitted: the loader runs, and finds the key was encrypted with 2048 rounds.
    assert _refusal(data, PASSWORD, Limits(max_iterations=60_000)).code == "corrupted"


def test_a_wrong_password_is_refused_by_the_mac_before_the_safe_is_opened() -> None:
    data = hostile.kdf_inside_encrypted_safe()
    error = _refusal(data, b"not the password")
    assert error.code == "wrong-password"


def test_the_mac_has_its_own_lower_cap() -> None:
    over = hostile.mac_at_cap(DEFAULT_MAX_MAC_ITERATIONS + 1)
    error = _refusal(over, PASSWORD)
    assert error.code == "too-expensive"
    assert "CERTWARD_MAX_PKCS12_MAC_ITERATIONS" in str(error)
    load_material(over, password=PASSWORD, limits=Limits(max_mac_iterations=30_000))


@pytest.mark.parametrize("password", [b"not the password", None], ids=["wrong", "empty"])
def test_a_wrong_password_at_the_mac_cap_costs_under_50_ms(password: bytes | None) -> None:
    data = hostile.mac_at_cap(DEFAULT_MAX_MAC_ITERATIONS)
    start = time.process_time()
    error = _refusal(data, password)
    spent = time.process_time() - start
    assert error.code == "wrong-password"
    assert spent < 0.05, f"{spent * 1e3:.1f} ms"


def test_the_kdf_runs_in_libcrypto_and_agrees_with_rfc_7292() -> None:
    assert pkcs12_crypto.native_kdf_available()
    for hash_name in ("sha1", "sha256", "sha512"):
        for password in (b"", b"\x00\x00", "pässwörd".encode("utf-16-be") + b"\x00\x00"):
            salt = os.urandom(8)
            for purpose, n in ((1, 24), (2, 8), (3, 64)):
                assert pkcs12_crypto.pkcs12_kdf(
                    hash_name, password=password, salt=salt, purpose=purpose, iterations=7, n=n
                ) == hostile.pkcs12_kdf(hash_name, password, salt, purpose, 7, n)
