"""Initial schema: apps, environments, outgoing certificates, versions, tokens, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("plan", _enum("plan", "free", "licensed"), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_apps"),
        sa.UniqueConstraint("name", name="uq_apps_name"),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("app_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("upstream", sa.String(2048), nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column(
            "pkcs12_profile",
            _enum("pkcs12_profile", "modern", "legacy"),
            server_default="modern",
            nullable=False,
        ),
        sa.Column("no_client_certificate", sa.JSON(), nullable=False),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_environments_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_environments"),
        sa.UniqueConstraint("app_id", "name", name="uq_environments_app_id_name"),
        sa.UniqueConstraint("hostname", name="uq_environments_hostname"),
        sa.UniqueConstraint("id", "app_id", name="uq_environments_id_app_id"),
    )
    op.create_table(
        "client_certificates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("description", sa.String(1000), server_default="", nullable=False),
        sa.Column("call_name", sa.String(255), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        _timestamp("not_before"),
        _timestamp("not_after"),
        sa.Column("sha256_fingerprint", sa.String(64), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.Text(), server_default="", nullable=False),
        sa.Column("private_key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("password_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("deleted_at", nullable=True),
        sa.CheckConstraint("length(key_id) = 16", name="ck_client_certificates_key_id_length"),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name="fk_client_certificates_environment_id_environments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_client_certificates"),
        sa.UniqueConstraint(
            "environment_id", "call_name", name="uq_client_certificates_environment_id_call_name"
        ),
        sa.UniqueConstraint(
            "id", "environment_id", name="uq_client_certificates_id_environment_id"
        ),
    )
    op.create_index(
        "ix_client_certificates_environment_id_id",
        "client_certificates",
        ["environment_id", "id"],
    )
    op.create_index("ix_client_certificates_key_id", "client_certificates", ["key_id"])
    op.create_index("ix_client_certificates_not_after", "client_certificates", ["not_after"])
    op.create_index(
        "ix_client_certificates_sha256_fingerprint", "client_certificates", ["sha256_fingerprint"]
    )
    op.create_table(
        "client_certificate_pins",
        sa.Column("client_certificate_id", sa.String(36), nullable=False),
        sa.Column("pin", sa.String(255), nullable=False),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_certificate_id", "environment_id"],
            ["client_certificates.id", "client_certificates.environment_id"],
            name="fk_client_certificate_pins_client_certificates",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_certificate_id", "pin", name="pk_client_certificate_pins"),
        sa.UniqueConstraint(
            "environment_id", "pin", name="uq_client_certificate_pins_environment_id_pin"
        ),
    )
    op.create_table(
        "certificate_authorities",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("certificates_pem", sa.Text(), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("deleted_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name="fk_certificate_authorities_environment_id_environments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_certificate_authorities"),
    )
    op.create_index(
        "ix_certificate_authorities_environment_id", "certificate_authorities", ["environment_id"]
    )
    op.create_table(
        "environment_versions",
        sa.Column("environment_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        _timestamp("applied_at"),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name="fk_environment_versions_environment_id_environments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("environment_id", "version", name="pk_environment_versions"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", _enum("role", "admin", "member", "viewer", "runtime"), nullable=False),
        sa.Column("app_id", sa.String(36), nullable=True),
        sa.Column("environment_id", sa.String(36), nullable=True),
        sa.Column("description", sa.String(1000), server_default="", nullable=False),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.CheckConstraint(
            "(role = 'admin' AND app_id IS NULL AND environment_id IS NULL)"
            " OR (role IN ('member', 'viewer') AND app_id IS NOT NULL AND environment_id IS NULL)"
            " OR (role = 'runtime' AND app_id IS NOT NULL AND environment_id IS NOT NULL)",
            name="ck_tokens_scope",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_tokens_app_id_apps", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id", "app_id"],
            ["environments.id", "environments.app_id"],
            name="fk_tokens_environment_id_app_id_environments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_tokens_token_hash"),
    )
    op.create_index("ix_tokens_app_id", "tokens", ["app_id"])
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        _timestamp("at"),
        sa.Column("actor_token_id", sa.String(36), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("app_id", sa.String(36), nullable=True),
        sa.Column("before_digest", sa.String(64), nullable=True),
        sa.Column("after_digest", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_app_id_id", "audit_events", ["app_id", "id"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])


def downgrade() -> None:
    for table in (
        "audit_events",
        "tokens",
        "environment_versions",
        "certificate_authorities",
        "client_certificate_pins",
        "client_certificates",
        "environments",
        "apps",
    ):
        op.drop_table(table)
