"""Build every candidate path from a leaf and choose the one a client would use.

Browsers, OpenSSL and Go do not follow one issuer per name: when an upload carries an
expired and a re-issued intermediate with the same name, or a cross-signed copy of a
CA next to its self-signed root, each issuer whose name, key identifier and signature
match is a branch, and the client keeps the path that verifies. `build_chain` does
the same over the uploaded certificates and the known roots, then ranks the
candidates (see `_rank`):

1. a path that verifies (validity of every issuer at ``at``, then
   ``cryptography.x509.verification``: signatures, CA flags, path lengths, key usage,
   name constraints) before one that does not;
2. a path anchored at a known root before one that is not;
3. a path that reaches a self-signed root before one that stops short;
4. fewer certificates before more;
5. the later expiry (of the path's earliest-expiring certificate) before the earlier;
6. upload order, so that the choice is stable.

The candidates not chosen are kept in `Chain.passed_over` with the reason. Cost is
bounded: at most `MAX_CANDIDATE_PATHS` candidate paths of at most `MAX_PATH_LENGTH`
certificates are explored, each signature is checked once, and a certificate whose
subject and key already sit on the path is never added again (so ``A -> B -> A``
cross-signatures end).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from certward.pki.chains import (
    Chain,
    PassedOver,
    RootStore,
    VerifyAs,
    names_link,
    verify_chain,
)
from certward.pki.inspect import is_self_signed, subject_of

MAX_CANDIDATE_PATHS = 64
"""Candidate paths explored per leaf; a crafted upload of same-name CAs stops here."""

MAX_PATH_LENGTH = 10
"""Certificates on one path, the leaf and an anchor included."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Candidate:
    chain: Chain
    defect: str | None
    anchored: bool
    order: int

    @property
    def at_root(self) -> bool:
        return self.chain.ends_at_root

    @property
    def expiry(self) -> datetime:
        path = (*self.chain.certificates, *((self.chain.anchor,) if self.chain.anchor else ()))
        return min(_not_after(c) for c in path)


class _Memo:
    """Which certificate signed which, and who each one is, each worked out once."""

    def __init__(self) -> None:
        self._signed: dict[tuple[int, int], bool] = {}
        self._identities: dict[int, tuple[bytes, bytes]] = {}

    def issued(self, child: x509.Certificate, parent: x509.Certificate) -> bool:
        key = (id(child), id(parent))
        if key not in self._signed:
            self._signed[key] = names_link(child, parent) and _signature_holds(child, parent)
        return self._signed[key]

    def identity(self, certificate: x509.Certificate) -> tuple[bytes, bytes]:
        if id(certificate) not in self._identities:
            self._identities[id(certificate)] = _identity(certificate)
        return self._identities[id(certificate)]


def build_chain(
    leaf: x509.Certificate,
    certificates: Sequence[x509.Certificate],
    *,
    known_roots: RootStore,
    at: datetime,
    verify_as: VerifyAs = VerifyAs.CLIENT,
    order_matters: bool = True,
) -> Chain:
    """The best path from ``leaf`` through ``certificates`` and the known roots."""
    pool = _distinct(c for c in certificates if c is not leaf and c != leaf)
    candidates, complete = _candidate_paths(leaf, pool, known_roots)
    best = candidates[0]
    passed_over: tuple[PassedOver, ...] = ()
    if len(candidates) > 1:
        judged = [
            _Candidate(
                chain=chain,
                defect=_defect(chain, at=at, verify_as=verify_as),
                anchored=chain.anchor is not None or known_roots.holds(chain.certificates[-1]),
                order=n,
            )
            for n, chain in enumerate(candidates)
        ]
        ordered = sorted(judged, key=_rank)
        best = ordered[0].chain
        passed_over = tuple(
            PassedOver(
                certificates=other.chain.certificates,
                anchor=other.chain.anchor,
                reason=_why_not(other, ordered[0]),
            )
            for other in ordered[1:]
            if other.chain.certificates != best.certificates  # only another known root
        )
    on_some_path = {id(c) for chain in candidates for c in chain.certificates}
    if not complete:  # an issuer the capped search never reached is not unrelated
        on_some_path |= {id(c) for c in pool if any(names_link(x, c) for x in (leaf, *pool))}
    given = [c for c in certificates if c in best.certificates]
    return replace(
        best,
        unrelated=tuple(c for c in pool if id(c) not in on_some_path),
        reordered=order_matters and given != list(best.certificates),
        passed_over=passed_over,
        explored_all=complete,
    )


