"""Path-building cases in the spirit of x509-limbo, generated with the test factory.

Each `Case` is an upload, the purpose it is judged for, the known roots, and what a
strict client decides (``expected``): accept or reject. `decision` is what certward
decides. Cases cover alternative issuers (expired, not yet valid, constrained),
cross-signed CAs, cross-signature loops, validity, basic constraints, key usage, name
constraints and the extended key usage of client certificates; `pkits_cases` adds the
NIST PKITS path tests of the installed ``cryptography_vectors`` package (signatures,
validity, name chaining, basic constraints, key usage).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.pki.chains import RootStore
from certward.pki.checks import Judgement, Purpose, judge
from certward.pki.material import Material, MaterialKind
from certward.pki.problems import ProblemCode
from tests.material.factory import NOW, IssuedCert, TestCA

ACCEPT, REJECT = True, False

# Warnings that say a strict peer will refuse the certificate.
STRICT_REFUSALS = frozenset(
    {ProblemCode.CHAIN_INVALID, ProblemCode.CHAIN_INCOMPLETE, ProblemCode.MISSING_CLIENT_AUTH}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One upload and the verdict a strict client gives it."""

    name: str
    material: Material = field(repr=False)
    purpose: Purpose
    expected: bool
    known_roots: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    hostnames: tuple[str, ...] = ()
    at: datetime = NOW
    ignored: frozenset[ProblemCode] = frozenset()

    def judge(self) -> Judgement:
        return judge(
            self.material,
            at=self.at,
            purpose=self.purpose,
            hostnames=self.hostnames,
            known_roots=RootStore(self.known_roots),
        )


def decision(case: Case, judgement: Judgement) -> bool:
    """Accepted: no error and none of the warnings a strict peer refuses on."""
    refusals = STRICT_REFUSALS - case.ignored
    return judgement.ok and not any(p.code in refusals for p in judgement.problems)


def upload(leaf: IssuedCert, *others: x509.Certificate) -> Material:
    """The leaf, its key and ``others`` in the order given."""
    return Material(
        kind=MaterialKind.PEM,
        certificates=(leaf.certificate, *others),
        private_key=leaf.private_key,
    )


