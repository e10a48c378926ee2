"""Certificate changes reach both data planes without failing a keep-alive request.

One installation (SQLite) with a managed hostname and a custom domain, served at once by
nginx (through `NginxSync`, as ``certward nginx sync`` runs it) and by the embedded
gateway (refreshing from the same database). Clients that never retry keep one
connection each and send requests back to back, while 20 managed renewals
(`managed.renew_due`) and 5 custom-domain certificate replacements
(`tls_certificates.replace_certificate`) are made through the services. No request
may fail, every new handshake must present the certificate just stored (by serial),
and nginx must not have been reloaded (same master, same workers).

A new client CA reaches the gateway in place too: new handshakes are verified against
it while a keep-alive connection opened before goes on. (nginx 1.22 reads client CAs
only at a reload: see docs/architecture.md.)
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import select

from certward.authorization import Principal
from certward.clock import FixedClock, SystemClock
from certward.dataplane.nginx_agent import NginxSync, SyncOutcome
from certward.dataplane.nginx_directory import NginxDirectory, NginxOptions
from certward.dataplane.state import DataPlaneState
from certward.model import ManagedCertificate
from certward.platform import open_platform
from certward.services import apps, domains, managed, tls_certificates
from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.uploads import Upload
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.dataplane.matrix import free_port
from tests.dataplane.test_matrix import children_of
from tests.dataplane.test_nginx_agent import RunningNginx
from tests.gateway.harness import (
    EchoUpstream,
    client_context,
    https_request,
    profile,
    running_gateway,
    running_gateway_on,
    site,
    state_of,
)
from tests.material.factory import IssuedCert, TestCA
from tests.material.tools import require_tool

ADMIN = Principal(token_id=None, role=Role.ADMIN)
CUSTOM = "www.live-shop.test"
RENEWALS = 20
REPLACEMENTS = 5
WAIT_SECONDS = 10.0


@dataclass
class KeepAliveClient:
    """One connection, requests back to back, nothing retried.

    A request that raises or answers other than 200 is a failure. The client opens a
    new connection only after a response announced ``Connection: close`` (nginx does
    after ``keepalive_requests``); ``connections`` must then be one more than those.
    """

    port: int
    host: str
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    connections: int = 0
    announced_closes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(WAIT_SECONDS)

    def _connect(self) -> http.client.HTTPConnection:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_SECONDS)
        tls = _no_verify().wrap_socket(sock, server_hostname=self.host)
        connection = http.client.HTTPConnection(self.host, timeout=WAIT_SECONDS)
        connection.sock = tls  # the one connection: http.client must not open another
        self.connections += 1
        return connection

    def _run(self) -> None:
        connection = self._connect()
        while not self._stop.is_set():
            try:
                connection.request("GET", "/live", headers={"Host": self.host})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                return  # a client that does not retry
            if response.status != 200:
                self.failures.append(f"status {response.status}")
                return
            self.requests += 1
            if response.will_close:
                self.announced_closes += 1
                connection.close()
                connection = self._connect()
            self._stop.wait(0.002)
        connection.close()


def _no_verify() -> ssl.SSLContext:
    # The installation's clock runs days ahead of the machine's: serials are compared.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def presented_serial(port: int, host: str) -> int:
    """The serial of the certificate a new handshake for ``host`` gets."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS) as sock,
        _no_verify().wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def stored_serial(feed: DataPlaneFeed, host: str) -> int:
    certificate = feed.load().sites[host].certificate
    assert certificate is not None
    return x509.load_pem_x509_certificate(certificate.chain_pem).serial_number


def wait_for_serial(port: int, host: str, serial: int) -> None:
    """The gateway picks a state up within its refresh interval."""
    waiter = threading.Event()
    for _ in range(int(WAIT_SECONDS / 0.02)):
        if presented_serial(port, host) == serial:
            return
        waiter.wait(0.02)
    raise AssertionError(f"{host} never presented serial {serial:x}")


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [k for k in os.environ if k.startswith("CERTWARD_")]:
        monkeypatch.delenv(name)
    return Settings.from_env(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "certward-data"),
            "CERTWARD_EGRESS_ALLOW": "127.0.0.0/8",
            "CERTWARD_MANAGED_CERT_LIFETIME": "1h",
        }
    )


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with EchoUpstream() as upstream:
        yield upstream


def custom_certificate(ctx: object, ca: TestCA) -> str:
    leaf = ca.issue_leaf(
        CUSTOM,
        sans=[CUSTOM],
        not_before=datetime.now(UTC) - timedelta(days=1),
        not_after=datetime.now(UTC) + timedelta(days=60),
    )
    view = tls_certificates.upload(
        ctx,  # type: ignore[arg-type]
        ADMIN,
        "shop",
        certificate=Upload(filename="site.pem", data=leaf.cert_pem()),
        chain=Upload(filename="chain.pem", data=ca.cert_pem()),
        private_key=Upload(filename="site.key", data=leaf.key_pem()),
    )
    return view.id