def _rank(candidate: _Candidate) -> tuple[bool, bool, bool, int, float, int]:
    """Sort key: the path a client would choose sorts first (see the module docstring)."""
    return (
        candidate.defect is not None,
        not candidate.anchored,
        not candidate.at_root,
        len(candidate.chain.certificates),
        -candidate.expiry.timestamp(),
        candidate.order,
    )


def _candidate_paths(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], known_roots: RootStore
) -> tuple[list[Chain], bool]:
    """Every path from ``leaf`` (depth first, upload order), and whether all were explored."""
    memo = _Memo()
    found: list[Chain] = []
    complete = True

    def explore(path: list[x509.Certificate]) -> None:
        nonlocal complete
        if len(found) >= MAX_CANDIDATE_PATHS:
            complete = False
            return
        top = path[-1]
        if is_self_signed(top):
            found.append(_chain(path, anchor=None, missing=None))
            return
        on_path = {memo.identity(c) for c in path}
        parents = [c for c in pool if memo.identity(c) not in on_path and memo.issued(top, c)]
        anchors = [
            a
            for a in known_roots.claimed_by(top)
            if a not in parents and memo.identity(a) not in on_path and memo.issued(top, a)
        ]
        if len(path) + 1 > MAX_PATH_LENGTH:
            complete = complete and not parents
            parents = []
        for anchor in anchors:
            found.append(_chain(path, anchor=anchor, missing=None))
        for parent in parents:
            explore([*path, parent])
        if not parents and not anchors:
            found.append(_chain(path, anchor=None, missing=top.issuer))

    explore([leaf])
    return found[:MAX_CANDIDATE_PATHS], complete


def _chain(
    path: Sequence[x509.Certificate], *, anchor: x509.Certificate | None, missing: x509.Name | None
) -> Chain:
    return Chain(
        certificates=tuple(path),
        anchor=anchor,
        missing_issuer=missing,
        unrelated=(),
        reordered=False,
    )


def _defect(chain: Chain, *, at: datetime, verify_as: VerifyAs) -> str | None:
    """Why a client would refuse this path (its first reason), or None."""
    issuers = (*chain.certificates[1:], *((chain.anchor,) if chain.anchor else ()))
    for certificate in issuers:
        role = "root" if is_self_signed(certificate) else "intermediate"
        if at > certificate.not_valid_after_utc:
            return (
                f"an expired {role} {subject_of(certificate)} "
                f"(expired on {certificate.not_valid_after_utc:%Y-%m-%d})"
            )
        if at < certificate.not_valid_before_utc:
            return (
                f"a not yet valid {role} {subject_of(certificate)} "
                f"(valid from {certificate.not_valid_before_utc:%Y-%m-%d})"
            )
    reason = verify_chain(chain, at=at, verify_as=verify_as, check_usage=False)
    return None if reason is None else f"verification failed ({reason})"


def _why_not(other: _Candidate, best: _Candidate) -> str:
    """The first rule of `rank` that put ``best`` before ``other``, in words."""
    if other.defect is not None and best.defect is None:
        return f"{other.defect}, where the chosen path verifies"
    if other.defect is not None:
        return other.defect
    if best.anchored and not other.anchored:
        return "it does not end at a known root"
    if best.at_root and not other.at_root:
        return "it does not reach a root"
    if len(other.chain.certificates) > len(best.chain.certificates):
        return "it is longer"
    if other.expiry < best.expiry:
        return f"it expires sooner ({other.expiry:%Y-%m-%d})"
    return "an equally good path came first in the upload"


def describe_path(certificates: Sequence[x509.Certificate], anchor: x509.Certificate | None) -> str:
    """``CN=leaf -> CN=intermediate -> CN=root (known root)``."""
    names = [subject_of(c) for c in certificates]
    if anchor is not None:
        names.append(f"{subject_of(anchor)} (known root)")
    return " -> ".join(names)


def _not_after(certificate: x509.Certificate) -> datetime:
    moment: datetime = certificate.not_valid_after_utc
    return moment


def _signature_holds(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent``'s key signed ``child``; a signature that cannot be checked
    here (an algorithm pyca cannot verify) is left to the path's verification."""
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True
    return True


def _identity(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """Subject and key: a CA re-certified (cross-signed, renewed) is the same CA."""
    try:
        key = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, UnsupportedAlgorithm):
        key = certificate.tbs_certificate_bytes
    return certificate.subject.public_bytes(), key


def _distinct(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for certificate in certificates:
        if certificate not in out:
            out.append(certificate)
    return out
