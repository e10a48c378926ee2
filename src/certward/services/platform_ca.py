"""The built-in platform CA: created at first start, shown, and rotated with overlap.

The CA is a root and an issuing intermediate (`certward.issuing.ca`), each a
``platform_cas`` row whose private key is sealed by the secret box and bound to the
row. Exactly one root and one intermediate are ``active``. Rotation makes a new
intermediate (and, if asked, a new root above it) active; the ones it replaces become
``retiring``: still published, so the chains of the certificates they issued keep
verifying, until no active managed certificate was issued by them. Then they are
``retired`` (a retiring root once none of its intermediates is in use).

A new root is also cross-certified by the root it replaces (`cross_certify`): while
that old root is not retired, the cross-certificate is served above every certificate
the new root's intermediates issue (`served_cross_certificates`), so a relying party
that trusts only the old root still finds a path (leaf, intermediate, cross-certificate,
old root), and one that trusts the new root stops there. One step only: a root rotated
again during the overlap is bridged to its predecessor, not to the roots before it.

Creating and rotating take turns: on PostgreSQL under a transaction-level advisory
lock, on SQLite because writing transactions already do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, aliased

from certward.authorization import Principal
from certward.errors import NotFound, RefusalCode, SecretError
from certward.issuing.ca import (
    Authority,
    IssuerLocations,
    ServerCertificateIssuer,
    create_intermediate,
    create_root,
    cross_certify,
    sign_crl,
)
from certward.model import CaState, ManagedCertificate, PlatformCa, new_id
from certward.pki.convert import private_key_der
from certward.pki.material import load_stored_private_key
from certward.secrets import private_key_aad
from certward.services import audit
from certward.services.context import Context
from certward.vocabulary import Role

ROOT = "root"
INTERMEDIATE = "intermediate"
ROOT_NAME = "certward platform root CA"
INTERMEDIATE_NAME = "certward platform issuing CA"

ca_key_aad = private_key_aad("platform_cas")

_OPERATOR = Principal(token_id=None, role=Role.ADMIN)  # the CLI and start-up: no token
_ADVISORY_LOCK = 0x63_65_72_74_77_61_72_64 & 0x7FFF_FFFF_FFFF_FFFF  # "certward"


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossCertificateView:
    """A root's key certified by the root it replaced (``issuer_id``), while served:
    ``subject`` is the root's, ``issuer`` the old root's."""

    subject: str
    issuer_id: str
    issuer: str
    sha256_fingerprint: str
    not_before: datetime
    not_after: datetime
    certificate_pem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaCertificateView:
    """One certificate of the platform CA, public facts only; a root's
    ``cross_certificate`` is shown while it is served (its issuer not retired)."""

    id: str
    kind: str
    state: CaState
    subject: str
    issuer_id: str | None
    sha256_fingerprint: str
    not_before: datetime
    not_after: datetime
    created_at: datetime
    retired_at: datetime | None
    certificate_pem: str
    certificates_in_use: int  # active managed certificates it issued (intermediates)
    cross_certificate: CrossCertificateView | None = None

    @property
    def published(self) -> bool:
        """Served to relying parties: active or retiring."""
        return self.state is not CaState.RETIRED


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformCaView:
    """The active root and intermediate, and every CA certificate, newest first."""

    root: CaCertificateView
    intermediate: CaCertificateView
    certificates: tuple[CaCertificateView, ...]

    @property
    def published(self) -> tuple[CaCertificateView, ...]:
        """What relying parties may need: every active or retiring certificate."""
        return tuple(c for c in self.certificates if c.published)

    @property
    def cross_certificates(self) -> tuple[CrossCertificateView, ...]:
        """The cross-certificates served now (during a new root's overlap)."""
        return tuple(c.cross_certificate for c in self.certificates if c.cross_certificate)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuingCa:
    """The active intermediate, ready to sign: its key, the chain served above what it
    issues, the URLs written into what it issues, and ``server_certificates``, which
    issues under it with everything its certificates share prepared once."""

    id: str
    authority: Authority
    chain: tuple[x509.Certificate, ...]
    chain_pem: str
    locations: IssuerLocations
    server_certificates: ServerCertificateIssuer


def ensure_platform_ca(ctx: Context) -> PlatformCaView:
    """Create the root and the intermediate if there are none (at first start); idempotent."""
    with ctx.database.transaction() as session:
        _take_turns(session)
        now = ctx.clock.now()
        root = _active(session, ROOT)
        if root is None:
            root = _add_root(session, ctx, now)
        if _active(session, INTERMEDIATE) is None:
            _add_intermediate(session, ctx, root, now)
        return _view(session)


def show(ctx: Context) -> PlatformCaView:
    """The platform CA as it stands; `NotFound` before the first start created it."""
    with ctx.database.reading() as session:
        return _view(session)


def rotate(ctx: Context, *, new_root: bool) -> PlatformCaView:
    """Make a new intermediate (under a new root if ``new_root``) active; what it replaces
    stays published as ``retiring`` until nothing active it issued is left. A new root
    is cross-certified by the old one (unless that has expired)."""
    with ctx.database.transaction() as session:
        _take_turns(session)
        now = ctx.clock.now()
        old_root, old_intermediate = _active(session, ROOT), _active(session, INTERMEDIATE)
        root = old_root
        if new_root or root is None:
            if old_root is not None:
                old_root.state = CaState.RETIRING
            root = _add_root(session, ctx, now)
            if old_root is not None:
                _add_cross_certificate(ctx, root, old_root, now)
        if old_intermediate is not None:
            old_intermediate.state = CaState.RETIRING
        intermediate = _add_intermediate(session, ctx, root, now)
        session.flush()
        retire_unused(session, now)
        audit.record(
            session,
            ctx,
            _OPERATOR,
            action="platform-ca.rotate",
            object_type="platform_ca",
            object_id=intermediate.id,
            app_id=None,
            before={
                "root": old_root.sha256_fingerprint if old_root else None,
                "intermediate": old_intermediate.sha256_fingerprint if old_intermediate else None,
            },
            after={
                "root": root.sha256_fingerprint,
                "intermediate": intermediate.sha256_fingerprint,
                "cross_certificate": _fingerprint(root.cross_certificate_pem),
            },
        )
        return _view(session)


def issuing_ca(session: Session, ctx: Context) -> IssuingCa:
    """The active intermediate with its decrypted key; `SecretError` if that fails."""
    row = _active(session, INTERMEDIATE)
    if row is None:
        raise NotFound(
            "The platform CA has no active intermediate.", code=RefusalCode.NO_PLATFORM_CA
        )
    authority = _authority(ctx, row)
    chain = (authority.certificate,)
    locations = locations_of(ctx, row.id)
    return IssuingCa(
        id=row.id,
        authority=authority,
        chain=chain,
        chain_pem=row.certificate_pem,
        locations=locations,
        server_certificates=ServerCertificateIssuer(authority, locations, chain=chain),
    )


def served_cross_certificates(session: Session) -> dict[str, str]:
    """The cross-certificate (PEM) served above what each intermediate issues, by
    intermediate id: for the published intermediates of every root whose cross-certificate
    issuer is not retired. Empty outside a new root's overlap."""
    intermediate, root, signer = (aliased(PlatformCa) for _ in range(3))
    rows = session.execute(
        select(intermediate.id, root.cross_certificate_pem)
        .join(root, root.id == intermediate.issuer_id)
        .join(signer, signer.id == root.cross_issuer_id)
        .where(
            intermediate.state != CaState.RETIRED,
            signer.state != CaState.RETIRED,
            root.cross_certificate_pem.is_not(None),
        )
    )
    return {ca_id: pem for ca_id, pem in rows if pem}


def retire_unused(session: Session, at: datetime) -> None:
    """Retire every retiring intermediate that no active managed certificate came from,
    then every retiring root none of whose intermediates is still published."""
    retiring_ids = session.scalars(
        select(PlatformCa.id).where(PlatformCa.state == CaState.RETIRING).limit(1)
    )
    if retiring_ids.first() is None:  # the usual case: nothing to look at
        return
    in_use = set(
        session.scalars(
            select(ManagedCertificate.issuing_ca_id)
            .where(ManagedCertificate.state == "active")
            .distinct()
        )
    )
    retiring = session.scalars(select(PlatformCa).where(PlatformCa.state == CaState.RETIRING))
    for row in sorted(retiring, key=lambda r: r.kind != INTERMEDIATE):  # intermediates first
        if row.kind == INTERMEDIATE:
            done = row.id not in in_use
        else:
            session.flush()
            done = not session.scalar(
                select(func.count())
                .select_from(PlatformCa)
                .where(PlatformCa.issuer_id == row.id, PlatformCa.state != CaState.RETIRED)
            )
        if done:
            row.state = CaState.RETIRED
            row.retired_at = at


def certificate_der(ctx: Context, ca_id: str) -> bytes:
    """The DER certificate of one CA row (where issued certificates' caIssuers URL points)."""
    with ctx.database.reading() as session:
        row = _row(session, ca_id)
        return x509.load_pem_x509_certificate(row.certificate_pem.encode()).public_bytes(
            serialization.Encoding.DER
        )


def crl_der(ctx: Context, ca_id: str) -> bytes:
    """A CRL of one CA row, signed now (empty: certward replaces rather than revokes)."""
    with ctx.database.reading() as session:
        row = _row(session, ca_id)
        authority = _authority(ctx, row)
    return sign_crl(authority, at=ctx.clock.now()).public_bytes(serialization.Encoding.DER)


def locations_of(ctx: Context, ca_id: str) -> IssuerLocations:
    """Where a CA row's certificate and CRL are published."""
    base = f"{ctx.settings.ca_publication_url}/{ca_id}"
    return IssuerLocations(certificate_url=f"{base}/certificate", crl_url=f"{base}/crl")


def _take_turns(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})


