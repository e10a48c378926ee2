"""TLS certificates, custom domains, access profiles, IP deny profiles and path rules."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from tests.cli.conftest import Cli, write
from tests.material.factory import TestCA, pem_certificates

RULES = {
    "/": {"rule": "profile", "profile": "office"},
    "/health": {"rule": "allow-all"},
    "/admin-doc": {"rule": "deny-all"},
}


def fingerprint(ca: TestCA) -> str:
    """The SHA-256 fingerprint the API names a client CA by."""
    return ca.certificate.fingerprint(hashes.SHA256()).hex()


def test_a_tls_certificate_serves_a_custom_domain(cli: Cli, tls_ca: TestCA, tmp_path: Path) -> None:
    cli.ok("app", "create", "web", "--plan", "licensed")
    cli.ok("env", "create", "web", "production", "--upstream", "http://web.backend.test:8080")
    leaf = tls_ca.issue_leaf("www.web.example", sans=["www.web.example", "web.example"])
    certificate = write(tmp_path, "web.crt", leaf.cert_pem())
    key = write(tmp_path, "web.key", leaf.key_pem())
    chain = write(tmp_path, "chain.pem", pem_certificates([tls_ca.certificate, *tls_ca.chain]))

    incomplete = cli.refused(
        "tls-cert", "upload", "--app", "web", "--certificate", str(certificate), "--key", str(key)
    )
    assert "chain-incomplete" in incomplete.stderr

    uploaded = cli.ok(
        "tls-cert", "upload", "--app", "web", "--certificate", str(certificate),
        "--key", str(key), "--chain", str(chain), "--description", "web 2027", "--json",
    ).json()  # fmt: skip
    tls_id = uploaded["id"]
    assert uploaded["status"] == "valid"
    listing = cli.ok("tls-cert", "list", "--app", "web").stdout
    assert tls_id in listing
    assert "www.web.example" in listing
    assert "web 2027" in listing

    added = cli.ok(
        "domain", "add", "www.web.example", "--app", "web", "--env", "production",
        "--certificate", tls_id,
    ).stdout  # fmt: skip
    assert "www.web.example" in added
    assert "custom" in added
    domains = cli.ok("domain", "list", "--app", "web", "--env", "production", "--json").json()
    assert [d["kind"] for d in domains] == ["managed", "custom"]
    assert domains[1]["certificate"]["id"] == tls_id

    uncovered = cli.refused(
        "domain", "add", "api.web.example", "--app", "web", "--env", "production",
        "--certificate", tls_id,
    )  # fmt: skip
    assert "422 name-not-covered" in uncovered.stderr

    in_use = cli.refused("tls-cert", "delete", tls_id, "--app", "web", "--yes")
    assert "409 certificate-in-use" in in_use.stderr
    assert "hostname=www.web.example" in in_use.stderr
    assert "environment=production" in in_use.stderr

    csr_file = tmp_path / "api.csr"
    pending = cli.ok(
        "tls-cert", "csr", "--app", "web", "--common-name", "api.web.example",
        "--san", "api2.web.example", "--out", str(csr_file),
    ).stdout  # fmt: skip
    assert "pending" in pending
    assert "api.web.example" in pending
    assert csr_file.read_text().startswith("-----BEGIN CERTIFICATE REQUEST-----")
    pending_id = cli.ok("tls-cert", "list", "--app", "web", "--status", "pending", "--json").json()[
        0
    ]["id"]
    signed_elsewhere = write(tmp_path, "other.crt", leaf.cert_pem())
    mismatch = cli.refused(
        "tls-cert", "complete", pending_id, "--app", "web", "--certificate", str(signed_elsewhere),
        "--chain", str(chain),
    )  # fmt: skip
    assert "key-mismatch" in mismatch.stderr

    renewed = tls_ca.issue_leaf("www.web.example", sans=["www.web.example"])
    renewed_id = cli.ok(
        "tls-cert", "upload", "--app", "web",
        "--certificate", str(write(tmp_path, "renewed.crt", renewed.cert_pem())),
        "--key", str(write(tmp_path, "renewed.key", renewed.key_pem())),
        "--chain", str(chain), "--json",
    ).json()["id"]  # fmt: skip
    replaced = cli.ok("tls-cert", "replace", tls_id, "--app", "web", "--with", renewed_id).stdout
    assert "www.web.example (production)" in replaced
    cli.ok("tls-cert", "delete", tls_id, "--app", "web", "--yes")
    cli.ok("domain", "remove", "www.web.example", "--app", "web", "--env", "production")
    assert (
        len(cli.ok("domain", "list", "--app", "web", "--env", "production", "--json").json()) == 1
    )


def test_access_profiles_and_path_rules_are_staged_and_applied(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    cli.ok("app", "create", "gate", "--plan", "licensed")
    cli.ok("env", "create", "gate", "production", "--upstream", "http://gate.backend.test:8080")

    bad = cli.refused(
        "access-profile", "create", "office", "--app", "gate",
        "--ip-range", "10.0.0.1/8", "--ip-range", "192.0.2.0/255.255.255.0",
    )  # fmt: skip
    assert "422 invalid-ip-range" in bad.stderr
    assert "index=0, entry=10.0.0.1/8" in bad.stderr
    assert "index=1" in bad.stderr

    created = cli.ok(
        "access-profile", "create", "office", "--app", "gate", "--ip-range", "10.0.0.0/8"
    ).stdout
    assert "10.0.0.0/8" in created
    issuing = partner_ca.intermediate(name="certward CLI partner issuing CA")
    cas = write(
        tmp_path, "cas.pem", pem_certificates([issuing.certificate, partner_ca.certificate])
    )
    tree = cli.ok("access-profile", "add-cas", "office", "--app", "gate", "--file", str(cas)).stdout
    assert "CN=certward CLI test partner CA" in tree
    assert "CN=certward CLI partner issuing CA" in tree
    selected = cli.ok(
        "access-profile", "select-cas", "office", "--app", "gate",
        "--fingerprint", fingerprint(issuing), "--json",
    ).json()  # fmt: skip
    [root] = selected["certificates"]
    assert root["selected"] is False
    assert root["children"][0]["selected"] is True
    assert (
        "✓ CN=certward CLI partner issuing CA"
        in cli.ok("access-profile", "show", "office", "--app", "gate").stdout
    )
    assert cli("access-profile", "select-cas", "office", "--app", "gate").code == 2

    rules_file = write(tmp_path, "rules.json", json.dumps(RULES).encode())
    staged = cli.ok(
        "path-rules", "set", "--app", "gate", "--env", "production", "--file", str(rules_file)
    )
    assert "profile office" in staged.stdout
    assert "pending" in staged.stdout
    changes = cli.ok("changes", "--app", "gate", "--env", "production", "--json").json()
    assert {c["object_id"] for c in changes["changes"] if c["object_type"] == "path_rule"} == set(
        RULES
    )
    cli.ok("restart", "--app", "gate", "--env", "production")
    rules = cli.ok("path-rules", "show", "--app", "gate", "--env", "production", "--json").json()
    assert rules == {"staged": RULES, "applied": RULES}
    assert (
        "pending" not in cli.ok("path-rules", "show", "--app", "gate", "--env", "production").stdout
    )

    in_use = cli.refused("access-profile", "delete", "office", "--app", "gate")
    assert "409 access-profile-in-use" in in_use.stderr
    assert "environment=production" in in_use.stderr

    unknown = write(
        tmp_path,
        "unknown.json",
        json.dumps({"/": {"rule": "profile", "profile": "nobody"}}).encode(),
    )
    assert (
        "unknown-access-profile"
        in cli.refused(
            "path-rules", "set", "--app", "gate", "--env", "production", "--file", str(unknown)
        ).stderr
    )
    not_json = write(tmp_path, "broken.json", b"{'/': 1}")
    assert (
        cli(
            "path-rules", "set", "--app", "gate", "--env", "production", "--file", str(not_json)
        ).code
        == 2
    )

    cleared = cli.ok(
        "path-rules", "set", "--app", "gate", "--env", "production", "--file", "-", stdin=b"{}"
    ).stdout
    assert "pending" in cleared
    cli.ok("access-profile", "update", "office", "--app", "gate", "--ip-range", "172.16.0.0/12")
    profiles = cli.ok("access-profile", "list", "--app", "gate", "--json").json()
    assert profiles[0]["ip_ranges"] == ["172.16.0.0/12"]
    cli.ok("access-profile", "remove-ca", "office", fingerprint(partner_ca), "--app", "gate")


def test_ip_deny_profiles_are_attached_as_a_whole_set(cli: Cli) -> None:
    cli.ok("app", "create", "deny", "--plan", "free")  # any plan
    cli.ok("env", "create", "deny", "production", "--upstream", "http://deny.backend.test:8080")
    cli.ok("ip-deny-profile", "create", "scanners", "--app", "deny", "--ip-range", "192.0.2.0/24")
    cli.ok("ip-deny-profile", "create", "old-office", "--app", "deny")
    attached = cli.ok(
        "ip-deny-profile",
        "attach",
        "scanners",
        "old-office",
        "--app",
        "deny",
        "--env",
        "production",
    ).stdout
    assert "scanners, old-office" in attached or "old-office, scanners" in attached
    assert sorted(
        cli.ok(
            "ip-deny-profile", "attached", "--app", "deny", "--env", "production", "--json"
        ).json()["profiles"]
    ) == ["old-office", "scanners"]
    listing = cli.ok("ip-deny-profile", "list", "--app", "deny").stdout
    assert "192.0.2.0/24" in listing
    assert "production" in listing

    in_use = cli.refused("ip-deny-profile", "delete", "scanners", "--app", "deny")
    assert "409 ip-deny-profile-in-use" in in_use.stderr
    unknown = cli.refused(
        "ip-deny-profile", "attach", "nobody", "--app", "deny", "--env", "production"
    )
    assert "unknown-ip-deny-profile" in unknown.stderr

    cli.ok("ip-deny-profile", "update", "scanners", "--app", "deny", "--ip-range", "2001:DB8::/32")
    assert cli.ok("ip-deny-profile", "show", "scanners", "--app", "deny", "--json").json()[
        "ip_ranges"
    ] == ["2001:db8::/32"]
    detached = cli.ok("ip-deny-profile", "attach", "--none", "--app", "deny", "--env", "production")
    assert "No IP deny profile" in detached.stdout
    cli.ok("ip-deny-profile", "delete", "scanners", "--app", "deny")


def test_ordering_from_acme_without_an_acme_ca_is_refused_clearly(cli: Cli) -> None:
    cli.ok("app", "create", "acme", "--plan", "licensed")
    refused = cli.refused("tls-cert", "acme", "--app", "acme", "--san", "www.acme.example")
    assert "409 acme-not-configured" in refused.stderr
    assert cli("tls-cert", "acme", "--app", "acme").code == 2  # --san is required
