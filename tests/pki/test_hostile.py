"""Hostile uploads: each is refused by a guard with its own code, before the costly part.

The files come from ``tests.material.hostile``; each test first proves (with that
module's inspection helpers) that the file really is what it claims, then that
``load_material`` refuses it with the right code. No timing here: ``benchmarks/``
measures how fast the refusal is.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asn1crypto import keys, pem

from certward.errors import MaterialError
from certward.pki.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CERTIFICATES, Limits
from certward.pki.material import MaterialKind, load_material
from certward.pki.problems import ProblemCode
from tests.material import hostile
from tests.material.factory import TestCA

PASSWORD = hostile.HOSTILE_PASSWORD.encode()


def refusal(
    data: bytes, *, password: bytes | None = PASSWORD, limits: Limits | None = None
) -> MaterialError:
    """The MaterialError ``load_material`` raises for ``data``."""
    with pytest.raises(MaterialError) as caught:
        load_material(data, password=password, limits=limits)
    return caught.value


@pytest.fixture(scope="module")
def base() -> bytes:
    """A valid 2048-iteration PKCS12 (EC key, no chain) to rewrite."""
    return hostile.base_pkcs12()


@pytest.mark.parametrize(
    ("rewrite", "counts"),
    [
        (hostile.huge_mac_iterations, lambda pfx: [hostile.mac_iterations(pfx)]),
        (
            hostile.huge_key_bag_iterations,
            lambda pfx: list(hostile.pbe_iterations(pfx).key_bags),
        ),
        (
            hostile.huge_cert_bag_iterations,
            lambda pfx: list(hostile.pbe_iterations(pfx).encrypted_contents),
        ),
        (
            lambda pfx: hostile.pbmac1_pkcs12(
                pfx, iterations=hostile.MAX_ITERATIONS, compute=False
            ),
            lambda pfx: [hostile.pbmac1_parameters(pfx).iterations],
        ),
    ],
    ids=["mac", "key-bag-pbkdf2", "certificate-safe-pbkdf2", "pbmac1-pbkdf2"],
)
def test_pkcs12_with_an_iteration_count_of_2_to_the_31_is_too_expensive(
    base: bytes,
    rewrite: Callable[[bytes], bytes],
    counts: Callable[[bytes], list[int | None]],
) -> None:
    """Iteration counts sit outside the MAC; a 2^31-1 count anywhere is refused unread."""
    pfx = rewrite(base)
    assert counts(pfx) == [hostile.MAX_ITERATIONS]
    error = refusal(pfx)
    assert error.code == ProblemCode.TOO_EXPENSIVE.value
    assert f"{hostile.MAX_ITERATIONS:,}" in str(error)


@pytest.mark.parametrize(("iterations", "loads"), [(2048, True), (20_000, True), (20_001, False)])
def test_a_pbmac1_count_is_capped_like_the_classic_mac(
    base: bytes, iterations: int, loads: bool
) -> None:
    """PBMAC1's PBKDF2 count is the MAC's: CERTWARD_MAX_PKCS12_MAC_ITERATIONS caps it."""
    pfx = hostile.pbmac1_pkcs12(base, iterations=iterations, compute=loads)
    assert hostile.pbmac1_parameters(pfx).iterations == iterations
    if loads:
        assert load_material(pfx, password=PASSWORD).private_key is not None
    else:
        error = refusal(pfx)
        assert error.code == ProblemCode.TOO_EXPENSIVE.value
        assert "CERTWARD_MAX_PKCS12_MAC_ITERATIONS" in str(error)
    limits = Limits(max_mac_iterations=iterations - 1)
    assert refusal(pfx, limits=limits).code == ProblemCode.TOO_EXPENSIVE.value


@pytest.mark.parametrize(
    ("key_length", "says"),
    [
        (2**31 - 1, "2,147,483,647 bytes"),
        (65, "65 bytes"),
        (19, "19 bytes"),
        (0, "0 bytes"),
        (2**80, "astronomical length"),
        (None, "no key length"),
    ],
    ids=["2-to-the-31", "65", "19", "zero", "2-to-the-80", "absent"],
)
def test_a_pbmac1_key_length_outside_20_to_64_bytes_is_corrupted(
    base: bytes, key_length: int | None, says: str
) -> None:
    """PBMAC1 keys have 20 to 64 bytes (OpenSSL's bounds): a giant length is refused unread."""
    pfx = hostile.pbmac1_pkcs12(base, key_length=key_length)
    assert hostile.pbmac1_parameters(pfx).key_length == key_length
    error = refusal(pfx)
    assert error.code == ProblemCode.CORRUPTED.value
    assert says in str(error)


@pytest.mark.parametrize(
    ("rewrite", "says"),
    [
        ({"prf": hostile.MD5_OID}, "unknown pseudo-random function"),
        ({"mac": hostile.HMAC_OIDS["sha1"]}, "authenticates with 1.2.840.113549.2.7"),
        ({"mac": hostile.MD5_OID}, "authenticates with 1.2.840.113549.2.5"),
        ({"kdf": "1.2.840.113549.1.5.13"}, "not PBKDF2"),
    ],
    ids=["md5-prf", "hmac-sha1", "md5-mac", "pbes2-as-kdf"],
)
def test_a_pbmac1_with_an_unknown_algorithm_is_unsupported(
    base: bytes, rewrite: dict[str, str], says: str
) -> None:
    """A PBMAC1 PRF, MAC or KDF other than RFC 9579's is refused before any derivation."""
    pfx = hostile.pbmac1_pkcs12(base, **rewrite)
    declared = hostile.pbmac1_parameters(pfx)
    assert {name: getattr(declared, name) for name in rewrite} == rewrite
    error = refusal(pfx)
    assert error.code == ProblemCode.UNSUPPORTED_ALGORITHM.value
    assert says in str(error)


def test_deeply_nested_safe_contents_are_corrupted() -> None:
    """Fifty nested safeContentsBags are refused as damage, naming the nesting."""
    pfx = hostile.deeply_nested_safe_contents(50)
    assert hostile.safe_contents_depth(pfx) == 50
    error = refusal(pfx)
    assert error.code == ProblemCode.CORRUPTED.value
    assert "nested" in str(error)


def test_five_hundred_certificates_are_too_many() -> None:
    """A 500-certificate "chain" under the byte cap is refused by the certificate cap."""
    pfx = hostile.many_certificates(500)
    assert hostile.certificate_bag_count(pfx) == 500
    assert len(pfx) <= DEFAULT_MAX_BYTES
    error = refusal(pfx)
    assert error.code == ProblemCode.TOO_MANY_CERTIFICATES.value
    assert str(DEFAULT_MAX_CERTIFICATES) in str(error)


@pytest.mark.parametrize(
    "blob",
    [
        b"\x00" * (300 * 1024),
        b"-----BEGIN CERTIFICATE-----\n" + b"A" * (300 * 1024),
        b"\x30\x83\x04\xb0\x00" + b"\x00" * (300 * 1024),
    ],
    ids=["zeros", "pem-looking", "der-looking"],
)
def test_a_300_kib_upload_is_too_large(blob: bytes) -> None:
    """More than 256 KiB is refused on its size alone, whatever it looks like."""
    assert len(blob) > DEFAULT_MAX_BYTES
    assert refusal(blob).code == ProblemCode.TOO_LARGE.value


@pytest.mark.parametrize(
    ("max_iterations", "loads"),
    [(2048, True), (100_000, True), (2047, False), (1000, False)],
)
def test_iteration_cap_is_configurable(base: bytes, max_iterations: int, loads: bool) -> None:
    """A 2048-iteration file passes a cap of 2048 or more and is refused below it."""
    assert hostile.mac_iterations(base) == 2048
    limits = Limits(max_iterations=max_iterations)
    if loads:
        material = load_material(base, password=PASSWORD, limits=limits)
        assert material.kind is MaterialKind.PKCS12
        assert material.private_key is not None
    else:
        assert refusal(base, limits=limits).code == ProblemCode.TOO_EXPENSIVE.value


def encrypted_pkcs8_with_iterations(iterations: int) -> bytes:
    """An EC key as PBES2 encrypted PKCS#8 DER whose PBKDF2 count is rewritten."""
    leaf = TestCA.root(name="certward hostile root").issue_leaf("hostile.example.test")
    info = keys.EncryptedPrivateKeyInfo.load(pem.unarmor(leaf.key_pem(PASSWORD))[2])
    algorithm = info["encryption_algorithm"]
    assert algorithm["algorithm"].native == "pbes2"
    algorithm["parameters"]["key_derivation_func"]["parameters"]["iteration_count"] = iterations
    rewritten: bytes = info.dump(force=True)
    return rewritten


@pytest.mark.parametrize("armored", [True, False], ids=["pem", "der"])
def test_encrypted_pkcs8_key_with_a_huge_pbkdf2_count_is_too_expensive(armored: bool) -> None:
    """A PEM or DER encrypted key claiming 2^31-1 PBKDF2 rounds is refused before decryption."""
    der = encrypted_pkcs8_with_iterations(hostile.MAX_ITERATIONS)
    parsed = keys.EncryptedPrivateKeyInfo.load(der)
    assert (
        parsed["encryption_algorithm"]["parameters"]["key_derivation_func"]["parameters"][
            "iteration_count"
        ].native
        == hostile.MAX_ITERATIONS
    )
    data = pem.armor("ENCRYPTED PRIVATE KEY", der) if armored else der
    error = refusal(data)
    assert error.code == ProblemCode.TOO_EXPENSIVE.value
    assert "private key" in str(error)


def test_a_password_with_a_nul_character_is_refused_as_wrong() -> None:
    """pyca's loader panics on such a password; certward refuses it before calling it."""
    data = hostile.base_pkcs12()
    with pytest.raises(MaterialError) as refused:
        load_material(data, password=b"host\x00ile")
    assert refused.value.code == "wrong-password"