def generated_cases() -> list[Case]:
    """Every generated case; fresh keys each call."""
    past = {"not_before": NOW - timedelta(days=800), "not_after": NOW - timedelta(days=2)}
    future = {"not_before": NOW + timedelta(days=2), "not_after": NOW + timedelta(days=800)}
    tls = Purpose.TLS_CERTIFICATE
    client = Purpose.CLIENT_CERTIFICATE
    host = ("shop.example.com",)
    cases: list[Case] = []

    def add(
        name: str,
        material: Material,
        expected: bool,
        *,
        purpose: Purpose = tls,
        hostnames: tuple[str, ...] | None = None,
        known_roots: tuple[x509.Certificate, ...] = (),
    ) -> None:
        if hostnames is None:
            hostnames = host if purpose is tls else ()
        cases.append(
            Case(
                name=name,
                material=material,
                purpose=purpose,
                expected=expected,
                hostnames=hostnames,
                known_roots=known_roots,
            )
        )

    root = TestCA.root(name="limbo root")
    issuing = root.intermediate(name="limbo issuing CA")
    leaf = issuing.issue_leaf("shop.example.com", not_before=NOW - timedelta(days=1))
    expired_copy = issuing.recertified(root, **past)
    future_copy = issuing.recertified(root, **future)

    # -- path building: alternative issuers ------------------------------------------
    add("valid intermediate alone", upload(leaf, issuing.certificate), ACCEPT)
    add("expired intermediate alone", upload(leaf, expired_copy.certificate), REJECT)
    add(
        "expired then valid intermediate of one name",
        upload(leaf, expired_copy.certificate, issuing.certificate, root.certificate),
        ACCEPT,
    )
    add(
        "valid then expired intermediate of one name",
        upload(leaf, issuing.certificate, expired_copy.certificate),
        ACCEPT,
    )
    add(
        "not yet valid then valid intermediate",
        upload(leaf, future_copy.certificate, issuing.certificate),
        ACCEPT,
    )
    add("not yet valid intermediate alone", upload(leaf, future_copy.certificate), REJECT)
    add(
        "expired alternates only, with the root",
        upload(leaf, expired_copy.certificate, root.certificate),
        REJECT,
    )
    impostor = root.intermediate(name="limbo issuing CA")
    add("same-name impostor alone", upload(leaf, impostor.certificate), REJECT)
    add(
        "same-name impostor and the real issuer",
        upload(leaf, impostor.certificate, issuing.certificate),
        ACCEPT,
    )
    expired_root = root.recertified(root, **past)
    add(
        "expired and valid copies of the root",
        upload(leaf, issuing.certificate, expired_root.certificate, root.certificate),
        ACCEPT,
    )
    add(
        "expired root only",
        upload(leaf, issuing.certificate, expired_root.certificate),
        REJECT,
    )

    # -- cross-signed CAs -----------------------------------------------------------
    old_root = TestCA.root(name="limbo old root")
    new_root = TestCA.root(name="limbo new root")
    cross = new_root.recertified(old_root)
    under_new = new_root.intermediate(name="limbo cross issuing CA")
    cross_leaf = under_new.issue_leaf("shop.example.com")
    add(
        "cross-signed to a known old root, new root unknown",
        upload(cross_leaf, under_new.certificate, new_root.certificate, cross.certificate),
        ACCEPT,
        known_roots=(old_root.certificate,),
    )
    add(
        "cross-signed copy uploaded, new root known",
        upload(cross_leaf, under_new.certificate, cross.certificate),
        ACCEPT,
        known_roots=(new_root.certificate,),
    )
    expired_cross = new_root.recertified(old_root, **past)
    add(
        "expired cross-signature and a known new root",
        upload(cross_leaf, under_new.certificate, expired_cross.certificate),
        ACCEPT,
        known_roots=(new_root.certificate, old_root.certificate),
    )
    add(
        "only an expired cross-signature to the known root",
        upload(cross_leaf, under_new.certificate, expired_cross.certificate),
        REJECT,
        known_roots=(old_root.certificate,),
    )

    # -- loops ------------------------------------------------------------------------
    a = TestCA.root(name="limbo loop A")
    b = TestCA.root(name="limbo loop B")
    a_by_b, b_by_a = a.recertified(b), b.recertified(a)
    loop_leaf = a.issue_leaf("shop.example.com")
    add(
        "A signed by B and B signed by A",
        upload(loop_leaf, a_by_b.certificate, b_by_a.certificate),
        ACCEPT,
    )
    add(
        "a loop beside a known root",
        upload(loop_leaf, a_by_b.certificate, b_by_a.certificate),
        ACCEPT,
        known_roots=(a.certificate,),
    )
    add(
        "a loop of expired cross-signatures only",
        upload(loop_leaf, a.recertified(b, **past).certificate, b_by_a.certificate),
        REJECT,
    )

    # -- validity of the leaf ---------------------------------------------------------
    old_leaf = issuing.issue_leaf(
        "shop.example.com", not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(days=1)
    )
    add("expired leaf", upload(old_leaf, issuing.certificate), REJECT)
    early_leaf = issuing.issue_leaf("shop.example.com", not_before=NOW + timedelta(days=1))
    add("not yet valid leaf", upload(early_leaf, issuing.certificate), REJECT)

    # -- basic constraints and key usage ---------------------------------------------
    pretender = issuing.issue_leaf("not-a-ca.example.com")
    as_ca = TestCA(
        certificate=pretender.certificate,
        private_key=pretender.private_key,
        chain=pretender.chain,
    )
    under_leaf = as_ca.issue_leaf("shop.example.com")
    add(
        "issued by an end-entity certificate",
        upload(under_leaf, pretender.certificate, issuing.certificate),
        REJECT,
    )
    tight = root.intermediate(name="limbo pathlen 0", path_length=0)
    below = tight.intermediate(name="limbo below pathlen 0")
    add(
        "pathLen 0 exceeded",
        upload(below.issue_leaf("shop.example.com"), below.certificate, tight.certificate),
        REJECT,
    )
    loose = tight.recertified(root)
    add(
        "pathLen 0 exceeded, an unconstrained copy present",
        upload(
            below.issue_leaf("shop.example.com"),
            below.certificate,
            tight.certificate,
            loose.certificate,
        ),
        ACCEPT,
    )
    no_sign = root.intermediate(name="limbo no keyCertSign", key_cert_sign=False)
    add(
        "issuer without keyCertSign",
        upload(no_sign.issue_leaf("shop.example.com"), no_sign.certificate),
        REJECT,
    )

    # -- name constraints -------------------------------------------------------------
    permitted = root.intermediate(name="limbo permitted", permitted_dns=["example.com"])
    add(
        "inside permitted subtree",
        upload(permitted.issue_leaf("shop.example.com"), permitted.certificate),
        ACCEPT,
    )
    add(
        "outside permitted subtree",
        upload(permitted.issue_leaf("evil.test"), permitted.certificate),
        REJECT,
        hostnames=("evil.test",),
    )
    excluded = root.intermediate(name="limbo excluded", excluded_dns=["shop.example.com"])
    add(
        "inside excluded subtree",
        upload(excluded.issue_leaf("shop.example.com"), excluded.certificate),
        REJECT,
    )
    freed = excluded.recertified(root)
    add(
        "excluded subtree, an unconstrained copy present",
        upload(excluded.issue_leaf("shop.example.com"), excluded.certificate, freed.certificate),
        ACCEPT,
    )

    # -- client certificates: extended key usage --------------------------------------
    add(
        "client certificate with clientAuth",
        upload(issuing.issue_leaf("partner", eku=["clientAuth"]), issuing.certificate),
        ACCEPT,
        purpose=client,
    )
    add(
        "client certificate with serverAuth only",
        upload(issuing.issue_leaf("partner", eku=["serverAuth"]), issuing.certificate),
        REJECT,
        purpose=client,
    )
    add(
        "client certificate with clientAuth, expired alternate issuer",
        upload(
            issuing.issue_leaf("partner", eku=["clientAuth"]),
            expired_copy.certificate,
            issuing.certificate,
        ),
        ACCEPT,
        purpose=client,
    )
    add(
        "client certificate under an issuer without keyCertSign",
        upload(no_sign.issue_leaf("partner", eku=["clientAuth"]), no_sign.certificate),
        REJECT,
        purpose=client,
    )
    add(
        "TLS certificate with clientAuth only",
        upload(issuing.issue_leaf("shop.example.com", eku=["clientAuth"]), issuing.certificate),
        REJECT,
    )
    return cases


