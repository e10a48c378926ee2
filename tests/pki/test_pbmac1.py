"""PKCS12 uploads under a PBMAC1 MAC (RFC 9579), as OpenSSL 3.4+, Vault and Go write them.

The files are made by ``tests.material.hostile.pbmac1_pkcs12`` (the factory's PKCS12
with its MAC replaced), independently of certward's own writer; pyca (whose OpenSSL
reads PBMAC1) loads each one too, so the two agree on what a valid file is. The
hostile variants are in ``tests/pki/test_hostile.py``.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.errors import MaterialError
from certward.pki.limits import Limits
from certward.pki.material import MaterialKind, load_material
from certward.pki.pkcs12_structure import mac_verifies, read_pkcs12_structure
from certward.pki.problems import ProblemCode
from certward.pki.report import inspect_material
from tests.material import hostile
from tests.material.factory import NOW, TestCA

PASSWORD = 'pä ss, "wört" €'
HMAC = hostile.HMAC_OIDS


@pytest.fixture(scope="module")
def base() -> bytes:
    """A modern PKCS12 (EC key, its intermediate and root) protected by ``PASSWORD``."""
    root = TestCA.root(name="pbmac1 root")
    leaf = root.intermediate(name="pbmac1 intermediate").issue_leaf("pbmac1.example.test")
    return leaf.pkcs12(PASSWORD, iterations=2048)


def refusal(data: bytes, password: bytes | None) -> MaterialError:
    with pytest.raises(MaterialError) as caught:
        load_material(data, password=password)
    return caught.value


@pytest.mark.parametrize(
    ("prf", "mac", "key_length"),
    [
        ("sha256", "sha256", 32),  # what OpenSSL 3.4 -pbmac1_pbkdf2 writes
        ("sha512", "sha512", 64),
        ("sha384", "sha384", 48),
        ("sha1", "sha256", 32),
        ("sha256", "sha512", 64),
        ("sha256", "sha256", 20),
    ],
)
def test_a_pbmac1_file_loads_with_its_mac_described(
    base: bytes, prf: str, mac: str, key_length: int
) -> None:
    """Key, leaf and chain load; the MAC shows as ``pbmac1-<hash>`` with its PBKDF2 count."""
    pfx = hostile.pbmac1_pkcs12(
        base, password=PASSWORD, prf=HMAC[prf], mac=HMAC[mac], key_length=key_length
    )
    loaded = pkcs12.load_pkcs12(pfx, PASSWORD.encode())
    material = load_material(pfx, password=PASSWORD.encode())
    assert material.kind is MaterialKind.PKCS12
    assert material.private_key is not None
    assert len(material.certificates) == 3 == 1 + len(loaded.additional_certs)
    assert material.pkcs12 is not None
    assert material.pkcs12.mac_algorithm == f"pbmac1-{mac}"
    assert material.pkcs12.mac_iterations == 2048


def test_the_pbmac1_parameters_are_read_without_the_password(base: bytes) -> None:
    """The structural pass reads PRF, HMAC, key length, salt and count, deriving nothing."""
    pfx = hostile.pbmac1_pkcs12(
        base, password=PASSWORD, prf=HMAC["sha512"], mac=HMAC["sha384"], key_length=48
    )
    mac = read_pkcs12_structure(pfx, limits=Limits()).mac
    assert mac is not None
    assert mac.pbmac1 is not None
    assert (mac.pbmac1.prf, mac.pbmac1.hmac, mac.pbmac1.key_bytes) == ("sha512", "sha384", 48)
    assert (mac.pbmac1.iterations, len(mac.pbmac1.salt)) == (2048, 16)
    assert (mac.algorithm, mac.iterations, mac.salt) == ("pbmac1-sha384", 2048, mac.pbmac1.salt)


@pytest.mark.parametrize(
    ("password", "says"),
    [
        (b"wrong", "does not reproduce this PKCS12 file's integrity MAC"),
        (None, "none was given"),
        (b"", "none was given"),
    ],
    ids=["wrong", "none", "empty"],
)
def test_a_wrong_pbmac1_password_gets_the_wrong_password_answer(
    base: bytes, password: bytes | None, says: str
) -> None:
    """As with the classic MAC, the MAC tells a wrong (or missing) password apart."""
    pfx = hostile.pbmac1_pkcs12(base, password=PASSWORD)
    error = refusal(pfx, password)
    assert error.code == ProblemCode.WRONG_PASSWORD.value
    assert says in str(error)


def test_pbmac1_takes_the_password_as_utf8_bytes(base: bytes) -> None:
    """PBKDF2 gets the UTF-8 bytes as typed, not the BMPString of the classic MAC."""
    pfx = hostile.pbmac1_pkcs12(base, password=PASSWORD)
    structure = read_pkcs12_structure(pfx, limits=Limits())
    assert mac_verifies(structure, PASSWORD.encode())
    assert not mac_verifies(structure, PASSWORD.encode("utf-16-be") + b"\x00\x00")


def test_a_pbmac1_file_without_a_password_loads_with_none_or_empty() -> None:
    """A file MACed with the empty password opens with no password or an empty one."""
    leaf = TestCA.root(name="pbmac1 root").issue_leaf("empty.example.test")
    pfx = hostile.pbmac1_pkcs12(leaf.pkcs12(None), password="")
    for password in (None, b""):
        assert load_material(pfx, password=password).private_key is not None


@pytest.mark.parametrize("where", ["mac-value", "authenticated-safe"])
def test_a_tampered_pbmac1_file_is_refused_by_pyca_and_certward(base: bytes, where: str) -> None:
    """One flipped bit in the MAC value or in the content it covers: the MAC fails."""
    pfx = bytearray(hostile.pbmac1_pkcs12(base, password=PASSWORD))
    # The MAC value ends where the 10-byte ``NOT USED`` macSalt begins; the content
    # starts after the outer headers, its last bytes lie well before the MacData.
    position = len(pfx) - 13 if where == "mac-value" else len(pfx) // 2
    pfx[position] ^= 0x01
    tampered = bytes(pfx)
    with pytest.raises(ValueError, match="Invalid password or PKCS12 data"):
        pkcs12.load_pkcs12(tampered, PASSWORD.encode())
    error = refusal(tampered, PASSWORD.encode())
    assert error.code == ProblemCode.WRONG_PASSWORD.value
    assert "altered after it was made" in str(error)


def test_an_unopenable_pbmac1_upload_still_reports_its_mac(base: bytes) -> None:
    """The upload report names the PBMAC1 MAC even when the password is wrong."""
    pfx = hostile.pbmac1_pkcs12(base, password=PASSWORD)
    report = inspect_material(pfx, at=NOW, password=b"wrong")
    assert report.pkcs12 is not None
    assert (report.pkcs12.mac_algorithm, report.pkcs12.mac_iterations) == ("pbmac1-sha256", 2048)
