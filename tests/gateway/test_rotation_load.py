"""Certificates rotated 20 times while clients keep requesting: not one request fails.

Clients on new connections (full handshakes) and on keep-alive connections run
throughout; each rotation replaces the served certificate and flips an access rule on
an unrelated path. Bounded: 20 rotations, 0.15 s apart.
"""

from __future__ import annotations

import http.client
import socket
import threading
from pathlib import Path

from cryptography import x509

from tests.gateway.harness import (
    EchoUpstream,
    client_context,
    https_request,
    running_gateway,
    site,
    state_of,
)
from tests.material.factory import TestCA

ROTATIONS = 20


def test_twenty_rotations_under_load_lose_no_request(tmp_path: Path) -> None:
    ca = TestCA.root(name="rotation root")
    certificates = [ca.issue_leaf("busy.shop.test") for _ in range(ROTATIONS + 1)]
    stop = threading.Event()
    failures: list[str] = []
    done = {"requests": 0}
    seen: set[int] = set()
    lock = threading.Lock()

    with (
        EchoUpstream() as upstream,
        running_gateway(state_of(site("busy.shop.test", certificates[0], upstream.url))) as gw,
    ):
        context = client_context(ca, tmp_path)

        def fresh_connections() -> None:
            while not stop.is_set():
                try:
                    answer = https_request(gw.https_port, "busy.shop.test", context, path="/app")
                    serial = x509.load_der_x509_certificate(answer.peer_certificate or b"")
                    with lock:
                        done["requests"] += 1
                        seen.add(serial.serial_number)
                    if answer.status != 200:
                        failures.append(f"status {answer.status}")
                except Exception as exc:
                    failures.append(repr(exc))

        def keep_alive() -> None:
            sock = socket.create_connection(("127.0.0.1", gw.https_port), timeout=10)
            connection = http.client.HTTPConnection("busy.shop.test", timeout=10)
            connection.sock = context.wrap_socket(sock, server_hostname="busy.shop.test")
            try:
                while not stop.is_set():
                    connection.request("GET", "/app")
                    response = connection.getresponse()
                    response.read()
                    with lock:
                        done["requests"] += 1
                    if response.status != 200:
                        failures.append(f"keep-alive status {response.status}")
            except Exception as exc:
                failures.append("keep-alive: " + repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=fresh_connections) for _ in range(3)]
        threads += [threading.Thread(target=keep_alive) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for number in range(1, ROTATIONS + 1):
                rule = "deny-all" if number % 2 else "allow-all"
                gw.update(
                    state_of(
                        site(
                            "busy.shop.test",
                            certificates[number],
                            upstream.url,
                            rules={"/admin": (rule, None)},
                        )
                    )
                )
                stop.wait(0.15)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    assert not failures, failures[:5]
    assert done["requests"] > 100
    # The clients saw the rotations happen, not just the first certificate.
    assert len(seen) >= ROTATIONS // 2
