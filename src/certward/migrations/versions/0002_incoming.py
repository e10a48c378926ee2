"""Incoming certificates: the platform CA, managed default-domain certificates,
custom domains with their TLS certificates, and expiry webhooks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_cas",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("issuer_id", sa.String(length=36), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("sha256_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("private_key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "retiring",
                "retired",
                name="ca_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("length(key_id) = 16", name=op.f("ck_platform_cas_key_id_length")),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["platform_cas.id"], name=op.f("fk_platform_cas_issuer_id_platform_cas")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_cas")),
        sa.UniqueConstraint("sha256_fingerprint", name=op.f("uq_platform_cas_sha256_fingerprint")),
    )
    op.create_index(op.f("ix_platform_cas_key_id"), "platform_cas", ["key_id"], unique=False)
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "tls_certificates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=1000), server_default="", nullable=False),
        sa.Column("common_name", sa.String(length=255), nullable=True),
        sa.Column("sans", sa.JSON(), nullable=False),
        sa.Column("key_type", sa.String(length=16), nullable=False),
        sa.Column("csr_pem", sa.Text(), nullable=True),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("chain_pem", sa.Text(), server_default="", nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("sha256_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("private_key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(key_id) = 16", name=op.f("ck_tls_certificates_key_id_length")),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_tls_certificates_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tls_certificates")),
    )
    op.create_index(
        op.f("ix_tls_certificates_app_id_not_after"),
        "tls_certificates",
        ["app_id", "not_after"],
        unique=False,
    )
    op.create_index(
        op.f("ix_tls_certificates_key_id"), "tls_certificates", ["key_id"], unique=False
    )
    op.create_index(
        op.f("ix_tls_certificates_not_after"), "tls_certificates", ["not_after"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("webhook_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "webhook_id", "dedup_key", name=op.f("uq_webhook_deliveries_webhook_id_dedup_key")
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_delivered_at_next_attempt_at"),
        "webhook_deliveries",
        ["delivered_at", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "custom_domains",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("tls_certificate_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_custom_domains_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tls_certificate_id"],
            ["tls_certificates.id"],
            name=op.f("fk_custom_domains_tls_certificate_id_tls_certificates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_domains")),
        sa.UniqueConstraint("hostname", name=op.f("uq_custom_domains_hostname")),
    )
    op.create_index(
        op.f("ix_custom_domains_environment_id"), "custom_domains", ["environment_id"], unique=False
    )
    op.create_index(
        op.f("ix_custom_domains_tls_certificate_id"),
        "custom_domains",
        ["tls_certificate_id"],
        unique=False,
    )
    op.create_table(
        "managed_certificates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("issuer", sa.String(length=16), nullable=False),
        sa.Column("issuing_ca_id", sa.String(length=36), nullable=True),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.Text(), server_default="", nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("sha256_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renew_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("private_key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(key_id) = 16", name=op.f("ck_managed_certificates_key_id_length")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_managed_certificates_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["issuing_ca_id"],
            ["platform_cas.id"],
            name=op.f("fk_managed_certificates_issuing_ca_id_platform_cas"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_certificates")),
    )
    op.create_index(
        op.f("ix_managed_certificates_environment_id_state"),
        "managed_certificates",
        ["environment_id", "state"],
        unique=False,
    )
    op.create_index(
        op.f("ix_managed_certificates_key_id"), "managed_certificates", ["key_id"], unique=False
    )
    op.create_index(
        op.f("ix_managed_certificates_state_not_after"),
        "managed_certificates",
        ["state", "not_after"],
        unique=False,
    )
    op.create_index(
        op.f("ix_managed_certificates_state_renew_after"),
        "managed_certificates",
        ["state", "renew_after"],
        unique=False,
    )


def downgrade() -> None:
    for table in (
        "managed_certificates",
        "custom_domains",
        "webhook_deliveries",
        "tls_certificates",
        "webhooks",
        "platform_cas",
    ):
        op.drop_table(table)
