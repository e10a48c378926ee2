"""Write material in the format each consumer reads.

PKCS12 comes in three profiles: ``modern`` (AES-256-CBC with PBKDF2-HMAC-SHA256 and a
SHA-256 MAC, what OpenSSL 3 writes), ``modern2026`` (the same encryption under a PBMAC1
MAC of RFC 9579, what OpenSSL 3.4+, JDK 26 and Bouncy Castle 1.81+ read, but not
OpenSSL 3.0 or Java 17) and ``legacy`` (3DES with a SHA-1 MAC, what old Java and
Windows read). Java truststores are PKCS12 files whose entries are trusted
certificates. Pure: returns bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.pki.inspect import subject_of
from certward.pki.pbmac1 import with_pbmac1

# OpenSSL 3's default; enough for random passwords, cheap for runtimes that open many.
PKCS12_ITERATIONS = 2048

_PKCS12_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


class Pkcs12Profile(StrEnum):
    """Which encryption a written PKCS12 file uses."""

    MODERN = "modern"
    MODERN_2026 = "modern2026"  # modern encryption, PBMAC1 integrity (RFC 9579)
    LEGACY = "legacy"


def _encryption(
    password: bytes, profile: Pkcs12Profile
) -> serialization.KeySerializationEncryption:
    if not password:
        raise ValueError("a PKCS12 file written by certward always has a password")
    if b"\x00" in password:
        # OpenSSL takes PKCS12 passwords as C strings: such a file could never be opened.
        raise ValueError("a PKCS12 password cannot contain a NUL character")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(PKCS12_ITERATIONS)
    if profile is not Pkcs12Profile.LEGACY:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(
            hashes.SHA256()
        )
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(
            hashes.SHA1()  # noqa: S303 - what legacy readers require
        )
    return builder.build(password)


def to_pkcs12(
    *,
    private_key: PrivateKeyTypes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    password: bytes,
    profile: Pkcs12Profile = Pkcs12Profile.MODERN,
    friendly_name: str | None = None,
) -> bytes:
    """A PKCS12 container with the key, its certificate and the chain (leaf-to-root)."""
    if not isinstance(private_key, _PKCS12_KEY_TYPES):
        raise ValueError(f"a {type(private_key).__name__} cannot be put in a PKCS12 file")
    name = (friendly_name or subject_of(certificate)).encode("utf-8")
    written = pkcs12.serialize_key_and_certificates(
        name,
        private_key,
        certificate,
        list(chain) or None,
        _encryption(password, profile),
    )
    return _integrity(written, password, profile)


def to_java_truststore(
    certificates: Sequence[x509.Certificate],
    *,
    password: bytes,
    profile: Pkcs12Profile = Pkcs12Profile.MODERN,
) -> bytes:
    """A PKCS12 keystore whose entries are trusted certificates, as Java expects.

    Java 17 opens PKCS12 files only with ASCII passwords; with any other password the
    file is still written (OpenSSL and certward read it) but Java refuses it.
    """
    if not certificates:
        raise ValueError("a truststore needs at least one certificate")
    entries = [
        pkcs12.PKCS12Certificate(certificate, _alias(certificate, index).encode("utf-8"))
        for index, certificate in enumerate(certificates)
    ]
    written = pkcs12.serialize_java_truststore(entries, _encryption(password, profile))
    return _integrity(written, password, profile)


def _integrity(written: bytes, password: bytes, profile: Pkcs12Profile) -> bytes:
    """``written`` with the MAC its profile asks for (pyca writes only RFC 7292 MACs)."""
    if profile is Pkcs12Profile.MODERN_2026:
        return with_pbmac1(written, password, iterations=PKCS12_ITERATIONS)
    return written


def to_pem(
    certificates: Sequence[x509.Certificate],
    *,
    private_key: PrivateKeyTypes | None = None,
    key_password: bytes | None = None,
) -> bytes:
    """Certificates (leaf-to-root) then the key in PKCS#8, encrypted when a password is given."""
    out = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    if private_key is not None:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(key_password)
            if key_password
            else serialization.NoEncryption()
        )
        out += private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    return out


def private_key_der(private_key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 DER, for certward's own encrypted store only."""
    return private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _alias(certificate: x509.Certificate, index: int) -> str:
    common_names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    base = str(common_names[0].value) if common_names else subject_of(certificate)
    return f"{index + 1}-{base}"[:64]
