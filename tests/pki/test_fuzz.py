"""Damaged material: truncated, bit-flipped or rewritten uploads only ever get typed errors.

Each seed is a valid upload of one format. Deterministic loops feed every truncation
and one bit flip at every offset; hypothesis then applies random combinations of flips,
byte replacements, insertions, deletions and truncations (a fixed, derandomised budget
per seed). ``load_material`` may raise ``MaterialError`` and nothing else;
``inspect_material`` never raises and agrees with it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from asn1crypto import cms, core, pem
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certward.errors import MaterialError
from certward.pki.material import MaterialKind, load_material
from certward.pki.problems import ProblemCode
from certward.pki.report import inspect_material
from tests.material import hostile
from tests.material.factory import NOW, IssuedCert, TestCA

PASSWORD = b"fuzz-password"
EXAMPLES_PER_SEED = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class Seed:
    """A valid upload and the password that opens it."""

    data: bytes
    password: bytes | None


def _encrypted_pkcs8(leaf: IssuedCert) -> bytes:
    return leaf.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD),
    )


SEED_MAKERS: dict[str, Callable[[IssuedCert], Seed]] = {
    "pkcs12-modern": lambda leaf: Seed(data=leaf.pkcs12(PASSWORD), password=PASSWORD),
    "pkcs12-legacy": lambda leaf: Seed(data=leaf.pkcs12(PASSWORD, legacy=True), password=PASSWORD),
    "pem-bundle-with-key": lambda leaf: Seed(
        data=leaf.full_chain_pem() + leaf.key_pem(), password=None
    ),
    "der-certificate": lambda leaf: Seed(data=leaf.cert_der(), password=None),
    "pkcs7-der": lambda leaf: Seed(
        data=pkcs7.serialize_certificates(list(leaf.full_chain), serialization.Encoding.DER),
        password=None,
    ),
    "encrypted-pkcs8-der": lambda leaf: Seed(data=_encrypted_pkcs8(leaf), password=PASSWORD),
}


@pytest.fixture(scope="module")
def seeds() -> dict[str, Seed]:
    """One valid upload per format, all for the same EC leaf under an intermediate."""
    root = TestCA.root(name="certward fuzz root")
    leaf = root.intermediate(name="certward fuzz intermediate").issue_leaf(
        "fuzz.example.test", eku=["clientAuth"]
    )
    return {name: make(leaf) for name, make in SEED_MAKERS.items()}


def assert_only_typed_errors(data: bytes, password: bytes | None) -> None:
    """load_material raises only MaterialError; inspect_material never raises and agrees."""
    try:
        load_material(data, password=password)
    except MaterialError as exc:
        refusal: MaterialError | None = exc
    else:
        refusal = None
    inspection = inspect_material(data, at=NOW, password=password)
    if refusal is not None:
        assert inspection.judgement is None
        assert inspection.problems == refusal.problems
    else:
        assert inspection.judgement is not None
    assert all(problem.message for problem in inspection.problems)
    json.dumps(inspection.to_dict())


def test_seeds_are_valid(seeds: dict[str, Seed]) -> None:
    """Every seed loads undamaged, so the mutations below start from real material."""
    for name, seed in seeds.items():
        material = load_material(seed.data, password=seed.password)
        assert material.certificates or material.private_key is not None, name


@pytest.mark.parametrize("name", SEED_MAKERS)
def test_every_truncation_gets_a_typed_error(name: str, seeds: dict[str, Seed]) -> None:
    """Cut at every offset, the upload is refused (or read in part) with typed errors only."""
    seed = seeds[name]
    for end in range(len(seed.data)):
        assert_only_typed_errors(seed.data[:end], seed.password)


@pytest.mark.parametrize("name", SEED_MAKERS)
def test_a_bit_flip_at_every_offset_gets_a_typed_error(name: str, seeds: dict[str, Seed]) -> None:
    """One flipped bit per offset (bit ``offset % 8``) never escapes as an untyped exception."""
    seed = seeds[name]
    for offset in range(len(seed.data)):
        damaged = bytearray(seed.data)
        damaged[offset] ^= 1 << (offset % 8)
        assert_only_typed_errors(bytes(damaged), seed.password)


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to an upload; positions are taken modulo its length."""

    kind: str
    position: int
    value: int

    def apply(self, data: bytearray) -> bytearray:
        if not data:
            return data
        at = self.position % len(data)
        if self.kind == "flip":
            data[at] ^= 1 << (self.value % 8)
        elif self.kind == "replace":
            data[at] = self.value
        elif self.kind == "insert":
            data.insert(at, self.value)
        elif self.kind == "delete":
            del data[at : at + 1 + self.value % 16]
        else:  # truncate
            del data[at:]
        return data


EDITS = st.builds(
    Edit,
    st.sampled_from(["flip", "flip", "replace", "replace", "insert", "delete", "truncate"]),
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=0, max_value=255),
)


