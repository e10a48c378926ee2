"""Editing access and IP deny profiles in the console: where each edit leads, what the
notice says, and where a refused edit shows its errors."""

from __future__ import annotations

from tests.web.conftest import ConsoleClient
from tests.web.test_console import ENV_PAGE, field_error, notice, shop


def test_range_profiles_are_edited_and_deleted_with_notices_and_errors(
    console: ConsoleClient,
) -> None:
    shop(console)
    console.sign_in()
    created = console.post(
        "/apps/shop/access-profiles", {"name": "office", "ip_ranges": "10.0.0.0/8"}
    )
    assert created.url.path == "/apps/shop/access-profiles/office"
    assert notice(created.text) == "Access profile office created."
    saved = console.post(
        "/apps/shop/access-profiles/office/ip-ranges", {"ip_ranges": "10.0.0.0/16"}
    )
    assert saved.url.path == "/apps/shop/access-profiles/office", saved.url
    assert notice(saved.text) == "IP ranges saved; the gateway uses them now."
    bad = console.post("/apps/shop/access-profiles/office/ip-ranges", {"ip_ranges": "10.0.0.1/8"})
    assert bad.status_code == 422
    assert ">10.0.0.1/8</textarea>" in bad.text  # the form's values are kept
    assert "host bits are set" in field_error(bad.text, "ranges")
    dup = console.post("/apps/shop/access-profiles", {"name": "office"})
    assert dup.status_code == 409
    assert "already has an access profile" in field_error(dup.text, "profile-name")
    gone = console.post("/apps/shop/access-profiles/office/delete")
    assert gone.url.path == "/apps/shop/access-profiles"
    assert notice(gone.text) == "Access profile office deleted."

    made = console.post(
        "/apps/shop/ip-deny-profiles", {"name": "blocked", "ip_ranges": "192.0.2.0/24"}
    )
    assert made.url.path == "/apps/shop/ip-deny-profiles"
    assert notice(made.text) == "IP deny profile blocked created; attach it to environments."
    dup = console.post("/apps/shop/ip-deny-profiles", {"name": "blocked"})
    assert dup.status_code == 409
    assert "already has an IP deny profile" in field_error(dup.text, "deny-name")
    ok = console.post("/apps/shop/ip-deny-profiles/blocked", {"ip_ranges": "192.0.2.0/25"})
    assert notice(ok.text) == "IP deny profile blocked saved (live)."
    assert ok.url.path == "/apps/shop/ip-deny-profiles"
    bad = console.post("/apps/shop/ip-deny-profiles/blocked", {"ip_ranges": "nonsense"})
    assert bad.status_code == 422
    assert "not an IP range" in field_error(bad.text, "deny-blocked")
    console.post(ENV_PAGE + "/access/ip-deny-profiles", {"profile": "blocked"})
    in_use = console.post("/apps/shop/ip-deny-profiles/blocked/delete")
    assert in_use.status_code == 409
    assert "is attached to prod" in in_use.text
    console.post(ENV_PAGE + "/access/ip-deny-profiles", {})
    deleted = console.post("/apps/shop/ip-deny-profiles/blocked/delete")
    assert notice(deleted.text) == "IP deny profile blocked deleted."
