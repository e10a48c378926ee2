"""The database tables, as typed SQLAlchemy 2 models.

Public material (certificates, chains) is stored in clear; secrets (private keys,
passwords) only as `certward.secrets` envelopes bound to their row, with the id of
the key that sealed them in a ``key_id`` column: every table that has one holds
secrets (`certward.db.stored_key_ids` checks them at start; rotation rewrites them).

Nothing here reads the clock: callers pass every timestamp. Conflicts the product
promises to refuse (a pin or call name used twice in one environment, a second
version with the same number) are also enforced by the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import DateTime as _DateTime
from sqlalchemy import Enum as _Enum
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

from certward.pki.convert import Pkcs12Profile
from certward.randomness import SYSTEM_RANDOMNESS
from certward.vocabulary import Plan, Role

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KEY_ID_LENGTH = 16


def new_id() -> str:
    """A fresh random row id (UUID text)."""
    return str(SYSTEM_RANDOMNESS.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned tz-aware, on SQLite too."""

    impl = _DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("certward stores tz-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def enum_type(enum: type[StrEnum], name: str) -> _Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint, storing the values."""
    return _Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Base of every table; constraint names follow `NAMING_CONVENTION`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}  # noqa: RUF012


class App(Base):
    """An app: a DNS-label ``name`` and a plan."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    plan: Mapped[Plan] = mapped_column(enum_type(Plan, "plan"))
    created_at: Mapped[datetime]
    # Strict-Transport-Security max-age sent on every HTTPS response of the app's
    # hostnames; None sends none (an upstream's own header passes through).
    hsts_max_age: Mapped[int | None] = mapped_column(Integer, default=None)

    environments: Mapped[list[Environment]] = relationship(
        back_populates="app", cascade="all, delete-orphan", passive_deletes=True
    )


class Environment(Base):
    """One environment of an app, with its default ``hostname`` and applied version."""

    __tablename__ = "environments"
    __table_args__ = (
        UniqueConstraint("app_id", "name"),
        UniqueConstraint("id", "app_id"),  # target of tokens' (environment, app) reference
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    upstream: Mapped[str] = mapped_column(String(2048))
    hostname: Mapped[str] = mapped_column(String(253), unique=True)
    pkcs12_profile: Mapped[Pkcs12Profile] = mapped_column(
        enum_type(Pkcs12Profile, "pkcs12_profile"),
        default=Pkcs12Profile.MODERN,
        server_default=Pkcs12Profile.MODERN.value,
    )
    # Hosts and Module.Service names that must never get a client certificate (staged).
    no_client_certificate: Mapped[list[str]] = mapped_column(JSON, default=list)
    applied_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]

    app: Mapped[App] = relationship(back_populates="environments")


class ClientCertificate(Base):
    """An outgoing client certificate of one environment (staged until restart).

    Its material never changes (replacing uploads a new row); a staged removal sets
    ``deleted_at`` and keeps the row while applied versions may still refer to it.
    """

    __tablename__ = "client_certificates"
    __table_args__ = (
        # NULL call names never collide, on SQLite and PostgreSQL alike.
        UniqueConstraint("environment_id", "call_name"),
        UniqueConstraint("id", "environment_id"),  # target of the pins' reference
        CheckConstraint(f"length(key_id) = {KEY_ID_LENGTH}", name="key_id_length"),
        Index(None, "environment_id", "id"),  # an environment's certificates, paged by id
        Index(None, "not_after"),  # the inventory, soonest expiry first
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    call_name: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    sha256_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text, default="", server_default="")
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    password_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]

    pins: Mapped[list[ClientCertificatePin]] = relationship(
        back_populates="client_certificate",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ClientCertificatePin.pin",
    )


class ClientCertificatePin(Base):
    """A host or ``Module.Service`` name a client certificate is presented for.

    ``environment_id`` repeats the certificate's (kept equal by a composite foreign
    key) so that one pin per environment is a database constraint.
    """

    __tablename__ = "client_certificate_pins"
    __table_args__ = (
        ForeignKeyConstraint(
            ["client_certificate_id", "environment_id"],
            ["client_certificates.id", "client_certificates.environment_id"],
            name="fk_client_certificate_pins_client_certificates",  # the default is too long
            ondelete="CASCADE",
        ),
        UniqueConstraint("environment_id", "pin"),
    )

    client_certificate_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    pin: Mapped[str] = mapped_column(String(255), primary_key=True)
    environment_id: Mapped[str] = mapped_column(String(36))

    client_certificate: Mapped[ClientCertificate] = relationship(back_populates="pins")


class CertificateAuthority(Base):
    """An upload of CA certificates that outgoing calls of one environment trust."""

    __tablename__ = "certificate_authorities"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    certificates_pem: Mapped[str] = mapped_column(Text)
    subjects: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class EnvironmentVersion(Base):
    """An applied, immutable version of an environment's outgoing configuration.

    ``snapshot`` holds no secret: it names client certificates by id and digest.
    """

    __tablename__ = "environment_versions"

    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(255))


class Token(Base):
    """A bearer token, stored as the SHA-256 of its value; scope depends on ``role``."""

    __tablename__ = "tokens"
    __table_args__ = (
        ForeignKeyConstraint(
            ["environment_id", "app_id"],
            ["environments.id", "environments.app_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint(
            "(role = 'admin' AND app_id IS NULL AND environment_id IS NULL)"
            " OR (role IN ('member', 'viewer') AND app_id IS NOT NULL AND environment_id IS NULL)"
            " OR (role = 'runtime' AND app_id IS NOT NULL AND environment_id IS NOT NULL)",
            name="scope",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    app_id: Mapped[str | None] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    environment_id: Mapped[str | None] = mapped_column(String(36))
    description: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ConsoleSessionRecord(Base):
    """A signed-in console session, so that signing out ends it on the server too.

    The sealed session cookie carries a random session secret; the row is keyed by its
    SHA-256 (a database dump names no live session). A cookie whose row is ended,
    expired or gone is refused, however well it is sealed.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str | None] = mapped_column(
        ForeignKey("tokens.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who changed what, when; digests before and after, never secret values."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "app_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor_token_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(255))
    app_id: Mapped[str | None] = mapped_column(String(36))  # no FK: outlives deleted apps
    before_digest: Mapped[str | None] = mapped_column(String(64))
    after_digest: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# -- incoming: the platform CA, managed default-domain certificates, custom domains --------


class CaState(StrEnum):
    ACTIVE = "active"  # issues new certificates
    RETIRING = "retiring"  # still published and trusted until what it issued is replaced
    RETIRED = "retired"


class PlatformCa(Base):
    """A certificate of the built-in platform CA: the root, or an issuing intermediate.

    A root made by a rotation also carries its cross-certificate: its key certified by
    the root it replaced (``cross_issuer_id``), served above what its intermediates
    issue while that root is not retired.
    """

    __tablename__ = "platform_cas"
    __table_args__ = (CheckConstraint(f"length(key_id) = {KEY_ID_LENGTH}", name="key_id_length"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # "root" or "intermediate"
    issuer_id: Mapped[str | None] = mapped_column(ForeignKey("platform_cas.id"))
    subject: Mapped[str] = mapped_column(Text)
    certificate_pem: Mapped[str] = mapped_column(Text)
    sha256_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), index=True)
    state: Mapped[CaState] = mapped_column(enum_type(CaState, "ca_state"))
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    cross_issuer_id: Mapped[str | None] = mapped_column(ForeignKey("platform_cas.id"))
    cross_certificate_pem: Mapped[str | None] = mapped_column(Text)


class ManagedCertificate(Base):
    """A certificate the platform issued for an environment's default hostname.

    One row per issuance; the environment's live one is the newest ``active`` row.
    Renewal is due at ``renew_after`` (from the certificate's own dates, with jitter);
    a worker claims a due row until ``claimed_until`` and records failures with backoff.
    """

    __tablename__ = "managed_certificates"
    __table_args__ = (
        CheckConstraint(f"length(key_id) = {KEY_ID_LENGTH}", name="key_id_length"),
        Index(None, "state", "renew_after"),
        Index(None, "environment_id", "state"),
        Index(None, "state", "not_after"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(String(253))
    issuer: Mapped[str] = mapped_column(String(16))  # "builtin" or "acme"
    issuing_ca_id: Mapped[str | None] = mapped_column(ForeignKey("platform_cas.id"))
    certificate_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text, default="", server_default="")
    serial: Mapped[str] = mapped_column(String(64))
    sha256_fingerprint: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    renew_after: Mapped[datetime]
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), index=True)
    state: Mapped[str] = mapped_column(String(16))  # "active" or "superseded"
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]


