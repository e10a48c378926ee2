"""Conversion: what certward writes reads back unchanged in certward, OpenSSL and Java 17.

A small pool of keys and certificates is made once per module (RSA keys are slow to
generate); hypothesis picks among them and draws the passwords. Every leaf sits at a
depth of 0, 1 or 2 below the root; its chain is its issuers without the root.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning
from hypothesis import given, settings
from hypothesis import strategies as st

from certward.errors import MaterialError
from certward.pki.convert import (
    PKCS12_ITERATIONS,
    Pkcs12Profile,
    to_java_truststore,
    to_pem,
    to_pkcs12,
)
from certward.pki.limits import Limits
from certward.pki.material import load_material
from certward.pki.pkcs12_structure import read_pkcs12_structure
from certward.pki.problems import ProblemCode
from tests.material.factory import NOW, IssuedCert, KeyType, TestCA
from tests.material.java import JavaRefused, Pkcs12Check
from tests.material.openssl_cli import UNICODE_PASSWORD, OpenSSLCli, OpenSSLFailed

KEY_TYPES = (KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048, KeyType.ED25519)
DEPTHS = (0, 1, 2)
ROUND_TRIPS = settings(max_examples=50, deadline=None)

# Unicode, commas, quotes and spaces, the characters users put in passwords that
# break naive quoting; NUL is refused (see test_to_pkcs12_refuses_a_password_with_nul).
ODD_PASSWORD = 'pä ss, "wört" €😀'
ASCII_PASSWORD = 'comma, "quoted" and spaced'
PASSWORDS = st.one_of(
    st.sampled_from([ODD_PASSWORD, ASCII_PASSWORD, UNICODE_PASSWORD, ",", '"', " "]),
    st.text(
        alphabet=st.one_of(
            st.sampled_from(",;\"' \\=äß€😀"),
            st.characters(codec="utf-8", exclude_characters="\x00"),
        ),
        min_size=1,
        max_size=24,
    ),
).map(str.encode)

# Java 17's names for the key algorithms.
JAVA_KEY_ALGORITHMS = {
    KeyType.EC_P256: "EC",
    KeyType.EC_P384: "EC",
    KeyType.RSA_2048: "RSA",
    KeyType.ED25519: "EdDSA",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise:
    """What a profile promises about the written file, in certward's and OpenSSL's words."""

    encryption: str
    mac: str
    algorithms: tuple[str, ...]
    openssl_cipher: str
    openssl_mac: str


PROMISES = {
    Pkcs12Profile.MODERN: Promise(
        encryption="modern",
        mac="sha256",
        algorithms=("PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC",),
        openssl_cipher="PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
        openssl_mac="MAC: sha256, Iteration 2048",
    ),
    Pkcs12Profile.MODERN_2026: Promise(
        encryption="modern",
        mac="pbmac1-sha256",
        algorithms=("PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC",),
        openssl_cipher="PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
        openssl_mac="MAC: PBMAC1",
    ),
    Pkcs12Profile.LEGACY: Promise(
        encryption="legacy",
        mac="sha1",
        algorithms=("PBE-SHA1-3DES",),
        openssl_cipher="pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
        openssl_mac="MAC: sha1, Iteration 2048",
    ),
}

# PBMAC1 (modern2026) needs OpenSSL 3.4 or JDK 26; the OpenSSL 3.0 and Java 17 tests
# below cover the other profiles, and those readers' refusal of it.
CLASSIC_MAC_PROFILES = [p for p in Pkcs12Profile if p is not Pkcs12Profile.MODERN_2026]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """A root, two intermediates below it, and a leaf per key type at each depth."""

    cas: tuple[TestCA, ...]
    leaves: dict[tuple[KeyType, int], IssuedCert]

    @property
    def root(self) -> TestCA:
        return self.cas[0]

    def leaf(self, key_type: KeyType, depth: int) -> IssuedCert:
        return self.leaves[key_type, depth]

    def chain(self, key_type: KeyType, depth: int) -> tuple[x509.Certificate, ...]:
        """The leaf's issuers, nearest first, without the root."""
        return self.leaf(key_type, depth).chain[:-1]

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(ca.certificate for ca in self.cas) + tuple(
            leaf.certificate for leaf in self.leaves.values()
        )


