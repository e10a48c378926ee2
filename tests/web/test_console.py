"""The web console through Starlette's TestClient: sessions, CSRF, pages and escaping."""

from __future__ import annotations

import base64
import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi.testclient import TestClient
from starlette.routing import Route

from certward.api import create_app
from certward.authorization import hash_token
from certward.errors import Unauthorized
from certward.services import platform_ca, tls_certificates, tokens
from certward.services.acme_issuing import close_acme
from certward.vocabulary import Plan, Role
from certward.web.pages import grouped_hex
from certward.web.routes import console_routes
from tests.material.factory import NOW, TestCA
from tests.web import hostile_corpus
from tests.web.conftest import ADMIN_TOKEN, OPERATOR, ConsoleClient, console_client

ENV_PAGE = "/apps/shop/environments/prod"


def field_error(page: str, field_id: str) -> str:
    """The text of the error list rendered under the field ``field_id``."""
    found = re.search(rf'<ul class="field-errors" id="{field_id}-error">(.*?)</ul>', page, re.S)
    assert found, f"no error under #{field_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def notice(page: str) -> str:
    found = re.search(r'<p class="notice[^"]*" role="status">(.*?)</p>', page, re.S)
    assert found, "no notice on the page"
    return html.unescape(found.group(1))


def shop(console: ConsoleClient, plan: Plan = Plan.LICENSED) -> None:
    console.create_app("shop", plan)
    console.create_environment("shop", "prod")


@pytest.fixture(scope="module")
def partner_pki() -> dict[str, TestCA]:
    root = TestCA.root(name="Partner Root CA")
    return {"root": root, "issuing": root.intermediate(name="Partner Issuing CA")}


# -- sessions ----------------------------------------------------------------------------------


