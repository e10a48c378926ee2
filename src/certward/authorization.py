"""Bearer tokens and who may do what (pure: no database, no clock).

A token is ``cw_`` followed by 32 random bytes (URL-safe base64); only its SHA-256
is stored. `verdict` tells callers what to answer (go on, 403 or 404): a principal
never learns whether an app or environment outside its scope exists (``NOT_FOUND``,
i.e. 404, not 403).

=========  ==========================================================  ================
role       may                                                         scope
=========  ==========================================================  ================
admin      everything                                                  the platform
member     read, manage, read the audit log, grant viewer/runtime,    one app
           download its environments' runtime bundles
viewer     read                                                        one app
runtime    download the runtime bundle                                 one environment
=========  ==========================================================  ================

Private keys leave certward only inside runtime bundles (re-encrypted with fresh
passwords), for the environment they belong to, and every download is audited; no
other response ever carries a key or a password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum, StrEnum

from certward.vocabulary import Role

TOKEN_PREFIX = "cw_"  # noqa: S105 - a prefix, not a secret
TOKEN_RANDOM_BYTES = 32


class Action(StrEnum):
    """What a request wants to do; the app and environment it touches are separate."""

    READ = "read"  # see an app, its environments, certificates, changes and versions
    MANAGE = "manage"  # change them: upload, edit, delete, restart, roll back
    ADMINISTER = "administer"  # platform: create apps, change plans, delete apps
    READ_AUDIT = "read-audit"  # the audit log (of one app, or of all with no app)
    GRANT_ADMIN = "grant-admin"  # create or revoke a token of that role
    GRANT_MEMBER = "grant-member"
    GRANT_VIEWER = "grant-viewer"
    GRANT_RUNTIME = "grant-runtime"
    DOWNLOAD_BUNDLE = "download-bundle"  # an environment's runtime bundle (private keys)


class Verdict(Enum):
    """The answer to a request: go on, 403, or 404."""

    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is asking: the role of a valid token and what it is scoped to."""

    token_id: str | None
    role: Role
    app_id: str | None = None
    environment_id: str | None = None

    def __post_init__(self) -> None:
        scoped_to_app = self.app_id is not None
        scoped_to_env = self.environment_id is not None
        expected = {
            Role.ADMIN: (False, False),
            Role.MEMBER: (True, False),
            Role.VIEWER: (True, False),
            Role.RUNTIME: (True, True),
        }[self.role]
        if (scoped_to_app, scoped_to_env) != expected:
            raise ValueError(f"a {self.role} token has the wrong scope")


_APP_ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.MEMBER: frozenset(
        {
            Action.READ,
            Action.MANAGE,
            Action.READ_AUDIT,
            Action.GRANT_VIEWER,
            Action.GRANT_RUNTIME,
            Action.DOWNLOAD_BUNDLE,
        }
    ),
    Role.VIEWER: frozenset({Action.READ}),
}


def generate_token() -> str:
    """A new random token value (shown once, then only its hash is kept)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """Whether ``token`` hashes to ``token_hash``, in constant time."""
    return hmac.compare_digest(hash_token(token).encode(), token_hash.encode())


def grant_action(role: Role) -> Action:
    """The action needed to create or revoke a token of ``role``."""
    return Action(f"grant-{role.value}")


def visible(principal: Principal, app_id: str, environment_id: str | None = None) -> bool:
    """Whether ``principal`` may learn that the app (and environment) exist."""
    if principal.role is Role.ADMIN:
        return True
    if app_id != principal.app_id:
        return False
    if principal.role is Role.RUNTIME and environment_id is not None:
        return environment_id == principal.environment_id
    return True


def authorize(
    principal: Principal,
    action: Action,
    app_id: str | None = None,
    environment_id: str | None = None,
) -> bool:
    """Whether ``principal`` may do ``action`` on the app and environment (None: platform)."""
    if action is Action.DOWNLOAD_BUNDLE and environment_id is None:
        return False  # a bundle belongs to one environment
    if principal.role is Role.ADMIN:
        return True
    if app_id is None or app_id != principal.app_id:
        return False
    if principal.role is Role.RUNTIME:
        return action is Action.DOWNLOAD_BUNDLE and environment_id == principal.environment_id
    return action in _APP_ROLE_ACTIONS[principal.role]


def verdict(
    principal: Principal,
    action: Action,
    app_id: str | None = None,
    environment_id: str | None = None,
) -> Verdict:
    """`authorize`, plus whether a refusal must hide the object (404) or not (403)."""
    if authorize(principal, action, app_id, environment_id):
        return Verdict.ALLOWED
    if app_id is not None and not visible(principal, app_id, environment_id):
        return Verdict.NOT_FOUND
    return Verdict.FORBIDDEN
