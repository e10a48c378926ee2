"""Judge material for a purpose, collecting every problem rather than the first.

``judge`` is pure: the validation time ``at`` and the known public roots are
parameters. It never raises for material that was read; what is wrong becomes
`Problem` values with stable codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from certward.pki.chains import (
    Chain,
    RootStore,
    VerifyAs,
    key_owner,
    names_link,
    pick_leaf,
    verify_chain,
)
from certward.pki.inspect import (
    certificate_key_info,
    dns_names,
    extension_value,
    is_self_signed,
    key_info,
    subject_alternative_names,
    subject_of,
)
from certward.pki.material import Material, MaterialKind
from certward.pki.names import HostnameError, covers, normalize_hostname
from certward.pki.paths import MAX_CANDIDATE_PATHS, MAX_PATH_LENGTH, build_chain, describe_path
from certward.pki.problems import Problem, ProblemCode, has_errors

_WEAK_HASHES = (hashes.MD5, hashes.SHA1)


class Purpose(StrEnum):
    """What the material is for; each purpose has its own rules."""

    CLIENT_CERTIFICATE = "client-certificate"
    AUTHORITY = "authority"
    CLIENT_AUTHORITY = "client-authority"
    """CAs trusted for incoming client certificates: `AUTHORITY` plus public-CA warnings."""
    TLS_CERTIFICATE = "tls-certificate"


_LEAF_PURPOSES = (Purpose.CLIENT_CERTIFICATE, Purpose.TLS_CERTIFICATE)
_PASSED_OVER_NAMED = 5
_CLIENT_AUTH_SUNSET = (
    "Public TLS CAs stopped issuing certificates with the clientAuth extended key usage "
    "in 2026 (the Chrome Root Program phases clientAuth out of the public TLS "
    "hierarchies by June 2026), so such certificates cannot be renewed for client "
    "authentication: mTLS identities should come from a private CA."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Thresholds of the checks."""

    expires_soon: timedelta = timedelta(days=30)
    min_rsa_bits: int = 2048
    min_ec_bits: int = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """The verdict on material: the leaf, the ordered chain, and every problem found.

    ``chain`` is what is served: for a client or TLS certificate the leaf and the
    intermediates of the chosen path (an uploaded root is left out), for a general
    inspection the whole path up to its root; for an authority upload each hierarchy
    is listed from its lowest CA upwards. ``unrelated`` holds the uploaded
    certificates left out of ``chain``: on no path from the leaf, on a path passed
    over, or the root of the chosen path.
    """

    purpose: Purpose | None
    material: Material = field(repr=False)
    leaf: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]
    problems: tuple[Problem, ...]
    unrelated: tuple[x509.Certificate, ...] = ()

    @property
    def ok(self) -> bool:
        return not has_errors(self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)