def _active(session: Session, kind: str) -> PlatformCa | None:
    return session.scalar(
        select(PlatformCa)
        .where(PlatformCa.kind == kind, PlatformCa.state == CaState.ACTIVE)
        .order_by(PlatformCa.created_at.desc())
        .limit(1)
    )


def _row(session: Session, ca_id: str) -> PlatformCa:
    row = session.get(PlatformCa, ca_id)
    if row is None:
        raise NotFound(f"The platform CA has no certificate {ca_id!r}.", code=RefusalCode.NOT_FOUND)
    return row


def _authority(ctx: Context, row: PlatformCa) -> Authority:
    key = load_stored_private_key(
        ctx.secrets.decrypt(row.private_key_ciphertext, aad=ca_key_aad(row.id))
    )
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SecretError(f"The platform CA key of {row.subject} is not an ECDSA key.")
    return Authority(
        certificate=x509.load_pem_x509_certificate(row.certificate_pem.encode()), private_key=key
    )


def _add_root(session: Session, ctx: Context, now: datetime) -> PlatformCa:
    number = _count(session, ROOT) + 1
    authority = create_root(at=now, common_name=f"{ROOT_NAME} R{number}")
    return _store(session, ctx, authority, kind=ROOT, issuer_id=None, now=now)


def _add_intermediate(
    session: Session, ctx: Context, root: PlatformCa, now: datetime
) -> PlatformCa:
    number = _count(session, INTERMEDIATE) + 1
    authority = create_intermediate(
        _authority(ctx, root),
        at=now,
        common_name=f"{INTERMEDIATE_NAME} I{number}",
        parent_locations=locations_of(ctx, root.id),
    )
    return _store(session, ctx, authority, kind=INTERMEDIATE, issuer_id=root.id, now=now)


