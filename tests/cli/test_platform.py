"""Inventory, tokens, audit, metrics, health and the platform CA from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certward.services import platform_ca
from tests.cli.conftest import Cli, cli_for, client_leaf, serving, write
from tests.material.factory import TestCA


def test_the_inventory_lists_every_certificate_for_scripts_and_people(
    cli: Cli, partner_ca: TestCA, tmp_path: Path
) -> None:
    cli.ok("app", "create", "stock", "--plan", "licensed")
    cli.ok("env", "create", "stock", "production", "--upstream", "http://stock.backend.test:8080")
    p12 = write(tmp_path, "a.p12", client_leaf(partner_ca, "stock-client").pkcs12("pw"))
    cli.ok(
        "client-cert", "add", "--app", "stock", "--env", "production", "--file", str(p12),
        "--password-stdin", stdin=b"pw",
    )  # fmt: skip

    items = cli.ok("inventory", "--app", "stock", "--json").json()
    assert {i["kind"] for i in items} == {"managed", "client"}
    assert all(i["app"] == "stock" for i in items)
    client = next(i for i in items if i["kind"] == "client")
    assert client["subject"] == "CN=stock-client"
    assert client["status"] == "valid"

    managed = cli.ok(
        "inventory", "--app", "stock", "--status", "valid", "--kind", "managed", "--json"
    ).json()
    # A week's lifetime, renewed by certward on time: valid, not expires-soon.
    assert [(i["kind"], i["status_reason"]) for i in managed] == [("managed", None)]
    assert (
        "No certificates match."
        in cli.ok(
            "inventory", "--app", "stock", "--status", "expires-soon", "--kind", "managed"
        ).stdout
    )
    table = cli.ok("inventory", "--app", "stock", "--kind", "client").stdout
    assert "CN=stock-client" in table
    assert "valid" in table
    assert cli("inventory", "--kind", "spaceship").code == 2
    assert (
        "No certificates match."
        in cli.ok("inventory", "--app", "stock", "--status", "expired").stdout
    )


def test_tokens_are_created_listed_and_revoked(cli: Cli) -> None:
    cli.ok("app", "create", "tokens", "--plan", "licensed")
    created = cli.ok(
        "token", "create", "--role", "viewer", "--app", "tokens", "--description", "dashboards"
    )
    value = created.stdout.strip().splitlines()[-1]
    assert value.startswith("cw_")
    assert "shown this once" in created.stderr
    assert "tokens" in cli.ok("app", "list", token=value).stdout

    member = cli.ok("token", "create", "--role", "member", "--app", "tokens", "--json").json()
    listing = cli.ok("token", "list", "--app", "tokens").stdout
    assert member["id"] in listing
    assert "dashboards" in listing
    assert value not in listing
    assert member["token"] not in cli.ok("token", "list", "--json").stdout

    viewer_refused = cli.refused("app", "create", "other", token=value)
    assert "403" in viewer_refused.stderr

    viewer_id = next(
        t["id"]
        for t in cli.ok("token", "list", "--app", "tokens", "--json").json()
        if t["description"] == "dashboards"
    )
    assert "Revoked token" in cli.ok("token", "revoke", viewer_id).stdout
    revoked = cli.refused("app", "list", token=value)
    assert "401 unauthorized" in revoked.stderr
    assert "--token or CERTWARD_TOKEN" in revoked.stderr
    assert value not in revoked.stderr

    events = cli.ok("audit", "--app", "tokens", "--json").json()
    assert "token.revoke" in {e["action"] for e in events}
    assert "token.create" in cli.ok("audit", "--app", "tokens", "--limit", "5").stdout


def test_health_metrics_and_the_platform_ca(cli: Cli, tmp_path: Path) -> None:
    assert ": ok." in cli.ok("health", token="").stdout
    assert "certward_certificate_expiry_timestamp_seconds" in cli.ok("metrics").stdout

    certificates = cli.ok("platform-ca", "show", "--json", token="").json()
    root = next(c for c in certificates if c["kind"] == "root")
    assert "root" in cli.ok("platform-ca", "show", token="").stdout
    pem = cli.ok("platform-ca", "pem", token="").stdout
    assert x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string() == root["subject"]
    der = tmp_path / "root.der"
    cli.ok("platform-ca", "certificate", root["id"], "--out", str(der), token="")
    assert (
        x509.load_der_x509_certificate(der.read_bytes()).subject.rfc4514_string() == root["subject"]
    )
    crl = tmp_path / "root.crl"
    cli.ok("platform-ca", "crl", root["id"], "--out", str(crl), token="")
    assert x509.load_der_x509_crl(crl.read_bytes()).issuer.rfc4514_string() == root["subject"]


@pytest.fixture
def overlap_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    """A server of its own whose platform root was rotated (the shared one keeps its
    root): the new root is cross-certified by the old one, which stays retiring while
    ``shop/prod``'s certificate, issued before the rotation, is active."""
    with serving(tmp_path / "certward-data") as server:
        cli = cli_for(server, capsys, monkeypatch)
        cli.ok("app", "create", "shop", "--plan", "licensed")
        cli.ok("env", "create", "shop", "prod", "--upstream", "http://shop.backend.test:8080")
        before = cli.ok("platform-ca", "show", "--json", token="").json()
        assert all(c["cross_certificate"] is None for c in before)
        assert " cross " not in cli.ok("platform-ca", "show", token="").stdout
        platform_ca.rotate(server.platform.context, new_root=True)
        yield cli


def test_platform_ca_show_lists_the_cross_certificate_during_the_overlap(
    overlap_cli: Cli,
) -> None:
    """As ``certward ca show`` does, the remote ``platform-ca show`` has a ``cross`` row
    below the new root while its cross-certificate by the old root is served."""
    certificates = overlap_cli.ok("platform-ca", "show", "--json", token="").json()
    roots = {c["state"]: c for c in certificates if c["kind"] == "root"}
    assert set(roots) == {"active", "retiring"}
    new_root, old_root = roots["active"], roots["retiring"]
    cross = new_root["cross_certificate"]
    assert cross["issuer_id"] == old_root["id"]
    assert all(c["cross_certificate"] is None for c in certificates if c is not new_root)

    lines = overlap_cli.ok("platform-ca", "show", token="").stdout.splitlines()
    [root_row] = [i for i, line in enumerate(lines) if new_root["sha256_fingerprint"] in line]
    [cross_row] = [i for i, line in enumerate(lines) if " cross " in line]
    assert cross_row == root_row + 1
    cross_line = lines[cross_row]
    assert " served " in cross_line
    assert f"{new_root['subject']}, issued by {old_root['subject']}" in cross_line
    assert cross["sha256_fingerprint"] in cross_line
    assert cross["not_after"][:10] in cross_line


def test_the_sites_nginx_leaves_out_are_listed(cli: Cli) -> None:
    assert "No site is left out" in cli.ok("data-plane", "excluded").stdout
    assert cli.ok("data-plane", "excluded", "--json").json() == []


def test_the_data_plane_nodes_are_listed(cli: Cli) -> None:
    assert "No data-plane node has reported yet" in cli.ok("data-plane", "nodes").stdout
    answer = cli.ok("data-plane", "nodes", "--json").json()
    assert answer["nodes"] == []
    assert answer["sequence"] >= 0