@pytest.fixture(scope="module")
def pool() -> Pool:
    root = TestCA.root(key_type=KeyType.RSA_2048, name="convert root CA")
    first = root.intermediate(key_type=KeyType.EC_P384, name="convert intermediate CA 1")
    second = first.intermediate(key_type=KeyType.ED25519, name="convert intermediate CA 2")
    cas = (root, first, second)
    leaves: dict[tuple[KeyType, int], IssuedCert] = {}
    for key_type in KEY_TYPES:
        key = key_type.generate()
        for depth in DEPTHS:
            leaves[key_type, depth] = cas[depth].issue_leaf(
                f"{key_type.value}.depth{depth}.example.test", private_key=key
            )
    return Pool(cas=cas, leaves=leaves)


def _pkcs8(key: PrivateKeyTypes | None) -> bytes:
    assert key is not None
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pkcs12(
    pool: Pool, key_type: KeyType, depth: int, password: bytes, profile: Pkcs12Profile
) -> bytes:
    leaf = pool.leaf(key_type, depth)
    return to_pkcs12(
        private_key=leaf.private_key,
        certificate=leaf.certificate,
        chain=pool.chain(key_type, depth),
        password=password,
        profile=profile,
    )


def _truststore(pool: Pool, password: bytes, profile: Pkcs12Profile) -> bytes:
    return to_java_truststore(
        [ca.certificate for ca in pool.cas], password=password, profile=profile
    )


def _write(directory: Path, name: str, data: bytes) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return str(path)


def _ders(certificates: Sequence[x509.Certificate]) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in certificates]


# --- round trips through certward and pyca -------------------------------------------


@ROUND_TRIPS
@given(
    key_type=st.sampled_from(KEY_TYPES),
    depth=st.sampled_from(DEPTHS),
    password=PASSWORDS,
    profile=st.sampled_from(Pkcs12Profile),
)
def test_to_pkcs12_round_trips_key_leaf_and_chain_in_order(
    pool: Pool, key_type: KeyType, depth: int, password: bytes, profile: Pkcs12Profile
) -> None:
    """A PKCS12 file from to_pkcs12 loads back with the same key, leaf and ordered chain."""
    leaf = pool.leaf(key_type, depth)
    material = load_material(_pkcs12(pool, key_type, depth, password, profile), password=password)
    assert _pkcs8(material.private_key) == _pkcs8(leaf.private_key)
    assert material.certificates == (leaf.certificate, *pool.chain(key_type, depth))
    assert material.pkcs12 is not None
    assert material.pkcs12.encryption.value == PROMISES[profile].encryption


@ROUND_TRIPS
@given(
    key_type=st.sampled_from(KEY_TYPES),
    depth=st.sampled_from(DEPTHS),
    key_password=st.none() | PASSWORDS,
)
def test_to_pem_round_trips_key_leaf_and_chain_in_order(
    pool: Pool, key_type: KeyType, depth: int, key_password: bytes | None
) -> None:
    """PEM from to_pem, key plain or encrypted, loads back with the same key and chain."""
    leaf = pool.leaf(key_type, depth)
    certificates = (leaf.certificate, *pool.chain(key_type, depth))
    data = to_pem(certificates, private_key=leaf.private_key, key_password=key_password)
    assert (b"ENCRYPTED PRIVATE KEY" in data) == (key_password is not None)
    material = load_material(data, password=key_password)
    assert _pkcs8(material.private_key) == _pkcs8(leaf.private_key)
    assert material.certificates == certificates


@ROUND_TRIPS
@given(data=st.data(), password=PASSWORDS, profile=st.sampled_from(Pkcs12Profile))
def test_to_java_truststore_round_trips_every_certificate(
    pool: Pool, data: st.DataObject, password: bytes, profile: Pkcs12Profile
) -> None:
    """A truststore from to_java_truststore loads in pyca with every certificate, no key."""
    shuffled = data.draw(st.permutations(pool.certificates))
    certificates = shuffled[: data.draw(st.integers(min_value=1, max_value=5))]
    loaded = pkcs12.load_pkcs12(
        to_java_truststore(certificates, password=password, profile=profile), password
    )
    assert loaded.key is None
    assert loaded.cert is None
    assert _ders([entry.certificate for entry in loaded.additional_certs]) == _ders(certificates)
    names = [entry.friendly_name for entry in loaded.additional_certs]
    assert len(set(names)) == len(certificates)


