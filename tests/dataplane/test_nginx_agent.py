"""`certward.dataplane.nginx_agent` and ``certward nginx render|sync``: sets written whole and
swapped atomically, nginx -t before anything is swapped, the last good set kept when
nginx refuses one, reloads of a running nginx confirmed, broken sites left out."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from certward.authorization import Principal
from certward.cli.app import main
from certward.dataplane import nginx_directory
from certward.dataplane.nginx import RenderedFile
from certward.dataplane.nginx_agent import (
    NginxSync,
    SyncOutcome,
    serving_version,
    wait_until_serving,
)
from certward.dataplane.nginx_directory import (
    KEPT_SETS,
    CertificateLoading,
    NginxDirectory,
    NginxOptions,
)
from certward.dataplane.nginx_install import InstallOutcome, install
from certward.dataplane.state import DataPlaneState, ServedCertificate
from certward.platform import open_platform
from certward.services import apps
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.dataplane.local_policy import LOCAL_POLICY
from tests.dataplane.matrix import (
    Env,
    MatrixPki,
    client_context,
    free_port,
    profile,
    rules,
    site,
    state_of,
    tls_connect,
)
from tests.dataplane.test_matrix import children_of
from tests.material.tools import require_tool

UPSTREAMS = {"app": "http://127.0.0.1:9", "other": "http://127.0.0.1:9"}
SHOP = "shop.agent.test"
OTHER = "other.agent.test"


def options(*, nginx: str | None = None, acme: str = "http://127.0.0.1:8700") -> NginxOptions:
    return NginxOptions(
        https_listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{free_port()}",
        acme_upstream=acme,
        nginx=nginx,
        policy=LOCAL_POLICY,
    )


def shop_state(
    pki: MatrixPki, certificate: str = "", *, extra: str | None = None
) -> DataPlaneState:
    env = Env(pki=pki, upstreams=UPSTREAMS)
    sites = [
        site(
            env,
            SHOP,
            certificate=certificate,
            path_rules=rules(("/partner", "profile", "partners")),
            profiles=[profile("partners", cas=[pki.partner_root])],
        ),
        site(env, OTHER),
    ]
    if extra is not None:
        sites.append(site(env, extra))
    return state_of(*sites)


def modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode)
        for path in sorted(root.rglob("*"))
        if not path.is_symlink()
    }


def test_sets_are_written_whole_then_swapped_in_and_old_ones_pruned(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    directory = NginxDirectory(tmp_path / "nginx")
    rendering = options()
    first = install(shop_state(matrix_pki), directory, rendering)
    assert first.outcome is InstallOutcome.INSTALLED
    assert first.set_path is not None
    assert directory.config.is_symlink()
    assert os.readlink(directory.config) == f"sets/{first.set_path.name}/nginx.conf"
    set_modes = modes(first.set_path)
    assert set_modes[f"client-ca/{SHOP}.pem"] == 0o644
    assert not [name for name in set_modes if name.startswith("tls")]  # no key in a set
    assert stat.S_IMODE(first.set_path.stat().st_mode) == 0o700
    # Certificates live outside the sets: chain and key in one 0600 file per hostname.
    certificates = directory.certificates.path
    assert modes(certificates) == {f"{SHOP}.pem": 0o600, f"{OTHER}.pem": 0o600}
    assert stat.S_IMODE(certificates.stat().st_mode) == 0o700
    # nginx's workers read them at each handshake: as root, they are given to its user.
    reader = pwd.getpwnam(rendering.worker_user).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert {path.stat().st_uid for path in (certificates, *certificates.iterdir())} == {reader}
    shop = shop_state(matrix_pki).sites[SHOP].certificate
    assert shop is not None
    content = (certificates / f"{SHOP}.pem").read_bytes()
    assert content.startswith(shop.chain_pem)
    assert content.endswith(shop.key_pem)
    assert f'ssl_certificate "{certificates}/$server_name.pem";' in directory.config.read_text()
    assert directory.served_version() == shop_state(matrix_pki).version
    # The same state again: nothing written.
    again = install(shop_state(matrix_pki), directory, rendering)
    assert again.outcome is InstallOutcome.UNCHANGED
    assert again.set_path == first.set_path
    # A new certificate: written in place, the same set stays active (no reload needed).
    renewed = shop_state(matrix_pki, f"{SHOP}#2")
    second = install(renewed, directory, rendering)
    assert (second.outcome, second.certificates) == (InstallOutcome.CERTIFICATES, (SHOP,))
    assert second.set_path == first.set_path
    assert second.config_version == shop_state(matrix_pki).version
    assert directory.config_version() == shop_state(matrix_pki).version
    assert directory.served_version() == renewed.version
    renewed_certificate = renewed.sites[SHOP].certificate
    assert renewed_certificate is not None
    assert (certificates / f"{SHOP}.pem").read_bytes().startswith(renewed_certificate.chain_pem)
    assert not [p.name for p in certificates.iterdir() if p.name.startswith(".tmp")]
    # A new hostname: a new set, the symlink moved, the old set still there.
    added = install(shop_state(matrix_pki, extra="new.agent.test"), directory, rendering)
    assert added.outcome is InstallOutcome.INSTALLED
    assert added.set_path is not None
    assert directory.active_set() == added.set_path
    assert first.set_path.is_dir()
    assert (certificates / "new.agent.test.pem").is_file()
    for number in range(KEPT_SETS + 2):
        install(shop_state(matrix_pki, extra=f"e{number}.agent.test"), directory, rendering)
    sets = sorted(p.name for p in directory.sets.iterdir())
    assert len(sets) == KEPT_SETS
    assert directory.active_set() == directory.sets / sets[-1]
    assert not [name for name in sets if name.startswith(".tmp")]
    # The files of hostnames no longer served are gone.
    assert sorted(p.name for p in certificates.iterdir()) == [
        f"e{KEPT_SETS + 1}.agent.test.pem",
        f"{OTHER}.pem",
        f"{SHOP}.pem",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="the files are given away only by root")
def test_root_refuses_a_directory_nginx_workers_cannot_enter(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    with pytest.raises(ValueError, match=r"\(user nobody\) .* cannot enter .*closed \(mode 700\)"):
        install(shop_state(matrix_pki), NginxDirectory(closed / "nginx"), options())
    with pytest.raises(ValueError, match="worker user 'no-such-user' does not exist"):
        install(
            shop_state(matrix_pki),
            NginxDirectory(tmp_path / "nginx"),
            replace(options(), worker_user="no-such-user"),
        )


def test_static_certificates_are_files_of_the_set_and_each_change_a_new_set(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    directory = NginxDirectory(tmp_path / "nginx")
    per_handshake = install(shop_state(matrix_pki), directory, options())
    assert (directory.certificates.path / f"{SHOP}.pem").is_file()
    rendering = replace(options(), certificates=CertificateLoading.STATIC)
    first = install(shop_state(matrix_pki), directory, rendering)
    assert first.outcome is InstallOutcome.INSTALLED
    assert first.set_path is not None
    assert first.set_path != per_handshake.set_path
    assert modes(first.set_path)[f"tls/{SHOP}.key"] == 0o600
    assert list(directory.certificates.path.iterdir()) == []  # no key left behind
    renewed = install(shop_state(matrix_pki, f"{SHOP}#2"), directory, rendering)
    assert renewed.outcome is InstallOutcome.INSTALLED  # a reload puts it in effect
    assert renewed.set_path is not None
    served_pem = (renewed.set_path / f"tls/{SHOP}.crt").read_bytes()
    assert served_pem == matrix_pki.served(f"{SHOP}#2").chain_pem


def test_a_write_that_fails_halfway_leaves_the_active_set_alone(
    matrix_pki: MatrixPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = NginxDirectory(tmp_path / "nginx")
    rendering = options()
    good = install(shop_state(matrix_pki), directory, rendering)
    before = sorted(directory.sets.iterdir())
    written: list[Path] = []
    original = nginx_directory._write_file

    def failing(path: Path, rendered: RenderedFile) -> None:
        written.append(path)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        original(path, rendered)

    monkeypatch.setattr("certward.dataplane.nginx_directory._write_file", failing)
    with pytest.raises(OSError, match="No space"):
        install(shop_state(matrix_pki, extra="new.agent.test"), directory, rendering)
    assert sorted(directory.sets.iterdir()) == before
    assert directory.active_set() == good.set_path

    # A certificate replaced in place: the old file stays whole, no temporary left.
    certificates = directory.certificates.path
    served = (certificates / f"{SHOP}.pem").read_bytes()

    def full(path: Path, rendered: RenderedFile, *, owner: int | None = None) -> None:
        with path.open("wb") as half:
            half.write(rendered.content[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("certward.dataplane.nginx_certificates.write_new_file", full)
    with pytest.raises(OSError, match="No space"):
        install(shop_state(matrix_pki, f"{SHOP}#2"), directory, rendering)
    assert (certificates / f"{SHOP}.pem").read_bytes() == served
    assert not [p.name for p in certificates.iterdir() if p.name.startswith(".tmp")]
    assert directory.active_set() == good.set_path


@pytest.mark.external("nginx")
def test_sites_nginx_cannot_load_are_left_out_and_the_rest_served(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    nginx = require_tool("nginx")
    env = Env(pki=matrix_pki, upstreams={**UPSTREAMS, "nowhere": "http://nowhere.invalid:9000"})
    other_key = matrix_pki.server(OTHER).key_pem()
    mismatched = site(env, "mismatch.agent.test")
    assert mismatched.certificate is not None
    broken_key = ServedCertificate(
        id="mismatch", chain_pem=mismatched.certificate.chain_pem, key_pem=other_key
    )
    state = state_of(
        site(env, SHOP),
        site(env, "unresolved.agent.test", upstream="nowhere"),
        replace(mismatched, certificate=broken_key),
    )
    installed = install(state, NginxDirectory(tmp_path / "nginx"), options(nginx=nginx))
    assert installed.outcome is InstallOutcome.INSTALLED
    assert set(installed.skipped) == {"unresolved.agent.test", "mismatch.agent.test"}
    # The agent resolves upstream names itself: nginx is never asked to.
    assert "does not resolve" in installed.skipped["unresolved.agent.test"]
    assert "nginx refused it" in installed.skipped["mismatch.agent.test"]
    assert installed.set_path is not None
    config = (installed.set_path / "nginx.conf").read_text()
    assert f"server_name {SHOP};" in config
    assert "server_name mismatch.agent.test;" not in config


@pytest.mark.external("nginx")
def test_a_replacement_nginx_cannot_load_is_checked_before_it_goes_in_place(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    nginx = require_tool("nginx")
    directory = NginxDirectory(tmp_path / "nginx")
    rendering = options(nginx=nginx)
    good = shop_state(matrix_pki)
    assert install(good, directory, rendering).outcome is InstallOutcome.INSTALLED
    shop = good.sites[SHOP]
    assert shop.certificate is not None
    wrong_key = ServedCertificate(
        id="wrong-key",
        chain_pem=matrix_pki.served(f"{SHOP}#2").chain_pem,
        key_pem=matrix_pki.server(OTHER).key_pem(),
    )
    broken = DataPlaneState(
        sites={**good.sites, SHOP: replace(shop, certificate=wrong_key)}, version="broken"
    )
    installed = install(broken, directory, rendering)
    # Never written where nginx reads at each handshake: the site is left out instead.
    assert installed.outcome is InstallOutcome.INSTALLED
    assert "nginx refused it" in installed.skipped[SHOP]
    assert not (directory.certificates.path / f"{SHOP}.pem").exists()
    assert f"server_name {SHOP};" not in directory.config.read_text()
    assert (directory.certificates.path / f"{OTHER}.pem").is_file()


class RunningNginx:
    """nginx in the foreground on a directory, stopped at the end."""

    def __init__(self, nginx: str, directory: NginxDirectory, rendering: NginxOptions) -> None:
        self.process = subprocess.Popen(
            [nginx, "-c", str(directory.config), "-p", f"{directory.root}/", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.rendering = rendering

    def stop(self) -> None:
        workers = children_of(self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def nginx_program() -> str:
    return require_tool("nginx")


@pytest.fixture
def running(nginx_program: str, tmp_path: Path) -> Iterator[list[RunningNginx]]:
    started: list[RunningNginx] = []
    yield started
    for process in started:
        process.stop()


def served(pki: MatrixPki, rendering: NginxOptions, host: str = SHOP) -> x509.Certificate:
    """The certificate nginx presents for ``host`` now."""
    port = int(rendering.https_listen.rsplit(":", 1)[1])
    tls = tls_connect(port, host, client_context(pki))
    try:
        der = tls.getpeercert(binary_form=True)
    finally:
        tls.close()
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.mark.external("nginx")
def test_sync_reloads_nginx_and_keeps_the_last_good_set_when_nginx_refuses(
    matrix_pki: MatrixPki,
    tmp_path: Path,
    nginx_program: str,
    running: list[RunningNginx],
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = NginxDirectory(tmp_path / "nginx")
    rendering = options(nginx=nginx_program)
    states = [shop_state(matrix_pki)]
    sync = NginxSync(lambda: states[-1], directory, rendering)

    first = sync.sync_once()
    assert first.outcome is SyncOutcome.APPLIED
    assert not first.reloaded  # nginx is not running yet: it reads the set when it starts
    running.append(RunningNginx(nginx_program, directory, rendering))
    assert wait_until_serving(rendering.http_listen, states[-1].version)
    master = running[0].process.pid
    assert sync.sync_once().outcome is SyncOutcome.UNCHANGED

    states.append(shop_state(matrix_pki, f"{SHOP}#2"))
    second = sync.sync_once()
    # A new certificate is read at the next handshake: no reload.
    assert (second.outcome, second.reloaded, second.confirmed) == (SyncOutcome.APPLIED, False, True)
    assert served(matrix_pki, rendering) == matrix_pki.server(f"{SHOP}#2").certificate
    assert serving_version(rendering.http_listen) == states[0].version
    # A new hostname changes the configuration: reloaded, and confirmed.
    states.append(shop_state(matrix_pki, f"{SHOP}#2", extra="new.agent.test"))
    added = sync.sync_once()
    assert (added.outcome, added.reloaded, added.confirmed) == (SyncOutcome.APPLIED, True, True)
    assert serving_version(rendering.http_listen) == states[-1].version
    assert served(matrix_pki, rendering, "new.agent.test") == (
        matrix_pki.server("new.agent.test").certificate
    )
    assert running[0].process.pid == master
    assert running[0].process.poll() is None

    # nginx refuses everything rendered with an ACME upstream it cannot resolve.
    refused = NginxSync(
        lambda: states[-1],
        directory,
        NginxOptions(
            https_listen=rendering.https_listen,
            http_listen=rendering.http_listen,
            acme_upstream="http://acme.invalid:8700",
            nginx=nginx_program,
        ),
    )
    states.append(shop_state(matrix_pki, f"{SHOP}#3"))
    sets_before = sorted(directory.sets.iterdir())
    with caplog.at_level("ERROR", logger="certward.nginx"):
        assert refused.sync_once().outcome is SyncOutcome.REJECTED
    assert "host not found in upstream" in caplog.text
    assert sorted(directory.sets.iterdir()) == sets_before
    assert serving_version(rendering.http_listen) == states[2].version
    assert served(matrix_pki, rendering) == matrix_pki.server(f"{SHOP}#2").certificate
    caplog.clear()
    with caplog.at_level("ERROR", logger="certward.nginx"):
        assert refused.sync_once().outcome is SyncOutcome.REJECTED  # not tried again
    assert caplog.text == ""

    # The next state nginx accepts is served.
    third = sync.sync_once()
    assert (third.outcome, third.confirmed) == (SyncOutcome.APPLIED, True)
    assert served(matrix_pki, rendering) == matrix_pki.server(f"{SHOP}#3").certificate


def test_a_state_that_cannot_be_loaded_is_reported_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def away() -> DataPlaneState:
        calls.append(1)
        raise ConnectionError("database away")

    sync = NginxSync(away, NginxDirectory(tmp_path / "nginx"), options())
    with caplog.at_level("ERROR", logger="certward.nginx"):
        assert sync.sync_once().outcome is SyncOutcome.LOAD_FAILED
        assert sync.sync_once().outcome is SyncOutcome.LOAD_FAILED
    assert len(calls) == 2
    assert "database away" in caplog.text


ADMIN = Principal(token_id=None, role=Role.ADMIN)


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An SQLite installation with one environment (and its managed certificate)."""
    for name in [k for k in os.environ if k.startswith("CERTWARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CERTWARD_DATA_DIR", str(tmp_path / "certward-data"))
    monkeypatch.setenv("CERTWARD_ADMIN_TOKEN", "cw_nginx-cli-test-admin-token-0123456789")
    monkeypatch.setenv("CERTWARD_GATEWAY_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("CERTWARD_GATEWAY_HTTP_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("CERTWARD_EGRESS_ALLOW", "127.0.0.0/8")  # the backend is local
    settings = Settings.from_env(os.environ)
    platform = open_platform(settings)
    try:
        apps.create_app(platform.context, ADMIN, name="shop", plan=Plan.LICENSED)
        apps.create_environment(
            platform.context, ADMIN, "shop", name="prod", upstream="http://127.0.0.1:9"
        )
    finally:
        platform.close()
    return settings


@pytest.mark.external("nginx")
def test_cli_render_then_sync_once(
    installation: Settings,
    tmp_path: Path,
    nginx_program: str,
    running: list[RunningNginx],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "nginx"
    hostname = f"prod-shop.{installation.platform_domain}"
    assert main(["nginx", "render", "--out", str(out), "--nginx", nginx_program]) == 0
    assert "1 hostname(s)" in capsys.readouterr().out
    directory = NginxDirectory(out)
    config = directory.config.read_text()
    assert f"server_name {hostname};" in config
    assert "listen " + ":".join(map(str, installation.gateway_listen)) + " ssl http2;" in config

    rendering = NginxOptions(
        https_listen=":".join(map(str, installation.gateway_listen)),
        http_listen=":".join(map(str, installation.gateway_http_listen)),
        acme_upstream="",
    )
    running.append(RunningNginx(nginx_program, directory, rendering))
    version = directory.served_version()
    assert version is not None
    assert wait_until_serving(rendering.http_listen, version)
    port = installation.gateway_listen[1]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    assert hostname in str(x509.load_der_x509_certificate(der).subject)
    # Nothing changed since: sync --once finds the set in place.
    assert main(["nginx", "sync", "--out", str(out), "--once", "--nginx", nginx_program]) == 0


def test_cli_refuses_bad_options(installation: Settings, tmp_path: Path) -> None:
    out = str(tmp_path / "nginx")
    assert main(["nginx", "render", "--out", out, "--https-listen", "nowhere"]) == 2
    assert main(["nginx", "sync", "--out", out, "--once", "--nginx", "/no/such/nginx"]) == 2
    assert main(["nginx", "render", "--out", out, "--certificates", "lazy"]) == 2
