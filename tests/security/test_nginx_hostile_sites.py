"""One tenant's site cannot hurt the others on nginx; callers cannot speak for certward.

Replays, against Debian's nginx:

* the upstream ``http://[fe80::1%;}x]/`` (stored before it was refused at write, or put
  in the database directly) rendered as ``server [fe80::1%;}x]:80;``: ``nginx -t``
  failed and the agent refused the whole new set, so no tenant's change and no
  managed renewal reached nginx again. Now the site is left out, reported (API
  listing, metric, webhook), and everything else goes live;
* a site nginx refuses for a reason its message does not tie to a file: the agent
  bisects the sites until it finds it;
* caller headers of the families certward sets (``SSL-Client-Verify``,
  ``X-Forwarded-Host``, ``Forwarded``, ``True-Client-IP``...) reached the app;
* a request that already went through the platform was forwarded again (loops);
* an ``https://`` upstream was not verified;
* an empty state rendered a configuration nginx refuses (``unknown "cw_verdict"
  variable``); the hostname and version guards accepted a trailing newline.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import select

from certward.authorization import Principal
from certward.clock import FixedClock, SystemClock
from certward.dataplane import nginx_install, nginx_refusals
from certward.dataplane.caller_headers import STRIPPED_NAMES
from certward.dataplane.nginx import render_set
from certward.dataplane.nginx_agent import NginxSync, SyncOutcome, wait_until_serving
from certward.dataplane.nginx_directory import NginxDirectory, NginxOptions
from certward.dataplane.nginx_install import InstallOutcome, install
from certward.dataplane.state import DataPlaneState, ServedCertificate
from certward.model import Environment, ManagedCertificate, WebhookDelivery
from certward.platform import open_platform
from certward.services import (
    apps,
    dataplane_exclusions,
    managed,
    metrics,
    notifications,
    platform_ca,
)
from certward.services.dataplane_feed import DataPlaneFeed
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.dataplane.conftest import matrix_pki
from tests.dataplane.local_policy import LOCAL_POLICY
from tests.dataplane.matrix import (
    EchoUpstream,
    Endpoints,
    Env,
    MatrixPki,
    Request,
    free_port,
    https_request,
    site,
    state_of,
    tls_connect,
)
from tests.dataplane.test_nginx_agent import RunningNginx
from tests.material.factory import TestCA
from tests.material.tools import require_tool

__all__ = ["matrix_pki"]

pytestmark = [
    pytest.mark.external("nginx"),
    pytest.mark.slow,
    pytest.mark.usefixtures("nginx_may_enter_tmp_path"),
]

ADMIN = Principal(token_id=None, role=Role.ADMIN)
INJECTED = "http://[fe80::1%;}x]/"


@dataclass
class Plane:
    """nginx on free loopback ports, configured by the agent."""

    nginx: str
    directory: NginxDirectory
    options: NginxOptions
    running: list[RunningNginx]

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            https_port=int(self.options.https_listen.rsplit(":", 1)[1]),
            http_port=int(self.options.http_listen.rsplit(":", 1)[1]),
        )

    def start(self, state: DataPlaneState, **lookup: Any) -> nginx_install.Installed:
        installed = install(state, self.directory, self.options, **lookup)
        assert installed.outcome is InstallOutcome.INSTALLED, installed.problem
        self.running.append(RunningNginx(self.nginx, self.directory, self.options))
        assert wait_until_serving(self.options.http_listen, state.version)
        return installed


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    nginx = require_tool("nginx")
    options = NginxOptions(
        https_listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{free_port()}",
        acme_upstream="http://127.0.0.1:9",
        nginx=nginx,
        policy=LOCAL_POLICY,
    )
    started: list[RunningNginx] = []
    yield Plane(nginx, NginxDirectory(tmp_path / "nginx"), options, started)
    for process in started:
        process.stop()


# -- headers and hops -----------------------------------------------------------------------------

SPOOFED = (
    ("SSL-Client-Verify", "SUCCESS"),
    ("SSL-Client-S-DN", "CN=partner,O=Bank"),
    ("SSL-Client-Cert", "-----BEGIN CERTIFICATE-----"),
    ("X-SSL-Client-S-DN", "CN=partner"),
    ("X-Client-Verify", "SUCCESS"),
    ("X-Forwarded-Host", "admin.internal"),
    ("X-Forwarded-Port", "8700"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Server", "admin.internal"),
    ("Forwarded", "for=10.0.0.1;host=admin.internal;proto=https"),
    ("X-Client-IP", "10.0.0.1"),
    ("True-Client-IP", "10.0.0.1"),
    ("X-Real-IP", "10.0.0.1"),
    ("X-Forwarded-For", "10.0.0.1"),
    ("Client-Cert", ":MIIB:"),
    ("x-ssl-client-verify", "SUCCESS"),
)


def test_spoofed_caller_headers_never_reach_the_upstream(
    plane: Plane, matrix_pki: MatrixPki
) -> None:
    with EchoUpstream("app") as upstream:
        env = Env(pki=matrix_pki, upstreams={"app": upstream.url})
        plane.start(state_of(site(env, "shop.hostile.test")))
        answer = https_request(
            plane.endpoints, matrix_pki, Request(host="shop.hostile.test", headers=SPOOFED)
        )
        assert answer.status == 200
        for name, _ in SPOOFED:
            got = answer.forwarded(name)
            if name.lower() in ("x-real-ip", "x-forwarded-for"):
                assert got == ["127.0.0.1"], name  # certward's own value
            else:
                assert got == [], f"{name} reached the upstream: {got}"
        # Every name of the shared list is cleared, not only those sent above.
        every = tuple((name, "spoofed") for name in sorted(STRIPPED_NAMES))
        answer = https_request(
            plane.endpoints, matrix_pki, Request(host="shop.hostile.test", headers=every)
        )
        leaked = [(n, v) for n, v in answer.json()["headers"] if n.lower() in STRIPPED_NAMES and v]
        assert not [(n, v) for n, v in leaked if "spoofed" in v], leaked
        assert answer.forwarded("CDN-Loop") == ["certward"]


def test_a_request_carrying_the_hop_mark_is_refused_with_508(
    plane: Plane, matrix_pki: MatrixPki
) -> None:
    with EchoUpstream("app") as upstream:
        env = Env(pki=matrix_pki, upstreams={"app": upstream.url})
        plane.start(state_of(site(env, "shop.hostile.test")))

        def get(value: str) -> Any:
            return https_request(
                plane.endpoints,
                matrix_pki,
                Request(host="shop.hostile.test", headers=(("CDN-Loop", value),)),
            )

        for value in ("certward", "other-cdn, certward", "CertWard; v=1", "a,certward ,b"):
            assert get(value).status == 508, value
        for value in ("other-cdn", "notcertward", "certwardx, y"):
            answer = get(value)
            assert answer.status == 200, value
            assert answer.forwarded("CDN-Loop") == [f"{value}, certward"]


# -- https upstreams ------------------------------------------------------------------------------


class TlsUpstream:
    """An https app on loopback that answers with the SNI name it was asked for."""

    def __init__(self, chain_pem: bytes, key_pem: bytes, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "chain.pem").write_bytes(chain_pem)
        (workdir / "key.pem").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(workdir / "chain.pem", workdir / "key.pem")
        seen: list[str | None] = []
        context.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,misc,return-value]
        self.sni = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"sni": seen[-1] if seen else None}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TlsUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _backends(host: str, port: int) -> Sequence[str]:
    """The test's own names for its backends, all on loopback."""
    if host.endswith(".backend.test"):
        return ["127.0.0.1"]
    raise OSError(f"{host} is not a test backend")


