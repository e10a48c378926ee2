"""One request of a gateway client connection, as `certward.dataplane.http_exchange`
holds it from its head to the end of its answer, and the terms of the connection it
arrives on: its deadlines (`ConnectionLimits`), what the exchange needs of the TLS
connection under it (`ClientConnection`) and where its log records go (`RequestLog`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from certward.dataplane.access import Address, ClientIdentity, Decision

MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """How long a client connection may take: see `certward.dataplane.http_exchange`."""

    handshake_seconds: float = 10.0
    header_seconds: float = 10.0
    idle_seconds: float = 75.0


class ClientConnection(Protocol):
    """What an exchange needs of the TLS connection under it."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


RequestLog = Callable[[dict[str, Any], bool], None]


class MalformedRequest(Exception):
    """A request the parser accepted but the gateway does not (see
    `certward.dataplane.http_exchange`)."""


@dataclass(slots=True, eq=False)
class ClientRequest:
    """One request of the connection, from its head to the end of its answer."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http11: bool = field(kw_only=True)
    keep_alive: bool = field(kw_only=True)
    upgrade: bool = field(kw_only=True)
    chunked: bool = field(kw_only=True)
    head_request: bool = field(kw_only=True)
    body: list[bytes] | None = field(init=False, default_factory=list)
    """Held until the request is served; None once it is sent (or dropped)."""
    complete: bool = field(init=False, default=False)
    refusal: tuple[int, bytes] | None = field(init=False, default=None)
    decision: Decision | None = field(init=False, default=None)
    path: str | None = field(init=False, default=None)
    head: bytes = field(init=False, default=b"")
    websocket: bool = field(init=False, default=False)
    retried: bool = field(init=False, default=False)
    status: int = field(init=False, default=0)

    def record(
        self, hostname: str, peer: Address, identity: ClientIdentity | None
    ) -> dict[str, Any]:
        """The request's line in the request log, without its status."""
        record: dict[str, Any] = {
            "host": hostname,
            "method": self.method.decode("latin-1"),
            "ip": str(peer),
            "client_subject": identity.subject if identity else None,
            "client_issuer": identity.issuer if identity else None,
            "path": self.path,
        }
        decision = self.decision
        if decision is not None:
            record |= {
                "decision": decision.verdict.value,
                "rule": decision.rule,
                "reason": decision.reason,
            }
        return record


def host_header(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's ``Host`` as nginx's ``$host``: lower case, no port, no trailing dot."""
    for name, value in headers:
        if name == b"host":
            return strip_port(value.decode("latin-1")).rstrip(".").lower()
    return ""


def strip_port(host: str) -> str:
    """``example.com:8080`` → ``example.com``; ``[::1]:80`` → ``[::1]``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]