@pytest.mark.parametrize(
    ("friendly_name", "expected"),
    [(None, "CN=ec-p256.depth0.example.test"), ('bü, "ro"', 'bü, "ro"')],
)
def test_to_pkcs12_names_the_entry_after_the_subject_unless_told(
    pool: Pool, friendly_name: str | None, expected: str
) -> None:
    """The key entry's friendly name is the leaf's subject, or the name given."""
    leaf = pool.leaf(KeyType.EC_P256, 0)
    data = to_pkcs12(
        private_key=leaf.private_key,
        certificate=leaf.certificate,
        password=b"pw",
        friendly_name=friendly_name,
    )
    material = load_material(data, password=b"pw")
    assert material.pkcs12 is not None
    assert material.pkcs12.friendly_names == (expected,)


# --- the promised algorithms ---------------------------------------------------------


@pytest.mark.parametrize("profile", list(Pkcs12Profile))
@pytest.mark.parametrize("writer", ["to_pkcs12", "to_java_truststore"])
def test_written_file_carries_the_profiles_algorithms(
    pool: Pool, writer: str, profile: Pkcs12Profile
) -> None:
    """Both writers protect every bag and the MAC with exactly the profile's algorithms."""
    data = (
        _pkcs12(pool, KeyType.EC_P256, 2, b"pw", profile)
        if writer == "to_pkcs12"
        else _truststore(pool, b"pw", profile)
    )
    structure = read_pkcs12_structure(data, limits=Limits())
    promise = PROMISES[profile]
    assert structure.encryption.value == promise.encryption
    assert structure.mac is not None
    assert (structure.mac.algorithm, structure.mac.iterations) == (promise.mac, PKCS12_ITERATIONS)
    assert structure.algorithms == promise.algorithms
    assert structure.max_iterations == PKCS12_ITERATIONS


@pytest.mark.parametrize("profile", CLASSIC_MAC_PROFILES)
@pytest.mark.parametrize("writer", ["to_pkcs12", "to_java_truststore"])
def test_openssl_names_the_profiles_algorithms(
    pool: Pool, openssl_cli: OpenSSLCli, writer: str, profile: Pkcs12Profile
) -> None:
    """``openssl pkcs12 -info`` reports the profile's cipher on every bag and its MAC."""
    if writer == "to_pkcs12":
        data = _pkcs12(pool, KeyType.EC_P256, 2, ODD_PASSWORD.encode(), profile)
        protected: tuple[str, ...] = ("PKCS7 Encrypted data", "Shrouded Keybag")
    else:
        data = _truststore(pool, ODD_PASSWORD.encode(), profile)
        protected = ("PKCS7 Encrypted data",)
    info = openssl_cli.pkcs12_info(data, ODD_PASSWORD)
    promise = PROMISES[profile]
    assert promise.openssl_mac in info
    for bag in protected:
        assert f"{bag}: {promise.openssl_cipher}" in info
    rival = next(
        promise
        for name, promise in PROMISES.items()
        if promise.openssl_cipher != PROMISES[profile].openssl_cipher
    )
    assert rival.openssl_cipher.split(",")[0] not in info


# --- OpenSSL reads every output ------------------------------------------------------


@pytest.mark.parametrize("profile", CLASSIC_MAC_PROFILES)
@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("password", [ODD_PASSWORD, ASCII_PASSWORD])
def test_openssl_recovers_key_and_certificates_from_pkcs12(
    pool: Pool,
    openssl_cli: OpenSSLCli,
    tmp_path: Path,
    key_type: KeyType,
    profile: Pkcs12Profile,
    password: str,
) -> None:
    """``openssl pkcs12 -nodes`` (no -legacy) recovers the key and all certificates."""
    leaf = pool.leaf(key_type, 2)
    data = _pkcs12(pool, key_type, 2, password.encode(), profile)
    completed = openssl_cli.run(
        [
            "pkcs12",
            "-in",
            _write(tmp_path, "in.p12", data),
            "-nodes",
            "-passin",
            f"file:{_write(tmp_path, 'password', password.encode())}",
        ]
    )
    recovered = load_material(completed.stdout.encode())
    assert _pkcs8(recovered.private_key) == _pkcs8(leaf.private_key)
    assert sorted(_ders(recovered.certificates)) == sorted(
        _ders((leaf.certificate, *pool.chain(key_type, 2)))
    )


