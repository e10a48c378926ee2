"""Turning uploaded bytes into judged material, or a 422 that says exactly why not.

Every upload is read and judged in a worker process of `certward.material_workers`,
within its CPU and wall budget, never on the thread serving the request: a hostile
file costs its budget in another process and is refused with ``too-expensive``; a
full pool answers 503 ``busy``. ``app`` names the tenant the job counts against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certward.errors import InvalidRequest, MaterialError
from certward.material_workers import Examination, Examined
from certward.pki.checks import Judgement, Purpose
from certward.pki.material import Material
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
    app: str,
    password: bytes | None,
    purpose: Purpose,
    hostnames: Sequence[str] = (),
) -> Judgement:
    """Load every upload, combine them, judge for ``purpose``; 422 on any error problem."""
    _, judgement = examine_uploads(
        ctx, uploads, app=app, password=password, purpose=purpose, hostnames=hostnames
    )
    return require_sound(judgement)


def examine_uploads(
    ctx: Context,
    uploads: Sequence[Upload],
    *,
    app: str,
    password: bytes | None,
    purpose: Purpose,
    hostnames: Sequence[str] = (),
    key: PrivateKeyTypes | None = None,
) -> tuple[Material, Judgement]:
    """The material read from ``uploads`` and its judgement, not yet checked (see
    `require_sound`); 422 if any upload is unreadable. ``key`` is judged in place of
    the uploads' own key (a CSR's kept key)."""
    examined = _examine(ctx, uploads, app=app, password=password, purpose=purpose,
                        hostnames=hostnames, key=key)  # fmt: skip
    if examined.judgement is None:
        raise RuntimeError("the worker did not judge")
    return examined.material, examined.judgement


def load_uploads(
    ctx: Context, uploads: Sequence[Upload], *, app: str, password: bytes | None
) -> Material:
    """Read every upload and combine them into one `Material`; 422 if any is unreadable."""
    return _examine(ctx, uploads, app=app, password=password).material


def require_sound(judgement: Judgement) -> Judgement:
    """``judgement`` itself, or 422 with its first error and every problem."""
    if not judgement.ok:
        first = judgement.errors[0]
        raise InvalidRequest(first.message, code=first.code, problems=judgement.problems)
    return judgement


def _examine(
    ctx: Context,
    uploads: Sequence[Upload],
    *,
    app: str,
    password: bytes | None,
    purpose: Purpose | None = None,
    hostnames: Sequence[str] = (),
    key: PrivateKeyTypes | None = None,
) -> Examined:
    expect_pkcs12 = len(uploads) == 1 and uploads[0].filename.lower().endswith(_PKCS12_SUFFIXES)
    examination = Examination(
        files=tuple(u.data for u in uploads),
        password=password,
        limits=ctx.limits,
        expect_pkcs12=expect_pkcs12,
        judged=purpose is not None,
        purpose=purpose,
        hostnames=tuple(hostnames),
        at=ctx.clock.now(),
    )
    try:
        return ctx.material_workers.examine(examination, tenant=app, key=key)
    except MaterialError as exc:
        raise InvalidRequest(
            exc.problems[0].message, code=exc.problems[0].code, problems=exc.problems
        ) from exc
