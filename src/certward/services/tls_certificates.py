"""An app's TLS certificates for custom domains: uploaded, born from a CSR, or ordered from
the ACME CA.

Certificates belong to the app, so any of its environments may serve a custom domain
with one (`certward.services.domains`). Licensed apps only. Changes are live: there
is nothing to stage or restart.

A complete certificate's material never changes (a renewal is a new certificate, and
`replace_certificate` moves the domains to it), so its id names one certificate and
key for good and the data plane may cache by id. The private key is stored only as an
envelope bound to its row (`private_key_aad`); no response ever carries it, and the key
of a CSR-born or ACME certificate is generated here and never leaves certward at all.

**ACME certificates** are ordered and renewed in `certward.services.tls_acme`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.errors import Conflict, InvalidRequest, NotFound, RefusalCode
from certward.expiry import CertificateStatus, certificate_status
from certward.model import App, CustomDomain, Environment, TlsCertificate
from certward.pki.chains import key_owner
from certward.pki.checks import Judgement, Purpose
from certward.pki.convert import private_key_der
from certward.pki.csr import (
    MAX_COMMON_NAME_LENGTH,
    CsrKeyType,
    build_csr,
    csr_pem,
    generate_key,
    normalize_san,
)
from certward.pki.inspect import chain_summary, describe_certificate, key_info, subject_of
from certward.pki.material import load_stored_private_key
from certward.pki.names import HostnameError, covers
from certward.pki.problems import Problem, ProblemCode
from certward.secrets import private_key_aad
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_app, require_licensed
from certward.services.standing import judge_row
from certward.services.uploads import Upload, examine_uploads, judge_uploads, require_sound

MAX_SANS = 100
MAX_DESCRIPTION = 1000
UPLOAD = "upload"
CSR = "csr"
ACME = "acme"
key_aad = private_key_aad("tls_certificates")


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainUse:
    """A custom domain served with a certificate, and the environment serving it."""

    hostname: str
    environment: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsCertificateView:
    """A TLS certificate as the API shows it; never its key."""

    id: str
    app: str
    origin: str  # "upload", "csr" or "acme"
    status: CertificateStatus
    subject: str | None
    issuer: str | None
    serial: str | None
    sans: tuple[str, ...]
    not_before: datetime | None
    not_after: datetime | None
    sha256_fingerprint: str | None
    chain: tuple[dict[str, str], ...]
    key_type: str
    common_name: str | None
    csr_pem: str | None
    description: str
    domains: tuple[DomainUse, ...]
    created_at: datetime
    updated_at: datetime
    problems: tuple[Problem, ...] = field(default=())  # warnings found at upload
    status_reason: str | None = None  # why it is expires-soon (`certward.services.standing`)
    # Automatic renewal (ACME certificates): when it is due and how the last attempts went.
    renew_after: datetime | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


# -- use cases ------------------------------------------------------------------------------


def upload(
    ctx: Context,
    principal: Principal,
    app_name: str,
    *,
    certificate: Upload,
    private_key: Upload,
    chain: Upload | None = None,
    password: bytes | None = None,
    description: str = "",
) -> TlsCertificateView:
    """Judge certificate, chain and key as a TLS certificate and store them; 422 if unusable.

    The engine checks the chain for one of the certificate's own DNS names: key match,
    chain complete (a missing intermediate is explained) and put in order (said in a
    warning), validity, key strength, serverAuth.
    """
    check_description(description)
    with ctx.database.reading() as session:  # refuse early, before any expensive work
        require_licensed(find_app(session, principal, app_name, Action.MANAGE))
    uploads = [u for u in (certificate, chain, private_key) if u is not None]
    judgement = judge_uploads(
        ctx, uploads, app=app_name, password=password, purpose=Purpose.TLS_CERTIFICATE
    )
    leaf, key = judgement.leaf, judgement.material.private_key
    if leaf is None or key is None:  # the judgement refuses these; keeps mypy sure
        raise InvalidRequest("The upload holds no usable TLS certificate.")
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        now = ctx.clock.now()
        row = TlsCertificate(
            app_id=app.id,
            origin=UPLOAD,
            description=description,
            key_type=key_type_of(key),
            private_key_ciphertext=b"",
            key_id=ctx.secrets.keyring.active.key_id,
            created_at=now,
            updated_at=now,
        )
        _set_material(row, judgement)
        session.add(row)
        session.flush()  # assigns the id the ciphertext is bound to
        row.private_key_ciphertext = ctx.secrets.encrypt(private_key_der(key), aad=key_aad(row.id))
        audit.record(
            session,
            ctx,
            principal,
            action="tls_certificate.upload",
            object_type="tls_certificate",
            object_id=row.id,
            app_id=app.id,
            after=certificate_state(row),
        )
        return certificate_view(session, ctx, app, row, problems=judgement.problems)


def create_csr(
    ctx: Context,
    principal: Principal,
    app_name: str,
    *,
    common_name: str,
    sans: Sequence[str] = (),
    key_type: CsrKeyType = CsrKeyType.EC_P256,
    description: str = "",
) -> TlsCertificateView:
    """Generate a key (kept, encrypted, never downloadable) and a CSR for the names.

    The common name is also the first SAN (CAs match names by SAN only). The
    certificate stays ``pending`` until `add_signed_certificate`.
    """
    check_description(description)
    names = csr_names(common_name, sans)
    with ctx.database.reading() as session:
        require_licensed(find_app(session, principal, app_name, Action.MANAGE))
    key = generate_key(key_type)
    request = build_csr(key, common_name=names[0], sans=names)
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        now = ctx.clock.now()
        row = TlsCertificate(
            app_id=app.id,
            origin=CSR,
            description=description,
            common_name=names[0],
            sans=list(names),
            key_type=key_type.value,
            csr_pem=csr_pem(request),
            private_key_ciphertext=b"",
            key_id=ctx.secrets.keyring.active.key_id,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        row.private_key_ciphertext = ctx.secrets.encrypt(private_key_der(key), aad=key_aad(row.id))
        audit.record(
            session,
            ctx,
            principal,
            action="tls_certificate.csr",
            object_type="tls_certificate",
            object_id=row.id,
            app_id=app.id,
            after=certificate_state(row),
        )
        return certificate_view(session, ctx, app, row)


def add_signed_certificate(
    ctx: Context,
    principal: Principal,
    app_name: str,
    certificate_id: str,
    *,
    certificate: Upload,
    chain: Upload | None = None,
) -> TlsCertificateView:
    """Complete a pending CSR with the certificate a CA signed for it (and its chain).

    409 unless pending; 422 ``key-mismatch`` when the certificate is for another key;
    otherwise judged as a TLS certificate with the kept key, and a requested name the
    CA left out is reported as a warning.
    """
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        row = find_tls_certificate(session, app, certificate_id)
        _require_pending(row)
        key = _stored_key(ctx, row)
        requested = tuple(row.sans)
    uploads = [u for u in (certificate, chain) if u is not None]
    # Read and judged (with the kept key) in a worker; the checks below come first.
    material, judgement = examine_uploads(
        ctx, uploads, app=app_name, password=None, purpose=Purpose.TLS_CERTIFICATE, key=key
    )
    if material.private_key is not None:
        raise InvalidRequest(
            "The upload holds a private key, but certward generated this certificate's key "
            "and keeps it: upload the signed certificate and its chain only.",
            code=RefusalCode.UNEXPECTED_PRIVATE_KEY,
        )
    if key_owner(material.certificates, key) is None:
        subjects = "; ".join(subject_of(c) for c in material.certificates) or "none"
        raise InvalidRequest(
            f"No uploaded certificate ({subjects}) was issued for this request's key: the "
            "CA signed another CSR. Upload the certificate issued for this request.",
            code=ProblemCode.KEY_MISMATCH.value,
        )
    require_sound(judgement)
    problems = (*judgement.problems, *_left_out(judgement, requested))
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        row = find_tls_certificate(session, app, certificate_id, for_update=True)
        _require_pending(row)  # a concurrent upload may have completed it meanwhile
        before = certificate_state(row)
        _set_material(row, judgement)
        row.updated_at = ctx.clock.now()
        audit.record(
            session,
            ctx,
            principal,
            action="tls_certificate.signed_certificate",
            object_type="tls_certificate",
            object_id=row.id,
            app_id=app.id,
            before=before,
            after=certificate_state(row),
        )
        return certificate_view(session, ctx, app, row, problems=problems)


def list_certificates(
    ctx: Context,
    principal: Principal,
    app_name: str,
    *,
    status: CertificateStatus | None = None,
) -> list[TlsCertificateView]:
    """The app's TLS certificates, oldest first; ``status`` filters at the current time."""
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        require_licensed(app)
        query = select(TlsCertificate).where(TlsCertificate.app_id == app.id)
        rows = list(session.scalars(query.order_by(TlsCertificate.created_at, TlsCertificate.id)))
        if status is not None:
            at = ctx.clock.now()
            rows = [row for row in rows if judge_row(ctx.settings, row, at=at).status is status]
        uses = _domain_uses(session, [row.id for row in rows])
        return [certificate_view(session, ctx, app, row, uses=uses.get(row.id, ())) for row in rows]


