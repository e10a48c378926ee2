"""A small test PKI on ``cryptography`` alone, in the spirit of trustme.

::

    root = TestCA.root()
    issuing = root.intermediate()
    leaf = issuing.issue_leaf("app.example.test", eku=["serverAuth"])
    leaf.pkcs12("secret")             # modern PKCS12: AES-256/PBKDF2, SHA-256 MAC
    leaf.pkcs12("secret", legacy=True)  # 3DES, SHA-1 MAC

Every certificate passes ``cryptography.x509.verification`` unless a parameter asks
for something odd: CAs carry a critical basicConstraints and keyUsage and a subject key
identifier, every non-root an authority key identifier, leaves a subjectAltName.

Nothing reads the clock: validity defaults to ``NOW - 1 day .. NOW + 365 days`` with the
fixed ``NOW`` below; pass ``not_before``/``not_after`` for anything else.

SHA-1 and MD5 signatures: ``cryptography`` refuses to build certificates signed with
them, but its signing primitives still accept those hashes. For ``hash="sha1"`` or
``"md5"`` the certificate is built with SHA-256, then its ``TBSCertificate`` gets the old
algorithm identifier (via ``asn1crypto``) and is signed again with the issuer key.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 11, 26, tzinfo=UTC)
"""The instant every test treats as "now" unless it says otherwise."""

DEFAULT_NOT_BEFORE = NOW - timedelta(days=1)
DEFAULT_NOT_AFTER = NOW + timedelta(days=365)

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


class KeyType(StrEnum):
    """Key algorithms the factory generates; plain strings like ``"ec-p256"`` work too."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    EC_P521 = "ec-p521"
    EC_SECP256K1 = "ec-secp256k1"
    RSA_1024 = "rsa-1024"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"
    ED448 = "ed448"

    def generate(self) -> PrivateKey:
        """A fresh private key of this type."""
        family, _, size = self.value.partition("-")
        if family == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=int(size))
        if family == "ec":
            return ec.generate_private_key(_CURVES[size])
        if self is KeyType.ED25519:
            return ed25519.Ed25519PrivateKey.generate()
        return ed448.Ed448PrivateKey.generate()


_CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
    "secp256k1": ec.SECP256K1(),
}


class SignatureHash(StrEnum):
    """Hashes a certificate signature may use; plain strings like ``"sha1"`` work too."""

    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"
    SHA1 = "sha1"
    MD5 = "md5"

    def algorithm(self) -> hashes.HashAlgorithm:
        """The ``cryptography`` hash object."""
        return {
            SignatureHash.SHA256: hashes.SHA256(),
            SignatureHash.SHA384: hashes.SHA384(),
            SignatureHash.SHA512: hashes.SHA512(),
            SignatureHash.SHA1: hashes.SHA1(),  # noqa: S303 - weak on purpose
            SignatureHash.MD5: hashes.MD5(),  # noqa: S303 - weak on purpose
        }[self]

    @property
    def is_weak(self) -> bool:
        """True for hashes ``cryptography`` refuses to sign certificates with."""
        return self in (SignatureHash.SHA1, SignatureHash.MD5)


# Hashes ``CertificateBuilder.sign`` accepts directly.
_STRONG_HASHES: dict[SignatureHash, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    SignatureHash.SHA256: hashes.SHA256(),
    SignatureHash.SHA384: hashes.SHA384(),
    SignatureHash.SHA512: hashes.SHA512(),
}

# asn1crypto names of the signature algorithms only reachable by re-signing.
_WEAK_SIGNATURE_ALGORITHMS = {
    ("rsa", SignatureHash.SHA1): "sha1_rsa",
    ("rsa", SignatureHash.MD5): "md5_rsa",
    ("ec", SignatureHash.SHA1): "sha1_ecdsa",
}

