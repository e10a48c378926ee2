"""``certward access-profile crl``: a client CA's CRL uploaded, shown and removed."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes

from tests.cli.conftest import Cli, write
from tests.material.crls import make_crl
from tests.material.factory import TestCA


def test_a_client_cas_crl_is_uploaded_shown_and_removed(cli: Cli, tmp_path: Path) -> None:
    root = TestCA.root(name="certward CLI CRL root")
    digest = root.certificate.fingerprint(hashes.SHA256()).hex()
    cli.ok("app", "create", "crl-gate", "--plan", "licensed")
    cli.ok("access-profile", "create", "office", "--app", "crl-gate")
    cas = write(tmp_path, "ca.pem", root.cert_pem())
    cli.ok("access-profile", "add-cas", "office", "--app", "crl-gate", "--file", str(cas))
    crl = write(tmp_path, "ca.crl", make_crl(root, [3, 4], pem=False))  # the server's clock
    uploaded = cli.ok(
        "access-profile", "crl", "upload", "office", digest, "--app", "crl-gate", "--file", str(crl)
    ).stdout
    assert "CN=certward CLI CRL root" in uploaded
    shown = cli.ok("access-profile", "crl", "show", "office", digest, "--app", "crl-gate", "--json")
    assert shown.json()["revoked"] == 2
    removed = cli.ok(
        "access-profile", "crl", "remove", "office", digest, "--app", "crl-gate"
    ).stdout
    assert "Removed the CRL" in removed
    gone = cli.refused("access-profile", "crl", "show", "office", digest, "--app", "crl-gate")
    assert "404 crl-not-found" in gone.stderr
