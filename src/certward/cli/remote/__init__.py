"""The ``certward`` commands that drive a certward server through its REST API.

People get Rich tables; scripts add ``--json`` and get the API's JSON as it came. Every
command names its server with ``--server``/``CERTWARD_SERVER`` and its bearer token
with ``--token``/``CERTWARD_TOKEN``. Exit codes: 0 done, 1 the server refused (the
problem's code, detail and every listed problem on standard error) or could not be
reached (one line), 2 a usage error. Passwords come from ``--password-file``,
``--password-stdin`` or a hidden prompt, never from an argument, and are never printed.

``remote_app`` is merged into the ``certward`` Typer app by `certward.cli.app`; it imports
neither FastAPI nor SQLAlchemy, so these commands start quickly. This module is the map
of the command tree: each command group lives in a module of its own and is attached
here, under its help panel.
"""

from __future__ import annotations

from typing import Final

import typer

from certward.cli.remote import (
    access_profiles,
    apps,
    authorities,
    client_certificates,
    crl,
    domains,
    ip_deny,
    path_rules,
    platform,
    staging,
    tls_certificates,
    tokens,
)
from certward.cli.remote.platform import InventoryKind

__all__ = ["InventoryKind", "remote_app"]

_PANEL_OUTGOING: Final = "Apps, environments and outgoing certificates"
_PANEL_RELEASE: Final = "Staged changes and versions"
_PANEL_INCOMING: Final = "Incoming: TLS certificates, domains, access"
_PANEL_PLATFORM: Final = "Tokens, audit and the platform"

remote_app = typer.Typer(no_args_is_help=True)

remote_app.add_typer(apps.app_group, name="app", rich_help_panel=_PANEL_OUTGOING)
remote_app.add_typer(apps.env_group, name="env", rich_help_panel=_PANEL_OUTGOING)
remote_app.add_typer(
    client_certificates.client_cert_group, name="client-cert", rich_help_panel=_PANEL_OUTGOING
)
remote_app.add_typer(authorities.authority_group, name="authority", rich_help_panel=_PANEL_OUTGOING)

remote_app.command("changes", rich_help_panel=_PANEL_RELEASE)(staging.changes_command)
remote_app.command("restart", rich_help_panel=_PANEL_RELEASE)(staging.restart_command)
remote_app.command("rollback", rich_help_panel=_PANEL_RELEASE)(staging.rollback_command)
remote_app.command("versions", rich_help_panel=_PANEL_RELEASE)(staging.versions_command)

remote_app.add_typer(
    tls_certificates.tls_cert_group, name="tls-cert", rich_help_panel=_PANEL_INCOMING
)
remote_app.add_typer(domains.domain_group, name="domain", rich_help_panel=_PANEL_INCOMING)
remote_app.add_typer(
    access_profiles.access_profile_group, name="access-profile", rich_help_panel=_PANEL_INCOMING
)
access_profiles.access_profile_group.add_typer(crl.crl_group, name="crl")
remote_app.add_typer(ip_deny.ip_deny_group, name="ip-deny-profile", rich_help_panel=_PANEL_INCOMING)
remote_app.add_typer(
    path_rules.path_rules_group, name="path-rules", rich_help_panel=_PANEL_INCOMING
)

remote_app.command("inventory", rich_help_panel=_PANEL_PLATFORM)(platform.inventory_command)
remote_app.command("metrics", rich_help_panel=_PANEL_PLATFORM)(platform.metrics_command)
remote_app.command("health", rich_help_panel=_PANEL_PLATFORM)(platform.health_command)
remote_app.add_typer(tokens.token_group, name="token", rich_help_panel=_PANEL_PLATFORM)
remote_app.command("audit", rich_help_panel=_PANEL_PLATFORM)(tokens.audit_command)
remote_app.add_typer(
    platform.platform_ca_group, name="platform-ca", rich_help_panel=_PANEL_PLATFORM
)
remote_app.add_typer(platform.data_plane_group, name="data-plane", rich_help_panel=_PANEL_PLATFORM)