@pytest.mark.parametrize("profile", CLASSIC_MAC_PROFILES)
def test_openssl_recovers_every_certificate_from_truststore(
    pool: Pool, openssl_cli: OpenSSLCli, tmp_path: Path, profile: Pkcs12Profile
) -> None:
    """``openssl pkcs12 -nokeys`` recovers every certificate of a truststore."""
    data = _truststore(pool, ODD_PASSWORD.encode(), profile)
    completed = openssl_cli.run(
        [
            "pkcs12",
            "-in",
            _write(tmp_path, "in.p12", data),
            "-nokeys",
            "-passin",
            f"file:{_write(tmp_path, 'password', ODD_PASSWORD.encode())}",
        ]
    )
    recovered = load_material(completed.stdout.encode())
    assert _ders(recovered.certificates) == _ders([ca.certificate for ca in pool.cas])


@pytest.mark.parametrize("key_password", [None, ODD_PASSWORD])
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_openssl_verifies_pem_chain_and_reads_its_key(
    pool: Pool,
    openssl_cli: OpenSSLCli,
    tmp_path: Path,
    key_type: KeyType,
    depth: int,
    key_password: str | None,
) -> None:
    """``openssl verify`` accepts the PEM's chain and ``openssl pkey`` reads its key."""
    leaf = pool.leaf(key_type, depth)
    pem = to_pem(
        (leaf.certificate, *pool.chain(key_type, depth)),
        private_key=leaf.private_key,
        key_password=key_password.encode() if key_password else None,
    )
    out = _write(tmp_path, "out.pem", pem)
    verified = openssl_cli.run(
        [
            "verify",
            "-attime",
            str(int(NOW.timestamp())),
            "-CAfile",
            _write(tmp_path, "root.pem", pool.root.cert_pem()),
            "-untrusted",
            out,
            out,
        ]
    )
    assert verified.stdout.strip() == f"{out}: OK"
    passin = (
        ["-passin", f"file:{_write(tmp_path, 'password', key_password.encode())}"]
        if key_password
        else []
    )
    public = openssl_cli.run(["pkey", "-in", out, *passin, "-pubout"])
    assert public.stdout.encode() == leaf.certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- Java 17 reads every output ------------------------------------------------------


@pytest.mark.parametrize("profile", CLASSIC_MAC_PROFILES)
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_java_loads_pkcs12_as_key_entry_with_chain(
    pool: Pool, pkcs12_check: Pkcs12Check, key_type: KeyType, profile: Pkcs12Profile
) -> None:
    """Java's KeyStore loads to_pkcs12 output as one key entry with the whole chain."""
    leaf = pool.leaf(key_type, 2)
    data = _pkcs12(pool, key_type, 2, ASCII_PASSWORD.encode(), profile)
    [entry] = pkcs12_check.keystore(data, ASCII_PASSWORD)
    assert entry.kind == "key"
    assert entry.key_algorithm == JAVA_KEY_ALGORITHMS[key_type]
    assert entry.chain_length == 1 + len(pool.chain(key_type, 2))
    assert entry.subject == leaf.certificate.subject.rfc4514_string()


@pytest.mark.parametrize("profile", CLASSIC_MAC_PROFILES)
def test_java_loads_truststore_with_one_trusted_entry_per_certificate(
    pool: Pool, pkcs12_check: Pkcs12Check, profile: Pkcs12Profile
) -> None:
    """Java's KeyStore loads to_java_truststore output as trusted-cert entries only."""
    entries = pkcs12_check.truststore(
        _truststore(pool, ASCII_PASSWORD.encode(), profile), ASCII_PASSWORD
    )
    assert [entry.kind for entry in entries] == ["trusted-cert"] * len(pool.cas)
    assert sorted(entry.subject for entry in entries) == sorted(
        ca.certificate.subject.rfc4514_string() for ca in pool.cas
    )


