"""Access profiles: who may call an app's environments (IP ranges and client CAs).

Access restrictions are three things, each with its own lifecycle:

- **Access profiles** (here) belong to the app: IP ranges and client CAs (a root and
  intermediates, shown as a tree, with a selection). A ``profile`` path rule names one.
  Edits are live: a profile says whom the app trusts *now*, and waiting for a restart
  to stop trusting someone would be the wrong way round.
- **IP deny profiles** (`certward.services.ip_deny_profiles`) belong to the app too, and
  are attached to environments (live): addresses refused before any path rule is
  looked at.
- **Path rules** (`certward.services.path_rules`) belong to one environment and are
  *staged* like its outgoing configuration: they join its `EnvironmentSnapshot` and
  take effect at restart, so a rule change ships with the release that needs it, and
  rollback brings old rules back.

Both kinds of profile are range profiles (`certward.services.range_profiles`): only the
client CAs and the path rules that name a profile are this module's own.
`certward.services.dataplane_access` gives the data plane all three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import Conflict, InvalidRequest, NotFound, RefusalCode
from certward.model import AccessProfile, AccessProfileCa, App, Environment, PathRule
from certward.pki.chains import issued_by, names_link
from certward.pki.checks import Purpose
from certward.pki.inspect import is_self_signed
from certward.pki.problems import Problem
from certward.services.context import Context
from certward.services.lookups import find_app
from certward.services.range_profiles import RangeProfileKind
from certward.services.staging import applied_snapshot
from certward.services.uploads import Upload, judge_uploads

MAX_CLIENT_CAS = 100  # per access profile
_FINGERPRINT_LENGTH = 64
_HEX = frozenset("0123456789abcdef")


# -- views ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCaCrl:
    """What the CRL of a client CA says (`certward.services.client_ca_crls`)."""

    this_update: datetime
    next_update: datetime
    revoked: int
    set_aside: bool  # stale, and not used by the data plane (CERTWARD_EXPIRED_CRL=warn)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCaNode:
    """A client CA of a profile and the uploaded certificates it issued.

    ``selected`` is the stored choice; with nothing selected in the profile, every CA is
    accepted. ``crl`` is None when the CA has no CRL (not checked for revocation).
    """

    sha256_fingerprint: str
    subject: str  # RFC 4514
    issuer: str
    not_before: datetime
    not_after: datetime
    selected: bool
    children: tuple[ClientCaNode, ...]
    crl: ClientCaCrl | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCaTreeView:
    """An access profile's client CAs as a tree: roots (and orphans) at the top."""

    certificates: tuple[ClientCaNode, ...]
    problems: tuple[Problem, ...] = field(default=())  # the upload's warnings


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessProfileView:
    name: str
    ip_ranges: tuple[str, ...]
    certificates: tuple[ClientCaNode, ...]
    created_at: datetime
    updated_at: datetime


# -- access profiles ------------------------------------------------------------------------


def _cas_by_profile(
    session: Session, profile_ids: Sequence[str]
) -> dict[str, list[AccessProfileCa]]:
    """The client CAs of each profile (one query)."""
    cas: dict[str, list[AccessProfileCa]] = {profile_id: [] for profile_id in profile_ids}
    if cas:
        for row in session.scalars(
            select(AccessProfileCa).where(AccessProfileCa.profile_id.in_(cas))
        ):
            cas[row.profile_id].append(row)
    return cas


def _cas_state(cas: Sequence[AccessProfileCa]) -> dict[str, Any]:
    return {
        "client_cas": [
            {"sha256_fingerprint": row.sha256_fingerprint, "selected": row.selected}
            for row in sorted(cas, key=lambda r: r.sha256_fingerprint)
        ]
    }


def _profile_view(profile: AccessProfile, cas: Sequence[AccessProfileCa]) -> AccessProfileView:
    return AccessProfileView(
        name=profile.name,
        ip_ranges=tuple(profile.ip_ranges or ()),
        certificates=_tree(cas),
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )


def _refuse_named(
    session: Session, app: App, profile: AccessProfile, _: Sequence[AccessProfileCa]
) -> None:
    """409 naming the environments whose staged or applied path rules still name the
    profile (the data plane would then deny those paths)."""
    users = _environments_naming(session, app, profile.name)
    if users:
        listed = ", ".join(f"{u['environment']} ({_where(u)})" for u in users)
        raise Conflict(
            f"The access profile {profile.name!r} is named by path rules of {listed}: change "
            "those rules (PUT …/path-rules), restart where they are applied, then delete "
            "the profile.",
            code=RefusalCode.ACCESS_PROFILE_IN_USE,
            detail={"environments": users},
        )


ACCESS_PROFILES: RangeProfileKind[AccessProfile, list[AccessProfileCa], AccessProfileView] = (
    RangeProfileKind(
        table=AccessProfile,
        noun="access profile",
        audit_name="access_profile",
        exists_code=RefusalCode.ACCESS_PROFILE_EXISTS,
        not_found_code=RefusalCode.ACCESS_PROFILE_NOT_FOUND,
        related=_cas_by_profile,
        state=_cas_state,
        view=_profile_view,
        refuse_in_use=_refuse_named,
    )
)


# -- client CAs -----------------------------------------------------------------------------


def upload_client_cas(
    ctx: Context, principal: Principal, app_name: str, name: str, *, file: Upload
) -> ClientCaTreeView:
    """Add CA certificates (a root and intermediates; PEM, or one DER certificate).

    Judged as an authority: end-entity certificates are refused by name (``not-a-ca``),
    as are expired CAs and unreadable files with the material engine's codes. A
    certificate already in the profile is skipped. Returns the profile's whole tree.
    """
    with ctx.database.reading() as session:  # refuse early, before any expensive work
        ACCESS_PROFILES.find(session, find_app(session, principal, app_name, Action.MANAGE), name)
    judgement = judge_uploads(
        ctx, [file], app=app_name, password=None, purpose=Purpose.CLIENT_AUTHORITY
    )
    uploaded: dict[str, x509.Certificate] = {}
    for certificate in judgement.material.certificates:
        uploaded.setdefault(certificate.fingerprint(hashes.SHA256()).hex(), certificate)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = ACCESS_PROFILES.find(session, app, name, for_update=True)
        rows = cas_of(session, profile)
        before = ACCESS_PROFILES.state_of(profile, rows)
        known = {row.sha256_fingerprint for row in rows}
        added = [fp for fp in uploaded if fp not in known]
        if len(known) + len(added) > MAX_CLIENT_CAS:
            raise InvalidRequest(
                f"The access profile {name!r} would hold {len(known) + len(added)} client CA "
                f"certificates; at most {MAX_CLIENT_CAS} are allowed.",
                code=RefusalCode.TOO_MANY_CLIENT_CAS,
            )
        now = ctx.clock.now()
        for fingerprint in added:
            certificate = uploaded[fingerprint]
            row = AccessProfileCa(
                profile_id=profile.id,
                sha256_fingerprint=fingerprint,
                subject=certificate.subject.rfc4514_string(),
                issuer=certificate.issuer.rfc4514_string(),
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
                selected=False,
                created_at=now,
            )
            session.add(row)
            rows.append(row)
        _link(rows, parsed=uploaded)
        if added:
            profile.updated_at = now
        session.flush()
        ACCESS_PROFILES.record(
            session,
            ctx,
            principal,
            app,
            profile,
            "client_cas.upload",
            before=before,
            after=ACCESS_PROFILES.state_of(profile, rows),
            detail={"added": added, "already_present": sorted(known & uploaded.keys())},
        )
        return ClientCaTreeView(certificates=_tree(rows), problems=judgement.problems)


