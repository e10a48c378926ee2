"""The data plane's view of the database (`DataPlaneFeed`), and a gateway serving it.

On SQLite and PostgreSQL: every default hostname and custom domain appears with its
environment's upstream and certificate; a renewal or replacement shows up as a new
certificate id and a new state version; nothing changed means the same version; path
rules appear only once applied; a gateway fed by the database serves a renewed managed
certificate without a restart.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from cryptography import x509

from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.managed import renew_due
from tests.api.conftest import Api, expect
from tests.api.test_managed_certificates import make_due
from tests.gateway.harness import running_gateway_on
from tests.material.factory import TestCA


def served_certificate(port: int, hostname: str) -> x509.Certificate:
    """The certificate the gateway presents for ``hostname`` (dates not checked: the test
    clock is not the machine's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=hostname) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")


def upload_tls(api: Api, app: str, leaf: Any) -> str:
    response = api.client.post(
        api.app_url(app, "/tls-certificates"),
        files={
            "certificate": ("cert.pem", leaf.cert_pem()),
            "chain": ("chain.pem", leaf.chain_pem()),
            "private_key": ("key.pem", leaf.key_pem()),
        },
        headers=api.admin_headers,
    )
    return str(expect(response, 201)["id"])


def test_the_feed_shows_hostnames_certificates_and_applied_rules(api: Api) -> None:
    environment = api.create_app_and_environment("shop", "prod")
    feed = DataPlaneFeed(api.context)
    state = feed.load()
    site = state.sites[environment["hostname"]]
    assert site.kind == "managed"
    assert site.upstream == environment["upstream"]
    assert site.certificate is not None
    assert b"PRIVATE KEY" in site.certificate.key_pem
    assert "PRIVATE KEY" not in repr(site)
    assert feed.load().version == state.version  # nothing changed, same version

    # A custom domain with an uploaded certificate.
    ca = TestCA.root(name="feed test CA")
    certificate_id = upload_tls(api, "shop", ca.issue_leaf("www.shop.test"))
    expect(
        api.client.post(
            api.env_url("shop", "prod", "/custom-domains"),
            json={"hostname": "www.shop.test", "certificate_id": certificate_id},
            headers=api.admin_headers,
        ),
        201,
    )
    with_domain = feed.load()
    assert with_domain.version != state.version
    assert with_domain.sites["www.shop.test"].kind == "custom"

    # Path rules: staged ones are not served, applied ones are.
    expect(
        api.client.put(
            api.env_url("shop", "prod", "/path-rules"),
            json={"/admin": {"rule": "deny-all"}},
            headers=api.admin_headers,
        ),
        200,
    )
    assert feed.load().sites[environment["hostname"]].path_rules == ()
    expect(api.client.post(api.env_url("shop", "prod", "/restart"), headers=api.admin_headers), 200)
    rules = feed.load().sites[environment["hostname"]].path_rules
    assert [(r.prefix, r.rule.value) for r in rules] == [("/admin", "deny-all")]

    # A renewal is a new certificate id.
    before = feed.load().sites[environment["hostname"]].certificate
    make_due(api)
    assert renew_due(api.context, worker="w", limit=10).renewed == 1
    after = feed.load().sites[environment["hostname"]].certificate
    assert before is not None
    assert after is not None
    assert after.id != before.id


def test_a_gateway_fed_by_the_database_serves_a_renewed_certificate_live(api: Api) -> None:
    environment = api.create_app_and_environment("shop", "prod")
    hostname = environment["hostname"]
    feed = DataPlaneFeed(api.context)
    with running_gateway_on(feed, refresh=0.1) as gateway:
        first = served_certificate(gateway.https_port, hostname)
        make_due(api)
        assert renew_due(api.context, worker="w", limit=10).renewed == 1
        deadline = time.monotonic() + 10
        renewed = first
        while renewed == first and time.monotonic() < deadline:
            time.sleep(0.1)
            renewed = served_certificate(gateway.https_port, hostname)
        assert renewed != first
        san = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [hostname]
