"""The access-profile page shows each client CA's CRL, and a stale one as a problem."""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives import hashes

from tests.material.crls import make_crl
from tests.material.factory import TestCA
from tests.web.conftest import ADMIN_TOKEN, ConsoleClient
from tests.web.test_console import shop


def test_a_client_cas_crl_is_shown_and_a_stale_one_is_a_problem(console: ConsoleClient) -> None:
    root = TestCA.root(name="Console CRL Root CA")
    fingerprint = root.certificate.fingerprint(hashes.SHA256()).hex()
    shop(console)
    console.sign_in()
    profile = console.post("/apps/shop/access-profiles", {"name": "office"}).url.path
    console.post(profile + "/client-cas", {}, files={"certificates": ("ca.pem", root.cert_pem())})
    answer = console.client.put(
        f"/api/v1{profile}/client-cas/{fingerprint}/crl",
        files={"crl": ("ca.crl", make_crl(root, [7, 8]))},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text
    page = console.get(profile).text
    assert "CRL: 2 revoked; next update" in page
    assert "CRL stale" not in page

    console.clock.advance(timedelta(days=8))  # past the CRL's nextUpdate
    console.sign_in()  # the console session ended meanwhile
    page = console.get(profile).text
    assert "CRL stale since" in page
    assert "client certificates of this CA are refused" in page