@pytest.mark.parametrize("profile", CLASSIC_MAC_PROFILES)
def test_keytool_lists_pkcs12_and_truststore(
    pool: Pool, pkcs12_check: Pkcs12Check, profile: Pkcs12Profile
) -> None:
    """``keytool -list`` shows a PrivateKeyEntry and one trustedCertEntry per CA."""
    password = ASCII_PASSWORD.encode()
    keystore = pkcs12_check.keytool_list(
        _pkcs12(pool, KeyType.RSA_2048, 1, password, profile), ASCII_PASSWORD
    )
    assert "Your keystore contains 1 entry" in keystore
    assert keystore.count("PrivateKeyEntry") == 1
    truststore = pkcs12_check.keytool_list(_truststore(pool, password, profile), ASCII_PASSWORD)
    assert f"Your keystore contains {len(pool.cas)} entries" in truststore
    assert truststore.count("trustedCertEntry") == len(pool.cas)
    fingerprint = pool.root.certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert fingerprint in truststore


@pytest.mark.parametrize("writer", ["to_pkcs12", "to_java_truststore"])
def test_non_ascii_password_is_written_but_java_refuses_it(
    pool: Pool, pkcs12_check: Pkcs12Check, writer: str
) -> None:
    """certward writes non-ASCII passwords that pyca reads; Java 17 refuses them."""
    password = UNICODE_PASSWORD.encode()
    data = (
        _pkcs12(pool, KeyType.EC_P256, 1, password, Pkcs12Profile.MODERN)
        if writer == "to_pkcs12"
        else _truststore(pool, password, Pkcs12Profile.MODERN)
    )
    assert load_material(data, password=password).certificates
    with pytest.raises(JavaRefused, match="Password is not ASCII"):
        pkcs12_check.keystore(data, UNICODE_PASSWORD)


# --- modern2026: PBMAC1 integrity ---------------------------------------------------


def _modern2026(pool: Pool, writer: str, password: bytes) -> bytes:
    """A modern2026 file from ``writer``: a key with its two-deep chain, or the truststore."""
    if writer == "to_pkcs12":
        return _pkcs12(pool, KeyType.EC_P256, 2, password, Pkcs12Profile.MODERN_2026)
    return _truststore(pool, password, Pkcs12Profile.MODERN_2026)


def _tampered_mac(data: bytes) -> bytes:
    """``data`` with one bit of its MAC value flipped (the value ends 12 bytes before the
    end: the ``NOT USED`` macSalt follows it)."""
    tampered = bytearray(data)
    tampered[-13] ^= 0x01
    return bytes(tampered)


@pytest.mark.parametrize("writer", ["to_pkcs12", "to_java_truststore"])
def test_modern2026_mac_is_pbmac1_over_pbkdf2_sha256(pool: Pool, writer: str) -> None:
    """The MAC is PBMAC1: HMAC-SHA256 keyed by PBKDF2-HMAC-SHA256, 32-byte key."""
    data = _modern2026(pool, writer, b"pw")
    structure = read_pkcs12_structure(data, limits=Limits())
    assert structure.mac is not None
    assert structure.mac.pbmac1 is not None
    assert (structure.mac.pbmac1.prf, structure.mac.pbmac1.hmac) == ("sha256", "sha256")
    assert structure.mac.pbmac1.key_bytes == 32
    assert len(structure.mac.pbmac1.salt) == 16
    assert data.endswith(b"\x04\x08NOT USED")


@pytest.mark.parametrize("writer", ["to_pkcs12", "to_java_truststore"])
def test_pyca_and_certward_refuse_a_tampered_modern2026_mac(pool: Pool, writer: str) -> None:
    """One flipped MAC bit: pyca refuses the file, certward answers wrong-password."""
    data = _modern2026(pool, writer, b"pw")
    pkcs12.load_pkcs12(data, b"pw")
    tampered = _tampered_mac(data)
    with pytest.raises(ValueError, match="Invalid password or PKCS12 data"):
        pkcs12.load_pkcs12(tampered, b"pw")
    with pytest.raises(MaterialError) as refused:
        load_material(tampered, password=b"pw")
    assert [problem.code for problem in refused.value.problems] == [ProblemCode.WRONG_PASSWORD]


@pytest.mark.parametrize("writer", ["to_pkcs12", "to_java_truststore"])
def test_openssl_3_4_reads_modern2026_and_refuses_it_tampered(
    pool: Pool, openssl_cli: OpenSSLCli, tmp_path: Path, writer: str
) -> None:
    """OpenSSL 3.4+ verifies the PBMAC1 MAC, lists every bag and refuses a flipped bit."""
    if not openssl_cli.reads_pbmac1():
        pytest.skip("this openssl predates PBMAC1 (3.4)")
    data = _modern2026(pool, writer, ODD_PASSWORD.encode())
    info = openssl_cli.pkcs12_info(data, ODD_PASSWORD)
    assert PROMISES[Pkcs12Profile.MODERN_2026].openssl_mac in info
    assert f"PKCS7 Encrypted data: {PROMISES[Pkcs12Profile.MODERN].openssl_cipher}" in info
    completed = openssl_cli.run(
        [
            "pkcs12",
            "-in",
            _write(tmp_path, "in.p12", data),
            "-nodes",
            "-passin",
            f"file:{_write(tmp_path, 'password', ODD_PASSWORD.encode())}",
        ]
    )
    assert load_material(completed.stdout.encode()).certificates
    with pytest.raises(OpenSSLFailed, match=r"[Mm]ac verify"):
        openssl_cli.pkcs12_info(_tampered_mac(data), ODD_PASSWORD)


def test_openssl_before_3_4_cannot_read_modern2026(pool: Pool, openssl_cli: OpenSSLCli) -> None:
    """OpenSSL 3.0 does not know PBMAC1: it refuses a modern2026 file (hence the profile)."""
    if openssl_cli.reads_pbmac1():
        pytest.skip("this openssl reads PBMAC1")
    data = _pkcs12(pool, KeyType.EC_P256, 1, ASCII_PASSWORD.encode(), Pkcs12Profile.MODERN_2026)
    with pytest.raises(OpenSSLFailed, match=r"Algorithm \(PBMAC1"):
        openssl_cli.pkcs12_info(data, ASCII_PASSWORD)


def test_java_17_cannot_read_modern2026(pool: Pool, pkcs12_check: Pkcs12Check) -> None:
    """Java 17 does not know PBMAC1 (JDK 26 does): it refuses a modern2026 file."""
    data = _pkcs12(pool, KeyType.EC_P256, 1, ASCII_PASSWORD.encode(), Pkcs12Profile.MODERN_2026)
    with pytest.raises(JavaRefused, match=r"1\.2\.840\.113549\.1\.5\.14 not available"):
        pkcs12_check.keystore(data, ASCII_PASSWORD)


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(Pkcs12Profile))
def test_to_pkcs12_refuses_an_empty_password(pool: Pool, profile: Pkcs12Profile) -> None:
    """A PKCS12 file is never written without a password."""
    with pytest.raises(ValueError, match="always has a password"):
        _pkcs12(pool, KeyType.EC_P256, 0, b"", profile)
    with pytest.raises(ValueError, match="always has a password"):
        _truststore(pool, b"", profile)


@pytest.mark.parametrize("password", [b"\x00", b"pass\x00word", b"trailing\x00"])
def test_to_pkcs12_refuses_a_password_with_nul(pool: Pool, password: bytes) -> None:
    """A NUL in the password is refused: OpenSSL-based readers cut the password there."""
    with pytest.raises(ValueError, match="NUL"):
        _pkcs12(pool, KeyType.EC_P256, 0, password, Pkcs12Profile.MODERN)
    with pytest.raises(ValueError, match="NUL"):
        _truststore(pool, password, Pkcs12Profile.LEGACY)


def _dh_key() -> dh.DHPrivateKey:
    with warnings.catch_warnings():
        # pyca deprecates finite-field DH, which is exactly what this key is for.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return dh.generate_parameters(generator=2, key_size=512).generate_private_key()


@pytest.mark.parametrize(
    "make_key",
    [x25519.X25519PrivateKey.generate, x448.X448PrivateKey.generate, _dh_key],
    ids=["x25519", "x448", "dh"],
)
def test_to_pkcs12_refuses_key_agreement_keys(
    pool: Pool, make_key: Callable[[], PrivateKeyTypes]
) -> None:
    """X25519, X448 and DH keys cannot sign, so they are refused with a ValueError."""
    leaf = pool.leaf(KeyType.EC_P256, 0)
    with pytest.raises(ValueError, match="cannot be put in a PKCS12 file"):
        to_pkcs12(private_key=make_key(), certificate=leaf.certificate, password=b"pw")


def test_to_java_truststore_refuses_an_empty_list() -> None:
    """A truststore needs at least one certificate."""
    with pytest.raises(ValueError, match="at least one certificate"):
        to_java_truststore([], password=b"pw")