def hostile_upload(levels: int = 4, width: int = 5) -> Material:
    """``levels`` tiers of ``width`` CAs of one name and key each: width**levels paths."""
    top = TestCA.root(name="limbo hostile root")
    tiers: list[list[TestCA]] = []
    parent = top
    for level in range(levels):
        first = parent.intermediate(name=f"limbo hostile tier {level}")
        tier = [first] + [first.recertified(parent) for _ in range(width - 1)]
        tiers.append(tier)
        parent = first
    leaf = parent.issue_leaf("shop.example.com")
    return upload(leaf, *(ca.certificate for tier in reversed(tiers) for ca in tier))


# -- PKITS ----------------------------------------------------------------------------

PKITS_SECTIONS = (
    "Signature",  # 4.1
    "Date",  # 4.2
    "NameChaining",  # 4.3
    "NameUIDs",
    "RFC3280",
    "UTF8String",
    "Rollover",
    "basicConstraints",  # 4.6
    "cAFalse",
    "pathLenConstraint",
    "keyUsage",  # 4.7
)
PKITS_AT = datetime(2026, 11, 26, tzinfo=UTC)


def pkits_directory() -> Path | None:
    """``x509/PKITS_data`` of the installed ``cryptography_vectors``, if there is one."""
    spec = importlib.util.find_spec("cryptography_vectors")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "x509" / "PKITS_data"
    return path if (path / "certs").is_dir() and (path / "pkcs12").is_dir() else None


def pkits_cases(directory: Path) -> Iterator[Case]:
    """The PKITS tests of `PKITS_SECTIONS` (revocation and policy tests left out).

    Each end-entity is uploaded from its PKCS12 file (the key is needed) with every
    PKITS CA certificate that may lie on its path, matched by name; the trust anchor
    is the one known root. The EEs carry no extended key usage (PKITS predates that
    expectation), so ``missing-client-auth`` is not a refusal here.
    """
    certs = directory / "certs"
    anchor = _der(certs / "TrustAnchorRootCertificate.crt")
    assert anchor is not None
    authorities = [
        certificate
        for path in sorted(certs.glob("*.crt"))
        if not path.name.endswith("EE.crt") and path.name != "TrustAnchorRootCertificate.crt"
        if (certificate := _der(path)) is not None
    ]
    for path in sorted(certs.glob("*Test*EE.crt")):
        name = path.name.removesuffix(".crt")
        if not any(s in name for s in PKITS_SECTIONS) or "CRL" in name or "cRL" in name:
            continue
        bundle = directory / "pkcs12" / f"{name}.p12"
        if not bundle.exists():
            continue
        try:
            loaded = pkcs12.load_pkcs12(bundle.read_bytes(), b"password")
        except ValueError:
            continue  # DSA parameters inherited from the issuer: pyca cannot read it
        if loaded.cert is None or loaded.key is None:
            continue
        leaf = loaded.cert.certificate
        yield Case(
            name=f"PKITS {name}",
            material=Material(
                kind=MaterialKind.PEM,
                certificates=(leaf, *_possible_issuers(leaf, authorities)),
                private_key=loaded.key,
            ),
            purpose=Purpose.CLIENT_CERTIFICATE,
            expected=name.startswith("Valid"),
            known_roots=(anchor,),
            at=PKITS_AT,
            ignored=frozenset({ProblemCode.MISSING_CLIENT_AUTH}),
        )


def _possible_issuers(
    leaf: x509.Certificate, authorities: Sequence[x509.Certificate], limit: int = 19
) -> list[x509.Certificate]:
    """CAs reachable upwards from ``leaf`` by (loosely compared) issuer name."""
    found: list[x509.Certificate] = []
    wanted = [_loose(leaf.issuer)]
    while wanted and len(found) < limit:
        name = wanted.pop()
        for ca in authorities:
            if _loose(ca.subject) == name and ca not in found and len(found) < limit:
                found.append(ca)
                if ca.issuer != ca.subject:
                    wanted.append(_loose(ca.issuer))
    return found


def _loose(name: x509.Name) -> str:
    return " ".join(name.rfc4514_string().lower().split())


def _der(path: Path) -> x509.Certificate | None:
    """The certificate at ``path``; None for the few pyca cannot read (inherited DSA)."""
    try:
        return x509.load_der_x509_certificate(path.read_bytes())
    except ValueError:
        return None