@pytest.mark.parametrize("name", SEED_MAKERS)
@settings(
    max_examples=EXAMPLES_PER_SEED,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(edits=st.lists(EDITS, min_size=1, max_size=4))
def test_random_damage_gets_a_typed_error(
    name: str, seeds: dict[str, Seed], edits: list[Edit]
) -> None:
    """Up to four random flips, replacements, insertions, deletions or cuts: typed errors only."""
    seed = seeds[name]
    data = bytearray(seed.data)
    for edit in edits:
        data = edit.apply(data)
    assert_only_typed_errors(bytes(data), seed.password)


# -- regressions: damage that once escaped as an untyped exception or a warning ----------

_VERSION_3 = b"\xa0\x03\x02\x01\x02"  # TBSCertificate version [0] INTEGER 2 (v3)
_AKI_KEY_ID = b"\x06\x03\x55\x1d\x23\x04\x18\x30\x16\x80\x14"  # AKI holding a 20-byte keyid


def with_version(certificate: bytes, version: int) -> bytes:
    """The certificate with its version INTEGER set to ``version`` (signature left stale)."""
    assert certificate.count(_VERSION_3) == 1
    return certificate.replace(_VERSION_3, _VERSION_3[:-1] + bytes([version]))


def with_negative_serial(certificate: bytes) -> bytes:
    """The certificate with the sign bit of its serial number set."""
    start = certificate.index(_VERSION_3 + b"\x02") + len(_VERSION_3) + 2
    damaged = bytearray(certificate)
    damaged[start] = 0x80  # negative, and still a minimal encoding
    return bytes(damaged)


def with_negative_authority_serial(certificate: bytes) -> bytes:
    """The AKI's keyIdentifier [0] retagged as a negative authorityCertSerialNumber [2].

    This is the single bit flip (0x80 -> 0x82) that fuzzing first found.
    """
    at = certificate.index(_AKI_KEY_ID) + len(_AKI_KEY_ID)
    return certificate[: at - 2] + b"\x82\x14\x80" + certificate[at + 1 :]  # minimal, negative


def with_edi_party_name(leaf: IssuedCert) -> bytes:
    """The leaf's dNSName SAN replaced by an ediPartyName of the same length."""
    name = leaf.certificate.subject.rfc4514_string().removeprefix("CN=").encode()
    dns_name = bytes([0x82, len(name)]) + name
    party = b"\x0c" + bytes([len(name) - 4]) + b"x" * (len(name) - 4)  # UTF8String
    edi = bytes([0xA5, len(name), 0xA1, len(party)]) + party
    assert len(edi) == len(dns_name)
    return leaf.cert_der().replace(dns_name, edi)


def pkcs12_holding(certificate: bytes) -> bytes:
    """A PKCS12 with one plain certificate bag and a MAC that verifies with PASSWORD."""
    bag = asn1_pkcs12.SafeBag(
        {
            "bag_id": "cert_bag",
            "bag_value": asn1_pkcs12.CertBag(
                {"cert_id": "x509", "cert_value": core.ParsableOctetString(certificate)}
            ),
        }
    )
    content = cms.ContentInfo(
        {"content_type": "data", "content": asn1_pkcs12.SafeContents([bag]).dump()}
    )
    return hostile.assemble_pfx([content], password=PASSWORD.decode())


@pytest.fixture(scope="module")
def leaf() -> IssuedCert:
    return TestCA.root(name="certward regression root").issue_leaf("regression.example.test")


def _extensions_of(data: bytes) -> object:
    return x509.load_der_x509_certificate(data).extensions


@pytest.mark.parametrize(
    ("damage", "pyca_reads", "pyca_raises"),
    [
        (
            lambda leaf: with_version(leaf.cert_der(), 5),
            x509.load_der_x509_certificate,
            x509.InvalidVersion,
        ),
        (
            lambda leaf: pem.armor("CERTIFICATE", with_version(leaf.cert_der(), 66)),
            x509.load_pem_x509_certificate,
            x509.InvalidVersion,
        ),
        (with_edi_party_name, _extensions_of, x509.UnsupportedGeneralNameType),
        (
            lambda leaf: with_negative_authority_serial(leaf.cert_der()),
            _extensions_of,
            UserWarning,  # pyca warns (an error under pytest) before refusing it
        ),
        (
            lambda leaf: pkcs12_holding(with_version(leaf.cert_der(), 5)),
            lambda data: pkcs12.load_pkcs12(data, PASSWORD),
            x509.InvalidVersion,
        ),
    ],
    ids=[
        "der-certificate-version-5",
        "pem-certificate-version-66",
        "edi-party-name-san",
        "negative-authority-serial",
        "pkcs12-macced-certificate-version-5",
    ],
)
def test_unreadable_certificate_fields_are_corrupted(
    leaf: IssuedCert,
    damage: Callable[[IssuedCert], bytes],
    pyca_reads: Callable[[bytes], object],
    pyca_raises: type[Exception],
) -> None:
    """What pyca raises beyond ValueError (or warns) on damaged fields comes back ``corrupted``."""
    data = damage(leaf)
    with pytest.raises(pyca_raises):
        pyca_reads(data)
    with pytest.raises(MaterialError) as caught:
        load_material(data, password=PASSWORD)
    assert caught.value.code == ProblemCode.CORRUPTED.value
    assert_only_typed_errors(data, PASSWORD)


def test_certificate_with_a_negative_serial_loads_without_warning(leaf: IssuedCert) -> None:
    """RFC 5280 asks readers to accept non-positive serials; pyca's warning stays inside."""
    data = with_negative_serial(leaf.cert_der())
    with pytest.warns(UserWarning, match="serial number which wasn't positive"):
        x509.load_der_x509_certificate(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        material = load_material(data)
    assert material.kind is MaterialKind.DER
    assert len(material.certificates) == 1


def test_report_of_a_negative_serial_certificate_is_made_without_warning(
    leaf: IssuedCert,
) -> None:
    """The JSON inspection of a certificate with a negative serial is produced quietly."""
    inspection = inspect_material(with_negative_serial(leaf.cert_der()), at=NOW)
    assert inspection.judgement is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        json.dumps(inspection.to_dict())
