"""Turning uploaded bytes into judged material, or a 422 that says exactly why not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from certward.errors import InvalidRequest, MaterialError
from certward.pki.checks import Judgement, Purpose, judge
from certward.pki.material import Material, combine, load_material
from certward.services.context import Context

_PKCS12_SUFFIXES = (".p12", ".pfx")


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    """One uploaded file; ``data`` never appears in ``repr``."""

    filename: str
    data: bytes = field(repr=False)


def judge_uploads(
    ctx: Context,
    uploads: Sequence[Upload],
    *,
    password: bytes | None,
    purpose: Purpose,
    hostnames: Sequence[str] = (),
) -> Judgement:
    """Load every upload, combine them, judge for ``purpose``; 422 on any error problem."""
    material = load_uploads(ctx, uploads, password=password)
    return judge_material(ctx, material, purpose=purpose, hostnames=hostnames)


def load_uploads(ctx: Context, uploads: Sequence[Upload], *, password: bytes | None) -> Material:
    """Read every upload and combine them into one `Material`; 422 if any is unreadable."""
    limits = ctx.limits
    expect_pkcs12 = len(uploads) == 1 and uploads[0].filename.lower().endswith(_PKCS12_SUFFIXES)
    try:
        return combine(
            [
                load_material(u.data, password=password, limits=limits, expect_pkcs12=expect_pkcs12)
                for u in uploads
            ]
        )
    except MaterialError as exc:
        raise InvalidRequest(exc.problems[0].message, code=exc.code, problems=exc.problems) from exc


def judge_material(
    ctx: Context, material: Material, *, purpose: Purpose, hostnames: Sequence[str] = ()
) -> Judgement:
    """Judge ``material`` for ``purpose`` at the context's clock; 422 on any error problem."""
    judgement = judge(
        material,
        at=ctx.clock.now(),
        purpose=purpose,
        hostnames=hostnames,
        known_roots=ctx.known_roots,
    )
    if not judgement.ok:
        first = judgement.errors[0]
        raise InvalidRequest(first.message, code=first.code.value, problems=judgement.problems)
    return judgement
