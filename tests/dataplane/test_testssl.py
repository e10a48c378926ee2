"""testssl.sh against both data planes: the TLS policy as a scanner sees it.

One scan per data plane, both at once (about 45 s each on two cores): protocols
(``-p``), server preferences (``-P``), server defaults such as resumption and ALPN
(``-S``), each cipher per protocol (``-E``) and the vulnerability checks (``-U``),
with ``--fast``, the test PKI's root trusted (``--add-ca``). Findings about the test
certificates themselves (no CRL or OCSP URL, no CAA record) are not the TLS policy's.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.dataplane.matrix import MatrixPki
from tests.dataplane.test_matrix import DATA_PLANES
from tests.dataplane.test_tls_policy import PLAIN, serving
from tests.material.tools import require_tool

SCAN_SECONDS = 240
SERIOUS = {"MEDIUM", "HIGH", "CRITICAL"}
NOT_THE_POLICY = ("cert_", "certs_", "DNS_CAArecord", "OCSP_", "certificate_transparency")
PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")


def _scan(testssl: str, port: int, roots: Path, report: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            testssl,
            "--quiet",
            "--warnings",
            "off",
            "--color",
            "0",
            "--add-ca",
            str(roots),
            "--ip",
            "127.0.0.1",
            "--jsonfile",
            str(report),
            "-p",
            "-P",
            "-S",
            "-E",
            "-U",
            "--fast",
            f"{PLAIN}:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.external("testssl", "nginx")
def test_both_data_planes_pass_testssl_with_the_same_protocols_and_suites(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    testssl = require_tool("testssl")
    findings: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        scans = {}
        for plane in sorted(DATA_PLANES):
            endpoints = stack.enter_context(serving(plane, matrix_pki, tmp_path / plane))
            report = tmp_path / f"{plane}.json"
            scans[plane] = (
                _scan(testssl, endpoints.https_port, matrix_pki.server_roots_file, report),
                report,
            )
        for plane, (scan, report) in scans.items():
            try:
                scan.wait(SCAN_SECONDS)
            finally:
                scan.kill()
            findings[plane] = {f["id"]: f for f in json.loads(report.read_text())}

    for plane, found in findings.items():
        serious = [
            f"{f['id']}: {f['severity']} {f['finding']}"
            for f in found.values()
            if f["severity"] in SERIOUS and not f["id"].startswith(NOT_THE_POLICY)
        ]
        assert not serious, (plane, serious)
        assert found["TLS1_2"]["finding"] == "offered", plane
        assert found["TLS1_3"]["finding"].startswith("offered"), plane
        assert found["cipher_order"]["finding"] == "server", plane
        # Resumption is proven by test_tls_policy; testssl's two-connection probe of it
        # is not reliable on a loaded machine.
        assert "http/1.1" in found["ALPN"]["finding"], plane

    gateway, nginx = findings["gateway"], findings["nginx"]
    for protocol in PROTOCOLS:
        assert gateway[protocol]["finding"] == nginx[protocol]["finding"], protocol
    suites = {
        plane: sorted(i for i in found if i.startswith("cipher-"))
        for plane, found in findings.items()
    }
    assert suites["gateway"] == suites["nginx"]
    assert len(suites["gateway"]) == 6  # an ECDSA certificate: 3 TLS 1.2 suites, 3 TLS 1.3
    # The one deliberate difference: only nginx speaks HTTP/2.
    assert nginx["ALPN_HTTP2"]["finding"] == "h2"
    assert "ALPN_HTTP2" not in gateway
    assert gateway["ALPN"]["finding"] == nginx["ALPN"]["finding"] == "http/1.1"