def select_client_cas(
    ctx: Context, principal: Principal, app_name: str, name: str, *, selected: Sequence[str]
) -> ClientCaTreeView:
    """Accept client certificates issued below the ``selected`` CAs only (live).

    An empty selection accepts every CA of the profile. An unknown fingerprint is
    refused (422) and nothing changes.
    """
    wanted = [ca_fingerprint(value) for value in selected]
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = ACCESS_PROFILES.find(session, app, name, for_update=True)
        rows = cas_of(session, profile)
        before = ACCESS_PROFILES.state_of(profile, rows)
        stored = {row.sha256_fingerprint for row in rows}
        unknown = [fp for fp in wanted if fp not in stored]
        if unknown:
            raise InvalidRequest(
                f"The access profile {name!r} has no client CA with the SHA-256 fingerprint "
                f"{unknown[0]}: select among the fingerprints it shows.",
                code=RefusalCode.UNKNOWN_CLIENT_CA,
                detail={"fingerprints": unknown},
            )
        for row in rows:
            row.selected = row.sha256_fingerprint in wanted
        profile.updated_at = ctx.clock.now()
        ACCESS_PROFILES.record(
            session,
            ctx,
            principal,
            app,
            profile,
            "client_cas.select",
            before=before,
            after=ACCESS_PROFILES.state_of(profile, rows),
        )
        return ClientCaTreeView(certificates=_tree(rows))


def remove_client_ca(
    ctx: Context, principal: Principal, app_name: str, name: str, fingerprint: str
) -> None:
    """Remove one client CA (live); the certificates it issued move to the top.

    Removing the last selected CA while others remain is refused (409): with nothing
    selected every remaining CA would be accepted, which widens access silently.
    """
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        profile = ACCESS_PROFILES.find(session, app, name, for_update=True)
        rows = cas_of(session, profile)
        wanted = fingerprint.replace(":", "").lower()
        target = next((r for r in rows if r.sha256_fingerprint == wanted), None)
        if target is None:
            raise NotFound(
                f"The access profile {name!r} has no client CA {fingerprint!r}.",
                code=RefusalCode.CLIENT_CA_NOT_FOUND,
            )
        remaining = [r for r in rows if r is not target]
        if target.selected and remaining and not any(r.selected for r in remaining):
            raise Conflict(
                f"{target.subject} is the only selected client CA of {name!r}; removing it "
                "would leave nothing selected, which accepts every remaining CA. Select the "
                "CAs to accept first (PATCH …/client-cas), or remove the others too.",
                code=RefusalCode.LAST_SELECTED_CLIENT_CA,
            )
        before = ACCESS_PROFILES.state_of(profile, rows)
        session.delete(target)
        _link(remaining)
        profile.updated_at = ctx.clock.now()
        ACCESS_PROFILES.record(
            session,
            ctx,
            principal,
            app,
            profile,
            "client_cas.remove",
            before=before,
            after=ACCESS_PROFILES.state_of(profile, remaining),
            detail={"sha256_fingerprint": target.sha256_fingerprint, "subject": target.subject},
        )


# -- details --------------------------------------------------------------------------------


def cas_of(session: Session, profile: AccessProfile) -> list[AccessProfileCa]:
    """The client CAs of one profile."""
    return _cas_by_profile(session, [profile.id])[profile.id]


def _environments_naming(session: Session, app: App, name: str) -> list[dict[str, Any]]:
    """The app's environments whose staged or applied path rules name profile ``name``."""
    environments = list(
        session.scalars(
            select(Environment).where(Environment.app_id == app.id).order_by(Environment.name)
        )
    )
    staged = set(
        session.scalars(
            select(PathRule.environment_id).where(
                PathRule.environment_id.in_([e.id for e in environments]),
                PathRule.profile_name == name,
            )
        )
    )
    users: list[dict[str, Any]] = []
    for environment in environments:
        snapshot = applied_snapshot(session, environment)
        applied = snapshot is not None and any(r.profile == name for r in snapshot.path_rules)
        if applied or environment.id in staged:
            users.append(
                {
                    "environment": environment.name,
                    "staged": environment.id in staged,
                    "applied": applied,
                }
            )
    return users


