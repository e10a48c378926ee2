"""The built-in platform CA: a root, issuing intermediates, server certificates and CRLs.

Pure: every function takes the time it works at (``at``) and returns values; keys are
ECDSA P-256, signatures ECDSA with SHA-256. The profiles follow the CA/Browser Forum
TLS Baseline Requirements, so a browser-grade linter (pkilint, in the tests) finds no
error in what is issued:

- **root**: self-signed; ``basicConstraints`` CA (critical), ``keyUsage`` keyCertSign
  and cRLSign (critical), subject and authority key identifiers;
- **intermediate** (issuing CA): as a root plus a path length of 0, the serverAuth
  EKU, the DV policy, and where its issuer's certificate and CRL are published;
- **cross-certificate** (a bridge from an old root to a new one): the new root's
  subject, key and subject key identifier, issued and signed by the old root, within
  the old root's validity; otherwise an intermediate's profile without a path length
  (the new root's own intermediates are below it). A relying party that trusts only
  the old root reaches it through this certificate; one that trusts the new root stops
  at that root and never needs it;
- **server certificate**: the hostname as its only SAN (and as common name when it
  fits in 64 characters; otherwise the subject is empty and the SAN critical),
  ``keyUsage`` digitalSignature (critical), the serverAuth EKU, ``basicConstraints``
  CA:FALSE, the DV policy, the authority key identifier, caIssuers and CRL URLs, a
  random 159-bit serial, and a ``notBefore`` backdated by `BACKDATE` (a tenth of
  the lifetime at most) for clocks that run slow. Its validity period (RFC 5280
  counts both ends) is exactly the lifetime asked for, or shorter when the issuer
  expires first.

The URLs written into certificates (`IssuerLocations`) are for relying parties;
certward never fetches them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certward.pki.names import is_dns_name

ROOT_LIFETIME = timedelta(days=10 * 365)
INTERMEDIATE_LIFETIME = timedelta(days=5 * 365)
BACKDATE = timedelta(minutes=5)
CRL_LIFETIME = timedelta(days=7)
MAX_COMMON_NAME_LENGTH = 64  # ub-common-name (RFC 5280)

DOMAIN_VALIDATED_POLICY = x509.ObjectIdentifier("2.23.140.1.2.1")  # CA/B Forum DV

_ONE_SECOND = timedelta(seconds=1)
_EMPTY_NAME = x509.Name([])
_NO_USAGE = dict.fromkeys(
    (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ),
    False,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerLocations:
    """Where relying parties find an issuer's certificate and its CRL (``http://`` URLs)."""

    certificate_url: str
    crl_url: str

    def __post_init__(self) -> None:
        for url in (self.certificate_url, self.crl_url):
            if not url.startswith("http://"):
                raise ValueError(f"issuer locations are plain http:// URLs, not {url!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Authority:
    """A CA certificate with its private key (the key never shows in ``repr``)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerCertificate:
    """An issued server certificate, its private key and the chain above it (no root)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def create_root(
    *,
    at: datetime,
    common_name: str,
    lifetime: timedelta = ROOT_LIFETIME,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Authority:
    """A self-signed root CA named ``common_name``, valid from (about) ``at``."""
    key = key or generate_key()
    name = _name(common_name)
    not_before = at - BACKDATE
    builder = (
        _builder(name, name, key.public_key(), not_before, not_before + lifetime - _ONE_SECOND)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    return Authority(certificate=builder.sign(key, hashes.SHA256()), private_key=key)


def create_intermediate(
    parent: Authority,
    *,
    at: datetime,
    common_name: str,
    parent_locations: IssuerLocations,
    lifetime: timedelta = INTERMEDIATE_LIFETIME,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Authority:
    """An issuing CA under ``parent`` (path length 0, serverAuth only), within its validity."""
    key = key or generate_key()
    not_before, not_after = _validity(parent, at, lifetime)
    builder = (
        _builder(
            _name(common_name),
            parent.certificate.subject,
            key.public_key(),
            not_before,
            not_after,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(parent), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_policies(), critical=False)
        .add_extension(_authority_information_access(parent_locations), critical=False)
        .add_extension(_crl_distribution_points(parent_locations), critical=False)
    )
    return Authority(certificate=builder.sign(parent.private_key, hashes.SHA256()), private_key=key)


def cross_certify(
    issuer: Authority,
    subject: x509.Certificate,
    *,
    at: datetime,
    issuer_locations: IssuerLocations,
) -> x509.Certificate:
    """The CA certificate ``subject`` (a root) issued again by ``issuer`` (an older root):
    same subject, key and subject key identifier, valid from (about) ``at`` to the end of
    ``subject`` or of ``issuer``, whichever comes first.

    `ValueError` when ``subject`` is not a CA certificate or ``issuer`` has expired by ``at``.
    """
    constraints = subject.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise ValueError(f"{subject.subject.rfc4514_string()} is not a CA certificate")
    # The subject's own lifetime, then cut at the subject's end (and, by `_validity`, at
    # the issuer's).
    lifetime = subject.not_valid_after_utc - subject.not_valid_before_utc + _ONE_SECOND
    not_before, not_after = _validity(issuer, at, lifetime)
    not_after = min(not_after, subject.not_valid_after_utc)
    if not_after <= at:
        raise ValueError(f"{subject.subject.rfc4514_string()} expires at {not_after.isoformat()}")
    public_key = subject.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("the platform CA cross-certifies only its own ECDSA roots")
    ski = subject.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(subject.subject, issuer.certificate.subject, public_key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(_authority_key_identifier(issuer), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_policies(), critical=False)
        .add_extension(_authority_information_access(issuer_locations), critical=False)
        .add_extension(_crl_distribution_points(issuer_locations), critical=False)
    )
    return builder.sign(issuer.private_key, hashes.SHA256())


class ServerCertificateIssuer:
    """Issues server certificates under one issuing CA, for as many hostnames as asked.

    Every certificate of one issuer shares its issuer name and all its extensions but
    the SAN; they are built and DER-encoded once, here, instead of once per certificate.
    A renewal batch then does per certificate only what differs — key, subject, SAN,
    serial, dates — and the signature: about a quarter less time per certificate than
    building each from scratch (`benchmarks/bench_issuance.py`), for the same bytes.
    """

    __slots__ = ("_bounds", "_issuer", "_issuer_name", "_shared", "chain")

    def __init__(
        self,
        issuer: Authority,
        issuer_locations: IssuerLocations,
        *,
        chain: Sequence[x509.Certificate] | None = None,
    ) -> None:
        self._issuer = issuer
        self.chain: tuple[x509.Certificate, ...] = (
            tuple(chain) if chain is not None else (issuer.certificate,)
        )
        shared: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.KeyUsage(**{**_NO_USAGE, "digital_signature": True}), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (_authority_key_identifier(issuer), False),
            (_policies(), False),
            (_authority_information_access(issuer_locations), False),
            (_crl_distribution_points(issuer_locations), False),
        ]
        # Kept already encoded: the signer copies their bytes instead of walking the objects.
        self._shared = [
            x509.Extension(
                extension.oid,
                critical,
                x509.UnrecognizedExtension(extension.oid, extension.public_bytes()),
            )
            for extension, critical in shared
        ]
        self._issuer_name = issuer.certificate.subject
        self._bounds = (issuer.certificate.not_valid_before_utc, issuer.not_after)

    @property
    def issuer(self) -> Authority:
        return self._issuer

    def issue(
        self,
        hostname: str,
        *,
        at: datetime,
        lifetime: timedelta,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> ServerCertificate:
        """A TLS server certificate for ``hostname`` (an A-label DNS name), valid from ``at``.

        `ValueError` when the hostname is not a DNS name or the issuer has expired by ``at``.
        """
        _check_hostname(hostname)
        key = key or generate_key()
        not_before, not_after = _validity(self._issuer, at, lifetime, bounds=self._bounds)
        fits = len(hostname) <= MAX_COMMON_NAME_LENGTH
        san = x509.SubjectAlternativeName([x509.DNSName(hostname)])
        # Built in one call from parts already known to be valid: the builder's setters
        # would only check again, per certificate, what was checked once (types, duplicate
        # extensions) and convert the times to naive UTC, as done here.
        builder = x509.CertificateBuilder(
            issuer_name=self._issuer_name,
            subject_name=_name(hostname) if fits else _EMPTY_NAME,
            public_key=key.public_key(),
            serial_number=x509.random_serial_number(),
            not_valid_before=not_before.astimezone(UTC).replace(tzinfo=None),
            not_valid_after=not_after.astimezone(UTC).replace(tzinfo=None),
            extensions=[*self._shared, x509.Extension(san.oid, not fits, san)],
        )
        return ServerCertificate(
            certificate=builder.sign(self._issuer.private_key, hashes.SHA256()),
            private_key=key,
            chain=self.chain,
        )


def issue_server_certificate(
    issuer: Authority,
    hostname: str,
    *,
    at: datetime,
    lifetime: timedelta,
    issuer_locations: IssuerLocations,
    chain: Sequence[x509.Certificate] | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> ServerCertificate:
    """One TLS server certificate for ``hostname``, valid from ``at`` (see
    `ServerCertificateIssuer`, which issues many under one issuer).

    ``chain`` is what is served above it (default: the issuer's certificate).
    `ValueError` when the hostname is not a DNS name or the issuer has expired by ``at``.
    """
    return ServerCertificateIssuer(issuer, issuer_locations, chain=chain).issue(
        hostname, at=at, lifetime=lifetime, key=key
    )


def certificate_pem(der: bytes) -> str:
    """The PEM text (RFC 7468) of a DER certificate, as ``public_bytes(PEM)`` writes it.

    For callers that need the DER too (a fingerprint): encoding once and wrapping the
    base64 here costs a third of asking `cryptography` for both encodings.
    """
    encoded = base64.b64encode(der).decode("ascii")
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def sign_crl(
    issuer: Authority, *, at: datetime, lifetime: timedelta = CRL_LIFETIME
) -> x509.CertificateRevocationList:
    """The issuer's CRL as of ``at``: certward revokes nothing (its certificates are short-lived
    and replaced, not revoked), so the list is empty; its number grows with ``at``."""
    this_update = at - BACKDATE
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + lifetime)
        .add_extension(_authority_key_identifier(issuer), critical=False)
        .add_extension(x509.CRLNumber(int(at.timestamp())), critical=False)
    )
    return builder.sign(issuer.private_key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _validity(
    issuer: Authority,
    at: datetime,
    lifetime: timedelta,
    *,
    bounds: tuple[datetime, datetime] | None = None,
) -> tuple[datetime, datetime]:
    """``notBefore`` backdated, ``notAfter`` so the period (both ends counted) is the lifetime,
    both within the issuer's own validity (``bounds``, when the caller has read it already)."""
    if at.tzinfo is None:
        raise ValueError("certificate times must be tz-aware")
    if lifetime <= _ONE_SECOND:
        raise ValueError(f"a lifetime must be longer than a second, not {lifetime}")
    earliest, latest = bounds or (issuer.certificate.not_valid_before_utc, issuer.not_after)
    backdate = min(BACKDATE, lifetime / 10)  # a short lifetime is not eaten up by it
    not_before = max(at - backdate, earliest)
    not_after = min(not_before + lifetime - _ONE_SECOND, latest)
    if not_after <= at:
        raise ValueError(
            f"the issuing CA {issuer.certificate.subject.rfc4514_string()} expires at "
            f"{issuer.not_after.isoformat()}: rotate the platform CA"
        )
    return not_before, not_after


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(**{**_NO_USAGE, "key_cert_sign": True, "crl_sign": True})


def _authority_key_identifier(issuer: Authority) -> x509.AuthorityKeyIdentifier:
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _policies() -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED_POLICY, None)])


def _authority_information_access(
    locations: IssuerLocations,
) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(locations.certificate_url),
            )
        ]
    )


def _crl_distribution_points(locations: IssuerLocations) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(locations.crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def _check_hostname(hostname: str) -> None:
    if not is_dns_name(hostname, min_labels=2):
        raise ValueError(f"{hostname!r} is not a lower-case DNS name in A-label form")
