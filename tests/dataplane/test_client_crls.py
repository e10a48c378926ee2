"""Both data planes refuse client certificates their CA's CRL revokes (real TLS on
loopback): a revoked certificate refused, another accepted, a CRL replaced live, and a
stale CRL (nextUpdate passed) refusing its CA's certificates."""

from __future__ import annotations

import http.client
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certward.dataplane.state import DataPlaneState
from tests.dataplane.matrix import PlaneSetup
from tests.dataplane.test_matrix import DATA_PLANES
from tests.gateway.harness import (
    EchoUpstream,
    client_context,
    profile,
    site,
    state_of,
)
from tests.material.crls import make_crl
from tests.material.factory import IssuedCert, TestCA

HOST = "mtls.shop.test"


@pytest.fixture
def upstream() -> EchoUpstream:
    with EchoUpstream() as echo:
        yield echo  # type: ignore[misc]


@pytest.mark.parametrize("plane", sorted(DATA_PLANES))
def test_revoked_client_certificates_are_refused_on_every_data_plane(
    plane: str, upstream: EchoUpstream, tmp_path: Path
) -> None:
    now = datetime.now(UTC)  # nginx and OpenSSL check dates against the real clock
    valid = {"not_before": now - timedelta(days=1), "not_after": now + timedelta(days=30)}
    server_ca = TestCA.root(name="crl server root", **valid)
    partner = TestCA.root(name="crl partner root", **valid)
    alice = partner.issue_leaf("alice", eku=("clientAuth",), **valid)
    bob = partner.issue_leaf("bob", eku=("clientAuth",), **valid)
    server = server_ca.issue_leaf(HOST, **valid)
    unlisted = TestCA.root(name="crl root without CRL", **valid)
    carol = unlisted.issue_leaf("carol", eku=("clientAuth",), **valid)

    def state_with(
        *revoked: IssuedCert, next_update: timedelta = timedelta(days=1), without_crl: bool = False
    ) -> DataPlaneState:
        crl = make_crl(
            partner,
            [c.certificate.serial_number for c in revoked],
            this_update=now - timedelta(days=2),
            next_update=now + next_update,
            pem=False,
        )
        cas = (partner, unlisted) if without_crl else (partner,)
        office = profile("office", cas=cas, crls=(crl,))
        return state_of(
            site(HOST, server, upstream.url, rules={"/": ("profile", "office")}, profiles=(office,))
        )

    data_plane = DATA_PLANES[plane](
        PlaneSetup(workdir=tmp_path / plane, acme_upstream="http://127.0.0.1:9", challenges={})
    )
    (tmp_path / plane).mkdir()
    endpoints = data_plane.start(state_with(alice))
    try:

        def status(client: IssuedCert) -> int:
            # nginx closes the connection after a failed client certificate's answer.
            context = client_context(server_ca, tmp_path, client)
            connection = http.client.HTTPSConnection(
                "127.0.0.1", endpoints.https_port, context=context, timeout=10
            )
            connection.sock = context.wrap_socket(
                socket.create_connection(("127.0.0.1", endpoints.https_port), timeout=10),
                server_hostname=HOST,
            )
            try:
                connection.request("GET", "/", headers={"Host": HOST})
                response = connection.getresponse()
                response.read()
                return response.status
            finally:
                connection.close()

        assert status(alice) == 403  # revoked
        assert status(bob) == 200  # not revoked

        data_plane.update(state_with(bob))  # the CRL replaced live
        assert status(alice) == 200
        assert status(bob) == 403

        data_plane.update(state_with(next_update=-timedelta(days=1)))  # stale
        assert status(alice) == 403
        assert status(bob) == 403

        # A second CA of the site without a CRL: the gateway does not check its
        # certificates for revocation; nginx checks every CA of a chain once the site
        # has a CRL, and refuses them.
        data_plane.update(state_with(alice, without_crl=True))
        assert status(alice) == 403
        assert status(bob) == 200
        assert status(carol) == (200 if plane == "gateway" else 403)
    finally:
        data_plane.stop()