def judge(
    material: Material,
    *,
    at: datetime,
    purpose: Purpose | None = None,
    hostnames: Sequence[str] = (),
    known_roots: RootStore | None = None,
    policy: Policy | None = None,
) -> Judgement:
    """Check ``material`` for ``purpose`` (or only generally when None) at time ``at``."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    judge_ = _Judge(at=at, policy=policy or Policy(), known_roots=known_roots or RootStore())
    judge_.problems.extend(material.problems)
    unrelated: tuple[x509.Certificate, ...] = ()
    if purpose in (Purpose.AUTHORITY, Purpose.CLIENT_AUTHORITY):
        leaf, chain = (
            None,
            judge_.authority(material, for_clients=purpose is Purpose.CLIENT_AUTHORITY),
        )
    else:
        leaf, chain, unrelated = judge_.leaf_and_chain(material, purpose, hostnames)
    return Judgement(
        purpose=purpose,
        material=material,
        leaf=leaf,
        chain=chain,
        problems=tuple(_unique(judge_.problems)),
        unrelated=unrelated,
    )


class _Judge:
    def __init__(self, *, at: datetime, policy: Policy, known_roots: RootStore) -> None:
        self.at = at
        self.policy = policy
        self.known_roots = known_roots
        self.problems: list[Problem] = []

    # -- leaf purposes -----------------------------------------------------------------

    def leaf_and_chain(
        self, material: Material, purpose: Purpose | None, hostnames: Sequence[str]
    ) -> tuple[x509.Certificate | None, tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]:
        needs_key = purpose in (Purpose.CLIENT_CERTIFICATE, Purpose.TLS_CERTIFICATE)
        if not material.certificates:
            self.error(ProblemCode.NO_CERTIFICATE, "The upload holds no certificate.")
            return None, (), ()
        if needs_key and material.private_key is None:
            what = "client" if purpose is Purpose.CLIENT_CERTIFICATE else "TLS"
            self.error(
                ProblemCode.NO_PRIVATE_KEY,
                f"The upload holds no private key, and a {what} certificate cannot work "
                "without one: "
                + (
                    "export the PKCS12 file again with its private key included."
                    if material.kind is MaterialKind.PKCS12
                    else "upload the key file as well."
                ),
            )
        owner = None
        if material.private_key is not None:
            owner = key_owner(material.certificates, material.private_key)
            self.key_problems(material.private_key, owner, material.certificates)
        leaf = owner or pick_leaf(material.certificates)
        if leaf is None:
            return None, (), ()
        chain = build_chain(
            leaf,
            material.certificates,
            known_roots=self.known_roots,
            at=self.at,
            verify_as=VerifyAs.SERVER if purpose is Purpose.TLS_CERTIFICATE else VerifyAs.CLIENT,
            order_matters=material.kind is not MaterialKind.PKCS12,
        )
        for certificate in chain.certificates:
            self.certificate_problems(certificate)
        self.chain_problems(chain, purpose)
        self.passed_over_problems(chain)
        if purpose is Purpose.CLIENT_CERTIFICATE:
            self.client_problems(chain)
        elif purpose is Purpose.TLS_CERTIFICATE:
            self.tls_problems(chain, hostnames)
        served = chain.certificates
        if purpose in _LEAF_PURPOSES and len(served) > 1 and is_self_signed(served[-1]):
            served = served[:-1]
            root = subject_of(chain.certificates[-1])
            self.warning(
                ProblemCode.ROOT_NOT_SERVED,
                f"The upload includes the root CA {root}; certward leaves it out of the "
                "chain it sends: the other side must already trust that root, so sending "
                "it only adds bytes to every handshake (RFC 8446 lets the root be omitted).",
                certificate=root,
            )
        left_out = tuple(c for c in material.certificates if c not in served)
        return leaf, served, left_out

    def key_problems(
        self,
        private_key: PrivateKeyTypes,
        owner: x509.Certificate | None,
        certificates: Sequence[x509.Certificate],
    ) -> None:
        if owner is None:
            subjects = "; ".join(subject_of(c) for c in certificates)
            self.error(
                ProblemCode.KEY_MISMATCH,
                f"The private key does not belong to any certificate in the upload ({subjects}).",
            )
        info = key_info(private_key)
        weakness = self.key_weakness(info.key_type, info.key_size)
        if weakness:
            self.error(ProblemCode.WEAK_KEY, f"The private key is {weakness}.")

    def chain_problems(self, chain: Chain, purpose: Purpose | None) -> None:
        leaf = chain.leaf
        claimed = self.known_roots.claimed_by(chain.certificates[-1])
        if chain.missing_issuer is not None and claimed:
            top = subject_of(chain.certificates[-1])
            message = (
                f"{top} names the known root {subject_of(claimed[0])} as its issuer (by "
                "name and key identifier), but that root's key did not sign it: the "
                "certificate was altered or forged."
            )
            if purpose is Purpose.TLS_CERTIFICATE:
                self.error(ProblemCode.CHAIN_INVALID, message, certificate=top)
            else:
                self.warning(ProblemCode.CHAIN_INVALID, message, certificate=top)
        elif chain.missing_issuer is not None:
            missing = chain.missing_issuer.rfc4514_string()
            if len(chain.certificates) == 1:
                self.leaf_issuer_missing(leaf, missing, purpose)
            elif purpose is Purpose.TLS_CERTIFICATE and len(self.known_roots):
                self.warning(
                    ProblemCode.CHAIN_INCOMPLETE,
                    f"The chain ends at {subject_of(chain.certificates[-1])}, whose root "
                    f"({missing}) is not a known public root: only clients that trust that "
                    "root will accept it.",
                    certificate=subject_of(chain.certificates[-1]),
                )
        if chain.reordered:
            self.warning(
                ProblemCode.CHAIN_UNORDERED,
                "The certificates were not in leaf-to-root order; certward put them in order.",
            )
        for stray in chain.unrelated:
            self.warning(
                ProblemCode.UNRELATED_CERTIFICATE,
                f"{subject_of(stray)} is not part of the leaf's chain and is left out.",
                certificate=subject_of(stray),
            )

    def passed_over_problems(self, chain: Chain) -> None:
        if not chain.passed_over and chain.explored_all:
            return
        named = [
            f"{describe_path(p.certificates, p.anchor)}: {p.reason}"
            for p in chain.passed_over[:_PASSED_OVER_NAMED]
        ]
        more = len(chain.passed_over) - len(named)
        message = (
            f"certward chose the path {describe_path(chain.certificates, chain.anchor)}, as "
            "clients do; "
            f"{len(chain.passed_over)} other candidate path(s) were passed over"
            + (": " + "; ".join(named) if named else "")
            + (f"; and {more} more" if more > 0 else "")
            + "."
        )
        if not chain.explored_all:
            message += (
                f" The search stopped at {MAX_CANDIDATE_PATHS} candidate paths of at most "
                f"{MAX_PATH_LENGTH} certificates: the upload holds more alternative issuers "
                "than any real chain needs."
            )
        self.warning(ProblemCode.PATH_PASSED_OVER, message, certificate=subject_of(chain.leaf))

    def public_client_auth_problems(self, chain: Chain, what: str) -> None:
        """A warning when ``chain`` ends at a public web root (the known roots)."""
        top = chain.certificates[-1]
        root = chain.anchor or (top if self.known_roots.holds(top) else None)
        if root is None:
            return
        self.warning(
            ProblemCode.PUBLIC_CA_CLIENT_AUTH,
            f"{what} chains to the public web root {subject_of(root)}. {_CLIENT_AUTH_SUNSET}",
            certificate=subject_of(chain.leaf),
        )

    def leaf_issuer_missing(
        self, leaf: x509.Certificate, missing: str, purpose: Purpose | None
    ) -> None:
        if purpose is Purpose.TLS_CERTIFICATE:
            self.error(
                ProblemCode.CHAIN_INCOMPLETE,
                f"The intermediate certificate that issued this certificate ({missing}) is "
                "missing. Browsers may fill the gap from their cache, but curl, Java and "
                "partner systems will refuse the connection: add the intermediate (your CA "
                "publishes it) to the chain.",
                certificate=subject_of(leaf),
            )
        else:
            self.warning(
                ProblemCode.CHAIN_INCOMPLETE,
                f"The issuer of this certificate ({missing}) is not in the upload. That is "
                "fine if the other side trusts that issuer directly; otherwise add the "
                "intermediate certificate to the upload.",
                certificate=subject_of(leaf),
            )

    def client_problems(self, chain: Chain) -> None:
        leaf = chain.leaf
        self.public_client_auth_problems(chain, f"The client certificate {subject_of(leaf)}")
        if _is_ca(leaf):
            self.warning(
                ProblemCode.CA_AS_LEAF,
                "The client certificate is itself a CA certificate; partners usually expect "
                "an end-entity certificate.",
                certificate=subject_of(leaf),
            )
        usages = _ekus(leaf)
        if usages is None:
            self.warning(
                ProblemCode.MISSING_CLIENT_AUTH,
                "The certificate does not state that it is meant for client authentication "
                "(no extended key usage); most servers accept that, strict ones do not.",
                certificate=subject_of(leaf),
            )
        elif not usages & {
            ExtendedKeyUsageOID.CLIENT_AUTH,
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        }:
            self.warning(
                ProblemCode.MISSING_CLIENT_AUTH,
                "The certificate's extended key usage does not include client authentication "
                "(clientAuth); servers that check it will refuse the certificate.",
                certificate=subject_of(leaf),
            )
        if not self.has_validity_errors():
            reason = verify_chain(chain, at=self.at, verify_as=VerifyAs.CLIENT, check_usage=False)
            if reason:
                self.warning(
                    ProblemCode.CHAIN_INVALID,
                    f"Strict verification of the chain failed: {reason}.",
                    certificate=subject_of(leaf),
                )

    def tls_problems(self, chain: Chain, hostnames: Sequence[str]) -> None:
        leaf = chain.leaf
        name = subject_of(leaf)
        if _is_ca(leaf):
            self.error(
                ProblemCode.CA_AS_LEAF,
                "The certificate is a CA certificate; a TLS server needs an end-entity "
                "certificate.",
                certificate=name,
            )
        usages = _ekus(leaf)
        if usages is not None and not usages & {
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        }:
            self.error(
                ProblemCode.MISSING_SERVER_AUTH,
                "The certificate's extended key usage does not include server authentication "
                "(serverAuth); browsers will refuse it.",
                certificate=name,
            )
        normalized: list[str] = []
        for hostname in hostnames:
            try:
                host = normalize_hostname(hostname)
            except HostnameError as exc:
                self.error(ProblemCode.NAME_NOT_COVERED, f"{exc}.")
                continue
            normalized.append(host)
            if not covers(leaf, host):
                sans = ", ".join(subject_alternative_names(leaf)) or "none"
                self.error(
                    ProblemCode.NAME_NOT_COVERED,
                    f"The certificate does not cover {host}: its subject alternative names "
                    f"are {sans} (the common name is not used for matching).",
                    certificate=name,
                )
        if not dns_names(leaf) and not normalized:
            self.warning(
                ProblemCode.NAME_NOT_COVERED,
                "The certificate has no DNS names in its subject alternative names; "
                "browsers will not accept it for any host.",
                certificate=name,
            )
        if not self.has_validity_errors():
            first = normalized[0] if normalized else None
            reason = verify_chain(chain, at=self.at, verify_as=VerifyAs.SERVER, hostname=first)
            if reason:
                self.error(
                    ProblemCode.CHAIN_INVALID,
                    f"Verification of the chain failed: {reason}.",
                    certificate=name,
                )

    # -- authority -----------------------------------------------------------------------

    def authority(self, material: Material, *, for_clients: bool) -> tuple[x509.Certificate, ...]:
        if not material.certificates:
            self.error(ProblemCode.NO_CERTIFICATE, "The upload holds no certificate.")
            return ()
        if material.private_key is not None:
            self.warning(
                ProblemCode.UNRELATED_CERTIFICATE,
                "The upload also holds a private key; a certificate authority upload needs "
                "only certificates, so the key is ignored and never stored.",
            )
        for certificate in material.certificates:
            self.certificate_problems(certificate)
            self.ca_problems(certificate)
        ordered: list[x509.Certificate] = []
        for lowest in _lowest_first(material.certificates):
            if lowest in ordered:
                continue
            chain = build_chain(
                lowest,
                material.certificates,
                known_roots=self.known_roots,
                at=self.at,
                order_matters=False,
            )
            if for_clients:
                self.public_client_auth_problems(chain, f"The client CA {subject_of(lowest)}")
            ordered.extend(c for c in chain.certificates if c not in ordered)
        return tuple(ordered)

    def ca_problems(self, certificate: x509.Certificate) -> None:
        name = subject_of(certificate)
        if not _is_ca(certificate):
            self.error(
                ProblemCode.NOT_A_CA,
                f"{name} is an end-entity certificate, not a certificate authority; upload "
                "the CA certificate that issued it instead.",
                certificate=name,
            )
            return
        usage = extension_value(certificate, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            self.error(
                ProblemCode.NOT_A_CA,
                f"{name} says it is a CA, but its key usage does not allow signing "
                "certificates (keyCertSign), so nothing it issued can be trusted.",
                certificate=name,
            )

    # -- every certificate ---------------------------------------------------------------

    def certificate_problems(self, certificate: x509.Certificate) -> None:
        not_before = certificate.not_valid_before_utc
        not_after = certificate.not_valid_after_utc
        if self.at > not_after:
            name = subject_of(certificate)
            self.error(
                ProblemCode.EXPIRED,
                f"{name} expired on {not_after:%Y-%m-%d %H:%M} UTC.",
                certificate=name,
            )
        elif self.at < not_before:
            name = subject_of(certificate)
            self.error(
                ProblemCode.NOT_YET_VALID,
                f"{name} is not valid before {not_before:%Y-%m-%d %H:%M} UTC.",
                certificate=name,
            )
        elif not_after - self.at < self.policy.expires_soon:
            name = subject_of(certificate)
            days = (not_after - self.at).days
            self.warning(
                ProblemCode.EXPIRES_SOON,
                f"{name} expires on {not_after:%Y-%m-%d} ({days} days from now).",
                certificate=name,
            )
        info = certificate_key_info(certificate)
        if info.key_type == "unsupported":
            name = subject_of(certificate)
            self.error(
                ProblemCode.WEAK_KEY,
                f"The public key of {name} cannot be used: it uses explicit or unnamed curve "
                "parameters, or an unknown algorithm.",
                certificate=name,
            )
        else:
            weakness = self.key_weakness(info.key_type, info.key_size)
            if weakness:
                name = subject_of(certificate)
                self.error(
                    ProblemCode.WEAK_KEY, f"The key of {name} is {weakness}.", certificate=name
                )
        if not is_self_signed(certificate):
            self.signature_problems(certificate)

    def signature_problems(self, certificate: x509.Certificate) -> None:
        try:
            algorithm = certificate.signature_hash_algorithm
        except UnsupportedAlgorithm:
            name = subject_of(certificate)
            self.error(
                ProblemCode.UNSUPPORTED_ALGORITHM,
                f"{name} is signed with an algorithm certward does not know "
                f"({certificate.signature_algorithm_oid.dotted_string}).",
                certificate=name,
            )
            return
        if isinstance(algorithm, _WEAK_HASHES):
            name = subject_of(certificate)
            self.error(
                ProblemCode.WEAK_SIGNATURE,
                f"{name} is signed with {algorithm.name.upper()}, which is broken for "
                "signatures; ask the CA to reissue it with SHA-256.",
                certificate=name,
            )

    def key_weakness(self, key_type: str, key_size: int | None) -> str | None:
        if key_type == "rsa" and (key_size or 0) < self.policy.min_rsa_bits:
            return f"RSA with {key_size} bits, below the minimum of {self.policy.min_rsa_bits}"
        if key_type == "ec" and (key_size or 0) < self.policy.min_ec_bits:
            return f"on a {key_size}-bit curve, below the minimum of {self.policy.min_ec_bits}"
        if key_type == "dsa":
            return "DSA, which TLS no longer supports"
        return None

    # -- helpers -------------------------------------------------------------------------

    def has_validity_errors(self) -> bool:
        codes = {ProblemCode.EXPIRED, ProblemCode.NOT_YET_VALID, ProblemCode.WEAK_KEY}
        return any(p.code in codes and p.is_error for p in self.problems)

    def error(self, code: ProblemCode, message: str, *, certificate: str | None = None) -> None:
        self.problems.append(Problem.error(code, message, certificate=certificate))

    def warning(self, code: ProblemCode, message: str, *, certificate: str | None = None) -> None:
        self.problems.append(Problem.warning(code, message, certificate=certificate))


def _is_ca(certificate: x509.Certificate) -> bool:
    constraints = extension_value(certificate, x509.BasicConstraints)
    return bool(constraints and constraints.ca)


def _ekus(certificate: x509.Certificate) -> set[x509.ObjectIdentifier] | None:
    usage = extension_value(certificate, x509.ExtendedKeyUsage)
    return None if usage is None else set(usage)


def _lowest_first(certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """CAs that issued none of the others first, then the rest, self-signed roots last."""

    def issues_another(parent: x509.Certificate) -> bool:
        return any(
            c is not parent and not is_self_signed(c) and names_link(c, parent)
            for c in certificates
        )

    return sorted(certificates, key=lambda c: (issues_another(c), is_self_signed(c)))


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