def get_certificate(
    ctx: Context, principal: Principal, app_name: str, certificate_id: str
) -> TlsCertificateView:
    with ctx.database.reading() as session:
        app = find_app(session, principal, app_name, Action.READ)
        require_licensed(app)
        return certificate_view(
            session, ctx, app, find_tls_certificate(session, app, certificate_id)
        )


def replace_certificate(
    ctx: Context, principal: Principal, app_name: str, certificate_id: str, *, replacement_id: str
) -> TlsCertificateView:
    """Move every custom domain served with the certificate to ``replacement_id``, at once.

    Refused (422) unless the replacement is complete, currently valid, and its SANs
    cover every hostname in use; returns the replacement with the domains it now serves.
    """
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        row = find_tls_certificate(session, app, certificate_id, for_update=True)
        replacement = find_tls_certificate(session, app, replacement_id, for_update=True)
        if replacement.id == row.id:
            raise InvalidRequest(
                "A certificate cannot replace itself: name another certificate of the app.",
                code=RefusalCode.INVALID_REPLACEMENT,
            )
        require_usable(replacement, ctx.clock.now(), role="replacement")
        domains = list(
            session.scalars(
                select(CustomDomain)
                .where(CustomDomain.tls_certificate_id == row.id)
                .order_by(CustomDomain.hostname)
            )
        )
        leaf = leaf_of(replacement)
        uncovered = [d.hostname for d in domains if not covers(leaf, d.hostname)]
        if uncovered:
            raise InvalidRequest(
                f"The replacement does not cover {', '.join(uncovered)}, which "
                f"{'is' if len(uncovered) == 1 else 'are'} served with this certificate: its "
                f"subject alternative names are {_san_list(replacement)}. Nothing was moved.",
                code=ProblemCode.NAME_NOT_COVERED.value,
                detail={"hostnames": uncovered},
            )
        for domain in domains:
            domain.tls_certificate_id = replacement.id
        session.flush()
        audit.record(
            session,
            ctx,
            principal,
            action="tls_certificate.replace",
            object_type="tls_certificate",
            object_id=row.id,
            app_id=app.id,
            before=certificate_state(row),
            after=certificate_state(replacement),
            detail={
                "replacement_id": replacement.id,
                "hostnames": [d.hostname for d in domains],
            },
        )
        return certificate_view(session, ctx, app, replacement)