class TlsCertificate(Base):
    """An app's own certificate for custom domains: uploaded, born from a CSR, or ordered
    from the ACME CA.

    A CSR-born one is ``pending`` (key and CSR, no certificate) until the signed
    certificate is uploaded; its key never leaves certward. An ACME one is renewed by
    the worker from ``renew_after`` on (claimed like a managed certificate, failures
    retried with backoff); the renewal is a new row.
    """

    __tablename__ = "tls_certificates"
    __table_args__ = (
        CheckConstraint(f"length(key_id) = {KEY_ID_LENGTH}", name="key_id_length"),
        Index(None, "app_id", "not_after"),
        Index(None, "not_after"),
        Index(None, "renew_after"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(16))  # "upload", "csr" or "acme"
    description: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    common_name: Mapped[str | None] = mapped_column(String(255))
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    key_type: Mapped[str] = mapped_column(String(16))
    csr_pem: Mapped[str | None] = mapped_column(Text)
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text, default="", server_default="")
    subject: Mapped[str | None] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(Text)
    serial: Mapped[str | None] = mapped_column(String(64))
    sha256_fingerprint: Mapped[str | None] = mapped_column(String(64))
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime | None]
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Automatic renewal (ACME certificates only; NULL renew_after: never renewed here).
    renew_after: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]