def _add_cross_certificate(
    ctx: Context, root: PlatformCa, old_root: PlatformCa, now: datetime
) -> None:
    """Certify ``root``'s key with ``old_root`` (nothing when ``old_root`` has expired:
    whoever trusts only it verifies nothing any more)."""
    try:
        cross = cross_certify(
            _authority(ctx, old_root),
            x509.load_pem_x509_certificate(root.certificate_pem.encode()),
            at=now,
            issuer_locations=locations_of(ctx, old_root.id),
        )
    except ValueError:
        return
    root.cross_issuer_id = old_root.id
    root.cross_certificate_pem = cross.public_bytes(serialization.Encoding.PEM).decode()


def _fingerprint(pem: str | None) -> str | None:
    if pem is None:
        return None
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()


def _count(session: Session, kind: str) -> int:
    return (
        session.scalar(select(func.count()).select_from(PlatformCa).where(PlatformCa.kind == kind))
        or 0
    )


def _store(
    session: Session,
    ctx: Context,
    authority: Authority,
    *,
    kind: str,
    issuer_id: str | None,
    now: datetime,
) -> PlatformCa:
    row_id = new_id()
    certificate = authority.certificate
    row = PlatformCa(
        id=row_id,
        kind=kind,
        issuer_id=issuer_id,
        subject=certificate.subject.rfc4514_string(),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        sha256_fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        private_key_ciphertext=ctx.secrets.encrypt(
            private_key_der(authority.private_key), aad=ca_key_aad(row_id)
        ),
        key_id=ctx.secrets.keyring.active.key_id,
        state=CaState.ACTIVE,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        ctx,
        _OPERATOR,
        action="platform-ca.create",
        object_type="platform_ca",
        object_id=row_id,
        app_id=None,
        after={"kind": kind, "subject": row.subject, "sha256": row.sha256_fingerprint},
    )
    return row