def delete_certificate(
    ctx: Context, principal: Principal, app_name: str, certificate_id: str
) -> None:
    """Delete the certificate and its key; 409 naming the custom domains still using it."""
    with ctx.database.transaction() as session:
        app = find_app(session, principal, app_name, Action.MANAGE)
        require_licensed(app)
        row = find_tls_certificate(session, app, certificate_id, for_update=True)
        uses = _domain_uses(session, [row.id]).get(row.id, ())
        if uses:
            named = ", ".join(f"{u.hostname} ({u.environment})" for u in uses)
            raise Conflict(
                f"The certificate is in use by the custom domain{'s' if len(uses) > 1 else ''} "
                f"{named}: replace it (POST …/replace) or remove those domains first.",
                code=RefusalCode.CERTIFICATE_IN_USE,
                detail={"domains": [dataclasses.asdict(u) for u in uses]},
            )
        audit.record(
            session,
            ctx,
            principal,
            action="tls_certificate.delete",
            object_type="tls_certificate",
            object_id=row.id,
            app_id=app.id,
            before=certificate_state(row),
        )
        session.delete(row)


# -- shared with custom domains and ACME orders ------------------------------------------


def find_tls_certificate(
    session: Session, app: App, certificate_id: str, *, for_update: bool = False
) -> TlsCertificate:
    """The app's certificate ``certificate_id``; 404 for another app's, as for a missing one."""
    row = session.get(TlsCertificate, certificate_id, with_for_update=for_update)
    if row is None or row.app_id != app.id:
        raise NotFound(
            f"App {app.name!r} has no TLS certificate {certificate_id!r}.",
            code=RefusalCode.TLS_CERTIFICATE_NOT_FOUND,
        )
    return row


