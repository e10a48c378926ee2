"""The console in a real browser (Debian's chromium through Playwright) against uvicorn.

The seed workflow of the reference product's "Certificates" page, end to end, with
screenshots of the main pages at 1280 and 390 pixels wide (see ``tests/web/conftest.py``
for where they go); hostile certificate names that must not run; forms without
JavaScript; the keyboard alone; and a phone-sized viewport without sideways scrolling.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from playwright.sync_api import Page, expect

from certward.vocabulary import Plan
from tests.material.factory import IssuedCert, TestCA
from tests.web import hostile_corpus
from tests.web.conftest import ADMIN_TOKEN, LiveConsole

pytestmark = [pytest.mark.external("chromium"), pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ENV = "/apps/shop/environments/production"


@pytest.fixture
def page(browser: Any, live_console: LiveConsole) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, base_url=live_console.base_url)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


def upload(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/octet-stream", "buffer": data}


def shoot(page: Page, directory: Path, name: str) -> None:
    """Full-page screenshots at 1280 and 390 pixels wide."""
    for label, viewport in (("1280", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(directory / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_in(page: Page, token: str = ADMIN_TOKEN) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Apps", exact=True)).to_be_visible()


def notice(page: Page) -> Any:
    return page.locator("p.notice")


@pytest.fixture(scope="module")
def partner() -> dict[str, Any]:
    root = TestCA.root(name="Partner Root CA")
    issuing = root.intermediate(name="Partner Issuing CA")
    client: IssuedCert = issuing.issue_leaf("partner client", eku=["clientAuth"])
    site: IssuedCert = issuing.issue_leaf("shop.example.com", sans=["shop.example.com"])
    return {"root": root, "issuing": issuing, "client": client, "site": site}


def test_the_seed_workflow_in_the_browser(
    page: Page, partner: dict[str, Any], screenshot_dir: Path
) -> None:

    def shoot_here(name: str) -> None:
        shoot(page, screenshot_dir, name)

    page.goto("/sign-in")
    shoot_here("sign-in")
    sign_in(page)

    # An app and an environment, created in the console.
    page.get_by_text("Create an app").click()
    page.get_by_label("Name").fill("shop")
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("heading", name="shop", exact=True)).to_be_visible()
    page.get_by_text("Create an environment").click()
    page.get_by_label("Name").fill("production")
    page.get_by_label("Upstream").fill("http://10.0.0.10:8080")
    page.get_by_role("button", name="Create environment").click()
    expect(page).to_have_url(re.compile(ENV + "$"))
    shoot_here("app")
    page.goto("/apps")
    shoot_here("apps")
    page.goto(ENV)

    # Network tab: a legacy PKCS12 client certificate, first with a wrong password.
    legacy = partner["client"].pkcs12("right-password", legacy=True)
    page.get_by_text("Add client certificate", exact=True).first.click()
    page.get_by_label("Certificate file").set_input_files(upload("partner.p12", legacy))
    page.get_by_label("Password", exact=True).fill("wrong-password")
    page.get_by_label("Pin to web services").fill("partner.example.com")
    page.get_by_role("button", name="Add client certificate").click()
    password_error = page.locator("#cc-password-error")
    expect(password_error).to_contain_text("The password is wrong")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute(
        "aria-describedby", "cc-password-error"
    )
    expect(page.locator("#cc-file-error")).to_have_count(0)
    expect(page.get_by_text("This is a legacy PKCS12 container")).to_be_visible()
    expect(page).to_have_url(re.compile(ENV + "$"))
    shoot_here("client-certificate-wrong-password")

    page.get_by_label("Certificate file").set_input_files(upload("partner.p12", legacy))
    page.get_by_label("Password", exact=True).fill("right-password")
    page.get_by_label("Web service call name").fill("partner")
    page.get_by_role("button", name="Add client certificate").click()
    expect(page).to_have_url(re.compile(r"/client-certificates/[0-9a-f-]+$"))
    expect(notice(page)).to_contain_text("restart to apply it")
    fingerprint = partner["client"].certificate.fingerprint(hashes.SHA256()).hex().upper()
    expect(
        page.get_by_text(fingerprint[:2] + ":" + fingerprint[2:4], exact=False).first
    ).to_be_visible()

    # Pin it to a host and a web service.
    page.get_by_label("Pins").fill("partner.example.com\nBilling.PaymentService")
    page.get_by_role("button", name="Save").click()
    expect(notice(page)).to_contain_text("restart to apply them")
    expect(page.locator("dd").get_by_text("Billing.PaymentService")).to_be_visible()
    shoot_here("client-certificate")

    # An authority, as a PEM file.
    page.get_by_role("link", name="Network").click()
    page.get_by_text("Add authority", exact=True).first.click()
    chain = partner["issuing"].cert_pem() + partner["root"].cert_pem()
    page.get_by_label("PEM file").set_input_files(upload("partner-ca.pem", chain))
    page.get_by_role("button", name="Add authority").click()
    expect(page.get_by_text("2 certificates found")).to_be_visible()
    expect(page.get_by_role("heading", name="CN=Partner Root CA")).to_be_visible()
    shoot_here("authority")

    # The pending banner, then a restart, then the applied version.
    page.get_by_role("link", name="Network").click()
    banner = page.locator("#pending")
    expect(banner).to_contain_text("Pending changes: restart to apply")
    expect(banner).to_contain_text("CN=partner client")
    expect(banner).to_contain_text("Billing.PaymentService")
    expect(banner).to_contain_text("Certificate authority")
    shoot_here("network-pending")
    banner.get_by_role("button", name="Restart").click()
    expect(page).to_have_url(re.compile(ENV + "/versions$"))
    expect(notice(page)).to_contain_text("version 1 is applied")
    expect(page.get_by_text("Nothing pending: version 1 is applied.")).to_be_visible()
    expect(page.locator("td", has_text="running")).to_be_visible()
    shoot_here("versions")
    page.get_by_role("link", name="Network").click()
    expect(page.locator("#pending")).to_have_count(0)
    shoot_here("network")

    # A custom domain with an uploaded certificate.
    page.goto("/apps/shop/tls-certificates")
    page.get_by_text("Upload a certificate").click()
    site = partner["site"]
    page.get_by_label("Certificate (PEM or DER)").set_input_files(
        upload("shop.pem", site.cert_pem())
    )
    page.get_by_label("Intermediate chain (PEM)").set_input_files(
        upload("chain.pem", partner["issuing"].cert_pem())
    )
    page.get_by_label("Private key (PEM or DER)").set_input_files(
        upload("shop.key", site.key_pem())
    )
    page.get_by_role("button", name="Upload certificate").click()
    expect(notice(page)).to_contain_text("uploaded")
    shoot_here("tls-certificate")
    page.goto("/apps/shop/tls-certificates")
    shoot_here("tls-certificates")
    page.get_by_text("Order from the ACME CA").click()
    page.get_by_label("Hostnames (one per line)").fill("www.shop.example.com")
    page.get_by_role("button", name="Order certificate").click()
    expect(page.locator("#order-acme .form-errors")).to_contain_text("No ACME CA is configured")
    shoot_here("tls-acme-refused")
    page.goto(ENV + "/domains")
    expect(page.get_by_text("Do not pin this certificate.")).to_be_visible()
    page.get_by_text("Add custom domain", exact=True).first.click()
    page.get_by_label("Hostname").fill("shop.example.com")
    page.get_by_role("button", name="Add custom domain").click()
    expect(notice(page)).to_contain_text("shop.example.com is served")
    row = page.locator("tr", has_text="shop.example.com")
    expect(row).to_contain_text("valid")
    expect(row).to_contain_text("2027-11-26")
    shoot_here("domains")

    # An access profile with a client CA, and a path rule that uses it.
    page.goto("/apps/shop/access-profiles")
    page.get_by_text("Create access profile").click()
    page.get_by_label("Name").fill("office")
    page.get_by_label("IP ranges (one per line)").fill("10.0.0.0/8\n2001:db8::/32")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("heading", name="Access profile office")).to_be_visible()
    page.get_by_text("Upload client CAs").click()
    page.get_by_label(re.compile("CA certificates")).set_input_files(upload("cas.pem", chain))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(notice(page)).to_contain_text("Client CAs added")
    issuing_box = page.get_by_role("checkbox", name="CN=Partner Issuing CA")
    expect(page.get_by_role("checkbox", name="CN=Partner Root CA")).not_to_be_checked()
    issuing_box.check()
    page.get_by_role("button", name="Save selection").click()
    expect(notice(page)).to_contain_text("Accepted client CAs saved")
    expect(page.get_by_role("checkbox", name="CN=Partner Issuing CA")).to_be_checked()
    shoot_here("access-profile")

    page.goto(ENV + "/access")
    page.get_by_text("Edit path rules").click()
    page.locator("#prefix-0").fill("/")
    page.locator("#rule-0").select_option("profile")
    page.locator("#profile-0").select_option("office")
    page.get_by_role("button", name="Stage path rules").click()
    expect(notice(page)).to_contain_text("restart the environment to apply them")
    rule = page.locator("tr.rule-changed")
    expect(rule.locator("td").nth(1)).to_have_text("—")
    expect(rule.locator("td").nth(2)).to_have_text("profile office")
    expect(page.locator("#pending")).to_contain_text("Path rule")
    shoot_here("access")

    page.goto("/platform/certificates")
    expect(page.locator("svg.timeline circle")).not_to_have_count(0)
    shoot_here("inventory")
    page.goto("/platform/audit")
    expect(page.get_by_text("client_certificate.upload")).to_be_visible()
    shoot_here("audit")
    page.goto("/platform/ca")
    shoot_here("platform-ca")

    # A runtime token: its value is shown once, then only its id.
    page.goto("/platform/tokens")
    page.get_by_text("Create a token").click()
    page.locator("#token-role").select_option("runtime")
    page.locator("#token-app").select_option("shop")
    page.locator("#token-environment").fill("production")
    page.get_by_label("Description").fill("production runtime")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-panel")).to_contain_text("It will not be shown again.")
    value = page.locator("#new-token").inner_text()
    assert value.startswith("cw_")
    shoot_here("token-created")
    page.goto("/platform/tokens")
    expect(page.locator("tr", has_text="production runtime")).to_contain_text("active")
    assert value not in page.content()
    shoot_here("tokens")
    assert len(list(screenshot_dir.glob("*-1280.png"))) >= 15
    assert len(list(screenshot_dir.glob("*-390.png"))) >= 15


def test_hostile_names_never_run_in_the_browser(
    browser: Any, live_console: LiveConsole, screenshot_dir: Path
) -> None:
    installation = hostile_corpus.populate(live_console.platform)
    # Without the console's Content-Security-Policy: escaping alone must hold.
    context = browser.new_context(viewport=DESKTOP, base_url=live_console.base_url, bypass_csp=True)
    dialogs: list[str] = []
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        sign_in(page)
        for path in installation.pages:
            page.goto(path)
            page.wait_for_load_state("load")
            assert page.evaluate("() => window.__xss") is None, path
        page.goto(f"/apps/{hostile_corpus.APP}/environments/{hostile_corpus.ENV}")
        text = page.locator("main").inner_text()
        assert hostile_corpus.SCRIPT in text  # shown as text, exactly
        assert hostile_corpus.TEMPLATE in text
        assert "⟨U+202E⟩" in text
        page.screenshot(path=str(screenshot_dir / "hostile-names-1280.png"), full_page=True)
        assert page.evaluate("() => window.__xss") is None
    finally:
        context.close()
    assert dialogs == []


def test_forms_work_without_javascript(
    browser: Any, live_console: LiveConsole, partner: dict[str, Any]
) -> None:
    live_console.create_app("shop", Plan.LICENSED)
    live_console.create_environment("shop", "production")
    context = browser.new_context(
        viewport=DESKTOP, base_url=live_console.base_url, java_script_enabled=False
    )
    try:
        page = context.new_page()
        sign_in(page)
        page.goto(ENV)
        page.get_by_text("Add client certificate", exact=True).first.click()
        legacy = partner["client"].pkcs12("pw", legacy=True)
        page.get_by_label("Certificate file").set_input_files(upload("c.p12", legacy))
        page.get_by_label("Password", exact=True).fill("nope")
        page.get_by_role("button", name="Add client certificate").click()
        expect(page.locator("#cc-password-error")).to_contain_text("The password is wrong")
        page.get_by_label("Certificate file").set_input_files(upload("c.p12", legacy))
        page.get_by_label("Password", exact=True).fill("pw")
        page.get_by_role("button", name="Add client certificate").click()
        expect(page).to_have_url(re.compile(r"/client-certificates/"))
        page.get_by_role("link", name="Network").click()
        page.get_by_role("button", name="Restart").click()
        expect(notice(page)).to_contain_text("version 1 is applied")
    finally:
        context.close()


def test_the_console_works_from_the_keyboard(page: Page, live_console: LiveConsole) -> None:
    live_console.create_app("shop", Plan.LICENSED)
    live_console.create_environment("shop", "production")
    sign_in(page)
    page.goto(ENV)
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent.trim()")
    assert focused == "Skip to content"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == "Domains":
            break
    else:
        pytest.fail("the Domains tab cannot be reached with Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(ENV + "/domains$"))
    expect(page.locator('.tabs a[aria-current="page"]')).to_have_text("Domains")
    page.goto(ENV)
    summary = page.locator("summary", has_text="Add client certificate")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Certificate file")).to_be_visible()


def test_a_phone_sized_screen_never_scrolls_sideways(
    browser: Any, live_console: LiveConsole
) -> None:
    installation = hostile_corpus.populate(live_console.platform)
    context = browser.new_context(viewport=PHONE, base_url=live_console.base_url)
    try:
        page = context.new_page()
        sign_in(page)
        for path in installation.pages:
            page.goto(path)
            wide = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wide <= 0, f"{path} is {wide}px wider than the screen"
    finally:
        context.close()