@pytest.mark.external("nginx")
@pytest.mark.slow
def test_renewals_and_replacements_fail_no_keep_alive_request_on_nginx_or_the_gateway(
    installation: Settings, echo: EchoUpstream, tmp_path: Path
) -> None:
    nginx = require_tool("nginx")
    clock = FixedClock(SystemClock().now())
    platform = open_platform(installation, clock=clock)
    clients: list[KeepAliveClient] = []
    running: list[RunningNginx] = []
    try:
        ctx = platform.context
        apps.create_app(ctx, ADMIN, name="shop", plan=Plan.LICENSED)
        apps.create_environment(ctx, ADMIN, "shop", name="prod", upstream=echo.url)
        managed_host = f"prod-shop.{installation.platform_domain}"
        custom_ca = TestCA.root(name="live custom root")
        serving = custom_certificate(ctx, custom_ca)
        domains.add_custom_domain(
            ctx, ADMIN, "shop", "prod", hostname=CUSTOM, certificate_id=serving
        )
        feed = DataPlaneFeed(ctx)
        options = NginxOptions(
            https_listen=f"127.0.0.1:{free_port()}",
            http_listen=f"127.0.0.1:{free_port()}",
            acme_upstream="http://127.0.0.1:9",
            nginx=nginx,
            policy=installation.egress_policy(),
        )
        directory = NginxDirectory(tmp_path / "nginx")
        sync = NginxSync(feed.load, directory, options)
        assert sync.sync_once().outcome is SyncOutcome.APPLIED
        running.append(RunningNginx(nginx, directory, options))
        assert sync.sync_once().outcome is SyncOutcome.UNCHANGED
        nginx_port = int(options.https_listen.rsplit(":", 1)[1])
        with running_gateway_on(DataPlaneFeed(ctx), refresh=0.05) as gateway:
            planes = {"nginx": nginx_port, "gateway": gateway.https_port}
            for port in planes.values():
                for host in (managed_host, CUSTOM):
                    wait_for_serial(port, host, stored_serial(feed, host))
            master = running[0].process.pid
            workers = set(children_of(master))
            clients = [
                KeepAliveClient(port=port, host=host)
                for port in planes.values()
                for host in (managed_host, CUSTOM)
            ]
            for client in clients:
                client.start()

            def went_live(host: str) -> None:
                report = sync.sync_once()
                assert (report.outcome, report.reloaded) == (SyncOutcome.APPLIED, False)
                serial = stored_serial(feed, host)
                # nginx reads the file at the very next handshake; the gateway within
                # its refresh interval.
                assert presented_serial(nginx_port, host) == serial
                wait_for_serial(gateway.https_port, host, serial)

            for _ in range(RENEWALS):
                with ctx.database.reading() as session:
                    renew_after = session.scalars(
                        select(ManagedCertificate.renew_after).where(
                            ManagedCertificate.hostname == managed_host,
                            ManagedCertificate.state == "active",
                        )
                    ).one()
                clock.advance(max(renew_after - clock.now(), timedelta(0)) + timedelta(seconds=1))
                assert managed.renew_due(ctx, worker="test", limit=10).renewed == 1
                went_live(managed_host)
            for _ in range(REPLACEMENTS):
                replacement = custom_certificate(ctx, custom_ca)
                tls_certificates.replace_certificate(
                    ctx, ADMIN, "shop", serving, replacement_id=replacement
                )
                serving = replacement
                went_live(CUSTOM)
            for client in clients:
                client.stop()
            assert running[0].process.poll() is None
            assert set(children_of(master)) == workers  # never reloaded
    finally:
        for client in clients:
            client.stop()
        for process in running:
            process.stop()
        platform.close()
    for client in clients:
        assert client.failures == [], (client.host, client.port, client.failures)
        assert client.requests > 0
        assert client.connections == client.announced_closes + 1, client


def test_a_new_client_ca_reaches_the_gateway_in_place(echo: EchoUpstream, tmp_path: Path) -> None:
    server_ca = TestCA.root(name="live server root")
    old_ca, new_ca = TestCA.root(name="old partners"), TestCA.root(name="new partners")
    host = "partners.live-shop.test"
    certificate = server_ca.issue_leaf(host)

    def state_trusting(ca: TestCA) -> DataPlaneState:
        return state_of(
            site(
                host,
                certificate,
                echo.url,
                rules={"/partner": ("profile", "partners")},
                profiles=(profile("partners", cas=(ca,)),),
            )
        )

    old_client = old_ca.issue_leaf("old partner", eku=["clientAuth"])
    new_client = new_ca.issue_leaf("new partner", eku=["clientAuth"])

    def partner_status(port: int, client: IssuedCert) -> int:
        context = client_context(server_ca, tmp_path, client)
        return https_request(port, host, context, path="/partner/x").status

    with running_gateway(state_trusting(old_ca)) as gateway:
        keep_alive = KeepAliveClient(port=gateway.https_port, host=host)
        keep_alive.start()
        try:
            for trusted, refused in ((new_ca, old_client), (old_ca, new_client)) * 2:
                gateway.update(state_trusting(trusted))
                admitted = new_client if trusted is new_ca else old_client
                assert partner_status(gateway.https_port, admitted) == 200
                assert partner_status(gateway.https_port, refused) == 403
        finally:
            keep_alive.stop()
    assert keep_alive.failures == []
    assert keep_alive.requests > 0
    assert keep_alive.connections == 1
