"""The API closes connections that do not send their headers in time, or sit idle.

Replays: a socket that sent half a request line and headers, then a byte now and then
(slowloris), or nothing at all, stayed open for ever on ``certward serve``'s API:
uvicorn has no header deadline. Now a real server closes it after
``CERTWARD_HEADER_TIMEOUT`` while serving everyone else, and closes keep-alive
connections idle for ``CERTWARD_IDLE_TIMEOUT``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.test_serve import ADMIN_TOKEN, ServerLauncher, ServerProcess, servers

__all__ = ["servers"]

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
SLACK = 1.5
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(servers: ServerLauncher, tmp_path: Path) -> ServerProcess:
    started = servers.start(
        {
            "CERTWARD_DATA_DIR": str(tmp_path / "data"),
            "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "CERTWARD_HEADER_TIMEOUT": str(int(HEADER_TIMEOUT)),
            "CERTWARD_IDLE_TIMEOUT": str(int(IDLE_TIMEOUT)),
        },
        cwd=tmp_path,
    )
    started.wait_until_healthy()
    return started


def _connect(server: ServerProcess) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    connection.settimeout(0.2)
    return connection


def _closed_after(connection: socket.socket, *, trickle: bool, limit: float) -> float:
    """Seconds until the server closed ``connection`` (sending a byte every 0.5 s when
    ``trickle``); fails past ``limit``."""
    start = time.monotonic()
    last_byte = start
    while time.monotonic() - start < limit:
        try:
            if connection.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - start
        if trickle and time.monotonic() - last_byte >= 0.5:
            last_byte = time.monotonic()
            try:
                connection.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
    pytest.fail(f"the server kept the connection open for {limit} s")


def _read_response(connection: socket.socket) -> bytes:
    connection.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        assert chunk, "closed before the response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(4096)
    connection.settimeout(0.2)
    return head


def test_a_slow_header_is_cut_off_while_others_are_served(server: ServerProcess) -> None:
    served: list[int] = []
    stop = threading.Event()

    def others() -> None:
        with httpx.Client(base_url=server.base_url, timeout=5) as client:
            while not stop.is_set():
                served.append(client.get("/healthz").status_code)
                time.sleep(0.1)

    neighbour = threading.Thread(target=others)
    neighbour.start()
    try:
        slow = _connect(server)
        silent = _connect(server)
        slow.sendall(PARTIAL)
        elapsed = _closed_after(slow, trickle=True, limit=HEADER_TIMEOUT + 5)
        assert HEADER_TIMEOUT - 0.5 <= elapsed <= HEADER_TIMEOUT + SLACK, elapsed
        elapsed = _closed_after(silent, trickle=False, limit=HEADER_TIMEOUT + 5)
        assert elapsed <= HEADER_TIMEOUT + SLACK, elapsed
        slow.close()
        silent.close()
    finally:
        stop.set()
        neighbour.join(10)
    assert len(served) >= 10
    assert set(served) == {200}


def test_the_next_request_on_a_kept_alive_connection_has_the_deadline_too(
    server: ServerProcess,
) -> None:
    connection = _connect(server)
    connection.sendall(REQUEST)
    assert _read_response(connection).startswith(b"HTTP/1.1 200")
    connection.sendall(PARTIAL)
    elapsed = _closed_after(connection, trickle=True, limit=HEADER_TIMEOUT + 5)
    assert elapsed <= HEADER_TIMEOUT + SLACK, elapsed
    connection.close()


def test_an_idle_kept_alive_connection_is_closed(server: ServerProcess) -> None:
    connection = _connect(server)
    connection.sendall(REQUEST)
    assert _read_response(connection).startswith(b"HTTP/1.1 200")
    elapsed = _closed_after(connection, trickle=False, limit=IDLE_TIMEOUT + 5)
    assert IDLE_TIMEOUT - 0.5 <= elapsed <= IDLE_TIMEOUT + SLACK, elapsed
    connection.close()
