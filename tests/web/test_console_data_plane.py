"""The console shows upstream refusals on the upstream field and, to platform admins,
the sites the nginx data plane leaves out."""

from __future__ import annotations

import html
import re

from certward.dataplane.state import DataPlaneState, Site
from certward.services import dataplane_exclusions
from tests.web.conftest import ConsoleClient, console
from tests.web.test_console import field_error

__all__ = ["console"]


def test_an_upstream_the_policy_refuses_is_shown_on_its_field(console: ConsoleClient) -> None:
    console.create_app("shop")
    console.create_app("other")
    console.create_environment("other", "prod")
    console.sign_in()
    cases = {
        "http://169.254.169.254/": "metadata",
        "http://[fe80::1%25eth0]:8080/": "scope id",
        "http://prod-other.apps.localhost/": "hostname this platform serves",
        "http://other.backend.test:8080/": "upstream of another app",
    }
    for upstream, words in cases.items():
        page = console.post("/apps/shop/environments", {"name": "prod", "upstream": upstream})
        assert page.status_code in (409, 422), upstream
        assert words in field_error(page.text, "env-upstream"), upstream


def test_platform_admins_see_the_sites_nginx_leaves_out(console: ConsoleClient) -> None:
    console.create_app("evil")
    console.create_environment("evil", "prod")
    hostname = "prod-evil.apps.localhost"
    site = Site(
        hostname=hostname,
        kind="managed",
        app="evil",
        environment="prod",
        environment_id="env",
        upstream="http://[fe80::1%;}x]/",
        certificate=None,
    )
    state = DataPlaneState(sites={hostname: site}, version="v1")
    console.sign_in()
    assert "Every site is served" in console.get("/platform/data-plane").text
    dataplane_exclusions.record(
        console.platform.context, state, {hostname: "upstream not allowed: <scope id>"}
    )
    page = console.get("/platform/data-plane")
    assert page.status_code == 200
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.text))
    assert hostname in text
    assert "upstream not allowed: <scope id>" in text  # shown, escaped
    assert "<scope id>" not in page.text
    assert 'href="/platform/data-plane"' in page.text
