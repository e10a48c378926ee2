"""Raw HTTPS exchanges with a gateway: any request line, any header, byte by byte."""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any

WAIT_SECONDS = 10.0


@dataclass
class RawAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def forwarded(self, name: str) -> list[str]:
        """Values of header ``name`` as the echo upstream received them."""
        return [v for n, v in self.json()["headers"] if n.lower() == name.lower()]


def tls_socket(port: int, sni: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
    try:
        return context.wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


def raw_request(
    port: int,
    sni: str,
    context: ssl.SSLContext,
    request_line: str,
    headers: list[tuple[str, str]] | None = None,
    *,
    host: str | None = None,
) -> RawAnswer:
    """Send ``request_line`` with ``Host`` (default: the SNI name), ``headers`` and
    ``Connection: close``; the whole answer."""
    lines = [request_line, f"Host: {host or sni}", *(f"{n}: {v}" for n, v in headers or [])]
    lines.append("Connection: close")
    with tls_socket(port, sni, context) as tls:
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            data += chunk
    return parse_answer(data)


def parse_answer(data: bytes) -> RawAnswer:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
    ]
    return RawAnswer(status=int(status_line.split(" ", 2)[1]), headers=headers, body=body)
