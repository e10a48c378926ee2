"""A loopback HTTPS front for pebble that adds what Debian's pebble 2.4 lacks: renewal
information (RFC 9773) and profiles (draft-ietf-acme-profiles).

Every request is passed on to pebble with its ``Host`` header unchanged, so the URLs
pebble writes into its answers (and checks in each JWS) are the front's: certward talks
to the front only. The front adds ``renewalInfo`` and ``meta.profiles`` to the
directory, answers ``GET <renewalInfo>/<id>`` itself with the document and
``Retry-After`` the test sets, and keeps the payload of every newOrder::

    with run_front(pebble) as front:
        front.window = (start, end)          # None: a document without one
        front.directory_url                  # CERTWARD_ACME_DIRECTORY
        front.orders[-1]["replaces"]         # what certward sent
        front.renewal_info_requests          # the certificate ids asked for

A real HTTP server on 127.0.0.1 and real requests from the acme library: nothing of
certward's is replaced.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.material.pebble import Pebble, free_port

RENEWAL_INFO_PATH = "/renewal-info"
PROFILES = {"classic": "the CA's default", "shortlived": "6-day certificates"}
_HOP_HEADERS = {"connection", "content-length", "transfer-encoding", "keep-alive"}


@dataclass(slots=True, kw_only=True)
class Front:
    """What the front offers and what it saw."""

    directory_url: str
    offer_renewal_info: bool = True
    profiles: dict[str, str] = field(default_factory=lambda: dict(PROFILES))
    window: tuple[datetime, datetime] | None = None
    document: bytes | None = None  # sent as it is instead of the window's document
    renewal_info_status: int = 200
    retry_after: str | None = "21600"
    orders: list[dict[str, Any]] = field(default_factory=list)
    renewal_info_requests: list[str] = field(default_factory=list)


def _payload(body: bytes) -> dict[str, Any]:
    """The payload of a flattened JWS."""
    encoded = json.loads(body)["payload"]
    encoded += "=" * (-len(encoded) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(encoded))
    return decoded


@contextmanager
def run_front(pebble: Pebble) -> Iterator[Front]:
    """The front on a free loopback port, with pebble's TLS certificate (for 127.0.0.1)."""
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    front = Front(directory_url=f"{base}/dir")
    upstream = pebble.directory_url.removesuffix("/dir")
    trust = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    client = httpx.Client(verify=trust, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith(RENEWAL_INFO_PATH + "/"):
                self._renewal_info(self.path.removeprefix(RENEWAL_INFO_PATH + "/"))
            else:
                self._forward(b"")

        def do_HEAD(self) -> None:
            self._forward(b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/order-plz":
                front.orders.append(_payload(body))
            self._forward(body)

        def _renewal_info(self, certificate_id: str) -> None:
            front.renewal_info_requests.append(certificate_id)
            if front.document is not None:
                document = front.document
            else:
                start, end = front.window or (None, None)
                window = (
                    {"start": start.isoformat(), "end": end.isoformat()} if start and end else {}
                )
                document = json.dumps({"suggestedWindow": window}).encode()
            headers = {"Content-Type": "application/json"}
            if front.retry_after is not None:
                headers["Retry-After"] = front.retry_after
            self._answer(front.renewal_info_status, headers, document)

        def _forward(self, body: bytes) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            answer = client.request(
                self.command, upstream + self.path, headers=headers, content=body
            )
            content = answer.content
            if self.path == "/dir" and answer.status_code == 200:
                directory = answer.json()
                if front.offer_renewal_info:
                    directory["renewalInfo"] = base + RENEWAL_INFO_PATH
                if front.profiles:
                    directory.setdefault("meta", {})["profiles"] = front.profiles
                content = json.dumps(directory).encode()
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in _HOP_HEADERS and k.lower() != "content-encoding"
            }
            self._answer(answer.status_code, kept, content)

        def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(
        pebble.ca_bundle.with_name("tls-cert.pem"), pebble.ca_bundle.with_name("tls-key.pem")
    )
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name=f"acme-front:{port}", daemon=True)
    thread.start()
    try:
        yield front
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        client.close()
