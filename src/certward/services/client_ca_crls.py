"""Certificate revocation lists of an access profile's client CAs.

A tenant uploads a CRL for one client CA (PEM or DER). It is read within a bounded
cost (`MAX_CRL_BYTES`, `MAX_CRL_ENTRIES`), its signature must verify with that CA's
key, its issuer must be the CA's subject, and it must be current: ``thisUpdate`` not
in the future, ``nextUpdate`` present and not passed. The CRL is stored in the CA's
row (live, like every profile edit) and both data planes refuse the certificates it
revokes. A CRL whose ``nextUpdate`` passes later is *stale*: ``CERTWARD_EXPIRED_CRL``
says whether the CA's client certificates are then refused (``refuse``, the default)
or accepted with a warning (``warn``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import InvalidRequest, NotFound, RefusalCode, TooLarge
from certward.model import AccessProfile, AccessProfileCa, App
from certward.services.access_profiles import ACCESS_PROFILES, ca_fingerprint, cas_of
from certward.services.context import Context
from certward.services.lookups import find_app
from certward.services.uploads import Upload
from certward.settings import ExpiredCrl

MAX_CRL_BYTES = 10 * 1024 * 1024  # besides CERTWARD_MAX_UPLOAD_BYTES, which caps every upload
MAX_CRL_ENTRIES = 1_000_000
_PEM_LABEL = b"-----BEGIN X509 CRL-----"
STALE_BATCH = 1000  # CRLs set aside or taken back per pass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlView:
    """What a client CA's CRL says; ``stale`` once its ``next_update`` has passed."""

    sha256_fingerprint: str  # of the client CA
    issuer: str  # RFC 4514
    this_update: datetime
    next_update: datetime
    revoked: int
    stale: bool
    set_aside: bool  # stale, and not used by the data plane (CERTWARD_EXPIRED_CRL=warn)


def read_crl(data: bytes, ca: x509.Certificate, *, now: datetime) -> x509.CertificateRevocationList:
    """The CRL in ``data`` (PEM or DER), checked against client CA ``ca``; refused (413,
    422) with a precise code otherwise. The size is checked before parsing and the
    entries are counted before the signature is verified."""
    if len(data) > MAX_CRL_BYTES:
        raise TooLarge(f"A CRL may be at most {MAX_CRL_BYTES} bytes; this one has {len(data)}.")
    try:
        if _PEM_LABEL in data[:4096]:
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise InvalidRequest(
            "The file is not a certificate revocation list (PEM or DER).",
            code=RefusalCode.INVALID_CRL,
        ) from exc
    if len(crl) > MAX_CRL_ENTRIES:
        raise InvalidRequest(
            f"The CRL lists {len(crl)} revoked certificates; at most {MAX_CRL_ENTRIES} are "
            "allowed.",
            code=RefusalCode.TOO_MANY_CRL_ENTRIES,
        )
    if crl.issuer != ca.subject:
        raise InvalidRequest(
            f"The CRL was issued by {crl.issuer.rfc4514_string()}, not by the client CA "
            f"{ca.subject.rfc4514_string()}.",
            code=RefusalCode.CRL_ISSUER_MISMATCH,
        )
    try:
        signed = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        signed = False
    if not signed:
        raise InvalidRequest(
            f"The CRL's signature does not verify with the key of {ca.subject.rfc4514_string()}.",
            code=RefusalCode.CRL_SIGNATURE_INVALID,
        )
    if crl.last_update_utc > now:
        raise InvalidRequest(
            f"The CRL's thisUpdate ({crl.last_update_utc.isoformat()}) is in the future.",
            code=RefusalCode.CRL_NOT_YET_VALID,
        )
    next_update = crl.next_update_utc
    if next_update is None:
        raise InvalidRequest(
            "The CRL has no nextUpdate: certward could not tell when it is out of date.",
            code=RefusalCode.CRL_NO_NEXT_UPDATE,
        )
    if next_update <= now:
        raise InvalidRequest(
            f"The CRL's nextUpdate ({next_update.isoformat()}) has passed: upload a newer one.",
            code=RefusalCode.CRL_EXPIRED,
        )
    return crl


def upload_crl(
    ctx: Context, principal: Principal, app_name: str, name: str, ca: str, *, file: Upload
) -> CrlView:
    """Set (or replace) the CRL of client CA ``ca`` of profile ``name`` (live)."""
    wanted = ca_fingerprint(ca)
    with ctx.database.reading() as session:  # refuse early, before any expensive work
        app = find_app(session, principal, app_name, Action.MANAGE)
        row = _ca_row(session, ACCESS_PROFILES.find(session, app, name), wanted)
        authority = x509.load_pem_x509_certificate(row.certificate_pem.encode("ascii"))
    crl = read_crl(file.data, authority, now=ctx.clock.now())
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = ACCESS_PROFILES.find(session, app, name, for_update=True)
        row = _ca_row(session, profile, wanted)
        before = _crl_state(row)
        row.crl_der = crl.public_bytes(serialization.Encoding.DER)
        row.crl_issuer = crl.issuer.rfc4514_string()
        row.crl_this_update = crl.last_update_utc
        row.crl_next_update = crl.next_update_utc
        row.crl_revoked = len(crl)
        row.crl_set_aside_at = None
        profile.updated_at = ctx.clock.now()
        ACCESS_PROFILES.record(
            session, ctx, principal, app, profile, "client_ca_crl.upload",
            before=before, after=_crl_state(row),
        )  # fmt: skip
        return _view(ctx, row)


