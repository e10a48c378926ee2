"""Certificate signing requests (PKCS#10) for TLS certificates whose key certward keeps.

Pure: `generate_key` returns a fresh key, `build_csr` a request signed with it. The
names are host names, IP addresses or wildcards (``*.example.com``), checked by
`normalize_san` with the rules `certward.pki.names` matches by.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certward.pki.names import HostnameError, is_ip, normalize_hostname

MAX_COMMON_NAME_LENGTH = 64  # ub-common-name (RFC 5280)


class CsrKeyType(StrEnum):
    """The keys certward generates for a CSR."""

    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"


def generate_key(key_type: CsrKeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A fresh private key of ``key_type``."""
    if key_type is CsrKeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    bits = 2048 if key_type is CsrKeyType.RSA_2048 else 3072
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def normalize_san(name: str) -> str:
    """A host name or IP address as `normalize_hostname` gives it, or a wildcard
    ``*.<name with at least two labels>``; raises `HostnameError`."""
    text = name.strip().lower()
    if not text.startswith("*."):
        return normalize_hostname(text)
    suffix = normalize_hostname(text[2:])
    if is_ip(suffix) or "." not in suffix:
        raise HostnameError(
            f"{name!r} is not a valid wildcard: it must stand above a name of at least "
            "two labels, such as *.example.com"
        )
    return f"*.{suffix}"


def build_csr(
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    common_name: str,
    sans: Sequence[str],
) -> x509.CertificateSigningRequest:
    """A CSR for ``common_name`` with ``sans`` (already normalized), signed with SHA-256."""
    if not 1 <= len(common_name) <= MAX_COMMON_NAME_LENGTH:
        raise ValueError(f"a common name has 1 to {MAX_COMMON_NAME_LENGTH} characters")
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(n)) if is_ip(n) else x509.DNSName(n) for n in sans
    ]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(private_key, hashes.SHA256())


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    """The request as PEM text."""
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
