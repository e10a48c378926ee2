"""Access restrictions (access profiles with client CAs, IP deny profiles, staged path
rules) and HTTP-01 challenges published for the data plane.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from certward.migrations import WHEN, identifier, owned_by, primary_key

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _app_ranges_profile("access_profiles")
    op.create_table(
        "access_profile_cas",
        identifier(),
        identifier("profile_id"),
        sa.Column("sha256_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("parent_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_before", WHEN, nullable=False),
        sa.Column("not_after", WHEN, nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("selected", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        owned_by("access_profile_cas", "profile_id", "access_profiles"),
        primary_key("access_profile_cas"),
        sa.UniqueConstraint(
            "profile_id",
            "sha256_fingerprint",
            name=op.f("uq_access_profile_cas_profile_id_sha256_fingerprint"),
        ),
    )
    op.create_index(op.f("ix_access_profile_cas_profile_id"), "access_profile_cas", ["profile_id"])
    _app_ranges_profile("ip_deny_profiles")
    op.create_table(
        "environment_ip_denies",
        identifier("environment_id"),
        identifier("profile_id"),
        sa.Column("created_at", WHEN, nullable=False),
        owned_by("environment_ip_denies", "environment_id", "environments"),
        owned_by("environment_ip_denies", "profile_id", "ip_deny_profiles"),
        primary_key("environment_ip_denies", "environment_id", "profile_id"),
    )
    op.create_index(
        op.f("ix_environment_ip_denies_profile_id"), "environment_ip_denies", ["profile_id"]
    )
    op.create_table(
        "path_rules",
        identifier(),
        identifier("environment_id"),
        sa.Column("prefix", sa.String(length=1024), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("profile_name", sa.String(length=63), nullable=True),
        owned_by("path_rules", "environment_id", "environments"),
        primary_key("path_rules"),
        sa.UniqueConstraint(
            "environment_id", "prefix", name=op.f("uq_path_rules_environment_id_prefix")
        ),
    )
    op.create_index(op.f("ix_path_rules_environment_id"), "path_rules", ["environment_id"])
    op.create_table(
        "acme_challenges",
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("key_authorization", sa.String(length=512), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        primary_key("acme_challenges", "token"),
    )
    op.create_index(op.f("ix_acme_challenges_expires_at"), "acme_challenges", ["expires_at"])


def _app_ranges_profile(table: str) -> None:
    """An app's named profile of IP ranges (access profiles and IP deny profiles share
    the shape)."""
    op.create_table(
        table,
        identifier(),
        identifier("app_id"),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("ip_ranges", sa.JSON(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        owned_by(table, "app_id", "apps"),
        primary_key(table),
        sa.UniqueConstraint("app_id", "name", name=op.f(f"uq_{table}_app_id_name")),
    )


def downgrade() -> None:
    op.drop_table("acme_challenges")
    op.drop_table("path_rules")
    op.drop_table("environment_ip_denies")
    op.drop_table("ip_deny_profiles")
    op.drop_table("access_profile_cas")
    op.drop_table("access_profiles")
