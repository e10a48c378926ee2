"""``certward client-cert import-dir``: many client certificates at once, every failure named."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, client_leaf, write
from tests.material.factory import TestCA

PASSWORD = "bulk-import-password,ü"
OWN_PASSWORD = "its own password"


def test_a_directory_is_imported_and_the_summary_says_what_failed_and_why(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    cli.ok("app", "create", "bulk", "--plan", "licensed")
    cli.ok("env", "create", "bulk", "production", "--upstream", "http://bulk.backend.test:8080")
    certificates = tmp_path / "certificates"
    certificates.mkdir()
    write(certificates, "billing.p12", client_leaf(partner_ca, "billing").pkcs12(PASSWORD))
    write(
        certificates,
        "legacy.pfx",
        client_leaf(partner_ca, "legacy").pkcs12(OWN_PASSWORD, legacy=True),
    )
    pem_leaf = client_leaf(partner_ca, "pem")
    write(certificates, "pem.crt", pem_leaf.cert_pem())
    write(certificates, "pem.key", pem_leaf.key_pem())
    write(certificates, "wrong.p12", client_leaf(partner_ca, "wrong").pkcs12("another password"))
    write(certificates, "forgotten.p12", client_leaf(partner_ca, "forgotten").pkcs12(PASSWORD))
    write(tmp_path, "legacy.password", OWN_PASSWORD.encode() + b"\n")
    password_file = write(tmp_path, "password", PASSWORD.encode() + b"\n")
    mapping = {
        "billing.p12": {"pins": ["billing.example.com"], "call_name": "Billing.Service"},
        "legacy.pfx": {"pins": "legacy.example.com", "password_file": "legacy.password"},
        "pem.crt": {"key": "pem.key", "pins": ["pem.example.com"], "description": "from PEM"},
        "wrong.p12": {"pins": ["wrong.example.com"]},
        "taken.p12": {"pins": ["billing.example.com"]},
    }
    write(certificates, "taken.p12", client_leaf(partner_ca, "taken").pkcs12(PASSWORD))
    pins_from = write(tmp_path, "pins.json", json.dumps(mapping).encode())

    result = cli(
        "client-cert", "import-dir", str(certificates), "--app", "bulk", "--env", "production",
        "--pins-from", str(pins_from), "--password-file", str(password_file),
    )  # fmt: skip
    assert result.code == 1, result
    summary = {line.split()[0]: line for line in result.stdout.splitlines() if ".p" in line}
    assert "imported" in summary["billing.p12"]
    assert "billing.example.com" in summary["billing.p12"]
    assert "imported" in summary["legacy.pfx"]
    assert "failed" in summary["wrong.p12"]
    assert "wrong-password" in summary["wrong.p12"]
    assert "failed" in summary["taken.p12"]
    assert "pin-conflict" in summary["taken.p12"]
    assert "CN=billing" in summary["taken.p12"]  # who holds the pin
    assert "skipped" in summary["forgotten.p12"]
    assert "Imported 3 of 5 file(s); 2 failed." in result.stdout
    assert "pem.crt" in result.stdout

    staged = cli.ok("client-cert", "list", "--app", "bulk", "--env", "production", "--json").json()
    assert {c["subject"]: c["pins"] for c in staged} == {
        "CN=billing": ["billing.example.com"],
        "CN=legacy": ["legacy.example.com"],
        "CN=pem": ["pem.example.com"],
    }
    assert all(PASSWORD not in output for output in cli.outputs)
    assert all(OWN_PASSWORD not in output for output in cli.outputs)


def test_the_json_summary_is_for_scripts_and_a_clean_import_exits_0(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    cli.ok("app", "create", "bulkjson", "--plan", "licensed")
    cli.ok(
        "env", "create", "bulkjson", "production", "--upstream", "http://bulkjson.backend.test:8080"
    )
    directory = tmp_path / "in"
    directory.mkdir()
    write(directory, "a.p12", client_leaf(partner_ca, "json-a").pkcs12(PASSWORD))
    write(directory, "b.p12", b"this is not a PKCS12 file")
    pins_from = write(
        tmp_path,
        "pins.json",
        json.dumps({"a.p12": {"pins": ["a.example.com"]}, "b.p12": {}, "gone.p12": {}}).encode(),
    )
    arguments = (
        "client-cert", "import-dir", str(directory), "--app", "bulkjson", "--env", "production",
        "--pins-from", str(pins_from), "--password-stdin", "--json",
    )  # fmt: skip
    result = cli(*arguments, stdin=PASSWORD.encode())
    assert result.code == 1
    outcome = result.json()
    assert [i["file"] for i in outcome["imported"]] == ["a.p12"]
    assert outcome["imported"][0]["client_certificate"]["pins"] == ["a.example.com"]
    failure, missing = outcome["failed"]
    assert failure["file"] == "b.p12"
    assert failure["status"] == 422
    assert failure["code"] == "not-pkcs12"
    assert missing["file"] == "gone.p12"
    assert missing["status"] is None  # never sent
    assert missing["code"] == "file-not-found"

    pins_from.write_text(json.dumps({"c.p12": {"pins": ["c.example.com"]}}))
    write(directory, "c.p12", client_leaf(partner_ca, "json-c").pkcs12(PASSWORD))
    clean = cli(*arguments, stdin=PASSWORD.encode())
    assert clean.code == 0, clean
    assert clean.json()["skipped"] == ["a.p12", "b.p12"]


def test_a_wrong_mapping_file_is_a_usage_error_naming_the_entry(cli: Cli, tmp_path: Path) -> None:
    directory = tmp_path / "in"
    directory.mkdir()
    for mapping, said in (
        ({"a.p12": {"pinz": ["a.example.com"]}}, "unknown member 'pinz'"),
        ({"../a.p12": {}}, "not a path"),
        ({"a.p12": {"pins": [1]}}, "pins must be a list of names"),
        (["a.p12"], "must hold a JSON object"),
    ):
        pins_from = write(tmp_path, "pins.json", json.dumps(mapping).encode())
        result = cli(
            "client-cert", "import-dir", str(directory), "--app", "any", "--env", "any",
            "--pins-from", str(pins_from),
        )  # fmt: skip
        assert result.code == 2
        assert said in result.stderr
