"""The embedded gateway refuses client certificates their CA's CRL revokes (real TLS on
loopback, CRLs from cryptography's builder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.gateway.harness import (
    EchoUpstream,
    client_context,
    https_request,
    profile,
    running_gateway,
    site,
    state_of,
)
from tests.material.crls import make_crl
from tests.material.factory import TestCA


@pytest.fixture
def upstream() -> EchoUpstream:
    with EchoUpstream() as echo:
        yield echo  # type: ignore[misc]


def test_revoked_client_certificates_are_refused_and_crls_replaced_live(
    upstream: EchoUpstream, tmp_path: Path
) -> None:
    server_ca = TestCA.root(name="gateway crl server root")
    partner = TestCA.root(name="partner root with CRL")
    unlisted = TestCA.root(name="partner root without CRL")
    alice = partner.issue_leaf("alice", eku=("clientAuth",))
    bob = partner.issue_leaf("bob", eku=("clientAuth",))
    carol = unlisted.issue_leaf("carol", eku=("clientAuth",))
    now = datetime.now(UTC)

    def crl(*revoked: int, next_update: datetime = now + timedelta(days=1)) -> bytes:
        return make_crl(
            partner,
            revoked,
            this_update=now - timedelta(days=2),
            next_update=next_update,
            pem=False,
        )

    def state_with(crls: tuple[bytes, ...]):  # type: ignore[no-untyped-def]
        office = profile("office", cas=(partner, unlisted), crls=crls)
        return state_of(
            site(
                "mtls.shop.test",
                server_ca.issue_leaf("mtls.shop.test"),
                upstream.url,
                rules={"/": ("profile", "office")},
                profiles=(office,),
            )
        )

    with running_gateway(state_with((crl(alice.certificate.serial_number),))) as gw:

        def get(client) -> int:  # type: ignore[no-untyped-def]
            context = client_context(server_ca, tmp_path, client)
            return https_request(gw.https_port, "mtls.shop.test", context).status

        assert get(alice) == 403  # revoked
        assert get(bob) == 200  # listed CA, not revoked
        assert get(carol) == 200  # a CA without a CRL is not checked

        gw.update(state_with((crl(bob.certificate.serial_number),)))  # replaced live
        assert get(alice) == 200
        assert get(bob) == 403

        # A stale CRL (nextUpdate passed) refuses every certificate of its CA.
        gw.update(state_with((crl(next_update=now - timedelta(days=1)),)))
        assert get(alice) == 403
        assert get(bob) == 403
        assert get(carol) == 200