def test_sign_in_keeps_the_token_sealed_in_a_strict_http_only_cookie(
    console: ConsoleClient,
) -> None:
    console.get("/sign-in")
    response = console.post(
        "/sign-in", {"token": ADMIN_TOKEN, "next": "/apps"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/apps"
    cookie = response.headers["set-cookie"]
    value = cookie.split(";")[0].split("=", 1)[1]
    attributes = cookie.lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "secure" not in attributes  # served over plain http here
    padded = value + "=" * (-len(value) % 4)
    assert ADMIN_TOKEN not in value
    assert ADMIN_TOKEN.encode() not in base64.urlsafe_b64decode(padded)
    assert "Signed in: admin" in console.get("/apps").text


def test_the_session_cookie_is_secure_over_https(console: ConsoleClient) -> None:
    client = TestClient(create_app(console.platform.context), base_url="https://certward.test")
    page = client.get("/sign-in")
    assert "secure" in page.headers["set-cookie"].lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    response = client.post(
        "/sign-in",
        data={"csrf": csrf.group(1), "token": ADMIN_TOKEN},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


def test_a_wrong_token_is_shown_next_to_the_token_field(console: ConsoleClient) -> None:
    console.get("/sign-in")
    response = console.post("/sign-in", {"token": "cw_not-a-token"})
    assert response.status_code == 401
    assert "unknown or revoked" in field_error(response.text, "token")
    assert "Signed in" not in response.text


def test_an_empty_token_is_asked_for(console: ConsoleClient) -> None:
    console.get("/sign-in")
    response = console.post("/sign-in", {"token": "  "})
    assert response.status_code == 422
    assert "Enter a token" in field_error(response.text, "token")


def test_runtime_tokens_cannot_sign_in(console: ConsoleClient) -> None:
    shop(console)
    runtime = tokens.create_token(
        console.platform.context,
        OPERATOR,
        role=Role.RUNTIME,
        app_name="shop",
        environment_name="prod",
        description="",
    )
    console.get("/sign-in")
    response = console.post("/sign-in", {"token": runtime.token})
    assert response.status_code == 403
    assert "runtime token" in field_error(response.text, "token")


def test_pages_send_strangers_to_sign_in_and_back(console: ConsoleClient) -> None:
    shop(console)
    response = console.get(ENV_PAGE + "/domains?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=" + ENV_PAGE + "/domains%3Fx%3D1"
    page = console.get(response.headers["location"])
    assert 'name="next" value="/apps/shop/environments/prod/domains?x=1"' in page.text
    landed = console.post("/sign-in", {"token": ADMIN_TOKEN, "next": ENV_PAGE + "/domains?x=1"})
    assert landed.url.path == ENV_PAGE + "/domains"


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "apps"]
)
def test_sign_in_never_redirects_off_site(console: ConsoleClient, target: str) -> None:
    console.get("/sign-in")
    response = console.post(
        "/sign-in", {"token": ADMIN_TOKEN, "next": target}, follow_redirects=False
    )
    assert response.headers["location"] == "/apps"


def _post_routes() -> list[str]:
    values = {
        "app": "shop",
        "env": "prod",
        "certificate_id": "00000000-0000-0000-0000-000000000000",
        "authority_id": "00000000-0000-0000-0000-000000000000",
        "hostname": "shop.example.com",
        "profile": "office",
        "fingerprint": "ab" * 32,
        "token_id": "00000000-0000-0000-0000-000000000000",
    }
    paths = []
    for route in console_routes():
        if isinstance(route, Route) and "POST" in (route.methods or ()):
            paths.append(re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.path))
    return paths


@pytest.mark.parametrize("path", _post_routes())
def test_every_form_refuses_a_post_without_the_session_csrf_token(
    console: ConsoleClient, path: str
) -> None:
    shop(console)
    console.sign_in()
    for csrf in ("", "forged-" + "x" * 40):
        response = console.post(path, {"name": "changed", "plan": "free"}, csrf=csrf)
        assert response.status_code == 403, path
        assert "csrf-token-mismatch" in response.text
    assert console.get("/apps/shop").status_code == 200  # still signed in, nothing changed
    assert "changed" not in console.get("/apps").text


def test_a_csrf_token_from_another_session_is_refused(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    other = TestClient(create_app(console.platform.context), base_url="http://certward.test")
    foreign = re.search(r'name="csrf" value="([^"]+)"', other.get("/sign-in").text)
    assert foreign
    response = console.post("/apps", {"name": "stolen", "plan": "free"}, csrf=foreign.group(1))
    assert response.status_code == 403
    assert "stolen" not in console.get("/apps").text


def test_sign_out_and_revocation_end_the_session(console: ConsoleClient) -> None:
    shop(console)
    member = tokens.create_token(
        console.platform.context,
        OPERATOR,
        role=Role.MEMBER,
        app_name="shop",
        environment_name=None,
        description="",
    )
    console.sign_in(member.token)
    assert console.get("/apps/shop").status_code == 200
    tokens.revoke_token(console.platform.context, OPERATOR, member.view.id)
    assert console.get("/apps/shop", follow_redirects=False).status_code == 303
    console.sign_in()
    signed_out = console.post("/sign-out")
    assert "Signed out." in notice(signed_out.text)
    assert console.get("/apps", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_counts_as_signed_out(console: ConsoleClient) -> None:
    console.sign_in()
    value = console.client.cookies["certward_session"]
    flipped = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    console.client.cookies.clear()
    console.client.cookies.set("certward_session", flipped)
    assert console.get("/apps", follow_redirects=False).status_code == 303


def test_sessions_end_after_twelve_hours(console: ConsoleClient) -> None:
    console.sign_in()
    console.clock.advance(timedelta(hours=11))
    assert console.get("/apps", follow_redirects=False).status_code == 200
    console.clock.advance(timedelta(hours=2))
    assert console.get("/apps", follow_redirects=False).status_code == 303


def test_api_paths_keep_their_problem_json_answers(console: ConsoleClient) -> None:
    for response in (
        console.client.get("/api/v1/nowhere"),
        console.client.put("/api/v1/apps"),
        console.client.get("/metrics"),
        console.client.post("/healthz"),
    ):
        assert response.headers["content-type"] == "application/problem+json", response.url
    assert console.client.put("/api/v1/apps").status_code == 405
    missing = console.get("/no-such-page")
    assert missing.status_code == 404
    assert "There is no page at this address." in missing.text


def test_pages_carry_security_headers(console: ConsoleClient) -> None:
    page = console.get("/sign-in")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: every script is a file


def test_htmx_is_served_from_the_console_itself(console: ConsoleClient) -> None:
    script = console.get("/static/htmx.min.js")
    assert script.status_code == 200
    assert 'version:"2.0.' in script.text
    assert "0BSD" in console.get("/static/VENDORED.md").text
    assert "Zero-Clause BSD" in console.get("/static/htmx.LICENSE").text


# -- outgoing certificates --------------------------------------------------------------------


def test_wrong_password_legacy_format_and_pem_are_told_apart(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    leaf = partner_pki["issuing"].issue_leaf("partner client", eku=["clientAuth"])
    legacy = leaf.pkcs12("right", legacy=True)
    url = ENV_PAGE + "/client-certificates"

    wrong = console.post(
        url, {"password": "wrong", "pins": "partner.example.com"}, files={"file": ("c.p12", legacy)}
    )
    assert wrong.status_code == 422
    assert "password is wrong" in field_error(wrong.text, "cc-password")
    assert 'id="cc-file-error"' not in wrong.text
    assert "legacy PKCS12 container" in wrong.text  # the format is said not to be the reason
    assert "partner.example.com" in wrong.text  # what was typed stays, the password does not
    assert "wrong" not in re.findall(r'id="cc-password"[^>]*>', wrong.text)[0]

    pem = console.post(url, {"password": ""}, files={"file": ("c.p12", leaf.full_chain_pem())})
    assert pem.status_code == 422
    assert "not a PKCS12 container" in field_error(pem.text, "cc-file")
    assert "certward can build the PKCS12 container itself" in pem.text

    added = console.post(
        url,
        {"password": "right", "pins": "partner.example.com\nBilling.PaymentService"},
        files={"file": ("c.p12", legacy)},
    )
    assert added.status_code == 200
    assert "/client-certificates/" in added.url.path
    text = notice(added.text)
    assert "restart to apply" in text
    assert "legacy PKCS12 container" in text
    fingerprint = leaf.certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)) in added.text
    assert "CN=partner client" in added.text
    assert "CN=Partner Issuing CA" in added.text
    assert "Billing.PaymentService" in added.text


def test_pem_with_its_key_is_accepted_as_a_client_certificate(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    leaf = partner_pki["issuing"].issue_leaf("pem client", eku=["clientAuth"])
    added = console.post(
        ENV_PAGE + "/client-certificates",
        {"call_name": "partner"},
        files={"file": ("c.pem", leaf.cert_pem()), "key": ("k.pem", leaf.key_pem())},
    )
    assert added.status_code == 200, added.text
    assert "CN=pem client" in added.text


def test_pin_conflicts_and_bad_pins_are_shown_next_to_their_fields(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    url = ENV_PAGE + "/client-certificates"
    first = partner_pki["issuing"].issue_leaf("first", eku=["clientAuth"])
    second = partner_pki["issuing"].issue_leaf("second", eku=["clientAuth"])
    console.post(
        url,
        {"password": "pw", "pins": "partner.example.com", "call_name": "partner"},
        files={"file": ("a.p12", first.pkcs12("pw"))},
    )
    taken = console.post(
        url,
        {"password": "pw", "pins": "PARTNER.example.com"},
        files={"file": ("b.p12", second.pkcs12("pw"))},
    )
    assert taken.status_code == 409
    assert "already used by client certificate" in field_error(taken.text, "cc-pins")
    call_name = console.post(
        url,
        {"password": "pw", "call_name": "partner"},
        files={"file": ("b.p12", second.pkcs12("pw"))},
    )
    assert "already used" in field_error(call_name.text, "cc-call-name")
    bad = console.post(
        url,
        {"password": "pw", "pins": "not!a!host"},
        files={"file": ("b.p12", second.pkcs12("pw"))},
    )
    assert "neither a host name" in field_error(bad.text, "cc-pins")


def test_editing_pins_is_pending_until_restart_then_versions_roll_back(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    leaf = partner_pki["issuing"].issue_leaf("partner client", eku=["clientAuth"])
    details = console.post(
        ENV_PAGE + "/client-certificates",
        {"password": "pw", "pins": "old.example.com"},
        files={"file": ("c.p12", leaf.pkcs12("pw"))},
    )
    banner = console.get(ENV_PAGE).text
    assert "Pending changes: restart to apply" in banner
    assert "old.example.com" in banner
    first = console.post(ENV_PAGE + "/restart")
    assert first.url.path == ENV_PAGE + "/versions"
    assert "version 1 is applied" in notice(first.text)
    assert "Nothing pending: version 1 is applied." in console.get(ENV_PAGE).text

    edited = console.post(details.url.path, {"pins": "new.example.com", "call_name": "partner"})
    assert "restart to apply" in notice(edited.text)
    pending = console.get(ENV_PAGE).text
    rows = re.findall(
        r"<tr>\s*(?:<td[^>]*>.*?</td>\s*)*?<td>Pins</td>\s*<td>(.*?)</td>\s*<td[^>]*>(.*?)</td>",
        pending,
        re.S,
    )
    assert rows, "the pins' current and new values are listed"
    current, new = (html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in rows[0])
    assert (current, new) == ("old.example.com", "new.example.com")
    console.post(ENV_PAGE + "/restart")
    rolled = console.post(ENV_PAGE + "/rollback", {"version": "1"})
    assert "version 3 is applied with the content of version 1" in notice(rolled.text)
    assert "old.example.com" in console.get(details.url.path).text


def test_a_refused_restart_lists_every_problem_in_the_banner(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    leaf = partner_pki["issuing"].issue_leaf(
        "short-lived", eku=["clientAuth"], not_after=NOW + timedelta(days=2)
    )
    console.post(
        ENV_PAGE + "/client-certificates",
        {"password": "pw"},
        files={"file": ("c.p12", leaf.pkcs12("pw"))},
    )
    console.clock.advance(timedelta(days=3))
    console.sign_in()  # the session ended with the twelve hours
    refused = console.post(ENV_PAGE + "/restart")
    assert refused.status_code == 422
    assert "expired" in refused.text
    assert "Pending changes: restart to apply" in refused.text


def test_an_authority_pasted_as_text_shows_the_certificates_found(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    pem = (partner_pki["issuing"].cert_pem() + partner_pki["root"].cert_pem()).decode()
    shown = console.post(ENV_PAGE + "/authorities", {"pem": pem})
    assert "/authorities/" in shown.url.path
    assert "2 certificates found" in shown.text
    assert "CN=Partner Root CA" in shown.text
    assert "(self-signed root)" in shown.text
    leaf = partner_pki["issuing"].issue_leaf("leaf", eku=["clientAuth"])
    refused = console.post(ENV_PAGE + "/authorities", {"pem": leaf.cert_pem().decode()})
    assert refused.status_code == 422
    assert "CN=leaf" in field_error(refused.text, "ca-pem")


def test_free_apps_show_why_custom_certificates_are_unavailable(console: ConsoleClient) -> None:
    shop(console, Plan.FREE)
    console.sign_in()
    reason = "is on the free plan: custom certificates"
    network = console.get(ENV_PAGE)
    assert reason in network.text
    assert "Add client certificate" not in network.text
    assert reason in console.get("/apps/shop/tls-certificates").text
    domains = console.get(ENV_PAGE + "/domains").text
    assert reason in domains
    assert "Do not pin this certificate." in domains


def test_the_default_domain_panel_warns_against_pinning(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    page = console.get(ENV_PAGE + "/domains").text
    assert "prod-shop." in page
    assert "Do not pin this certificate." in page
    assert 'href="#custom-domains"' in page
    assert "Renews after" in page


def test_the_runtime_profile_select_offers_modern2026_and_stages_it(
    console: ConsoleClient,
) -> None:
    shop(console)
    console.sign_in()
    page = console.get(ENV_PAGE).text
    for profile in ("modern", "modern2026", "legacy"):
        assert f'<option value="{profile}"' in page
    assert 'value="modern" selected' in page
    staged = console.post(ENV_PAGE + "/runtime-profile", {"pkcs12_profile": "modern2026"})
    assert "Runtimes will read modern2026 PKCS12 files after the next restart." in staged.text
    assert 'value="modern2026" selected' in staged.text
    assert "PBMAC1 MAC: OpenSSL 3.4+, JDK 26, Bouncy Castle 1.81+" in staged.text
    refused = console.post(ENV_PAGE + "/runtime-profile", {"pkcs12_profile": "modern2027"})
    assert "Choose the modern, modern2026 or legacy PKCS12 profile." in refused.text


def test_custom_domain_with_an_uploaded_certificate(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    site = partner_pki["issuing"].issue_leaf("shop.example.com", sans=["shop.example.com"])
    missing_chain = console.post(
        "/apps/shop/tls-certificates",
        {},
        files={"certificate": ("s.pem", site.cert_pem()), "private_key": ("k.pem", site.key_pem())},
    )
    assert missing_chain.status_code == 422
    assert "CN=Partner Issuing CA" in field_error(missing_chain.text, "tls-chain")
    uploaded = console.post(
        "/apps/shop/tls-certificates",
        {"description": "shop 2026"},
        files={
            "certificate": ("s.pem", site.cert_pem()),
            "chain": ("c.pem", partner_pki["issuing"].cert_pem()),
            "private_key": ("k.pem", site.key_pem()),
        },
    )
    certificate_id = uploaded.url.path.rsplit("/", 1)[1]
    not_covered = console.post(
        ENV_PAGE + "/domains", {"hostname": "other.example.com", "certificate_id": certificate_id}
    )
    assert "does not cover other.example.com" in field_error(not_covered.text, "domain-hostname")
    added = console.post(
        ENV_PAGE + "/domains", {"hostname": "shop.example.com", "certificate_id": certificate_id}
    )
    assert "shop.example.com is served" in notice(added.text)
    assert "2027-11-26" in added.text
    listed = console.get("/apps/shop/tls-certificates?status=valid").text
    assert '<span class="cert-text">shop.example.com</span>' in listed
    expired = console.get("/apps/shop/tls-certificates?status=expired").text
    assert '<span class="cert-text">shop.example.com</span>' not in expired
    assert "No TLS certificates with status expired." in expired


def test_a_csr_is_shown_to_copy_and_completed_by_the_signed_certificate(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    created = console.post(
        "/apps/shop/tls-certificates/csr",
        {"common_name": "api.example.com", "sans": "www.example.com", "key_type": "ec-p256"},
    )
    csr_pem = re.search(r'<pre id="csr-pem">(.*?)</pre>', created.text, re.S)
    assert csr_pem
    assert 'data-copy="csr-pem"' in created.text
    request = x509.load_pem_x509_csr(html.unescape(csr_pem.group(1)).encode())
    issuing = partner_pki["issuing"]
    signed = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(issuing.certificate.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("api.example.com"), x509.DNSName("www.example.com")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing.private_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuing.private_key, hashes.SHA256())
    )
    completed = console.post(
        created.url.path + "/signed-certificate",
        {},
        files={
            "certificate": ("s.pem", signed.public_bytes(serialization.Encoding.PEM)),
            "chain": ("c.pem", issuing.cert_pem()),
        },
    )
    assert completed.status_code == 200, re.findall(
        r"field-errors[^>]*>(.*?)</ul>", completed.text, re.S
    )
    assert "the certificate is complete" in notice(completed.text)
    assert "csr-pem" not in completed.text


# -- access restrictions --------------------------------------------------------------------------


def test_access_profile_with_a_client_ca_tree_and_a_path_rule(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    bad = console.post("/apps/shop/access-profiles", {"name": "office", "ip_ranges": "10.0.0.1/8"})
    assert "10.0.0.0/8" in field_error(bad.text, "profile-ranges")
    created = console.post(
        "/apps/shop/access-profiles", {"name": "office", "ip_ranges": "10.0.0.0/8"}
    )
    profile = created.url.path
    assert profile == "/apps/shop/access-profiles/office"
    pem = partner_pki["issuing"].cert_pem() + partner_pki["root"].cert_pem()
    tree = console.post(profile + "/client-cas", {}, files={"certificates": ("cas.pem", pem)})
    nested = re.search(
        r'<ul class="ca-tree">.*?Partner Root CA.*?<ul class="ca-tree">.*?Partner Issuing CA',
        tree.text,
        re.S,
    )
    assert nested, "the issuing CA sits below its root"
    assert tree.text.count('type="checkbox" name="selected"') == 2
    issuing = partner_pki["issuing"].certificate.fingerprint(hashes.SHA256()).hex()
    selected = console.post(profile + "/client-cas/selection", {"selected": [issuing]})
    assert f'value="{issuing}" id="ca-{issuing}" checked' in selected.text
    rules = console.post(
        ENV_PAGE + "/access/path-rules",
        {
            "prefix": ["/", "/api-doc", ""],
            "rule": ["profile", "deny-all", "allow-all"],
            "profile": ["office", "", ""],
        },
    )
    assert "restart the environment to apply them" in notice(rules.text)
    row = re.search(
        r'<tr class="rule-changed">\s*<td class="mono">/</td>\s*'
        r'<td>(.*?)</td>\s*<td class="rule-new">(.*?)</td>',
        rules.text,
    )
    assert row
    assert row.groups() == ("—", "profile office")
    assert "Path rule" in rules.text  # in the pending banner
    console.post(ENV_PAGE + "/restart")
    applied = console.get(ENV_PAGE + "/access").text
    assert re.search(
        r'<td class="mono">/</td>\s*<td>profile office</td>\s*<td>profile office</td>', applied
    )
    in_use = console.post(profile + "/delete")
    assert in_use.status_code == 409
    assert "office" in in_use.text


def test_ip_deny_profiles_are_created_and_attached(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    console.post("/apps/shop/ip-deny-profiles", {"name": "blocked", "ip_ranges": "192.0.2.0/24"})
    attached = console.post(ENV_PAGE + "/access/ip-deny-profiles", {"profile": "blocked"})
    assert 'name="profile" value="blocked" checked' in attached.text
    listed = console.get("/apps/shop/ip-deny-profiles").text
    assert "192.0.2.0/24" in listed
    assert 'href="/apps/shop/environments/prod/access">prod</a>' in listed


# -- platform pages ------------------------------------------------------------------------------


def test_the_expiry_timeline_marks_expiries_and_renewals(
    console: ConsoleClient, partner_pki: dict[str, TestCA]
) -> None:
    shop(console)
    console.sign_in()
    soon = partner_pki["issuing"].issue_leaf(
        "soon", eku=["clientAuth"], not_after=NOW + timedelta(days=20)
    )
    console.post(
        ENV_PAGE + "/client-certificates",
        {"password": "pw"},
        files={"file": ("c.p12", soon.pkcs12("pw"))},
    )
    page = console.get("/platform/certificates").text
    svg = re.search(r'<svg class="timeline".*?</svg>', page, re.S)
    assert svg
    assert 'class="mark-expires status-expires-soon"' in svg.group(0)
    assert "CN=soon (client, shop/prod) expires 2026-12-16" in svg.group(0)
    assert 'class="mark-renews"' in svg.group(0)  # the managed certificate of prod
    assert "Client (1)" in svg.group(0)
    filtered = console.get("/platform/certificates?kind=client&status=expires-soon").text
    assert "CN=soon" in filtered
    assert "prod-shop." not in filtered.split("</svg>", 1)[1]


def test_audit_log_and_platform_ca(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    audit = console.get("/platform/audit").text
    assert "environment.create" in audit
    ca = console.get("/platform/ca").text
    assert 'href="/api/v1/platform/ca"' in ca
    assert "Active root" in ca
    assert "Cross-certificate" not in ca


def test_platform_ca_page_shows_the_cross_certificate_during_the_overlap(
    console: ConsoleClient,
) -> None:
    shop(console)
    console.sign_in()
    rotated = platform_ca.rotate(console.platform.context, new_root=True)
    assert rotated.root.cross_certificate is not None
    page = console.get("/platform/ca").text
    assert "Cross-certificate" in page
    assert grouped_hex(rotated.root.cross_certificate.sha256_fingerprint) in page


def test_viewers_get_no_forms_and_are_refused_changes(console: ConsoleClient) -> None:
    shop(console)
    viewer = tokens.create_token(
        console.platform.context,
        OPERATOR,
        role=Role.VIEWER,
        app_name="shop",
        environment_name=None,
        description="",
    )
    console.sign_in(viewer.token)
    page = console.get(ENV_PAGE).text
    assert "Add client certificate" not in page
    refused = console.post(ENV_PAGE + "/restart")
    assert refused.status_code == 403
    assert console.get("/apps/other", follow_redirects=False).status_code == 404


# -- tokens ------------------------------------------------------------------------------------

NEW_TOKEN = re.compile(r'<pre class="secret" id="new-token">(cw_[A-Za-z0-9_-]+)</pre>')


def token_rows(page: str) -> dict[str, str]:
    """Each listed token's id and its row's text."""
    rows = re.findall(r'<tr>\s*<td class="mono">([0-9a-f-]{36})(.*?)</tr>', page, re.S)
    return {
        token_id: html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))).strip()
        for token_id, row in rows
    }


def test_a_new_token_is_shown_once_and_never_listed(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    page = console.get("/platform/tokens")
    assert page.status_code == 200
    assert '<a href="/platform/tokens" aria-current="page">Tokens</a>' in page.text
    assert "bootstrap admin token" in page.text
    created = console.post(
        "/platform/tokens",
        {"role": "runtime", "app": "shop", "environment": "prod", "description": "prod runtime"},
    )
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    found = NEW_TOKEN.search(created.text)
    assert found, "the new token's value is on the page"
    value = found.group(1)
    assert created.text.count(value) == 1
    assert "It will not be shown again." in created.text
    assert 'data-copy="new-token"' in created.text
    principal = tokens.authenticate(console.platform.context, value)
    assert principal.role is Role.RUNTIME
    assert principal.token_id is not None
    assert "shop/prod" in token_rows(created.text)[principal.token_id]

    for path in ("/platform/tokens", "/platform/tokens?app=shop", "/platform/audit"):
        later = console.get(path).text
        assert value not in later, path
        assert hash_token(value) not in later, path
        assert "new-token" not in later, path
    listed = token_rows(console.get("/platform/tokens?app=shop").text)
    assert list(listed) == [principal.token_id], "the filter shows the app's tokens only"
    assert "runtime" in listed[principal.token_id]
    assert "prod runtime" in listed[principal.token_id]
    assert "active" in listed[principal.token_id]


def test_a_token_form_shows_each_refusal_next_to_its_field(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    no_app = console.post("/platform/tokens", {"role": "member", "app": "", "description": "x"})
    assert no_app.status_code == 422
    assert "needs an app" in field_error(no_app.text, "token-app")
    assert NEW_TOKEN.search(no_app.text) is None
    no_env = console.post("/platform/tokens", {"role": "runtime", "app": "shop"})
    assert "needs an app and an environment" in field_error(no_env.text, "token-environment")
    unknown = console.post(
        "/platform/tokens", {"role": "runtime", "app": "shop", "environment": "staging"}
    )
    assert unknown.status_code == 404
    assert "no environment called 'staging'" in field_error(unknown.text, "token-environment")
    bad_role = console.post("/platform/tokens", {"role": "root", "app": "shop"})
    assert "Choose one of the roles" in field_error(bad_role.text, "token-role")
    long = console.post(
        "/platform/tokens", {"role": "viewer", "app": "shop", "description": "d" * 1001}
    )
    assert long.status_code == 422
    assert "at most 1,000 characters" in field_error(long.text, "token-description")
    assert 'value="viewer" selected' in long.text  # what was typed stays
    assert len(tokens.list_tokens(console.platform.context, OPERATOR)) == 1, "none created"


def test_revoking_a_token_asks_first_and_ends_it_everywhere(console: ConsoleClient) -> None:
    shop(console)
    viewer = tokens.create_token(
        console.platform.context,
        OPERATOR,
        role=Role.VIEWER,
        app_name="shop",
        environment_name=None,
        description="dashboard",
    )
    api_headers = {"Authorization": f"Bearer {viewer.token}"}
    assert console.client.get("/api/v1/apps/shop", headers=api_headers).status_code == 200
    console.sign_in()
    page = console.get("/platform/tokens").text
    action = f"/platform/tokens/{viewer.view.id}/revoke"
    confirm = re.search(
        rf'<details class="confirm">\s*<summary>Revoke.*?</summary>\s*'
        rf'<form method="post" action="{action}">(.*?)</form>',
        page,
        re.S,
    )
    assert confirm, "revoking is behind a confirmation"
    assert 'name="csrf"' in confirm.group(1)
    assert "cannot be undone" in confirm.group(1)

    for csrf in ("", "forged-" + "x" * 40):
        refused = console.post(action, csrf=csrf)
        assert refused.status_code == 403
        assert "csrf-token-mismatch" in refused.text
    assert tokens.authenticate(console.platform.context, viewer.token).role is Role.VIEWER

    revoked = console.post(action, {"app_filter": "shop"})
    assert revoked.url.path == "/platform/tokens"
    assert revoked.url.query == b"app=shop"
    assert f"Token {viewer.view.id} revoked" in notice(revoked.text)
    row = token_rows(revoked.text)[viewer.view.id]
    assert "revoked" in row
    assert "Revoke" not in row
    with pytest.raises(Unauthorized):
        tokens.authenticate(console.platform.context, viewer.token)
    # The API had just seen the token: it is refused at once all the same.
    assert console.client.get("/api/v1/apps/shop", headers=api_headers).status_code == 401
    missing = console.post("/platform/tokens/00000000-0000-0000-0000-000000000000/revoke")
    assert missing.status_code == 404


def test_revoking_the_signed_in_token_signs_out(console: ConsoleClient) -> None:
    console.sign_in()
    [own] = tokens.list_tokens(console.platform.context, OPERATOR)
    page = console.get("/platform/tokens").text
    assert "(you are signed in with it)" in page
    assert "you are signed out: it is the token you signed in with" in page
    landed = console.post(f"/platform/tokens/{own.id}/revoke")
    assert landed.url.path == "/sign-in"
    assert "It was the token you signed in with" in notice(landed.text)


def test_members_manage_their_apps_tokens_and_viewers_none(console: ConsoleClient) -> None:
    shop(console)
    console.create_app("other")
    ctx = console.platform.context

    def create(role: Role, app: str | None, env: str | None = None) -> tokens.NewToken:
        return tokens.create_token(
            ctx, OPERATOR, role=role, app_name=app, environment_name=env, description=role.value
        )

    member = create(Role.MEMBER, "shop")
    viewer = create(Role.VIEWER, "shop")
    runtime = create(Role.RUNTIME, "shop", "prod")
    foreign = create(Role.VIEWER, "other")
    console.sign_in(member.token)
    page = console.get("/platform/tokens").text
    assert '<a href="/platform/tokens"' in page  # in the navigation
    rows = token_rows(page)
    assert set(rows) == {member.view.id, viewer.view.id, runtime.view.id}
    assert "Revoke" not in rows[member.view.id]  # a member may not revoke member tokens
    assert "Revoke" in rows[viewer.view.id]
    assert "Revoke" in rows[runtime.view.id]
    offered = re.search(r'<select id="token-role" name="role"[^>]*>(.*?)</select>', page, re.S)
    assert offered
    assert re.findall(r'value="(\w+)"', offered.group(1)) == ["viewer", "runtime"]
    apps_offered = re.search(r'<select id="token-app" name="app"[^>]*>(.*?)</select>', page, re.S)
    assert apps_offered
    assert re.findall(r'value="([^"]*)"', apps_offered.group(1)) == ["shop"]
    assert 'id="tokens-app"' not in page  # no filter: a member sees its app only

    created = console.post("/platform/tokens", {"role": "viewer", "app": "shop"})
    assert NEW_TOKEN.search(created.text)
    escalate = console.post("/platform/tokens", {"role": "member", "app": "shop"})
    assert escalate.status_code == 403
    assert "may not grant member" in field_error(escalate.text, "token-role")
    elsewhere = console.post("/platform/tokens", {"role": "viewer", "app": "other"})
    assert elsewhere.status_code == 404
    assert "No app called 'other'" in field_error(elsewhere.text, "token-app")
    assert console.get("/platform/tokens?app=other").status_code == 404
    assert console.post(f"/platform/tokens/{foreign.view.id}/revoke").status_code == 404
    assert console.post(f"/platform/tokens/{member.view.id}/revoke").status_code == 403
    assert tokens.authenticate(ctx, foreign.token).role is Role.VIEWER

    console.sign_in(viewer.token)
    apps_page = console.get("/apps").text
    assert 'href="/platform/tokens"' not in apps_page
    refused = console.get("/platform/tokens")
    assert refused.status_code == 403
    assert "may not grant viewer" in refused.text
    assert viewer.token not in refused.text


# -- ordering from the ACME CA ---------------------------------------------------------------------


def test_without_an_acme_ca_the_order_form_shows_the_refusal(console: ConsoleClient) -> None:
    shop(console)
    console.sign_in()
    page = console.get("/apps/shop/tls-certificates").text
    assert "Order from the ACME CA" in page
    assert "No ACME CA is configured on this platform yet" in page
    wildcard = console.post("/apps/shop/tls-certificates/acme", {"sans": "*.example.com"})
    assert wildcard.status_code == 422
    assert "cannot prove a wildcard" in field_error(wildcard.text, "acme-sans")
    refused = console.post(
        "/apps/shop/tls-certificates/acme",
        {"sans": "shop.example.com\nwww.shop.example.com", "description": "storefront"},
    )
    assert refused.status_code == 409
    errors = re.search(
        r'<details class="adder" id="order-acme" open>.*?<div class="form-errors" role="alert">'
        r"(.*?)</div>",
        refused.text,
        re.S,
    )
    assert errors, "the refusal is shown in the open ACME form"
    assert "No ACME CA is configured on this platform (CERTWARD_ACME_DIRECTORY)" in (
        html.unescape(errors.group(1))
    )
    assert "shop.example.com\nwww.shop.example.com</textarea>" in refused.text
    assert 'value="storefront"' in refused.text
    assert tls_certificates.list_certificates(console.platform.context, OPERATOR, "shop") == []


def test_free_apps_show_why_they_cannot_order_from_the_acme_ca(console: ConsoleClient) -> None:
    shop(console, Plan.FREE)
    console.sign_in()
    page = console.get("/apps/shop/tls-certificates").text
    assert "is on the free plan: custom certificates" in page
    assert "Order from the ACME CA" not in page
    refused = console.post("/apps/shop/tls-certificates/acme", {"sans": "shop.example.com"})
    assert refused.status_code == 403
    assert "is on the free plan: custom certificates" in refused.text


def test_an_unreachable_acme_ca_is_said_under_the_hostnames(tmp_path: Path) -> None:
    environ = {"CERTWARD_ACME_DIRECTORY": "https://127.0.0.1:9/dir"}  # the discard port
    try:
        with console_client(tmp_path / "certward-data", environ) as console:
            shop(console)
            console.sign_in()
            page = console.get("/apps/shop/tls-certificates").text
            assert "No ACME CA is configured" not in page
            refused = console.post("/apps/shop/tls-certificates/acme", {"sans": "shop.example.com"})
            assert refused.status_code == 503
            error = field_error(refused.text, "acme-sans")
            assert "unreachable" in error
            assert "Nothing was stored" in error
            assert 'id="order-acme" open' in refused.text
            ctx = console.platform.context
            assert tls_certificates.list_certificates(ctx, OPERATOR, "shop") == []
    finally:
        close_acme()


# -- escaping ----------------------------------------------------------------------------------


def test_hostile_names_are_escaped_on_every_page(console: ConsoleClient) -> None:
    installation = hostile_corpus.populate(console.platform)
    console.sign_in()
    for path in installation.pages:
        response = console.get(path)
        assert response.status_code == 200, path
        page = response.text
        for raw in hostile_corpus.RAW_MARKUP:
            assert raw not in page, f"{path} holds unescaped {raw!r}"
        # Form fields hold the real text to edit; everything displayed shows it as ⟨U+202E⟩.
        displayed = re.sub(r'value="[^"]*"|<textarea[^>]*>[^<]*</textarea>', "", page)
        assert "\u202e" not in displayed, f"{path} displays a raw right-to-left override"
    network = console.get(f"/apps/{hostile_corpus.APP}/environments/{hostile_corpus.ENV}").text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in network  # shown, as text
    assert "{{7*7}}" in network
    assert "⟨U+202E⟩" in network
    tls = console.get(f"/apps/{hostile_corpus.APP}/tls-certificates").text
    assert "&lt;img src=x onerror=window.__xss=1&gt;.example.com" in tls
    listed = console.get("/platform/tokens").text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in listed
    assert "&#34;&gt;&lt;img src=x onerror=window.__xss=1;//&gt;" in listed
    assert "{{7*7}} ⟨U+202E⟩gpj.exe" in listed