def _link(
    rows: list[AccessProfileCa], *, parsed: Mapping[str, x509.Certificate] | None = None
) -> None:
    """Set every row's parent: the row whose key signed it (None for roots and orphans).

    Names and key identifiers narrow the candidates and the signature decides, so a
    certificate only claiming to come from a selected CA is not accepted below it. A
    cycle (two CAs cross-signing each other) is cut at its first member.
    """
    known = parsed or {}
    certificates = {
        row.sha256_fingerprint: known.get(row.sha256_fingerprint)
        or x509.load_pem_x509_certificate(row.certificate_pem.encode("ascii"))
        for row in rows
    }
    parents: dict[str, str | None] = {}
    for fingerprint, certificate in sorted(certificates.items()):
        parents[fingerprint] = None
        if is_self_signed(certificate):
            continue
        for candidate_fp, candidate in sorted(certificates.items()):
            if (
                candidate_fp != fingerprint
                and names_link(certificate, candidate)
                and issued_by(certificate, candidate)
            ):
                parents[fingerprint] = candidate_fp
                break
    for fingerprint in sorted(parents):
        seen = {fingerprint}
        current = parents[fingerprint]
        while current is not None:
            if current == fingerprint:
                parents[fingerprint] = None
                break
            if current in seen:
                break
            seen.add(current)
            current = parents[current]
    for row in rows:
        row.parent_fingerprint = parents[row.sha256_fingerprint]


def _where(use: Mapping[str, Any]) -> str:
    """``staged``, ``applied`` or both: where an environment's rules name a profile."""
    return " and ".join(state for state in ("staged", "applied") if use[state])


def ca_order(row: AccessProfileCa) -> tuple[str, str]:
    """The order client CAs are shown and read in: by subject, then fingerprint."""
    return (row.subject, row.sha256_fingerprint)


def ca_children(rows: Sequence[AccessProfileCa]) -> dict[str | None, list[AccessProfileCa]]:
    """The CAs each CA of a profile issued, by its fingerprint, in `ca_order`; under None
    the roots, and certificates whose issuer is not in the profile."""
    fingerprints = {row.sha256_fingerprint for row in rows}
    children: dict[str | None, list[AccessProfileCa]] = {}
    for row in sorted(rows, key=ca_order):
        parent = row.parent_fingerprint if row.parent_fingerprint in fingerprints else None
        children.setdefault(parent, []).append(row)
    return children


def _tree(rows: Sequence[AccessProfileCa]) -> tuple[ClientCaNode, ...]:
    """Roots, and certificates whose issuer is not in the profile, at the top."""
    children = ca_children(rows)

    def node(row: AccessProfileCa, depth: int) -> ClientCaNode:
        # `_link` leaves no cycle; the depth bound only keeps a damaged row harmless.
        below = children.get(row.sha256_fingerprint, []) if depth < len(rows) else []
        return ClientCaNode(
            sha256_fingerprint=row.sha256_fingerprint,
            subject=row.subject,
            issuer=row.issuer,
            not_before=row.not_before,
            not_after=row.not_after,
            selected=row.selected,
            children=tuple(node(child, depth + 1) for child in below),
            crl=_crl_summary(row),
        )

    return tuple(node(row, 0) for row in children.get(None, []))


def _crl_summary(row: AccessProfileCa) -> ClientCaCrl | None:
    if row.crl_this_update is None or row.crl_next_update is None:
        return None
    return ClientCaCrl(
        this_update=row.crl_this_update,
        next_update=row.crl_next_update,
        revoked=row.crl_revoked or 0,
        set_aside=row.crl_set_aside_at is not None,
    )


def ca_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as certward shows it: 64 lower-case hex digits (colons and
    upper case, as other tools print them, are accepted)."""
    text = value.replace(":", "").lower()
    if len(text) != _FINGERPRINT_LENGTH or not set(text) <= _HEX:
        raise InvalidRequest(
            f"{value[:100]!r} is not a SHA-256 fingerprint (64 hexadecimal digits).",
            code=RefusalCode.UNKNOWN_CLIENT_CA,
        )
    return text