def test_https_upstreams_are_verified_with_sni(
    plane: Plane, matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    now = SystemClock().now()
    validity = {"not_before": now - timedelta(days=1), "not_after": now + timedelta(days=30)}
    upstream_ca = TestCA.root(name="operator upstream CA", **validity)
    trusted = upstream_ca.issue_leaf("api.backend.test", **validity)
    rogue = TestCA.root(name="self-made", **validity).issue_leaf("rogue.backend.test", **validity)
    with (
        TlsUpstream(trusted.full_chain_pem(), trusted.key_pem(), tmp_path / "good") as good,
        TlsUpstream(rogue.full_chain_pem(), rogue.key_pem(), tmp_path / "bad") as bad,
    ):
        env = Env(
            pki=matrix_pki,
            upstreams={
                "good": f"https://api.backend.test:{good.port}/",
                "bad": f"https://rogue.backend.test:{bad.port}/",
            },
        )
        plane.options = replace(plane.options, upstream_trust_pem=upstream_ca.cert_pem())
        state = state_of(
            site(env, "good.hostile.test", upstream="good"),
            site(env, "bad.hostile.test", upstream="bad"),
        )
        plane.start(state, lookup=_backends)
        config = plane.directory.config.read_text()
        assert "proxy_ssl_verify on;" in config
        assert f"server 127.0.0.1:{good.port};" in config  # a checked address, no name
        answer = https_request(plane.endpoints, matrix_pki, Request(host="good.hostile.test"))
        assert answer.status == 200
        assert answer.json() == {"sni": "api.backend.test"}
        refused = https_request(plane.endpoints, matrix_pki, Request(host="bad.hostile.test"))
        assert refused.status == 502


# -- isolation --------------------------------------------------------------------------------


def test_a_site_nginx_refuses_without_naming_it_is_found_by_bisection(
    plane: Plane, matrix_pki: MatrixPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nginx's message here names the key file, but the agent is made to ignore it: the
    broken site is still found, by rendering subsets, and the other sites go live."""
    monkeypatch.setattr(nginx_refusals, "sites_named_in", lambda output, state: set())
    with EchoUpstream("app") as upstream:
        env = Env(pki=matrix_pki, upstreams={"app": upstream.url})
        broken = site(env, "broken.hostile.test")
        assert broken.certificate is not None
        wrong_key = ServedCertificate(
            id="wrong-key",
            chain_pem=broken.certificate.chain_pem,
            key_pem=matrix_pki.server("other.hostile.test").key_pem(),
        )
        good = [site(env, f"s{number}.hostile.test") for number in range(6)]
        state = state_of(*good, replace(broken, certificate=wrong_key))
        installed = plane.start(state)
        assert set(installed.skipped) == {"broken.hostile.test"}
        assert "nginx refused it" in installed.skipped["broken.hostile.test"]
        for served in good:
            answer = https_request(plane.endpoints, matrix_pki, Request(host=served.hostname))
            assert answer.status == 200, served.hostname


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [k for k in os.environ if k.startswith("CERTWARD_")]:
        monkeypatch.delenv(name)
    settings = Settings.from_env(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "certward-data"),
            "CERTWARD_EGRESS_ALLOW": "127.0.0.0/8",
            "CERTWARD_MANAGED_CERT_LIFETIME": "1d",
        }
    )
    return settings


def test_a_broken_tenant_site_does_not_stop_other_changes_or_renewals(
    installation: Settings, plane: Plane, matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    clock = FixedClock(SystemClock().now())
    platform = open_platform(installation, clock=clock)
    try:
        ctx = platform.context
        with EchoUpstream("shop") as shop_backend, EchoUpstream("moved") as moved_backend:
            apps.create_app(ctx, ADMIN, name="shop", plan=Plan.LICENSED)
            apps.create_app(ctx, ADMIN, name="evil", plan=Plan.LICENSED)
            apps.create_environment(ctx, ADMIN, "shop", name="prod", upstream=shop_backend.url)
            apps.create_environment(ctx, ADMIN, "evil", name="prod", upstream="http://127.0.0.1:7/")
            notifications.add_webhook(ctx, ADMIN, "https://hooks.example.com/certward")
            # What the write check refuses today, put in the database directly (stored
            # before the check existed, or by hand).
            with ctx.database.transaction() as session:
                evil = session.scalars(
                    select(Environment).where(Environment.hostname.startswith("prod-evil."))
                ).one()
                evil.upstream = INJECTED
            feed = DataPlaneFeed(ctx)
            options = replace(plane.options, policy=installation.egress_policy())
            plane.options = options
            sync = NginxSync(
                feed.load,
                plane.directory,
                options,
                report=lambda state, skipped: dataplane_exclusions.record(ctx, state, skipped),
            )
            first = sync.sync_once()
            assert first.outcome is SyncOutcome.APPLIED
            plane.running.append(RunningNginx(plane.nginx, plane.directory, options))
            assert wait_until_serving(options.http_listen, feed.load().version)
            shop_host = f"prod-shop.{installation.platform_domain}"
            evil_host = f"prod-evil.{installation.platform_domain}"
            config = plane.directory.config.read_text()
            assert "fe80" not in config
            assert f"server_name {evil_host};" not in config

            # Reported: the API's listing, the metric, one webhook notice.
            (excluded,) = dataplane_exclusions.list_excluded(ctx, ADMIN)
            assert (excluded.hostname, excluded.app, excluded.environment) == (
                evil_host,
                "evil",
                "prod",
            )
            assert "upstream not allowed" in excluded.reason
            assert "certward_dataplane_excluded_sites 1.0" in metrics.render(ctx).decode()
            with ctx.database.reading() as session:
                events = list(session.scalars(select(WebhookDelivery.event)))
            assert events == ["data-plane.site-excluded"]

            def shop_answer() -> Any:
                return https_request(
                    plane.endpoints, _platform_pki(matrix_pki, ctx), Request(host=shop_host)
                )

            assert shop_answer().json()["upstream"] == "shop"

            # Another tenant's change goes live...
            apps.update_environment(ctx, ADMIN, "shop", "prod", upstream=moved_backend.url)
            assert sync.sync_once().confirmed
            assert shop_answer().json()["upstream"] == "moved"

            # ...and so does a managed renewal.
            before = _served_serial(plane, shop_host)
            with ctx.database.reading() as session:
                renew_after = session.scalars(
                    select(ManagedCertificate.renew_after).where(
                        ManagedCertificate.hostname == shop_host,
                        ManagedCertificate.state == "active",
                    )
                ).one()
            clock.advance(renew_after - clock.now() + timedelta(seconds=1))
            assert managed.renew_due(ctx, worker="test", limit=10).renewed >= 1
            assert sync.sync_once().confirmed
            assert _served_serial(plane, shop_host) != before
            assert [s.hostname for s in dataplane_exclusions.list_excluded(ctx, ADMIN)] == [
                evil_host
            ]

            # Fixed: served again, and no longer listed.
            apps.update_environment(ctx, ADMIN, "evil", "prod", upstream="http://127.0.0.1:9")
            assert sync.sync_once().confirmed
            assert dataplane_exclusions.list_excluded(ctx, ADMIN) == []
            assert f"server_name {evil_host};" in plane.directory.config.read_text()
    finally:
        platform.close()


def _platform_pki(matrix_pki: MatrixPki, ctx: Any) -> MatrixPki:
    """The matrix client, trusting the platform CA that issued the managed certificates."""
    pem = "".join(c.certificate_pem for c in platform_ca.show(ctx).published)
    roots = matrix_pki.directory / "platform-roots.pem"
    roots.write_text(pem)
    return replace_roots(matrix_pki, roots)


def replace_roots(pki: MatrixPki, roots: Path) -> MatrixPki:
    clone = object.__new__(MatrixPki)
    clone.__dict__.update(pki.__dict__)
    clone.server_roots_file = roots
    return clone


def _served_serial(plane: Plane, hostname: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = tls_connect(plane.endpoints.https_port, hostname, context)
    try:
        der = tls.getpeercert(binary_form=True)
    finally:
        tls.close()
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# -- rendering guards -----------------------------------------------------------------------------


def test_an_empty_state_renders_a_configuration_nginx_accepts(tmp_path: Path) -> None:
    nginx = require_tool("nginx")
    directory = NginxDirectory(tmp_path / "nginx")
    directory.prepare()
    empty = DataPlaneState(sites={}, version="empty-1")
    set_path = directory.sets / "000001-empty"
    rendered = render_set(
        empty,
        https_listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{free_port()}",
        acme_upstream="http://127.0.0.1:9",
        prefix=str(set_path),
        policy=LOCAL_POLICY,
    )
    directory.write_set(set_path, rendered.files)
    check = nginx_refusals.validate(nginx, directory, set_path)
    assert check.ok, check.output


def test_hostname_and_version_guards_refuse_a_trailing_newline(matrix_pki: MatrixPki) -> None:
    env = Env(pki=matrix_pki, upstreams={"app": "http://127.0.0.1:9"})
    good = site(env, "shop.hostile.test")
    sneaky = replace(good, hostname="shop.hostile.test\n")
    state = DataPlaneState(sites={sneaky.hostname: sneaky}, version="v1")
    rendered = render_set(
        state,
        https_listen="127.0.0.1:8443",
        http_listen="127.0.0.1:8080",
        acme_upstream="http://127.0.0.1:9",
        prefix="/srv/set",
        policy=LOCAL_POLICY,
    )
    assert list(rendered.skipped) == ["shop.hostile.test\n"]
    with pytest.raises(ValueError, match="plain token"):
        render_set(
            DataPlaneState(sites={}, version="v1\n"),
            https_listen="127.0.0.1:8443",
            http_listen="127.0.0.1:8080",
            acme_upstream="http://127.0.0.1:9",
            prefix="/srv/set",
            policy=LOCAL_POLICY,
        )