class CustomDomain(Base):
    """An extra hostname an environment serves with one of its app's TLS certificates."""

    __tablename__ = "custom_domains"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    hostname: Mapped[str] = mapped_column(String(253), unique=True)  # platform-wide
    # NO ACTION, not RESTRICT: a certificate in use cannot be deleted, but deleting the
    # app removes its certificates and (through its environments) their domains in one
    # statement, which SQLite allows only when the check waits for the statement's end.
    tls_certificate_id: Mapped[str] = mapped_column(ForeignKey("tls_certificates.id"), index=True)
    created_at: Mapped[datetime]


class Webhook(Base):
    """A URL told when a certificate enters expires-soon, expires, or fails to renew."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event for one webhook, retried with backoff until delivered."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(None, "delivered_at", "next_attempt_at"),
        UniqueConstraint("webhook_id", "dedup_key"),  # one notice per event and certificate
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class RangeProfileTable(Base):
    """The columns of a named set of IP ranges owned by an app, unique by name within it.

    Access profiles and IP deny profiles are both one: each kind is a table of these
    columns, with what else it holds in tables of its own.
    """

    __abstract__ = True

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    ip_ranges: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @declared_attr.directive
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("app_id", "name"),)


class AccessProfile(RangeProfileTable):
    """Who may call an app's environments: IP ranges, or a client certificate.

    A request passes a profile when its address is in one of ``ip_ranges`` or its
    client certificate verifies to one of the profile's selected client CAs. Edits are
    live: the data plane reads profiles as they are.
    """

    __tablename__ = "access_profiles"


class AccessProfileCa(Base):
    """One certificate of an access profile's client-CA upload (a root or intermediate).

    ``parent_fingerprint`` draws the upload as a tree (None: a root, or a certificate
    whose issuer is not in the upload). When no certificate of a profile is
    ``selected``, all of them are accepted.
    """

    __tablename__ = "access_profile_cas"
    __table_args__ = (UniqueConstraint("profile_id", "sha256_fingerprint"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    profile_id: Mapped[str] = mapped_column(
        ForeignKey("access_profiles.id", ondelete="CASCADE"), index=True
    )
    sha256_fingerprint: Mapped[str] = mapped_column(String(64))
    parent_fingerprint: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    certificate_pem: Mapped[str] = mapped_column(Text)
    selected: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[datetime]
    # The CA's certificate revocation list, as uploaded (DER), and what was read from it.
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    crl_issuer: Mapped[str | None] = mapped_column(Text)
    crl_this_update: Mapped[datetime | None]
    crl_next_update: Mapped[datetime | None]
    crl_revoked: Mapped[int | None]
    # Set when the renewal worker set a stale CRL aside (CERTWARD_EXPIRED_CRL=warn): the
    # data plane then does not check the CA's certificates against it.
    crl_set_aside_at: Mapped[datetime | None]


class IpDenyProfile(RangeProfileTable):
    """Address ranges refused before any other rule, on the environments it is attached to."""

    __tablename__ = "ip_deny_profiles"


class EnvironmentIpDeny(Base):
    """An IP deny profile attached to an environment (live, not staged)."""

    __tablename__ = "environment_ip_denies"

    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    profile_id: Mapped[str] = mapped_column(
        ForeignKey("ip_deny_profiles.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime]


class PathRule(Base):
    """One staged path rule of an environment; a restart applies the set as a whole.

    ``rule`` is ``allow-all``, ``deny-all``, ``profile`` (with ``profile_name``) or
    ``inherit``; the longest matching ``prefix`` wins.
    """

    __tablename__ = "path_rules"
    __table_args__ = (UniqueConstraint("environment_id", "prefix"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(1024))
    rule: Mapped[str] = mapped_column(String(16))
    profile_name: Mapped[str | None] = mapped_column(String(63))


class AcmeChallenge(Base):
    """An HTTP-01 key authorization published for the data plane to answer.

    Rows live while an ACME order is validated; ``expires_at`` lets a crashed order's
    rows be swept. Public by design: the ACME CA fetches them over plain HTTP.
    """

    __tablename__ = "acme_challenges"

    token: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_authorization: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class UpstreamBackend(Base):
    """A backend address (``host:port`` of an upstream) and the one app it belongs to.

    Kept while any environment of the app forwards there: another app naming the same
    backend is refused (409), as a hostname is, so one tenant cannot send its callers'
    verified client-certificate headers to another tenant's backend.
    """

    __tablename__ = "upstream_backends"

    backend: Mapped[str] = mapped_column(String(300), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]


class DataPlaneExclusion(Base):
    """A hostname the nginx data plane leaves out of its configuration, and why.

    Written by the nginx agent after each install: the rows are exactly the sites the
    active configuration does not serve (a refused or unresolvable upstream, a site
    ``nginx -t`` rejects). ``since`` is when the site was first left out.
    """

    __tablename__ = "data_plane_exclusions"

    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    app: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime]


class DataPlaneSequence(Base):
    """The one row (``id`` 1) counting changes to what the data plane serves.

    Written only by the database's own triggers (migration 0007): every insert, update
    or delete of a served row adds one to ``value`` and lists the hostnames it touched
    in `DataPlaneChange`, in the same transaction. ``trimmed`` is the newest sequence
    whose changes were deleted: a node behind it loads a full snapshot.
    """

    __tablename__ = "data_plane_sequence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger)
    trimmed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DataPlaneChange(Base):
    """A hostname whose served site changed at ``sequence`` (it may now be gone)."""

    __tablename__ = "data_plane_changes"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)


class DataPlaneNode(Base):
    """A gateway worker or nginx agent, as it last reported itself.

    ``sequence`` and ``version`` are what it serves (the change sequence it has applied
    and the state digest); ``last_contact`` is when it last wrote this row.
    """

    __tablename__ = "data_plane_nodes"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "gateway" or "nginx"
    sequence: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[str] = mapped_column(String(64))
    hostnames: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    last_contact: Mapped[datetime]