def require_usable(row: TlsCertificate, at: datetime, *, role: str) -> None:
    """422 unless ``row`` can serve connections now: complete, valid already, not expired."""
    status = certificate_status(row.not_before, row.not_after, at=at)
    if status is CertificateStatus.PENDING:
        raise InvalidRequest(
            f"The {role} {row.id} is pending: upload the certificate signed for its CSR first.",
            code=RefusalCode.CERTIFICATE_PENDING,
        )
    if status is CertificateStatus.EXPIRED:
        raise InvalidRequest(
            f"The {role} {row.id} ({row.subject}) expired on {row.not_after:%Y-%m-%d %H:%M} UTC.",
            code=RefusalCode.CERTIFICATE_EXPIRED,
        )
    if status is CertificateStatus.UPCOMING:
        raise InvalidRequest(
            f"The {role} {row.id} ({row.subject}) is not valid before "
            f"{row.not_before:%Y-%m-%d %H:%M} UTC; clients would refuse it until then.",
            code=RefusalCode.CERTIFICATE_NOT_YET_VALID,
        )


def leaf_of(row: TlsCertificate) -> x509.Certificate:
    """The parsed certificate of a complete row."""
    if row.certificate_pem is None:
        raise ValueError(f"TLS certificate {row.id} is pending: it has no certificate yet")
    return _parse_certificate(row.certificate_pem)


def key_type_of(key: PrivateKeyTypes) -> str:
    """``ec-p256``, ``rsa-2048``, ``ed25519``… — the names the CSR route takes."""
    info = key_info(key)
    if info.key_type == "ec":
        curve = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
        return f"ec-{curve.get(info.curve or '', info.curve)}"[:16]
    if info.key_type == "rsa":
        return f"rsa-{info.key_size}"
    return info.key_type[:16]


# -- details --------------------------------------------------------------------------------


def check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidRequest(
            f"A description may be at most {MAX_DESCRIPTION} characters.",
            code=RefusalCode.INVALID_DESCRIPTION,
        )


def csr_names(
    common_name: str, sans: Sequence[str], *, check_common_name: bool = True
) -> tuple[str, ...]:
    """The common name then the other SANs, normalized and without repeats; 422 if wrong."""
    names: dict[str, None] = {}
    for name in (common_name, *sans):
        try:
            names.setdefault(normalize_san(name), None)
        except HostnameError as exc:
            raise InvalidRequest(
                f"{exc}: a CSR names host names (IDNs are converted to A-labels), IP "
                "addresses or wildcards such as *.example.com.",
                code=RefusalCode.INVALID_HOSTNAME,
            ) from None
    ordered = tuple(names)
    if check_common_name and len(ordered[0]) > MAX_COMMON_NAME_LENGTH:
        raise InvalidRequest(
            f"The common name is {len(ordered[0])} characters long; X.509 allows at most "
            f"{MAX_COMMON_NAME_LENGTH}. Use a shorter common name and list the long name in "
            "sans.",
            code=RefusalCode.INVALID_HOSTNAME,
        )
    if len(ordered) > MAX_SANS:
        raise InvalidRequest(
            f"A CSR may name at most {MAX_SANS} hosts.", code=RefusalCode.TOO_MANY_NAMES
        )
    return ordered


def _require_pending(row: TlsCertificate) -> None:
    if row.certificate_pem is not None:
        raise Conflict(
            f"TLS certificate {row.id} is not pending: it already has its certificate. Create "
            "a new CSR (or upload a new certificate) and replace this one instead.",
            code=RefusalCode.NOT_PENDING,
        )


def _stored_key(ctx: Context, row: TlsCertificate) -> PrivateKeyTypes:
    der = ctx.secrets.decrypt(row.private_key_ciphertext, aad=key_aad(row.id))
    return load_stored_private_key(der)


