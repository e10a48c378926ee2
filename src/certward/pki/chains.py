"""Chains, trust anchors, which certificate issued which, and verifying one path.

Building the path (every candidate, the best one chosen) is `certward.pki.paths`;
the trust decision itself is left to ``cryptography.x509.verification``. Nothing here
fetches a URL found inside a certificate (AIA, CRL, OCSP): a missing intermediate is
explained, never downloaded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certward.pki.inspect import extension_value, is_self_signed
from certward.pki.names import is_ip


class VerifyAs(StrEnum):
    """The role the leaf plays in the TLS handshake being checked."""

    SERVER = "server"
    CLIENT = "client"


class RootStore:
    """Trust anchors looked up by subject, e.g. the public web roots (pure value)."""

    __slots__ = ("_by_subject",)

    def __init__(self, roots: Iterable[x509.Certificate] = ()) -> None:
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for root in roots:
            self._by_subject.setdefault(root.subject.public_bytes(), []).append(root)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_subject.values())

    def anchors(self) -> tuple[x509.Certificate, ...]:
        """Every anchor, in no particular order."""
        return tuple(c for group in self._by_subject.values() for c in group)

    def claimed_by(self, certificate: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """The anchors ``certificate`` names as its issuer, by name and key identifier,
        whether or not they signed it."""
        candidates = self._by_subject.get(certificate.issuer.public_bytes(), [])
        return tuple(c for c in candidates if names_link(certificate, c))

    def holds(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` is itself one of the anchors."""
        return certificate in self._by_subject.get(certificate.subject.public_bytes(), [])


@dataclass(frozen=True, slots=True, kw_only=True)
class PassedOver:
    """A candidate path from the leaf that was not chosen, and why (one phrase)."""

    certificates: tuple[x509.Certificate, ...]
    anchor: x509.Certificate | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """The leaf and its issuers in order, as far as the material reaches.

    ``anchor`` is a known root outside the upload that issued the last certificate;
    ``missing_issuer`` names the issuer nobody has when the path stops short;
    ``unrelated`` are uploaded certificates that belong to no path from the leaf;
    ``passed_over`` the other candidate paths, best first; ``explored_all`` is False
    when the cap on candidate paths stopped the search.
    """

    certificates: tuple[x509.Certificate, ...]
    anchor: x509.Certificate | None
    missing_issuer: x509.Name | None
    unrelated: tuple[x509.Certificate, ...]
    reordered: bool
    passed_over: tuple[PassedOver, ...] = ()
    explored_all: bool = True

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def ends_at_root(self) -> bool:
        return self.anchor is not None or is_self_signed(self.certificates[-1])


def names_link(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent`` can be ``child``'s issuer by name and key identifier (no crypto)."""
    if child.issuer != parent.subject:
        return False
    authority = extension_value(child, x509.AuthorityKeyIdentifier)
    subject_key = extension_value(parent, x509.SubjectKeyIdentifier)
    if authority is None or authority.key_identifier is None or subject_key is None:
        return True
    return authority.key_identifier == subject_key.digest


def issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent``'s key signed ``child`` and the names link."""
    if not names_link(child, parent):
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature):
        return False
    return True


def key_matches(certificate: x509.Certificate, private_key: PrivateKeyTypes) -> bool:
    """Whether ``private_key`` belongs to ``certificate``."""
    try:
        public = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    return bool(public == private_key.public_key())


def key_owner(
    certificates: Sequence[x509.Certificate], private_key: PrivateKeyTypes
) -> x509.Certificate | None:
    """The certificate ``private_key`` belongs to, if any."""
    return next((c for c in certificates if key_matches(c, private_key)), None)


def pick_leaf(
    certificates: Sequence[x509.Certificate], private_key: PrivateKeyTypes | None = None
) -> x509.Certificate | None:
    """The end-entity: the one the key belongs to, else the first that issued nothing."""
    if not certificates:
        return None
    owner = key_owner(certificates, private_key) if private_key is not None else None
    if owner is not None:
        return owner
    issuers = {
        id(parent)
        for child in certificates
        for parent in certificates
        if parent is not child and not is_self_signed(child) and names_link(child, parent)
    }
    candidates = [c for c in certificates if id(c) not in issuers]
    return candidates[0] if candidates else certificates[0]


def verify_chain(
    chain: Chain,
    *,
    at: datetime,
    verify_as: VerifyAs,
    hostname: str | None = None,
    check_usage: bool = True,
) -> str | None:
    """Run ``cryptography.x509.verification`` over ``chain``; the failure reason or None.

    The root (or, when the upload stops at an intermediate, the topmost uploaded
    certificate) is the trust anchor: this checks that the uploaded path is sound
    (signatures, CA flags, path lengths, name constraints, validity, key usages),
    not whether anybody trusts its root. ``check_usage=False`` leaves a client leaf's
    extended key usage to the caller (who reports it as its own problem).
    """
    if chain.anchor is not None:
        anchor = chain.anchor
        intermediates = list(chain.certificates[1:])
    elif len(chain.certificates) > 1:
        anchor = chain.certificates[-1]
        intermediates = list(chain.certificates[1:-1])
    else:
        return None  # a lone certificate: nothing to verify it against
    builder = (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(at)
        .max_chain_depth(max(len(chain.certificates), 2))
    )
    try:
        if verify_as is VerifyAs.SERVER:
            subject: x509.verification.Subject = (
                x509.IPAddress(ipaddress.ip_address(hostname))
                if hostname and is_ip(hostname)
                else x509.DNSName(hostname or _any_dns_name(chain.leaf))
            )
            builder.build_server_verifier(subject).verify(chain.leaf, intermediates)
        else:
            # Client certificates without a SAN are common in corporate PKI.
            ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
                x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
            )
            if not check_usage:
                ee_policy = ee_policy.may_be_present(
                    x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
                )
            builder = builder.extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
            )
            builder.build_client_verifier().verify(chain.leaf, intermediates)
    except VerificationError as exc:
        return str(exc)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"the chain cannot be checked ({exc})"
    return None


def _any_dns_name(certificate: x509.Certificate) -> str:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "invalid.invalid"
    names = [n for n in sans.get_values_for_type(x509.DNSName) if "*" not in n]
    wildcards = [
        n.replace("*", "certward-check", 1) for n in sans.get_values_for_type(x509.DNSName)
    ]
    return (names or wildcards or ["invalid.invalid"])[0]
