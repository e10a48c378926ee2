"""Apps, environments, client certificates, authorities and releases from the command line."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, client_leaf, write
from tests.material.factory import TestCA
from tests.material.openssl_cli import OpenSSLCli, Pkcs12Variant

PASSWORD = 'cli "legacy" pässwörd,1'  # quotes, a comma and non-ASCII: sent exactly
OTHER_PASSWORD = "another-cli-password-7"


def where(app: str, env: str = "production") -> tuple[str, ...]:
    return ("--app", app, "--env", env)


def test_an_app_goes_from_nothing_to_a_rolled_back_version(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    assert (
        "Created app shop (licensed)."
        in cli.ok("app", "create", "shop", "--plan", "licensed").stdout
    )
    apps = cli.ok("app", "list", "--json").json()
    assert {"name": "shop", "plan": "licensed"}.items() <= next(
        a for a in apps if a["name"] == "shop"
    ).items()
    assert "licensed" in cli.ok("app", "list").stdout

    environment = cli.ok(
        "env",
        "create",
        "shop",
        "production",
        "--upstream",
        "http://shop.backend.test:8080",
        "--json",
    ).json()
    assert environment["hostname"].startswith("production-shop.")
    shown = cli.ok("env", "show", "shop", "production").stdout
    assert environment["hostname"] in shown
    assert "http://shop.backend.test:8080" in shown

    leaf = client_leaf(partner_ca, "shop-production")
    p12 = write(tmp_path, "partner.p12", leaf.pkcs12(PASSWORD, legacy=True))
    password_file = write(tmp_path, "partner.password", PASSWORD.encode() + b"\n")
    wrong_password_file = write(tmp_path, "wrong.password", b"not the password\n")

    wrong = cli.refused(
        "client-cert", "add", *where("shop"), "--file", str(p12),
        "--password-file", str(wrong_password_file), "--pin", "partner.example.com",
    )  # fmt: skip
    assert "Refused (422 wrong-password)" in wrong.stderr
    assert "error [wrong-password]" in wrong.stderr

    added = cli.ok(
        "client-cert", "add", *where("shop"), "--file", str(p12),
        "--password-file", str(password_file),
        "--pin", "partner.example.com", "--call-name", "Partner.Service", "--json",
    ).json()  # fmt: skip
    certificate_id = added["id"]
    assert added["pins"] == ["partner.example.com"]
    assert added["call_name"] == "Partner.Service"
    assert added["state"] == "staged"

    listing = cli.ok("client-cert", "list", *where("shop")).stdout
    for text in (certificate_id, "CN=shop-production", "partner.example.com", "Partner.Service"):
        assert text in listing
    assert [c["id"] for c in cli.ok("client-cert", "list", *where("shop"), "--json").json()] == [
        certificate_id
    ]

    updated = cli.ok(
        "client-cert", "update", certificate_id, *where("shop"),
        "--add-pin", "billing.example.com", "--json",
    ).json()  # fmt: skip
    assert sorted(updated["pins"]) == ["billing.example.com", "partner.example.com"]
    assert updated["call_name"] == "Partner.Service"  # left alone

    authority_file = write(tmp_path, "partner-ca.pem", partner_ca.cert_pem())
    authority = cli.ok("authority", "add", *where("shop"), "--file", str(authority_file)).stdout
    assert "CN=certward CLI test partner CA" in authority
    [stored] = cli.ok("authority", "list", *where("shop"), "--json").json()

    pending = cli.ok("changes", *where("shop"))
    assert "Applied: nothing yet" in pending.stdout
    assert "added" in pending.stdout
    assert certificate_id in pending.stdout
    assert stored["id"] in pending.stdout
    assert "2 pending change(s)" in pending.stdout
    changes = cli.ok("changes", *where("shop"), "--json").json()
    assert {(c["change"], c["object_type"]) for c in changes["changes"]} == {
        ("added", "client_certificate"),
        ("added", "certificate_authority"),
    }

    assert "Applied version 1 of shop/production" in cli.ok("restart", *where("shop")).stdout
    assert "No pending changes." in cli.ok("changes", *where("shop")).stdout
    assert "stays applied" in cli.ok("restart", *where("shop")).stdout

    cli.ok(
        "client-cert", "update", certificate_id, *where("shop"),
        "--remove-pin", "billing.example.com", "--no-call-name",
    )  # fmt: skip
    modified = cli.ok("changes", *where("shop")).stdout
    assert "modified" in modified
    assert "pins: billing.example.com, partner.example.com" in modified  # current
    assert "pins: partner.example.com" in modified  # new
    assert "call_name: Partner.Service" in modified
    version_2 = cli.ok("restart", *where("shop"), "--json").json()
    assert version_2["version"] == 2
    assert version_2["changed"] is True

    versions = cli.ok("versions", *where("shop")).stdout
    assert "current" in versions
    assert version_2["digest"] in versions
    rolled_back = cli.ok("rollback", *where("shop"), "--to", "1", "--json").json()
    assert rolled_back["version"] == 3
    history = cli.ok("versions", *where("shop"), "--json").json()
    assert [v["version"] for v in history] == [3, 2, 1]
    assert history[0]["digest"] == history[2]["digest"]
    restored = cli.ok("client-cert", "show", certificate_id, *where("shop"), "--json").json()
    assert sorted(restored["pins"]) == ["billing.example.com", "partner.example.com"]
    assert restored["call_name"] == "Partner.Service"

    bundle = tmp_path / "bundle.tar.gz"
    assert (
        "version 3"
        in cli.ok("env", "runtime-bundle", "shop", "production", "--out", str(bundle)).stdout
    )
    assert bundle.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert bundle.stat().st_mode & 0o777 == 0o600

    cli.ok("client-cert", "delete", certificate_id, *where("shop"))
    assert "removed" in cli.ok("changes", *where("shop")).stdout

    assert all(PASSWORD not in output for output in cli.outputs)
    assert all("pässwörd" not in output for output in cli.outputs)


def test_a_pin_taken_by_another_certificate_is_refused_naming_both(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    cli.ok("app", "create", "pins", "--plan", "licensed")
    cli.ok("env", "create", "pins", "production", "--upstream", "http://pins.backend.test:8080")
    first = client_leaf(partner_ca, "first")
    second = client_leaf(partner_ca, "second")
    password_file = write(tmp_path, "pw", OTHER_PASSWORD.encode())
    for leaf, name in ((first, "first.p12"), (second, "second.p12")):
        write(tmp_path, name, leaf.pkcs12(OTHER_PASSWORD))
    cli.ok(
        "client-cert", "add", *where("pins"), "--file", str(tmp_path / "first.p12"),
        "--password-file", str(password_file), "--pin", "partner.example.com",
    )  # fmt: skip
    conflict = cli.refused(
        "client-cert", "add", *where("pins"), "--file", str(tmp_path / "second.p12"),
        "--password-file", str(password_file), "--pin", "Partner.Example.com",
    )  # fmt: skip
    assert "Refused (409 pin-conflict)" in conflict.stderr
    assert "conflicts:" in conflict.stderr
    assert "CN=first" in conflict.stderr

    as_json = cli.refused(
        "client-cert", "add", *where("pins"), "--file", str(tmp_path / "second.p12"),
        "--password-file", str(password_file), "--pin", "partner.example.com", "--json",
    )  # fmt: skip
    problem = as_json.problem()
    assert problem["code"] == "pin-conflict"
    assert problem["status"] == 409
    assert problem["conflicts"][0]["client_certificate_subject"] == "CN=first"


def test_passwords_come_from_stdin_or_a_hidden_prompt_never_from_arguments(
    cli: Cli, partner_ca: TestCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("app", "create", "secrets", "--plan", "licensed")
    cli.ok(
        "env", "create", "secrets", "production", "--upstream", "http://secrets.backend.test:8080"
    )
    p12 = write(tmp_path, "a.p12", client_leaf(partner_ca, "stdin").pkcs12(PASSWORD))

    usage = cli("client-cert", "add", *where("secrets"), "--file", str(p12), "--password", "x")
    assert usage.code == 2

    from_stdin = cli(
        "client-cert", "add", *where("secrets"), "--file", str(p12), "--password-stdin",
        "--pin", "stdin.example.com", stdin=PASSWORD.encode() + b"\n",
    )  # fmt: skip
    assert from_stdin.code == 0, from_stdin.stderr

    prompted: list[str] = []

    def typed(prompt: str = "") -> str:
        prompted.append(prompt)
        return PASSWORD

    monkeypatch.setattr(getpass, "getpass", typed)
    p12_again = write(tmp_path, "b.p12", client_leaf(partner_ca, "prompt").pkcs12(PASSWORD))
    asked = cli.ok("client-cert", "add", *where("secrets"), "--file", str(p12_again), tty=True)
    assert prompted
    assert "Password of b.p12" in asked.stderr  # the prompt is on stderr, never in --json

    # Without a terminal nothing is asked: the server says the password is wrong.
    p12_third = write(tmp_path, "c.p12", client_leaf(partner_ca, "none").pkcs12(PASSWORD))
    assert (
        "wrong-password"
        in cli.refused("client-cert", "add", *where("secrets"), "--file", str(p12_third)).stderr
    )
    assert all(PASSWORD not in output for output in cli.outputs)


@pytest.mark.external("openssl")
def test_an_openssl_legacy_pkcs12_is_staged(
    cli: Cli, partner_ca: TestCA, openssl_cli: OpenSSLCli, tmp_path: Path
) -> None:
    cli.ok("app", "create", "legacy", "--plan", "licensed")
    cli.ok("env", "create", "legacy", "production", "--upstream", "http://legacy.backend.test:8080")
    leaf = client_leaf(partner_ca, "openssl-legacy")
    p12 = write(
        tmp_path,
        "legacy.pfx",
        openssl_cli.pkcs12(leaf, variant=Pkcs12Variant.LEGACY, password=OTHER_PASSWORD),
    )
    added = cli.ok(
        "client-cert", "add", *where("legacy"), "--file", str(p12), "--password-stdin",
        "--pin", "legacy.example.com", "--json", stdin=OTHER_PASSWORD.encode(),
    ).json()  # fmt: skip
    assert added["subject"] == "CN=openssl-legacy"


def test_free_apps_are_told_custom_certificates_need_a_licensed_plan(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    cli.ok("app", "create", "hobby")
    cli.ok("env", "create", "hobby", "production", "--upstream", "http://hobby.backend.test:8080")
    authority = write(tmp_path, "ca.pem", partner_ca.cert_pem())
    refused = cli.refused("authority", "add", *where("hobby"), "--file", str(authority))
    assert "403 plan-required" in refused.stderr
    assert "licensed" in refused.stderr
    assert "licensed" in cli.ok("app", "update", "hobby", "--plan", "licensed").stdout
    cli.ok("authority", "add", *where("hobby"), "--file", str(authority))


def test_environments_are_updated_listed_and_deleted(cli: Cli) -> None:
    cli.ok("app", "create", "envs", "--plan", "licensed")
    cli.ok("env", "create", "envs", "staging", "--upstream", "http://envs.backend.test:8081")
    updated = cli.ok(
        "env", "update", "envs", "staging", "--upstream", "http://envs.backend.test:9090",
        "--pkcs12-profile", "legacy", "--no-client-certificate", "open.example.com", "--json",
    ).json()  # fmt: skip
    assert updated["upstream"] == "http://envs.backend.test:9090"
    assert updated["pkcs12_profile"] == "legacy"
    updated = cli.ok(
        "env", "update", "envs", "staging", "--pkcs12-profile", "modern2026", "--json"
    ).json()  # fmt: skip
    assert updated["pkcs12_profile"] == "modern2026"
    assert cli("env", "update", "envs", "staging").code == 2  # nothing to change
    assert "staging" in cli.ok("env", "list", "envs").stdout
    managed = cli.ok("env", "managed-certificate", "envs", "staging", "--json").json()
    assert managed["hostname"].startswith("staging-envs.")
    assert (
        "BEGIN CERTIFICATE"
        in cli.ok("env", "managed-certificate", "envs", "staging", "--pem").stdout
    )

    # Deleting needs --yes when nobody can be asked.
    assert cli("env", "delete", "envs", "staging").code == 2
    cli.ok("env", "delete", "envs", "staging", "--yes")
    gone = cli.refused("env", "show", "envs", "staging")
    assert "404 environment-not-found" in gone.stderr
    cli.ok("app", "delete", "envs", "--yes")
    assert "app-not-found" in cli.refused("app", "show", "envs").stderr