def _set_material(row: TlsCertificate, judgement: Judgement) -> None:
    leaf = judgement.leaf
    if leaf is None:
        raise ValueError("a judgement without a leaf cannot be stored")
    info = describe_certificate(leaf)
    row.subject = info.subject
    row.issuer = info.issuer
    row.serial = info.serial
    row.not_before = info.not_before
    row.not_after = info.not_after
    row.sha256_fingerprint = info.sha256_fingerprint
    row.sans = list(sans_of(leaf))
    row.certificate_pem = pem_of([leaf])
    row.chain_pem = pem_of(judgement.chain[1:])


def sans_of(certificate: x509.Certificate) -> tuple[str, ...]:
    """DNS names (lower case) and IP addresses of the certificate's SAN extension."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    dns = [n.lower() for n in extension.value.get_values_for_type(x509.DNSName)]
    ips = [str(a) for a in extension.value.get_values_for_type(x509.IPAddress)]
    return tuple(dict.fromkeys([*dns, *ips]))


def _left_out(judgement: Judgement, requested: Iterable[str]) -> list[Problem]:
    """Warnings for names the CSR asked for that the signed certificate does not cover."""
    leaf = judgement.leaf
    if leaf is None:
        return []
    missing = [n for n in requested if not _covers_name(leaf, n)]
    if not missing:
        return []
    return [
        Problem.warning(
            ProblemCode.NAME_NOT_COVERED,
            f"The CSR asked for {', '.join(missing)}, but the signed certificate does not "
            f"cover {'it' if len(missing) == 1 else 'them'}: custom domains with "
            f"{'that name' if len(missing) == 1 else 'those names'} cannot use it.",
            certificate=subject_of(leaf),
        )
    ]


def _covers_name(leaf: x509.Certificate, name: str) -> bool:
    """Whether ``leaf`` covers a requested SAN (a wildcard: exactly as a SAN of its own)."""
    if name.startswith("*."):
        return name in sans_of(leaf)
    return covers(leaf, name)


def _san_list(row: TlsCertificate) -> str:
    return ", ".join(row.sans) or "none"


def pem_of(certificates: Iterable[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)


@lru_cache(maxsize=1024)
def _parse_certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _domain_uses(
    session: Session, certificate_ids: Sequence[str]
) -> dict[str, tuple[DomainUse, ...]]:
    """The custom domains served with each certificate, by hostname, in one query."""
    if not certificate_ids:
        return {}
    found: dict[str, list[DomainUse]] = {}
    rows = session.execute(
        select(CustomDomain.tls_certificate_id, CustomDomain.hostname, Environment.name)
        .join(Environment, Environment.id == CustomDomain.environment_id)
        .where(CustomDomain.tls_certificate_id.in_(certificate_ids))
        .order_by(CustomDomain.hostname)
    )
    for certificate_id, hostname, environment in rows:
        found.setdefault(certificate_id, []).append(
            DomainUse(hostname=hostname, environment=environment)
        )
    return {k: tuple(v) for k, v in found.items()}


def certificate_state(row: TlsCertificate) -> dict[str, Any]:
    """The public description audited (digested): never the key."""
    return {
        "id": row.id,
        "origin": row.origin,
        "description": row.description,
        "sans": list(row.sans),
        "key_type": row.key_type,
        "csr_pem": row.csr_pem,
        "sha256_fingerprint": row.sha256_fingerprint,
        "chain_pem": row.chain_pem,
    }


def certificate_view(
    session: Session,
    ctx: Context,
    app: App,
    row: TlsCertificate,
    *,
    uses: Sequence[DomainUse] | None = None,
    problems: Iterable[Problem] = (),
) -> TlsCertificateView:
    if uses is None:
        uses = _domain_uses(session, [row.id]).get(row.id, ())
    judged = judge_row(ctx.settings, row, at=ctx.clock.now())
    return TlsCertificateView(
        id=row.id,
        app=app.name,
        origin=row.origin,
        status=judged.status,
        status_reason=judged.reason,
        subject=row.subject,
        issuer=row.issuer,
        serial=row.serial,
        sans=tuple(row.sans),
        not_before=row.not_before,
        not_after=row.not_after,
        sha256_fingerprint=row.sha256_fingerprint,
        chain=chain_summary(row.chain_pem),
        key_type=row.key_type,
        common_name=row.common_name,
        csr_pem=row.csr_pem,
        description=row.description,
        domains=tuple(uses),
        created_at=row.created_at,
        updated_at=row.updated_at,
        problems=tuple(problems),
        renew_after=row.renew_after,
        attempts=row.attempts or 0,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )
