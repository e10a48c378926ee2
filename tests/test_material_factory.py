"""The test material itself: factory, OpenSSL variants, Java's loader, hostile files."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from tests.material import hostile, tools
from tests.material.factory import (
    DEFAULT_NOT_AFTER,
    DEFAULT_NOT_BEFORE,
    NOW,
    IssuedCert,
    TestCA,
    java_truststore,
)
from tests.material.java import JavaRefused, Pkcs12Check
from tests.material.openssl_cli import (
    COMMA_PASSWORD,
    UNICODE_PASSWORD,
    OpenSSLCli,
    OpenSSLFailed,
    Pkcs12Variant,
)

_E = TypeVar("_E", bound=x509.ExtensionType)


@dataclass(frozen=True, slots=True)
class Pki:
    root: TestCA
    intermediate: TestCA
    ec_leaf: IssuedCert
    rsa_leaf: IssuedCert


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = TestCA.root(name="material root")
    intermediate = root.intermediate(name="material intermediate")
    return Pki(
        root=root,
        intermediate=intermediate,
        ec_leaf=intermediate.issue_leaf("app.example.test"),
        rsa_leaf=intermediate.issue_leaf("rsa.example.test", key_type="rsa-2048"),
    )


def _extension(certificate: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    return certificate.extensions.get_extension_for_class(kind)


def _protection(data: bytes) -> tuple[str | None, list[str], list[str]]:
    """(MAC hash, key bag algorithms, encrypted-content algorithms) of a PFX."""
    pfx = asn1_pkcs12.Pfx.load(data)
    mac = None if pfx["mac_data"].native is None else pfx["mac_data"].native["mac"]
    key_bags: list[str] = []
    contents: list[str] = []
    for content_info in pfx.authenticated_safe:
        if content_info["content_type"].native == "encrypted_data":
            algorithm = content_info["content"]["encrypted_content_info"][
                "content_encryption_algorithm"
            ]
            contents.append(algorithm["algorithm"].native)
            continue
        for bag in asn1_pkcs12.SafeContents.load(content_info["content"].native):
            if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                key_bags.append(bag["bag_value"]["encryption_algorithm"]["algorithm"].native)
            elif bag["bag_id"].native == "key_bag":
                key_bags.append("plain")
    return (None if mac is None else mac["digest_algorithm"]["algorithm"]), key_bags, contents


# --- require_tool -----------------------------------------------------------------


def test_require_tool_returns_an_absolute_path(openssl: str) -> None:
    """A present tool resolves to an absolute path."""
    assert openssl.startswith("/")
    assert openssl.endswith("openssl")


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CI a missing tool skips the test and names the Debian package."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Debian package 'pebble'"):
        tools.require_tool("pebble")


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CI=true a missing tool fails the test instead of skipping it."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="openjdk-17-jdk-headless"):
        tools.require_tool("javac")


def test_postgresql_defaults_to_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CERTWARD_TEST_DATABASE_URL the local server's URL is used."""
    monkeypatch.delenv(tools.DATABASE_URL_VARIABLE, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert tools.require_tool("postgresql") == tools.DEFAULT_DATABASE_URL


@pytest.mark.external("openssl", "keytool")
def test_external_marker_requires_the_named_tools() -> None:
    """The external marker resolves each tool before the test body runs."""
    assert tools.require_tool("keytool").startswith("/")


def test_unknown_tool_is_a_programming_error() -> None:
    """Asking for a tool nobody declared raises, rather than skipping silently."""
    with pytest.raises(ValueError, match="unknown tool"):
        tools.require_tool("emacs")


# --- factory ----------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_server_chain_passes_strict_verification(key_type: str) -> None:
    """Root, intermediate and leaf pass pyca's web-PKI server verifier."""
    root = TestCA.root(key_type=key_type)
    leaf = root.intermediate(key_type=key_type).issue_leaf(
        "app.example.test", sans=["app.example.test", "192.0.2.7"], key_type=key_type
    )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([root.certificate]))
        .time(NOW)
        .build_server_verifier(x509.DNSName("app.example.test"))
    )
    built = verifier.verify(leaf.certificate, list(leaf.chain[:-1]))
    assert [c.subject for c in built] == [c.subject for c in leaf.full_chain]


def test_client_leaf_passes_client_verification(pki: Pki) -> None:
    """A clientAuth leaf passes pyca's client verifier."""
    client = pki.intermediate.issue_leaf("client-7", eku=["clientAuth"])
    verified = (
        verification.PolicyBuilder()
        .store(verification.Store([pki.root.certificate]))
        .time(NOW)
        .build_client_verifier()
        .verify(client.certificate, [pki.intermediate.certificate])
    )
    assert verified.subjects == [x509.DNSName("client-7")]
    eku = _extension(client.certificate, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_defaults(pki: Pki) -> None:
    """A default leaf: fixed validity, SAN = CN, serverAuth, critical CA:FALSE and keyUsage."""
    certificate = pki.ec_leaf.certificate
    assert certificate.not_valid_before_utc == DEFAULT_NOT_BEFORE == NOW - timedelta(days=1)
    assert certificate.not_valid_after_utc == DEFAULT_NOT_AFTER == NOW + timedelta(days=365)
    san = _extension(certificate, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.example.test"]
    constraints = _extension(certificate, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    assert _extension(certificate, x509.KeyUsage).critical
    assert pki.ec_leaf.chain == (pki.intermediate.certificate, pki.root.certificate)


def test_ca_extensions(pki: Pki) -> None:
    """CAs carry critical CA:TRUE, keyCertSign, and SKI/AKI that link up."""
    for ca in (pki.root, pki.intermediate):
        assert _extension(ca.certificate, x509.BasicConstraints).value.ca
        assert _extension(ca.certificate, x509.KeyUsage).value.key_cert_sign
    root_ski = _extension(pki.root.certificate, x509.SubjectKeyIdentifier).value
    aki = _extension(pki.intermediate.certificate, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest


def test_odd_leaves(pki: Pki) -> None:
    """no_san, eku=None and is_ca/key_cert_sign produce exactly the odd certificate asked for."""
    bare = pki.intermediate.issue_leaf("bare.example.test", no_san=True, eku=None)
    for kind in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage):
        with pytest.raises(x509.ExtensionNotFound):
            _extension(bare.certificate, kind)
    posing = pki.intermediate.issue_leaf("posing.example.test", is_ca=True)
    assert _extension(posing.certificate, x509.BasicConstraints).value.ca
    assert _extension(posing.certificate, x509.KeyUsage).value.key_cert_sign
    unsigned = pki.intermediate.issue_leaf("ca.example.test", is_ca=True, key_cert_sign=False)
    assert not _extension(unsigned.certificate, x509.KeyUsage).value.key_cert_sign
    expired = pki.intermediate.issue_leaf(
        not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(seconds=1)
    )
    assert expired.certificate.not_valid_after_utc < NOW


@pytest.mark.parametrize(
    ("key_type", "hash_name", "expected"),
    [
        ("rsa-2048", "sha1", SignatureAlgorithmOID.RSA_WITH_SHA1),
        ("rsa-2048", "md5", SignatureAlgorithmOID.RSA_WITH_MD5),
        ("ec-p256", "sha1", SignatureAlgorithmOID.ECDSA_WITH_SHA1),
        ("ec-p256", "sha384", SignatureAlgorithmOID.ECDSA_WITH_SHA384),
    ],
)
def test_signature_hash_is_honoured(key_type: str, hash_name: str, expected: object) -> None:
    """Weak hashes are reached by re-signing; the signature verifies with the issuer key."""
    root = TestCA.root(key_type=key_type)
    leaf = root.issue_leaf(hash=hash_name)
    certificate = leaf.certificate
    assert certificate.signature_algorithm_oid == expected
    hash_algorithm = certificate.signature_hash_algorithm
    assert hash_algorithm is not None
    public_key = root.private_key.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            padding.PKCS1v15(),
            hash_algorithm,
        )
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(
            certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(hash_algorithm)
        )


def test_impossible_requests_are_refused() -> None:
    """ECDSA-with-MD5, a hash for an EdDSA issuer and naive datetimes raise ValueError."""
    with pytest.raises(ValueError, match="EC with md5"):
        TestCA.root(hash="md5")
    with pytest.raises(ValueError, match="EdDSA"):
        TestCA.root(key_type="ed25519", hash="sha256")
    with pytest.raises(ValueError, match="timezone-aware"):
        TestCA.root(not_before=datetime(2026, 1, 1))


def test_repr_shows_no_key_material(pki: Pki) -> None:
    """repr names the subject and a digest, never the private key."""
    text = repr(pki.ec_leaf)
    assert "app.example.test" in text
    assert "private" not in text.lower()


def test_key_pem_formats(pki: Pki) -> None:
    """PKCS#8 by default, traditional on request, encrypted with a password."""
    leaf = pki.rsa_leaf
    assert leaf.key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert leaf.key_pem(traditional=True).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert leaf.key_pem("pw").startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert b"DEK-Info: AES-256-CBC" in leaf.key_pem("pw", traditional=True)
    assert pki.ec_leaf.key_pem(traditional=True).startswith(b"-----BEGIN EC PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(leaf.key_pem("pw"), b"pw")
    assert loaded.public_key() == leaf.private_key.public_key()
    assert pki.ec_leaf.chain_pem().count(b"BEGIN CERTIFICATE") == 2
    assert pki.ec_leaf.full_chain_pem().count(b"BEGIN CERTIFICATE") == 3


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        (False, ("sha256", ["pbes2"], ["pbes2"])),
        (True, ("sha1", ["pkcs12_sha1_tripledes_3key"], ["pkcs12_sha1_tripledes_3key"])),
    ],
)
def test_factory_pkcs12_protection(pki: Pki, legacy: bool, expected: tuple[object, ...]) -> None:
    """Modern is PBES2/AES-256 with a SHA-256 MAC; legacy is 3DES with a SHA-1 MAC."""
    data = pki.ec_leaf.pkcs12(UNICODE_PASSWORD, legacy=legacy)
    assert _protection(data) == expected
    loaded = pkcs12.load_pkcs12(data, UNICODE_PASSWORD.encode())
    assert loaded.cert is not None
    assert loaded.cert.certificate == pki.ec_leaf.certificate
    assert [c.certificate for c in loaded.additional_certs] == list(pki.ec_leaf.chain)


def test_factory_pkcs12_without_password(pki: Pki) -> None:
    """password=None writes a plain key bag and plain certificate bags."""
    data = pki.ec_leaf.pkcs12(None, include_chain=False)
    assert _protection(data) == ("sha256", ["plain"], [])
    assert pkcs12.load_pkcs12(data, None).key is not None


# --- OpenSSL variants -------------------------------------------------------------

_VARIANT_INFO = {
    Pkcs12Variant.DEFAULT: (
        "MAC: sha256, Iteration 2048",
        "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
    ),
    Pkcs12Variant.LEGACY: (
        "MAC: sha1, Iteration 2048",
        "PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC, Iteration 2048",
        "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
    ),
    Pkcs12Variant.TRIPLE_DES: (
        "MAC: sha1, Iteration 2048",
        "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
        "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
    ),
    Pkcs12Variant.RC2_40: (
        "MAC: sha1, Iteration 2048",
        "PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC, Iteration 2048",
        "Shrouded Keybag: pbeWithSHA1And40BitRC2-CBC, Iteration 2048",
    ),
    Pkcs12Variant.NO_MAC: (
        "MAC is absent",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048",
    ),
    Pkcs12Variant.NO_MAC_ITERATION: (
        "MAC: sha256, Iteration 1\n",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048",
    ),
    Pkcs12Variant.NO_ENCRYPTION: ("MAC: sha256, Iteration 2048", "Key bag"),
    Pkcs12Variant.PLAINTEXT: ("MAC is absent", "Key bag"),
}


@pytest.mark.parametrize("variant", list(Pkcs12Variant), ids=lambda v: v.name)
def test_openssl_pkcs12_variant(pki: Pki, openssl_cli: OpenSSLCli, variant: Pkcs12Variant) -> None:
    """Each variant has the protection it claims and loads with a unicode password."""
    data = openssl_cli.pkcs12(pki.rsa_leaf, variant=variant, password=UNICODE_PASSWORD)
    info = openssl_cli.pkcs12_info(data, UNICODE_PASSWORD)
    for fragment in _VARIANT_INFO[variant]:
        assert fragment in info
    assert info.count("Certificate bag") == 3
    loaded = pkcs12.load_pkcs12(data, UNICODE_PASSWORD.encode())
    assert loaded.key is not None
    assert loaded.key.public_key() == pki.rsa_leaf.private_key.public_key()
    assert len(loaded.additional_certs) == 2


@pytest.mark.parametrize("password", [COMMA_PASSWORD, ""], ids=["comma", "empty"])
def test_openssl_pkcs12_odd_passwords(pki: Pki, openssl_cli: OpenSSLCli, password: str) -> None:
    """Commas and the empty password reach OpenSSL intact; a wrong one is refused."""
    data = openssl_cli.pkcs12(pki.ec_leaf, password=password, include_chain=False)
    assert "Certificate bag" in openssl_cli.pkcs12_info(data, password)
    assert pkcs12.load_pkcs12(data, password.encode()).key is not None
    with pytest.raises(OpenSSLFailed, match="Mac verify error"):
        openssl_cli.pkcs12_info(data, "wrong")


def test_openssl_pkcs12_custom_iterations(pki: Pki, openssl_cli: OpenSSLCli) -> None:
    """-iter sets the KDF and the MAC iteration counts alike."""
    data = openssl_cli.pkcs12(pki.ec_leaf, iterations=4321)
    info = openssl_cli.pkcs12_info(data, "certward-test-password")
    assert "MAC: sha256, Iteration 4321" in info
    assert "AES-256-CBC, Iteration 4321" in info
    assert hostile.pbe_iterations(data) == hostile.PbeIterations(
        key_bags=(4321,), encrypted_contents=(4321,)
    )


def test_openssl_pem_and_der_keys(pki: Pki, openssl_cli: OpenSSLCli) -> None:
    """PKCS#8 encrypted, traditional plain/encrypted and DER keys load as the same key."""
    for leaf, header in ((pki.rsa_leaf, b"RSA PRIVATE KEY"), (pki.ec_leaf, b"EC PRIVATE KEY")):
        expected = leaf.private_key.public_key()
        pkcs8 = openssl_cli.encrypted_pkcs8_pem(leaf, UNICODE_PASSWORD)
        assert pkcs8.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        password = UNICODE_PASSWORD.encode()
        assert serialization.load_pem_private_key(pkcs8, password).public_key() == expected
        plain = openssl_cli.traditional_key_pem(leaf)
        assert plain.startswith(b"-----BEGIN " + header)
        assert serialization.load_pem_private_key(plain, None).public_key() == expected
        encrypted = openssl_cli.traditional_key_pem(leaf, COMMA_PASSWORD)
        assert b"Proc-Type: 4,ENCRYPTED" in encrypted
        assert b"DEK-Info: AES-256-CBC," in encrypted
        loaded = serialization.load_pem_private_key(encrypted, COMMA_PASSWORD.encode())
        assert loaded.public_key() == expected
        for traditional in (False, True):
            der = openssl_cli.private_key_der(leaf, traditional=traditional)
            assert serialization.load_der_private_key(der, None).public_key() == expected
    assert openssl_cli.private_key_der(pki.ec_leaf) == pki.ec_leaf.key_der()


def test_openssl_certificate_and_pkcs7(pki: Pki, openssl_cli: OpenSSLCli) -> None:
    """DER certificate and PKCS#7 chains (PEM and DER) hold exactly the leaf and its issuers."""
    assert openssl_cli.certificate_der(pki.ec_leaf) == pki.ec_leaf.cert_der()
    pem = openssl_cli.pkcs7_chain(pki.ec_leaf)
    assert pem.startswith(b"-----BEGIN PKCS7-----")
    der = openssl_cli.pkcs7_chain(pki.ec_leaf, der=True)
    with warnings.catch_warnings():
        # crl2pkcs7 keeps the input order in the SET OF certificates instead of sorting it
        # as DER requires; cryptography then falls back to BER with a UserWarning.
        warnings.filterwarnings("ignore", "PKCS#7 certificates could not be parsed as DER")
        for certificates in (
            pkcs7.load_pem_pkcs7_certificates(pem),
            pkcs7.load_der_pkcs7_certificates(der),
        ):
            assert list(certificates) == list(pki.ec_leaf.full_chain)


# --- Java -------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
def test_java_loads_factory_pkcs12(pki: Pki, pkcs12_check: Pkcs12Check, legacy: bool) -> None:
    """Java's PKCS12 KeyStore reads the factory's modern and legacy files with the chain."""
    data = pki.ec_leaf.pkcs12(COMMA_PASSWORD, legacy=legacy)
    [entry] = pkcs12_check.keystore(data, COMMA_PASSWORD)
    assert entry.alias == "certward-test"
    assert entry.kind == "key"
    assert entry.key_algorithm == "EC"
    assert entry.chain_length == 3
    assert entry.subject == "CN=app.example.test"


def test_java_reads_truststore_and_refuses_a_keystore_as_one(
    pki: Pki, pkcs12_check: Pkcs12Check
) -> None:
    """serialize_java_truststore output holds trusted-cert entries; a keystore holds none."""
    store = java_truststore([pki.root.certificate, pki.intermediate.certificate], "changeit")
    entries = pkcs12_check.truststore(store, "changeit")
    assert [e.kind for e in entries] == ["trusted-cert", "trusted-cert"]
    assert {e.subject for e in entries} == {"CN=material root", "CN=material intermediate"}
    with pytest.raises(JavaRefused) as refused:
        pkcs12_check.truststore(pki.ec_leaf.pkcs12("changeit"), "changeit")
    assert refused.value.error == "NoTrustedCertificates"
    assert "trustedCertEntry" in pkcs12_check.keytool_list(store, "changeit")


def test_java_refuses_a_wrong_password(pki: Pki, pkcs12_check: Pkcs12Check) -> None:
    """A wrong password is an IOException in Java, reported as JavaRefused."""
    with pytest.raises(JavaRefused) as refused:
        pkcs12_check.keystore(pki.ec_leaf.pkcs12("right"), "wrong")
    assert refused.value.error == "java.io.IOException"
    assert "PrivateKeyEntry" in pkcs12_check.keytool_list(pki.ec_leaf.pkcs12("right"), "right")


def test_java_cannot_use_non_ascii_passwords(pki: Pki, pkcs12_check: Pkcs12Check) -> None:
    """Java 17 refuses to decrypt PKCS12 bags with a non-ASCII password, even a correct one."""
    with pytest.raises(JavaRefused) as refused:
        pkcs12_check.keystore(pki.ec_leaf.pkcs12(UNICODE_PASSWORD), UNICODE_PASSWORD)
    assert "Password is not ASCII" in refused.value.stderr


# --- hostile files ----------------------------------------------------------------


def test_pkcs12_kdf_matches_real_macs(pki: Pki) -> None:
    """The RFC 7292 KDF reproduces cryptography's SHA-256 and SHA-1 MACs."""
    for legacy in (False, True):
        data = pki.ec_leaf.pkcs12(UNICODE_PASSWORD, legacy=legacy)
        assert hostile.mac_verifies(data, UNICODE_PASSWORD)
        assert not hostile.mac_verifies(data, "wrong")
    assert hostile.mac_verifies(pki.ec_leaf.pkcs12(None), "")


def test_huge_mac_iterations() -> None:
    """(a) Only the MAC count changes: ~1 KB with 2**31-1 MAC iterations."""
    data = hostile.huge_mac_iterations()
    assert len(data) < 1500
    assert hostile.mac_iterations(data) == 2**31 - 1
    assert hostile.pbe_iterations(data) == hostile.PbeIterations(
        key_bags=(2048,), encrypted_contents=(2048,)
    )


def test_huge_key_bag_iterations() -> None:
    """(b) The key bag's PBKDF2 count is 2**31-1 and the MAC still verifies."""
    data = hostile.huge_key_bag_iterations()
    assert len(data) < 1500
    assert hostile.mac_iterations(data) == 2048
    assert hostile.pbe_iterations(data) == hostile.PbeIterations(
        key_bags=(2**31 - 1,), encrypted_contents=(2048,)
    )
    assert hostile.mac_verifies(data, hostile.HOSTILE_PASSWORD)


def test_huge_cert_bag_iterations() -> None:
    """(c) The encrypted certificates' PBKDF2 count is 2**31-1 and the MAC still verifies."""
    data = hostile.huge_cert_bag_iterations()
    assert len(data) < 1500
    assert hostile.pbe_iterations(data) == hostile.PbeIterations(
        key_bags=(2048,), encrypted_contents=(2**31 - 1,)
    )
    assert hostile.mac_verifies(data, hostile.HOSTILE_PASSWORD)


def test_deeply_nested_safe_contents() -> None:
    """(d) Bags sit 50 safeContentsBags deep; a shallow twin proves the structure loads."""
    data = hostile.deeply_nested_safe_contents()
    assert hostile.safe_contents_depth(data) == 50
    assert hostile.certificate_bag_count(data) == 1
    assert hostile.mac_verifies(data, hostile.HOSTILE_PASSWORD)
    shallow = hostile.deeply_nested_safe_contents(2)
    loaded = pkcs12.load_pkcs12(shallow, hostile.HOSTILE_PASSWORD.encode())
    assert loaded.key is not None
    assert loaded.cert is not None


def test_many_certificates() -> None:
    """(e) 500 certificate bags under 256 KiB, a valid MAC, loadable by cryptography."""
    data = hostile.many_certificates()
    assert len(data) < 256 * 1024
    assert hostile.certificate_bag_count(data) == 500
    assert hostile.mac_verifies(data, hostile.HOSTILE_PASSWORD)
    loaded = pkcs12.load_pkcs12(data, hostile.HOSTILE_PASSWORD.encode())
    assert len(loaded.additional_certs) == 499
    assert loaded.cert is not None
    assert loaded.cert.certificate.fingerprint(hashes.SHA256())