def show_crl(ctx: Context, principal: Principal, app_name: str, name: str, ca: str) -> CrlView:
    """The CRL of client CA ``ca``; 404 ``crl-not-found`` when it has none."""
    wanted = ca_fingerprint(ca)
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        row = _ca_row(session, ACCESS_PROFILES.find(session, app, name), wanted)
        if row.crl_der is None:
            raise NotFound(
                f"The client CA {row.subject} has no CRL.", code=RefusalCode.CRL_NOT_FOUND
            )
        return _view(ctx, row)


def remove_crl(ctx: Context, principal: Principal, app_name: str, name: str, ca: str) -> None:
    """Remove the CRL of client CA ``ca`` (live): its certificates are no longer checked
    for revocation."""
    wanted = ca_fingerprint(ca)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = ACCESS_PROFILES.find(session, app, name, for_update=True)
        row = _ca_row(session, profile, wanted)
        if row.crl_der is None:
            raise NotFound(
                f"The client CA {row.subject} has no CRL.", code=RefusalCode.CRL_NOT_FOUND
            )
        before = _crl_state(row)
        row.crl_der = None
        row.crl_issuer = row.crl_this_update = row.crl_next_update = row.crl_revoked = None
        row.crl_set_aside_at = None
        profile.updated_at = ctx.clock.now()
        ACCESS_PROFILES.record(
            session, ctx, principal, app, profile, "client_ca_crl.remove",
            before=before, after=_crl_state(row),
        )  # fmt: skip


def reconcile_stale_crls(ctx: Context) -> int:
    """Set stale CRLs aside under ``CERTWARD_EXPIRED_CRL=warn`` (each logged as a
    warning), or take them back under ``refuse``; the renewal worker runs it every pass.
    Returns the number of CRLs changed. A CRL set aside no longer reaches the data
    plane, which then accepts its CA's client certificates unchecked."""
    now = ctx.clock.now()
    warn = ctx.settings.expired_crl is ExpiredCrl.WARN
    query = (
        select(AccessProfileCa, AccessProfile.name, App.name)
        .join(AccessProfile, AccessProfile.id == AccessProfileCa.profile_id)
        .join(App, App.id == AccessProfile.app_id)
    )
    if warn:
        query = query.where(
            AccessProfileCa.crl_next_update <= now, AccessProfileCa.crl_set_aside_at.is_(None)
        )
    else:
        query = query.where(AccessProfileCa.crl_set_aside_at.is_not(None))
    with ctx.database.transaction() as session:
        rows = list(session.execute(query.limit(STALE_BATCH).with_for_update(of=AccessProfileCa)))
        for row, profile, app in rows:
            row.crl_set_aside_at = now if warn else None
            if warn:
                log.warning(
                    "the CRL of client CA %s (app %s, access profile %s) is stale since %s: "
                    "set aside, its client certificates are accepted without a revocation "
                    "check (CERTWARD_EXPIRED_CRL=warn)",
                    row.subject, app, profile, row.crl_next_update,
                )  # fmt: skip
        return len(rows)


def _ca_row(session: Session, profile: AccessProfile, fingerprint: str) -> AccessProfileCa:
    row = next((r for r in cas_of(session, profile) if r.sha256_fingerprint == fingerprint), None)
    if row is None:
        raise NotFound(
            f"The access profile {profile.name!r} has no client CA {fingerprint!r}.",
            code=RefusalCode.CLIENT_CA_NOT_FOUND,
        )
    return row


def _crl_state(row: AccessProfileCa) -> dict[str, object]:
    """What the audit records of a CA's CRL."""
    if row.crl_der is None:
        return {"sha256_fingerprint": row.sha256_fingerprint, "crl": None}
    return {
        "sha256_fingerprint": row.sha256_fingerprint,
        "crl": {
            "issuer": row.crl_issuer,
            "this_update": row.crl_this_update.isoformat() if row.crl_this_update else None,
            "next_update": row.crl_next_update.isoformat() if row.crl_next_update else None,
            "revoked": row.crl_revoked,
        },
    }


def _view(ctx: Context, row: AccessProfileCa) -> CrlView:
    if row.crl_this_update is None or row.crl_next_update is None:  # pragma: no cover
        raise RuntimeError("a stored CRL without its dates")
    return CrlView(
        sha256_fingerprint=row.sha256_fingerprint,
        issuer=row.crl_issuer or "",
        this_update=row.crl_this_update,
        next_update=row.crl_next_update,
        revoked=row.crl_revoked or 0,
        stale=row.crl_next_update <= ctx.clock.now(),
        set_aside=row.crl_set_aside_at is not None,
    )