_EKU_NAMES = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCert:
    """A certificate, its private key and its issuers (nearest first, root last)."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]

    def __repr__(self) -> str:
        return _describe(type(self).__name__, self.certificate)

    @property
    def full_chain(self) -> tuple[x509.Certificate, ...]:
        """The certificate followed by its issuers, root last."""
        return (self.certificate, *self.chain)

    def cert_pem(self) -> bytes:
        """The certificate alone, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def cert_der(self) -> bytes:
        """The certificate alone, DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def chain_pem(self) -> bytes:
        """The issuers (not the certificate itself), nearest first, PEM."""
        return pem_certificates(self.chain)

    def full_chain_pem(self) -> bytes:
        """The certificate then its issuers, PEM: what a TLS server presents."""
        return pem_certificates(self.full_chain)

    def key_pem(self, password: str | bytes | None = None, *, traditional: bool = False) -> bytes:
        """The private key as PEM: PKCS#8 (``traditional`` gives PKCS#1 / SEC1).

        With a password ``cryptography`` encrypts with AES-256-CBC (PBES2 for PKCS#8,
        a ``DEK-Info`` header for the traditional formats).
        """
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL
            if traditional
            else serialization.PrivateFormat.PKCS8,
            _encryption(password),
        )

    def key_der(self) -> bytes:
        """The private key as unencrypted PKCS#8 DER."""
        return self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pkcs12(
        self,
        password: str | bytes | None,
        *,
        legacy: bool = False,
        include_chain: bool = True,
        iterations: int | None = None,
        friendly_name: bytes | None = b"certward-test",
    ) -> bytes:
        """A PKCS12 file with the key, the certificate and (by default) the chain.

        Modern: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for both bags, HMAC-SHA256 MAC.
        ``legacy``: pbeWithSHAAnd3-KeyTripleDES-CBC for both bags, HMAC-SHA1 MAC, which
        is what old Java and Windows read. ``password=None`` writes plain bags
        (``cryptography`` still adds a SHA-256 MAC keyed with the empty password).
        ``iterations`` sets both the KDF and the MAC count (``cryptography`` default if
        ``None``).
        """
        if password is None:
            encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
        else:
            builder = serialization.PrivateFormat.PKCS12.encryption_builder()
            if iterations is not None:
                builder = builder.kdf_rounds(iterations)
            if legacy:
                builder = builder.key_cert_algorithm(
                    pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC
                ).hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy format is SHA-1
            else:
                builder = builder.key_cert_algorithm(
                    pkcs12.PBES.PBESv2SHA256AndAES256CBC
                ).hmac_hash(hashes.SHA256())
            encryption = builder.build(_as_bytes(password))
        return pkcs12.serialize_key_and_certificates(
            friendly_name,
            self.private_key,
            self.certificate,
            list(self.chain) if include_chain else None,
            encryption,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TestCA:
    """A certificate authority that issues intermediates and leaves."""

    __test__ = False  # not a pytest test class, despite the name

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()
    """Issuers of this CA, nearest first; empty for a root."""

    def __repr__(self) -> str:
        return _describe(type(self).__name__, self.certificate)

    @classmethod
    def root(
        cls,
        *,
        key_type: KeyType | str = KeyType.EC_P256,
        name: str | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
        hash: SignatureHash | str | None = None,
        path_length: int | None = None,
    ) -> TestCA:
        """A self-signed root CA."""
        key = KeyType(key_type).generate()
        subject = _name(name or f"certward test root CA {secrets.token_hex(3)}")
        builder = (
            _base_builder(subject, key, not_before, not_after)
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_key_usage(key, key_cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
        )
        return cls(certificate=_sign(builder, key, hash), private_key=key)

    def intermediate(
        self,
        *,
        key_type: KeyType | str = KeyType.EC_P256,
        name: str | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
        hash: SignatureHash | str | None = None,
        path_length: int | None = None,
        permitted_dns: Sequence[str] = (),
        excluded_dns: Sequence[str] = (),
        key_cert_sign: bool = True,
    ) -> TestCA:
        """A CA signed by this one; ``permitted_dns``/``excluded_dns`` add name constraints."""
        key = KeyType(key_type).generate()
        builder = (
            _base_builder(
                _name(name or f"certward test intermediate CA {secrets.token_hex(3)}"),
                key,
                not_before,
                not_after,
            )
            .issuer_name(self.certificate.subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_key_usage(key, key_cert_sign=key_cert_sign), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        if permitted_dns or excluded_dns:
            builder = builder.add_extension(
                x509.NameConstraints(
                    permitted_subtrees=[x509.DNSName(n) for n in permitted_dns] or None,
                    excluded_subtrees=[x509.DNSName(n) for n in excluded_dns] or None,
                ),
                critical=True,
            )
        return TestCA(
            certificate=_sign(builder, self.private_key, hash),
            private_key=key,
            chain=(self.certificate, *self.chain),
        )

    def issue_leaf(
        self,
        common_name: str = "app.example.test",
        *,
        sans: Iterable[str | x509.GeneralName] | None = None,
        eku: Sequence[str] | None = ("serverAuth",),
        key_type: KeyType | str = KeyType.EC_P256,
        private_key: PrivateKey | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
        is_ca: bool = False,
        key_cert_sign: bool | None = None,
        no_san: bool = False,
        hash: SignatureHash | str | None = None,
    ) -> IssuedCert:
        """An end-entity certificate signed by this CA.

        ``sans``: strings are IP addresses when they parse as one, DNS names otherwise;
        ``x509.GeneralName`` objects pass through. Default: ``[common_name]``.
        ``eku``: names like ``"serverAuth"``, ``"clientAuth"``; ``None`` omits the
        extension. ``is_ca``/``key_cert_sign`` make a CA certificate posing as a leaf
        (``key_cert_sign`` defaults to ``is_ca``). ``private_key`` reuses a key (renewals).
        """
        key = private_key if private_key is not None else KeyType(key_type).generate()
        sign_bit = is_ca if key_cert_sign is None else key_cert_sign
        builder = (
            _base_builder(_name(common_name), key, not_before, not_after)
            .issuer_name(self.certificate.subject)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(_key_usage(key, key_cert_sign=sign_bit), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        if not no_san:
            names = [common_name] if sans is None else list(sans)
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        if eku is not None:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([_eku(purpose) for purpose in eku]), critical=False
            )
        return IssuedCert(
            certificate=_sign(builder, self.private_key, hash),
            private_key=key,
            chain=(self.certificate, *self.chain),
        )

    def recertified(
        self,
        issuer: TestCA,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> TestCA:
        """This CA's name and key certified again by ``issuer``: a renewal (``issuer`` is
        this CA's own issuer), a cross-signature, or a second self-signed copy of a root
        (``issuer`` is the root itself). A path length or name constraints are not
        carried over; validity is this certificate's unless given.
        """
        original = self.certificate
        builder = (
            x509.CertificateBuilder()
            .subject_name(original.subject)
            .issuer_name(issuer.certificate.subject)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or original.not_valid_before_utc)
            .not_valid_after(not_after or original.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(issuer._authority_key_identifier(), critical=False)
        )
        for extension in original.extensions:
            kept = (x509.KeyUsage, x509.SubjectKeyIdentifier, x509.ExtendedKeyUsage)
            if isinstance(extension.value, kept):
                builder = builder.add_extension(extension.value, extension.critical)
        return TestCA(
            certificate=_sign(builder, issuer.private_key, None),
            private_key=self.private_key,
            chain=(issuer.certificate, *issuer.chain),
        )

    def cert_pem(self) -> bytes:
        """This CA's certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def pem_certificates(certificates: Iterable[x509.Certificate]) -> bytes:
    """Certificates concatenated as PEM, in the order given."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def java_truststore(certificates: Iterable[x509.Certificate], password: str | bytes) -> bytes:
    """A PKCS12 truststore Java reads as trusted-cert entries (no keys).

    Built with ``serialize_java_truststore``, which marks each certificate bag with
    Oracle's trusted-key-usage attribute; AES-256/PBKDF2 encryption, SHA-256 MAC.
    """
    entries = [
        pkcs12.PKCS12Certificate(cert, f"trusted-{index}".encode())
        for index, cert in enumerate(certificates)
    ]
    return pkcs12.serialize_java_truststore(
        entries, serialization.BestAvailableEncryption(_as_bytes(password))
    )


def _describe(kind: str, certificate: x509.Certificate) -> str:
    digest = certificate.fingerprint(hashes.SHA256()).hex()[:16]
    return f"{kind}(subject={certificate.subject.rfc4514_string()!r}, sha256={digest}…)"


def _as_bytes(password: str | bytes) -> bytes:
    return password.encode() if isinstance(password, str) else password


def _encryption(password: str | bytes | None) -> serialization.KeySerializationEncryption:
    if password is None:
        return serialization.NoEncryption()
    return serialization.BestAvailableEncryption(_as_bytes(password))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _require_aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {moment}")
    return moment


def _base_builder(
    subject: x509.Name, key: PrivateKey, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_require_aware(not_before, "not_before"))
        .not_valid_after(_require_aware(not_after, "not_after"))
    )


def _key_usage(key: PrivateKey, *, key_cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey) and not key_cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str | x509.GeneralName) -> x509.GeneralName:
    if isinstance(name, x509.GeneralName):
        return name
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _eku(purpose: str) -> x509.ObjectIdentifier:
    try:
        return _EKU_NAMES[purpose]
    except KeyError:
        raise ValueError(
            f"unknown extended key usage {purpose!r}; known: {', '.join(_EKU_NAMES)}"
        ) from None


def _sign(
    builder: x509.CertificateBuilder, issuer_key: PrivateKey, hash_name: SignatureHash | str | None
) -> x509.Certificate:
    eddsa = isinstance(issuer_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    if eddsa:
        if hash_name is not None:
            raise ValueError(f"an EdDSA issuer signs without a separate hash, got {hash_name!r}")
        return builder.sign(issuer_key, None)
    chosen = SignatureHash(hash_name or SignatureHash.SHA256)
    if chosen in _STRONG_HASHES:
        return builder.sign(issuer_key, _STRONG_HASHES[chosen])
    return _resign_weak(builder.sign(issuer_key, hashes.SHA256()), issuer_key, chosen)


def _resign_weak(
    certificate: x509.Certificate, issuer_key: PrivateKey, chosen: SignatureHash
) -> x509.Certificate:
    """Swap the signature algorithm for SHA-1/MD5 and sign the TBSCertificate again."""
    family = "rsa" if isinstance(issuer_key, rsa.RSAPrivateKey) else "ec"
    algorithm_name = _WEAK_SIGNATURE_ALGORITHMS.get((family, chosen))
    if algorithm_name is None:
        raise ValueError(f"no signature algorithm for {family.upper()} with {chosen.value}")
    algorithm = asn1_algos.SignedDigestAlgorithm(
        {
            "algorithm": algorithm_name,
            # RSA PKCS#1 v1.5 identifiers carry an explicit NULL; ECDSA ones carry nothing.
            "parameters": asn1_core.Null() if family == "rsa" else None,
        }
    )
    parsed = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["signature"] = algorithm
    tbs_der = tbs.dump(force=True)
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        signature = issuer_key.sign(tbs_der, padding.PKCS1v15(), chosen.algorithm())
    else:
        assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
        signature = issuer_key.sign(tbs_der, ec.ECDSA(chosen.algorithm()))
    rebuilt = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": algorithm,
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(rebuilt.dump())
