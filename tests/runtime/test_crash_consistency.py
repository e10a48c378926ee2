"""kill -9 during apply never leaves a torn bundle or a `current` pointing at one.

A child process restarts one environment again and again (each restart flips the
PKCS12 profile, so each is a new version with a new bundle); once it says it is
applying, the test kills it with SIGKILL at a random moment, 50 times. Children come
from a fork server (a clean, single-threaded process with certward imported), never
from a fork of the test process: threads left by earlier tests could hold a lock the
child then waits on forever. After every kill, before any repair: each
version directory is complete and matches its manifest's digests (a half-written one
only ever exists under a temporary ``.incoming-`` name), and ``current`` points at a
complete version. Then opening the platform makes ``current`` the database's applied
version and clears the leftovers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from certward.authorization import Principal
from certward.bundles.store import CURRENT, BundleStore
from certward.pki.convert import Pkcs12Profile
from certward.platform import open_platform
from certward.secrets import SecretBox, load_keyring_file
from certward.services import apps, authorities, client_certificates, staging
from certward.services.uploads import Upload
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.material.factory import TestCA

TRIALS = 50
ADMIN = Principal(token_id=None, role=Role.ADMIN)


def settings_for(data_dir: Path) -> Settings:
    return Settings.from_env({"CERTWARD_DATA_DIR": str(data_dir)})


def restart_forever(data_dir: str, applying: Event) -> None:
    """The apply process: flip the profile and restart, until killed."""
    platform = open_platform(settings_for(Path(data_dir)), bootstrap=False)
    context = platform.context
    profiles = [Pkcs12Profile.LEGACY, Pkcs12Profile.MODERN]
    turn = 0
    applying.set()
    while True:
        turn += 1
        apps.update_environment(
            context, ADMIN, "shop", "production", pkcs12_profile=profiles[turn % 2]
        )
        staging.restart(context, ADMIN, "shop", "production")


@pytest.fixture
def installation(tmp_path: Path) -> Path:
    """An environment with five client certificates and a CA, applied once."""
    platform = open_platform(settings_for(tmp_path))
    context = platform.context
    apps.create_app(context, ADMIN, name="shop", plan=Plan.LICENSED)
    apps.create_environment(context, ADMIN, "shop", name="production", upstream="http://10.0.0.1:9")
    ca = TestCA.root(name="crash test CA")
    for number in range(5):
        leaf = ca.issue_leaf(f"client-{number}", eku=["clientAuth"])
        client_certificates.upload(
            context,
            ADMIN,
            "shop",
            "production",
            file=Upload(filename="c.p12", data=leaf.pkcs12("pw")),
            password=b"pw",
            pins=[f"partner-{number}.test"],
        )
    authorities.upload(
        context, ADMIN, "shop", "production", file=Upload(filename="ca.pem", data=ca.cert_pem())
    )
    staging.restart(context, ADMIN, "shop", "production")
    platform.close()
    return tmp_path


def test_kill_9_during_apply_leaves_only_complete_bundles(installation: Path) -> None:
    """50 SIGKILLs at random moments of repeated applies: never a torn bundle."""
    box = SecretBox(load_keyring_file(settings_for(installation).master_key_file))
    store = BundleStore(installation / "bundles", box)
    directory = store.environment_directory("shop", "production")
    rng = random.Random(20261126)
    server = multiprocessing.get_context("forkserver")
    server.set_forkserver_preload([__name__])
    versions_seen: set[int] = set()
    for _ in range(TRIALS):
        applying = server.Event()
        child = server.Process(target=restart_forever, args=(str(installation), applying))
        child.start()
        assert applying.wait(30), "the apply process never got going"
        time.sleep(rng.uniform(0.05, 0.6))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL

        for entry in directory.iterdir():
            if entry.name.isdigit():
                versions_seen.add(int(entry.name))
                assert store.is_complete("shop", "production", int(entry.name)), entry
            else:
                assert entry.name == CURRENT or entry.name.startswith(".incoming-"), entry
        current = store.current_version("shop", "production")
        assert current is not None
        assert store.is_complete("shop", "production", current)

    platform = open_platform(settings_for(installation))
    try:
        applied = apps.get_environment(platform.context, ADMIN, "shop", "production")
        assert store.current_version("shop", "production") == applied.applied_version
        assert not [e for e in directory.iterdir() if e.name.startswith(".incoming-")]
    finally:
        platform.close()
    assert len(versions_seen) > TRIALS / 2  # the kills really landed during applies
