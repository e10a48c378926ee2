"""Certificate revocation lists signed by test CAs (cryptography's builder)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.material.factory import NOW, TestCA


def make_crl(
    ca: TestCA,
    revoked: Iterable[int] = (),
    *,
    this_update: datetime = NOW - timedelta(hours=1),
    next_update: datetime = NOW + timedelta(days=7),
    signer: TestCA | None = None,
    pem: bool = True,
) -> bytes:
    """A CRL of ``ca`` revoking the ``revoked`` serial numbers (signed by ``signer``'s key,
    ``ca``'s unless said), PEM or DER."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .build()
        )
    key = (signer or ca).private_key
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)
