"""``certward ca show|rotate`` and ``certward worker`` as an operator runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from certward.authorization import Principal
from certward.cli.app import main
from certward.model import ManagedCertificate
from certward.platform import open_platform
from certward.services import apps
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.test_serve import certward_command, clean_environment

ADMIN = Principal(token_id=None, role=Role.ADMIN)
ADMIN_TOKEN = "cw_ca-cli-test-admin-token-0123456789"


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An SQLite installation (real clock) with one environment and its managed certificate."""
    for name in [k for k in os.environ if k.startswith("CERTWARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CERTWARD_DATA_DIR", str(tmp_path / "certward-data"))
    monkeypatch.setenv("CERTWARD_ADMIN_TOKEN", ADMIN_TOKEN)
    settings = Settings.from_env(os.environ)
    platform = open_platform(settings)
    try:
        apps.create_app(platform.context, ADMIN, name="shop", plan=Plan.LICENSED)
        apps.create_environment(
            platform.context, ADMIN, "shop", name="prod", upstream="http://10.0.0.1:80"
        )
    finally:
        platform.close()
    return settings


def show(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["ca", "show", "--json"]) == 0
    shown: dict[str, object] = json.loads(capsys.readouterr().out)
    return shown


def test_ca_show_and_rotate(installation: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """``ca show --json`` lists the active pair; ``ca rotate --new-root`` replaces both and
    keeps the old ones as retiring while the managed certificate they issued is active."""
    before = show(capsys)
    certificates = before["certificates"]
    assert isinstance(certificates, list)
    assert {(c["kind"], c["state"]) for c in certificates} == {
        ("root", "active"),
        ("intermediate", "active"),
    }
    assert main(["ca", "rotate", "--new-root"]) == 0
    assert "Active root: CN=certward platform root CA R2" in capsys.readouterr().out
    after = show(capsys)
    states = {c["id"]: c["state"] for c in after["certificates"]}  # type: ignore[union-attr]
    assert states[before["root"]] == "retiring"
    assert states[before["intermediate"]] == "retiring"
    assert states[after["root"]] == states[after["intermediate"]] == "active"
    assert main(["ca", "show"]) == 0
    assert "retiring" in capsys.readouterr().out


def test_ca_show_lists_the_cross_certificate_during_the_overlap(
    installation: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ``ca rotate --new-root`` the new root carries its cross-certificate by the old
    root (fingerprint, validity) in ``ca show --json`` and in the table, while the old
    root is still retiring."""
    before = show(capsys)
    assert all(c["cross_certificate"] is None for c in before["certificates"])  # type: ignore[union-attr]
    assert main(["ca", "rotate", "--new-root"]) == 0
    capsys.readouterr()
    after = show(capsys)
    certificates = after["certificates"]
    assert isinstance(certificates, list)
    [new_root] = [c for c in certificates if c["id"] == after["root"]]
    cross = new_root["cross_certificate"]
    assert cross["issuer_id"] == before["root"]
    assert cross["issuer"] == "CN=certward platform root CA R1"
    assert len(cross["sha256_fingerprint"]) == 64
    assert cross["sha256_fingerprint"] != new_root["sha256_fingerprint"]
    assert datetime.fromisoformat(cross["not_before"]) < datetime.fromisoformat(cross["not_after"])
    assert all(c["cross_certificate"] is None for c in certificates if c is not new_root)
    assert main(["ca", "show"]) == 0
    text = capsys.readouterr().out
    assert "cross" in text
    assert cross["sha256_fingerprint"] in text.replace("\n", "")


@pytest.mark.slow
def test_worker_command_renews_due_certificates_and_stops_on_sigterm(
    installation: Settings, tmp_path: Path
) -> None:
    """``certward worker`` renews a due certificate without a restart and exits 0 on SIGTERM."""
    platform = open_platform(installation, bootstrap=False)
    try:
        database = platform.context.database
        with database.transaction() as session:
            session.execute(
                update(ManagedCertificate).values(
                    renew_after=datetime.now(UTC) - timedelta(minutes=1)
                )
            )
        log = tmp_path / "worker.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                certward_command("worker"),
                env=clean_environment(
                    CERTWARD_DATA_DIR=str(installation.data_dir), CERTWARD_RENEWAL_INTERVAL="1"
                ),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            count = 1
            deadline = time.monotonic() + 30
            while count < 2 and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.1)
                with database.reading() as session:
                    count = (
                        session.scalar(select(func.count()).select_from(ManagedCertificate)) or 0
                    )
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output_text = log.read_text()
        assert count == 2, output_text
        assert "stopped" in output_text
        with database.reading() as session:
            states = sorted(session.scalars(select(ManagedCertificate.state)))
        assert states == ["active", "superseded"]
    finally:
        platform.close()
