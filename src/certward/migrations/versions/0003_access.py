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

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "access_profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("ip_ranges", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_access_profiles_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_profiles")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_access_profiles_app_id_name")),
    )
    op.create_table(
        "access_profile_cas",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("sha256_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("parent_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_before", _WHEN, nullable=False),
        sa.Column("not_after", _WHEN, nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("selected", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["access_profiles.id"],
            name=op.f("fk_access_profile_cas_profile_id_access_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_profile_cas")),
        sa.UniqueConstraint(
            "profile_id",
            "sha256_fingerprint",
            name=op.f("uq_access_profile_cas_profile_id_sha256_fingerprint"),
        ),
    )
    op.create_index(op.f("ix_access_profile_cas_profile_id"), "access_profile_cas", ["profile_id"])
    op.create_table(
        "ip_deny_profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("ip_ranges", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_ip_deny_profiles_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_deny_profiles")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_ip_deny_profiles_app_id_name")),
    )
    op.create_table(
        "environment_ip_denies",
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_environment_ip_denies_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["ip_deny_profiles.id"],
            name=op.f("fk_environment_ip_denies_profile_id_ip_deny_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "environment_id", "profile_id", name=op.f("pk_environment_ip_denies")
        ),
    )
    op.create_index(
        op.f("ix_environment_ip_denies_profile_id"), "environment_ip_denies", ["profile_id"]
    )
    op.create_table(
        "path_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("prefix", sa.String(length=1024), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("profile_name", sa.String(length=63), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_path_rules_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_path_rules")),
        sa.UniqueConstraint(
            "environment_id", "prefix", name=op.f("uq_path_rules_environment_id_prefix")
        ),
    )
    op.create_index(op.f("ix_path_rules_environment_id"), "path_rules", ["environment_id"])
    op.create_table(
        "acme_challenges",
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("key_authorization", sa.String(length=512), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_acme_challenges")),
    )
    op.create_index(op.f("ix_acme_challenges_expires_at"), "acme_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_table("acme_challenges")
    op.drop_table("path_rules")
    op.drop_table("environment_ip_denies")
    op.drop_table("ip_deny_profiles")
    op.drop_table("access_profile_cas")
    op.drop_table("access_profiles")
