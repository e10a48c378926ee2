"""Describe certificates: everything a person or a script wants to know about one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from certward.pki.lenient import tolerating_lenient_encodings

_E = TypeVar("_E", bound=x509.ExtensionType)

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """Type and strength of a public key. ``curve`` only for EC keys."""

    key_type: str
    key_size: int | None
    curve: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertInfo:
    """What one certificate says about itself."""

    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256_fingerprint: str
    sha1_fingerprint: str
    key: KeyInfo
    signature_algorithm: str
    is_ca: bool
    path_length: int | None
    self_signed: bool
    san: tuple[str, ...]
    eku: tuple[str, ...]
    key_usage: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256_fingerprint": self.sha256_fingerprint,
            "sha1_fingerprint": self.sha1_fingerprint,
            "key_type": self.key.key_type,
            "key_size": self.key.key_size,
            "curve": self.key.curve,
            "signature_algorithm": self.signature_algorithm,
            "is_ca": self.is_ca,
            "path_length": self.path_length,
            "self_signed": self.self_signed,
            "san": list(self.san),
            "eku": list(self.eku),
            "key_usage": list(self.key_usage),
        }


def describe_certificate(certificate: x509.Certificate) -> CertInfo:
    """All the facts `CertInfo` holds, read from ``certificate``."""
    constraints = extension_value(certificate, x509.BasicConstraints)
    return CertInfo(
        subject=subject_of(certificate),
        issuer=certificate.issuer.rfc4514_string(),
        serial=serial_of(certificate),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        sha256_fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        sha1_fingerprint=certificate.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - an identifier, not a signature
        key=certificate_key_info(certificate),
        signature_algorithm=signature_algorithm_name(certificate),
        is_ca=bool(constraints and constraints.ca),
        path_length=constraints.path_length if constraints else None,
        self_signed=is_self_signed(certificate),
        san=subject_alternative_names(certificate),
        eku=extended_key_usages(certificate),
        key_usage=key_usages(certificate),
    )


def serial_of(certificate: x509.Certificate) -> str:
    """The serial number in hex (negative serials, which pyca warns about, included)."""
    with tolerating_lenient_encodings():
        return format(certificate.serial_number, "x")


def subject_of(certificate: x509.Certificate) -> str:
    """The subject as an RFC 4514 string, or a stand-in when it is empty."""
    return certificate.subject.rfc4514_string() or "(empty subject)"


def certificate_key_info(certificate: x509.Certificate) -> KeyInfo:
    """The certificate's public key type and size; ``unsupported`` when pyca cannot read it."""
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return KeyInfo(key_type="unsupported", key_size=None)
    return key_info(key)


def key_info(key: CertificatePublicKeyTypes | PrivateKeyTypes) -> KeyInfo:
    """Type, size and curve of a public or private key."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return KeyInfo(key_type="rsa", key_size=key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return KeyInfo(key_type="ec", key_size=key.curve.key_size, curve=key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return KeyInfo(key_type="ed25519", key_size=256)
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return KeyInfo(key_type="ed448", key_size=456)
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return KeyInfo(key_type="dsa", key_size=key.key_size)
    return KeyInfo(key_type=type(key).__name__, key_size=None)


def signature_algorithm_name(certificate: x509.Certificate) -> str:
    oid = certificate.signature_algorithm_oid
    name: str = getattr(oid, "_name", "") or ""
    return name if name and name != "Unknown OID" else oid.dotted_string


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Issuer equals subject and the key identifiers, where present, agree.

    Decided from names and key identifiers, not by checking the signature: a root's
    self-signature carries no trust (anchors are trusted as they are), and the
    signatures that do matter are checked by `certward.pki.chains.verify_chain`.
    """
    if certificate.issuer != certificate.subject:
        return False
    authority = extension_value(certificate, x509.AuthorityKeyIdentifier)
    subject_key = extension_value(certificate, x509.SubjectKeyIdentifier)
    if authority is None or authority.key_identifier is None or subject_key is None:
        return True
    return authority.key_identifier == subject_key.digest


def subject_alternative_names(certificate: x509.Certificate) -> tuple[str, ...]:
    extension = extension_value(certificate, x509.SubjectAlternativeName)
    if extension is None:
        return ()
    names: list[str] = []
    for name in extension:
        if isinstance(name, x509.DNSName):
            names.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            names.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"URI:{name.value}")
        elif isinstance(name, x509.DirectoryName):
            names.append(f"DirName:{name.value.rfc4514_string()}")
        else:
            names.append(f"other:{type(name).__name__}")
    return tuple(names)


def dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    extension = extension_value(certificate, x509.SubjectAlternativeName)
    return tuple(extension.get_values_for_type(x509.DNSName)) if extension else ()


def extended_key_usages(certificate: x509.Certificate) -> tuple[str, ...]:
    extension = extension_value(certificate, x509.ExtendedKeyUsage)
    if extension is None:
        return ()
    return tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in extension)


def key_usages(certificate: x509.Certificate) -> tuple[str, ...]:
    usage = extension_value(certificate, x509.KeyUsage)
    if usage is None:
        return ()
    flags = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    found = [flag for flag in flags if getattr(usage, flag)]
    if usage.key_agreement:
        found += [f for f in ("encipher_only", "decipher_only") if getattr(usage, f)]
    return tuple(found)


def extension_value(certificate: x509.Certificate, kind: type[_E]) -> _E | None:
    """The value of the extension of type ``kind``, or None when absent."""
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@lru_cache(maxsize=256)
def chain_summary(chain_pem: str) -> tuple[dict[str, str], ...]:
    """Subjects and SHA-256 fingerprints of a stored PEM chain (many records share one)."""
    if not chain_pem:
        return ()
    return tuple(
        {"subject": info.subject, "sha256_fingerprint": info.sha256_fingerprint}
        for info in map(describe_certificate, x509.load_pem_x509_certificates(chain_pem.encode()))
    )
