"""A whole lifecycle of a real ``certward serve`` leaves no secret in its logs or on disk.

Uploads (wrong passwords and broken files among them), restarts, bundle downloads, a
renewal by the worker, a master key rotation and a second start: then every line the
server and the CLI printed (stdout and stderr) and every file of the data directory
(database, write-ahead log, bundle store, ACME and key files) is searched for each
password and key body: PEM body lines, DER bytes, base64 and hex of the keys, and the
bundle's own PKCS12 files (raw and base64, as buildpack.json carries them) and
passwords.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import bearer, client_leaf
from tests.api.test_secrets_at_rest import _key_patterns, _password_patterns
from tests.material.factory import KeyType, TestCA
from tests.test_serve import (
    ADMIN_TOKEN,
    ServerLauncher,
    ServerProcess,
    clean_environment,
    run_certward,
    servers,
)

__all__ = ["servers"]

pytestmark = pytest.mark.slow

RSA_PASSWORD = "rsa-Lifecycle-Pw-4411"
EC_PASSWORD = "ec-Lifecycle-Pw-9023"
PEM_PASSWORD = "pem-Lifecycle-Pw-7730"
WRONG_PASSWORD = "wrong-Lifecycle-Guess-5512"
ENV = "/apps/shop/environments/prod"


def _bundle_patterns(tarball: bytes) -> dict[str, bytes]:
    """The bundle's generated passwords and PKCS12 files (raw, base64) as patterns."""
    patterns: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        files = {
            member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
        }
    manifest = json.loads(files["manifest.json"])
    for entry in manifest["client_certificates"]:
        patterns[f"bundle password {entry['id']}"] = entry["password"].encode()
        p12 = files[entry["pkcs12"]]
        patterns[f"bundle {entry['pkcs12']}"] = p12
        patterns[f"bundle {entry['pkcs12']} base64"] = base64.b64encode(p12)[:200]
        key_block = files[entry["pem"]].split(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")[1]
        for number, line in enumerate(key_block.splitlines()):
            if len(line) >= 40 and not line.startswith(b"-----"):
                patterns[f"bundle {entry['pem']} key line {number}"] = line
    if manifest.get("truststore"):
        patterns["truststore password"] = manifest["truststore"]["password"].encode()
    return patterns


def _download(client: httpx.Client) -> bytes:
    response = client.get(f"{ENV}/runtime-bundle")
    response.raise_for_status()
    return response.content


def _lifecycle_part_one(server: ServerProcess, ca: TestCA) -> dict[str, bytes]:
    rsa_leaf = client_leaf(ca, "rsa.lifecycle.test", key_type=KeyType.RSA_2048)
    ec_leaf = client_leaf(ca, "ec.lifecycle.test", key_type=KeyType.EC_P256)
    pem_leaf = client_leaf(ca, "pem.lifecycle.test", key_type=KeyType.EC_P384)
    patterns = {
        **_key_patterns("RSA", rsa_leaf),
        **_key_patterns("EC", ec_leaf),
        **_key_patterns("PEM", pem_leaf),
    }
    for password in (RSA_PASSWORD, EC_PASSWORD, PEM_PASSWORD, WRONG_PASSWORD):
        patterns.update(_password_patterns(password))
    rsa_p12 = rsa_leaf.pkcs12(RSA_PASSWORD, legacy=True)
    ec_p12 = ec_leaf.pkcs12(EC_PASSWORD)
    patterns["uploaded RSA PKCS12 base64"] = base64.b64encode(rsa_p12)[:200]
    patterns["uploaded EC PKCS12 base64"] = base64.b64encode(ec_p12)[:200]
    url = f"{server.base_url}/api/v1"
    with httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=60) as client:
        client.post("/apps", json={"name": "shop", "plan": "licensed"}).raise_for_status()
        client.post(
            "/apps/shop/environments", json={"name": "prod", "upstream": "http://10.0.0.1:8080"}
        ).raise_for_status()
        uploads = f"{ENV}/client-certificates"
        refused = client.post(
            uploads, files={"file": ("c.p12", ec_p12)}, data={"password": WRONG_PASSWORD}
        )
        assert refused.status_code == 422, refused.text
        refused = client.post(
            uploads,
            files={"file": ("c.p12", rsa_p12[: len(rsa_p12) // 2])},
            data={"password": RSA_PASSWORD},
        )
        assert refused.status_code == 422, refused.text
        for data, password, pins in (
            (rsa_p12, RSA_PASSWORD, "rsa.partner.test"),
            (ec_p12, EC_PASSWORD, "ec.partner.test"),
        ):
            created = client.post(
                uploads,
                files={"file": ("c.p12", data)},
                data={"password": password, "pins": pins},
            )
            assert created.status_code == 201, created.text
        created = client.post(
            uploads,
            files={
                "file": ("c.pem", pem_leaf.cert_pem()),
                "key": ("k.pem", pem_leaf.key_pem(PEM_PASSWORD)),
            },
            data={"password": PEM_PASSWORD},
        )
        assert created.status_code == 201, created.text
        wrong_key = client.post(
            uploads,
            files={
                "file": ("c.pem", pem_leaf.cert_pem()),
                "key": ("k.pem", pem_leaf.key_pem(PEM_PASSWORD)),
            },
            data={"password": WRONG_PASSWORD},
        )
        assert wrong_key.status_code == 422, wrong_key.text
        unauthorized = httpx.get(f"{url}/apps", headers=bearer("cw_not-a-token-" + RSA_PASSWORD))
        assert unauthorized.status_code == 401
        client.post(f"{ENV}/restart").raise_for_status()
        patterns.update(_bundle_patterns(_download(client)))
    return patterns


def _renew_now(server: ServerProcess, data_dir: Path) -> None:
    """Make the environment's managed certificate due and wait for the worker to renew it."""
    url = f"{server.base_url}/api/v1{ENV}/managed-certificate"
    before = httpx.get(url, headers=bearer(ADMIN_TOKEN), timeout=10).json()["serial"]
    with sqlite3.connect(data_dir / "certward.db", timeout=10) as database:
        database.execute("UPDATE managed_certificates SET renew_after = '2000-01-01 00:00:00'")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(url, headers=bearer(ADMIN_TOKEN), timeout=10).json()["serial"] != before:
            return
        time.sleep(0.5)
    pytest.fail("the renewal worker did not renew the managed certificate")


def test_a_lifecycle_leaves_no_secret_in_logs_or_the_data_directory(
    servers: ServerLauncher, tmp_path: Path
) -> None:
    ca = TestCA.root(name="lifecycle client CA")
    data_dir = tmp_path / "data"
    environ = {
        "CERTWARD_DATA_DIR": str(data_dir),
        "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "CERTWARD_RENEWAL_INTERVAL": "1",
    }
    first = servers.start(environ, cwd=tmp_path)
    first.wait_until_healthy()
    patterns = _lifecycle_part_one(first, ca)
    _renew_now(first, data_dir)
    first.stop()

    rotated = run_certward("keys", "rotate", cwd=tmp_path, environ=clean_environment(**environ))
    assert rotated.returncode == 0, rotated.stderr
    retired = run_certward(
        "keys", "rotate", "--retire", cwd=tmp_path, environ=clean_environment(**environ)
    )
    assert retired.returncode == 0, retired.stderr

    second = servers.start(environ, cwd=tmp_path)
    second.wait_until_healthy()
    with httpx.Client(
        base_url=f"{second.base_url}/api/v1", headers=bearer(ADMIN_TOKEN), timeout=60
    ) as client:
        client.post(f"{ENV}/restart").raise_for_status()
        patterns.update(_bundle_patterns(_download(client)))
        missing = client.get(f"{ENV}/client-certificates/no-such-id")
        assert missing.status_code == 404
    second.stop()

    assert len(patterns) > 40
    outputs = {
        "first serve stdout": first.stdout,
        "first serve stderr": first.stderr,
        "second serve stdout": second.stdout,
        "second serve stderr": second.stderr,
        "keys rotate": rotated.stdout + rotated.stderr,
        "keys rotate --retire": retired.stdout + retired.stderr,
    }
    assert "POST /api/v1/apps/shop/environments/prod/client-certificates" in (
        first.stdout + first.stderr
    ), "the access log is part of what is searched"
    leaks = [
        f"{where}: {name}"
        for where, text in outputs.items()
        for name, pattern in patterns.items()
        if pattern in text.encode()
    ]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any("bundles" in p.parts for p in files), "the bundle store is searched too"
    assert any(p.name == "certward.db" for p in files)
    leaks += [
        f"{path.relative_to(data_dir)}: {name}"
        for path in files
        for name, pattern in patterns.items()
        if pattern in path.read_bytes()
    ]
    assert not leaks, leaks
