"""The TLS policy on both data planes: session resumption, and ALPN.

Every test runs against each data plane of ``test_matrix.DATA_PLANES`` on one small
state: a site without client certificates, a site whose ``/partner`` path takes the
partner CA's clients, and one whose ``/siblings`` path takes only the sibling CA's.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from certward.dataplane.state import DataPlaneState
from certward.dataplane.tls_policy import INTERMEDIATE, MODERN, nginx_directives
from tests.dataplane.matrix import (
    WAIT_SECONDS,
    Endpoints,
    Env,
    MatrixPki,
    PlaneSetup,
    client_context,
    profile,
    rules,
    site,
    state_of,
    tls_connect,
    upstreams_running,
)
from tests.dataplane.test_matrix import DATA_PLANES
from tests.gateway.harness import running_gateway
from tests.material.tools import require_tool

PLAIN = "plain.tls.test"
PARTNERS = "partners.tls.test"
SIBLINGS = "siblings.tls.test"
VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def _state(env: Env) -> DataPlaneState:
    pki = env.pki
    partners = profile("partners", cas=[pki.partner_root])
    siblings = profile("siblings", cas=[pki.sibling_root])
    return state_of(
        site(env, PLAIN),
        site(
            env,
            PARTNERS,
            path_rules=rules(("/partner", "profile", "partners")),
            profiles=[partners],
        ),
        site(
            env,
            SIBLINGS,
            path_rules=rules(("/siblings", "profile", "siblings")),
            profiles=[siblings],
        ),
    )


@contextmanager
def serving(plane: str, pki: MatrixPki, workdir: Path) -> Iterator[Endpoints]:
    with upstreams_running({}) as upstreams:
        env = Env(pki=pki, upstreams={name: u.url for name, u in upstreams.items()})
        running = DATA_PLANES[plane](
            PlaneSetup(workdir=workdir, acme_upstream=upstreams["acme"].url, challenges={})
        )
        try:
            yield running.start(_state(env))
        finally:
            running.stop()


@dataclass
class Got:
    status: int
    reused: bool
    session: ssl.SSLSession | None
    client_subject: list[str]


def _get(
    endpoints: Endpoints,
    context: ssl.SSLContext,
    host: str,
    path: str,
    *,
    sni: str | None = None,
    session: ssl.SSLSession | None = None,
) -> Got:
    sock = socket.create_connection(("127.0.0.1", endpoints.https_port), timeout=WAIT_SECONDS)
    tls = context.wrap_socket(sock, server_hostname=sni or host, session=session)
    connection = http.client.HTTPConnection("127.0.0.1", endpoints.https_port)
    connection.sock = tls
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        body = response.read()
        subject: list[str] = []
        if response.status == 200:
            headers = json.loads(body)["headers"]
            subject = [v for n, v in headers if n.lower() == "ssl-client-s-dn" and v]
        # TLS 1.3 tickets arrive after the handshake: the session is complete only now.
        return Got(response.status, tls.session_reused, tls.session, subject)
    finally:
        connection.close()


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("plane", sorted(DATA_PLANES))
def test_a_second_connection_resumes_the_session(
    plane: str, version: ssl.TLSVersion, matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    with serving(plane, matrix_pki, tmp_path) as endpoints:
        context = client_context(matrix_pki, version=version)
        first = _get(endpoints, context, PLAIN, "/")
        assert (first.status, first.reused) == (200, False)
        second = _get(endpoints, context, PLAIN, "/", session=first.session)
        assert (second.status, second.reused) == (200, True)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("plane", sorted(DATA_PLANES))
def test_a_resumed_session_keeps_its_client_certificate_verdict_on_its_own_site_only(
    plane: str, version: ssl.TLSVersion, matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    """A session whose client certificate verified for one site's CAs admits it there
    when resumed, and not on a site that trusts other CAs; a certificate that failed
    stays failed. (OpenSSL resumes before the site is known and skips verification on
    resumption: the data plane must judge again.)"""
    with serving(plane, matrix_pki, tmp_path) as endpoints:
        partner = client_context(matrix_pki, client="partner", version=version)
        first = _get(endpoints, partner, PARTNERS, "/partner")
        assert first.status == 200, first
        assert first.client_subject, first
        again = _get(endpoints, partner, PARTNERS, "/partner", session=first.session)
        assert again.status == 200, again
        assert again.client_subject, again
        # The same session offered to a site that takes only the sibling CA: refused at
        # the handshake (nginx, TLS 1.3), as misdirected (421: the client retries on a
        # new connection) or as not verified; never admitted.
        try:
            other: Got | str = _get(
                endpoints, partner, SIBLINGS, "/siblings", session=first.session
            )
        except ssl.SSLError as exc:
            other = str(exc)
        assert "ACCESS_DENIED" in other if isinstance(other, str) else other.status in (403, 421), (
            other
        )

        stranger = client_context(matrix_pki, client="stranger", version=version)
        refused = _get(endpoints, stranger, PARTNERS, "/partner")
        assert refused.status == 403
        still = _get(endpoints, stranger, PARTNERS, "/partner", session=refused.session)
        assert still.status == 403


def _alpn(endpoints: Endpoints, pki: MatrixPki, offered: list[str]) -> str | None:
    context = client_context(pki)
    context.set_alpn_protocols(offered)
    tls = tls_connect(endpoints.https_port, PLAIN, context)
    try:
        return tls.selected_alpn_protocol()
    finally:
        tls.close()


@pytest.mark.parametrize("plane", sorted(DATA_PLANES))
def test_alpn(plane: str, matrix_pki: MatrixPki, tmp_path: Path) -> None:
    """nginx speaks h2 and HTTP/1.1; the gateway HTTP/1.1, and refuses an h2-only client
    with a no_application_protocol alert."""
    with serving(plane, matrix_pki, tmp_path) as endpoints:
        assert _alpn(endpoints, matrix_pki, ["http/1.1"]) == "http/1.1"
        both = _alpn(endpoints, matrix_pki, ["h2", "http/1.1"])
        if plane == "nginx":
            assert both == "h2"
            assert _alpn(endpoints, matrix_pki, ["h2"]) == "h2"
        else:
            assert both == "http/1.1"
            with pytest.raises(ssl.SSLError, match=r"NO_APPLICATION_PROTOCOL|no application"):
                _alpn(endpoints, matrix_pki, ["h2"])


def test_the_modern_policy_is_tls13_only_on_both(matrix_pki: MatrixPki) -> None:
    """``modern``: the gateway refuses TLS 1.2, nginx is rendered for TLS 1.3 only."""
    assert nginx_directives(MODERN)[0] == "ssl_protocols TLSv1.3;"
    assert not any(line.startswith("ssl_ciphers") for line in nginx_directives(MODERN))
    assert nginx_directives(INTERMEDIATE)[0] == "ssl_protocols TLSv1.2 TLSv1.3;"
    env = Env(pki=matrix_pki, upstreams={"app": "http://127.0.0.1:9"})
    with running_gateway(state_of(site(env, PLAIN)), tls=MODERN) as gateway:
        endpoints = Endpoints(https_port=gateway.https_port, http_port=gateway.http_port)
        context = client_context(matrix_pki, version=ssl.TLSVersion.TLSv1_3)
        tls = tls_connect(endpoints.https_port, PLAIN, context)
        assert tls.version() == "TLSv1.3"
        tls.close()
        old = client_context(matrix_pki, version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError):
            tls_connect(endpoints.https_port, PLAIN, old)


@pytest.mark.external("curl")
def test_nginx_serves_http2_with_client_certificates(matrix_pki: MatrixPki, tmp_path: Path) -> None:
    """An HTTP/2 client with a client certificate gets the same decisions as over
    HTTP/1.1 (curl speaks h2 over ALPN)."""
    curl = require_tool("curl")
    with serving("nginx", matrix_pki, tmp_path) as endpoints:

        def fetch(path: str, client: str) -> tuple[str, str]:
            base = f"https://{PARTNERS}:{endpoints.https_port}"
            completed = subprocess.run(
                [
                    curl,
                    "--silent",
                    "--http2",
                    "--cacert",
                    str(matrix_pki.server_roots_file),
                    "--cert",
                    str(matrix_pki.client_file(client)),
                    "--resolve",
                    f"{PARTNERS}:{endpoints.https_port}:127.0.0.1",
                    "--output",
                    "/dev/null",
                    "--write-out",
                    "%{http_version} %{http_code}",
                    base + path,
                ],
                capture_output=True,
                timeout=WAIT_SECONDS,
                check=True,
            )
            version, _, status = completed.stdout.decode().partition(" ")
            return version, status

        assert fetch("/partner", "partner") == ("2", "200")
        assert fetch("/partner", "stranger") == ("2", "403")
        assert fetch("/", "stranger") == ("2", "200")
