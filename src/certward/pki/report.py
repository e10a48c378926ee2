"""One call from bytes to a complete, serialisable inspection: what the CLI and API show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from certward.errors import MaterialError
from certward.pki.chains import RootStore
from certward.pki.checks import Judgement, Policy, Purpose, judge
from certward.pki.inspect import describe_certificate
from certward.pki.limits import Limits
from certward.pki.material import MaterialKind, Pkcs12Details, load_material, sniff_kind
from certward.pki.pkcs12_structure import read_pkcs12_structure
from certward.pki.problems import Problem, has_errors


@dataclass(frozen=True, slots=True, kw_only=True)
class Inspection:
    """The outcome of reading and judging one upload; ``judgement`` is None when unreadable."""

    kind: MaterialKind | None
    judgement: Judgement | None
    pkcs12: Pkcs12Details | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not has_errors(self.problems)

    def to_dict(self) -> dict[str, object]:
        judgement = self.judgement
        certificates = judgement.chain + judgement.unrelated if judgement else ()
        return {
            "kind": self.kind.value if self.kind else None,
            "certificates": [describe_certificate(c).to_dict() for c in certificates],
            "has_private_key": bool(judgement and judgement.material.private_key is not None),
            "pkcs12": self.pkcs12.to_dict() if self.pkcs12 else None,
            "problems": [p.to_dict() for p in self.problems],
        }


def inspect_material(
    data: bytes,
    *,
    at: datetime,
    password: bytes | None = None,
    purpose: Purpose | None = None,
    hostnames: Sequence[str] = (),
    limits: Limits | None = None,
    known_roots: RootStore | None = None,
    policy: Policy | None = None,
    expect_pkcs12: bool = False,
) -> Inspection:
    """Read ``data`` and judge it; never raises for bad material."""
    limits = limits or Limits()
    try:
        material = load_material(
            data, password=password, limits=limits, expect_pkcs12=expect_pkcs12
        )
    except MaterialError as exc:
        kind = sniff_kind(data)
        return Inspection(
            kind=kind,
            judgement=None,
            pkcs12=_structure_only(data, limits) if kind is MaterialKind.PKCS12 else None,
            problems=exc.problems,
        )
    judgement = judge(
        material,
        at=at,
        purpose=purpose,
        hostnames=hostnames,
        known_roots=known_roots,
        policy=policy,
    )
    return Inspection(
        kind=material.kind,
        judgement=judgement,
        pkcs12=material.pkcs12,
        problems=judgement.problems,
    )


def _structure_only(data: bytes, limits: Limits) -> Pkcs12Details | None:
    """What a PKCS12 file says about itself even when it cannot be opened."""
    if len(data) > limits.max_bytes:
        return None
    try:
        structure = read_pkcs12_structure(data, limits=limits)
    except MaterialError:
        return None
    return Pkcs12Details(
        mac_algorithm=structure.mac.algorithm if structure.mac else None,
        mac_iterations=structure.mac.iterations if structure.mac else None,
        encryption=structure.encryption,
        algorithms=structure.algorithms,
        friendly_names=(),
    )
