"""pkilint, the PKI linter, called from Python: findings per certificate.

``serverauth_findings`` lints against the CA/Browser Forum TLS Baseline Requirements
(the profile a browser's root program applies: for a leaf, the DV subscriber profile),
with pkilint's own filters for findings the Baseline Requirements supersede, as
``lint_cabf_serverauth_cert lint -t <type>`` does. ``pkix_findings`` lints against RFC
5280 alone (``lint_pkix_cert``). Both judge the validity period from the certificate's
own ``notBefore`` (pkilint's default), never from the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkilint import finding_filter, loader
from pkilint.cabf import serverauth
from pkilint.cabf.serverauth.serverauth_constants import CertificateType
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

__all__ = [
    "CertificateType",
    "Finding",
    "detected_type",
    "errors",
    "pkix_findings",
    "serverauth_findings",
]


@dataclass(frozen=True, slots=True)
class Finding:
    """One pkilint finding: ``ERROR``, ``WARNING``, ``NOTICE`` or ``INFO`` and its code."""

    severity: str
    code: str
    message: str | None = None


def _document(cert: x509.Certificate) -> certificate.RFC5280Certificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    return loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")


def detected_type(cert: x509.Certificate) -> CertificateType:
    """The certificate type pkilint's ``--detect`` would choose."""
    return serverauth.determine_certificate_type(_document(cert))


def serverauth_findings(cert: x509.Certificate, kind: CertificateType) -> list[Finding]:
    """Findings of the CA/B Forum TLS BR profile ``kind`` (e.g. ``DV_FINAL_CERTIFICATE``)."""
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )
    results = validator.validate(_document(cert).root)
    results, _ = finding_filter.filter_results(
        serverauth.create_serverauth_finding_filters(kind), results
    )
    return _findings(results)


def pkix_findings(cert: x509.Certificate) -> list[Finding]:
    """Findings of RFC 5280 alone."""
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    return _findings(validator.validate(_document(cert).root))


def errors(findings: list[Finding]) -> list[Finding]:
    """The findings of severity ``ERROR`` (or worse)."""
    return [f for f in findings if ValidationFindingSeverity[f.severity].value <= 1]


def _findings(results: list[Any]) -> list[Finding]:
    return [
        Finding(str(d.finding.severity), d.finding.code, d.message)
        for result in results
        for d in result.finding_descriptions
    ]
