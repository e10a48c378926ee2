"""Signing out of the console ends the session on the server.

Replays: a copy of the session cookie saved before sign-out still restarted an
environment for the cookie's whole 12-hour lifetime, because the cookie was the whole
session. Now the cookie names a server-side session that sign-out ends.
"""

from __future__ import annotations

from certward.services import apps
from tests.web.conftest import OPERATOR, ConsoleClient, console

__all__ = ["console"]

ENV_PAGE = "/apps/shop/environments/prod"


def _versions(console: ConsoleClient) -> int | None:
    return apps.get_environment(console.platform.context, OPERATOR, "shop", "prod").applied_version


def test_a_cookie_saved_before_sign_out_restarts_nothing_afterwards(
    console: ConsoleClient,
) -> None:
    console.create_app("shop")
    console.create_environment("shop", "prod")
    console.sign_in()
    assert console.get(ENV_PAGE).status_code == 200
    saved_cookie = console.client.cookies["certward_session"]
    saved_csrf = console.csrf_token
    restarted = console.post(ENV_PAGE + "/restart", follow_redirects=False)
    assert restarted.status_code == 303
    applied = _versions(console)
    assert applied is not None

    signed_out = console.post("/sign-out", follow_redirects=False)
    assert signed_out.status_code == 303

    console.client.cookies.clear()
    console.client.cookies.set("certward_session", saved_cookie)
    replayed = console.post(ENV_PAGE + "/restart", csrf=saved_csrf, follow_redirects=False)
    assert replayed.status_code in (303, 401)
    if replayed.status_code == 303:
        assert replayed.headers["location"].startswith("/sign-in")
    assert _versions(console) == applied, "the replayed cookie restarted the environment"

    console.client.cookies.clear()
    console.client.cookies.set("certward_session", saved_cookie)
    page = console.get(ENV_PAGE, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/sign-in")


def test_signing_out_ends_only_that_session(console: ConsoleClient) -> None:
    """Another browser signed in with the same token keeps its own session."""
    console.create_app("shop")
    console.sign_in()
    first_cookie = console.client.cookies["certward_session"]
    console.client.cookies.clear()
    console.csrf_token = ""
    console.sign_in()
    console.post("/sign-out")
    console.client.cookies.clear()
    console.client.cookies.set("certward_session", first_cookie)
    assert console.get("/apps", follow_redirects=False).status_code == 200
