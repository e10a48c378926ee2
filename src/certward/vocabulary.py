"""Closed sets of domain words (pure), shared by pure code and the database.

The PKCS12 profile an environment's runtime reads is `certward.pki.convert.Pkcs12Profile`.
"""

from __future__ import annotations

from enum import StrEnum


class Plan(StrEnum):
    """An app's plan: only ``licensed`` apps may use custom certificates."""

    FREE = "free"
    LICENSED = "licensed"


class Role(StrEnum):
    """What a token may do: see `certward.authorization.authorize`."""

    ADMIN = "admin"  # the platform: everything
    MEMBER = "member"  # one app: manage it
    VIEWER = "viewer"  # one app: read it
    RUNTIME = "runtime"  # one environment: download its runtime bundle