def _view(session: Session) -> PlatformCaView:
    rows = session.scalars(select(PlatformCa).order_by(PlatformCa.created_at.desc())).all()
    counts: dict[str | None, int] = dict(
        session.execute(
            select(ManagedCertificate.issuing_ca_id, func.count())
            .where(ManagedCertificate.state == "active")
            .group_by(ManagedCertificate.issuing_ca_id)
        ).all()
    )
    retired = {row.id for row in rows if row.state is CaState.RETIRED}
    subjects = {row.id: row.subject for row in rows}
    views = tuple(
        _ca_view(row, counts.get(row.id, 0), _cross_view(row, retired, subjects)) for row in rows
    )
    root = _first_active(views, ROOT)
    intermediate = _first_active(views, INTERMEDIATE)
    if root is None or intermediate is None:
        raise NotFound(
            "The platform CA has not been created yet: certward creates it at first start.",
            code=RefusalCode.NO_PLATFORM_CA,
        )
    return PlatformCaView(root=root, intermediate=intermediate, certificates=views)


def _first_active(views: Iterable[CaCertificateView], kind: str) -> CaCertificateView | None:
    return next((v for v in views if v.kind == kind and v.state is CaState.ACTIVE), None)


def _cross_view(
    row: PlatformCa, retired: set[str], subjects: dict[str, str]
) -> CrossCertificateView | None:
    """``row``'s cross-certificate while it is served (neither root retired)."""
    issuer_id, pem = row.cross_issuer_id, row.cross_certificate_pem
    if issuer_id is None or pem is None or {issuer_id, row.id} & retired:
        return None
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return CrossCertificateView(
        subject=row.subject,
        issuer_id=issuer_id,
        issuer=subjects[issuer_id],
        sha256_fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        certificate_pem=pem,
    )


def _ca_view(row: PlatformCa, in_use: int, cross: CrossCertificateView | None) -> CaCertificateView:
    return CaCertificateView(
        id=row.id,
        kind=row.kind,
        state=row.state,
        subject=row.subject,
        issuer_id=row.issuer_id,
        sha256_fingerprint=row.sha256_fingerprint,
        not_before=row.not_before,
        not_after=row.not_after,
        created_at=row.created_at,
        retired_at=row.retired_at,
        certificate_pem=row.certificate_pem,
        certificates_in_use=in_use,
        cross_certificate=cross,
    )
