"""Tokens and the authorization table: who may do what, and who learns what exists."""

from __future__ import annotations

import re

import pytest

from certward.authorization import (
    Action,
    Principal,
    Verdict,
    authorize,
    generate_token,
    grant_action,
    hash_token,
    token_matches,
    verdict,
    visible,
)
from certward.vocabulary import Role

A, B = "app-a", "app-b"
A_PROD, A_TEST, B_PROD = "env-a-prod", "env-a-test", "env-b-prod"

ADMIN = Principal(token_id="t0", role=Role.ADMIN)
MEMBER = Principal(token_id="t1", role=Role.MEMBER, app_id=A)
VIEWER = Principal(token_id="t2", role=Role.VIEWER, app_id=A)
RUNTIME = Principal(token_id="t3", role=Role.RUNTIME, app_id=A, environment_id=A_PROD)

ALL_ACTIONS = list(Action)

# What each principal may do in its own scope (app A, environment A_PROD).
ALLOWED_IN_SCOPE: dict[Role, set[Action]] = {
    Role.ADMIN: set(Action),
    Role.MEMBER: {
        Action.READ,
        Action.MANAGE,
        Action.READ_AUDIT,
        Action.GRANT_VIEWER,
        Action.GRANT_RUNTIME,
        Action.DOWNLOAD_BUNDLE,
    },
    Role.VIEWER: {Action.READ},
    Role.RUNTIME: {Action.DOWNLOAD_BUNDLE},
}


def test_tokens_are_prefixed_random_and_long() -> None:
    """A token is ``cw_`` plus 32 random bytes in URL-safe base64."""
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert re.fullmatch(r"cw_[A-Za-z0-9_-]{43}", token)


def test_hash_is_sha256_hex_and_matches_in_constant_time() -> None:
    """Only the SHA-256 of a token is stored; matching compares digests."""
    token = generate_token()
    digest = hash_token(token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert token_matches(token, digest)
    assert not token_matches(token + "x", digest)
    assert not token_matches(token, "")


@pytest.mark.parametrize("principal", [ADMIN, MEMBER, VIEWER, RUNTIME], ids=lambda p: p.role)
@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_authorization_table_in_scope(principal: Principal, action: Action) -> None:
    """In its own app and environment, each role may do exactly its row of the table."""
    expected = action in ALLOWED_IN_SCOPE[principal.role]
    assert authorize(principal, action, A, A_PROD) is expected


@pytest.mark.parametrize("principal", [MEMBER, VIEWER, RUNTIME], ids=lambda p: p.role)
@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_nothing_is_allowed_on_another_app(principal: Principal, action: Action) -> None:
    """A token of app A may do nothing on app B, and B stays invisible (404)."""
    assert not authorize(principal, action, B, B_PROD)
    assert not authorize(principal, action, B)
    assert verdict(principal, action, B, B_PROD) is Verdict.NOT_FOUND
    assert verdict(principal, action, B) is Verdict.NOT_FOUND


@pytest.mark.parametrize("principal", [MEMBER, VIEWER, RUNTIME], ids=lambda p: p.role)
@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_platform_actions_need_an_admin(principal: Principal, action: Action) -> None:
    """With no app (creating apps, the whole audit log), only admins are allowed."""
    assert not authorize(principal, action)
    assert verdict(principal, action) is Verdict.FORBIDDEN


def test_admin_does_everything_on_every_app() -> None:
    """Admins manage every app and the platform, and may download any environment's bundle."""
    for app, env in ((A, A_PROD), (B, B_PROD), (None, None)):
        assert authorize(ADMIN, Action.MANAGE, app, env)
        assert authorize(ADMIN, Action.ADMINISTER, app, env)
    assert authorize(ADMIN, Action.DOWNLOAD_BUNDLE, B, B_PROD)
    assert not authorize(ADMIN, Action.DOWNLOAD_BUNDLE)  # a bundle is one environment's


def test_runtime_token_is_bound_to_one_environment() -> None:
    """A runtime token downloads its environment's bundle only; siblings are invisible."""
    assert authorize(RUNTIME, Action.DOWNLOAD_BUNDLE, A, A_PROD)
    assert not authorize(RUNTIME, Action.DOWNLOAD_BUNDLE, A, A_TEST)
    assert not authorize(RUNTIME, Action.DOWNLOAD_BUNDLE, A)
    assert verdict(RUNTIME, Action.DOWNLOAD_BUNDLE, A, A_TEST) is Verdict.NOT_FOUND
    assert verdict(RUNTIME, Action.READ, A, A_PROD) is Verdict.FORBIDDEN


def test_member_and_viewer_cover_every_environment_of_their_app() -> None:
    """App-scoped roles act on all environments of their app."""
    assert authorize(MEMBER, Action.MANAGE, A, A_TEST)
    assert authorize(VIEWER, Action.READ, A, A_TEST)
    assert verdict(VIEWER, Action.MANAGE, A, A_TEST) is Verdict.FORBIDDEN


@pytest.mark.parametrize(
    ("principal", "grantable"),
    [
        (ADMIN, set(Role)),
        (MEMBER, {Role.VIEWER, Role.RUNTIME}),
        (VIEWER, set()),
        (RUNTIME, set()),
    ],
    ids=lambda value: getattr(value, "role", ""),
)
def test_who_may_create_which_tokens(principal: Principal, grantable: set[Role]) -> None:
    """Admins create any token; members create viewer and runtime tokens for their app."""
    assert {role for role in Role if authorize(principal, grant_action(role), A)} == grantable


def test_visibility() -> None:
    """Admins see everything; others see their own app (runtime: its own environment)."""
    assert visible(ADMIN, B, B_PROD)
    assert visible(MEMBER, A, A_TEST)
    assert not visible(VIEWER, B)
    assert visible(RUNTIME, A)
    assert visible(RUNTIME, A, A_PROD)
    assert not visible(RUNTIME, A, A_TEST)


@pytest.mark.parametrize(
    ("role", "app_id", "environment_id"),
    [
        (Role.ADMIN, A, None),
        (Role.MEMBER, None, None),
        (Role.VIEWER, A, A_PROD),
        (Role.RUNTIME, A, None),
        (Role.RUNTIME, None, A_PROD),
    ],
)
def test_principals_with_the_wrong_scope_are_refused(
    role: Role, app_id: str | None, environment_id: str | None
) -> None:
    """A principal's scope must fit its role, as the database also insists."""
    with pytest.raises(ValueError, match="wrong scope"):
        Principal(token_id="t", role=role, app_id=app_id, environment_id=environment_id)
