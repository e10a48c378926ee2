"""The API's HTTP/1.1 connections, with a deadline for each request's headers.

uvicorn's own protocols close a connection idle between requests
(``timeout_keep_alive``) but give a client that sends its headers one byte at a time,
or connects and says nothing, as long as it likes: a few hundred such sockets hold
the server's connections forever (slowloris). `HeaderDeadlineProtocol` is uvicorn's
h11 protocol with one timer more: started when the connection is made and at the first
byte of each further request, stopped when the request's headers are complete; when
it fires first, the connection is closed. Other connections are not affected.

The protocol is chosen explicitly (not uvicorn's "auto", which prefers httptools when
installed) so the deadline holds whatever is installed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("certward.api.listener")


class HeaderDeadlineProtocol(H11Protocol):
    """h11 with a header deadline; subclass via `with_header_deadline` to set it."""

    header_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._start_header_timer()  # the first bytes of a further request
        super().data_received(data)
        self._stop_header_timer_when_headers_are_in()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may already be half read: its headers have the deadline too.
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            if self._header_timer is None:
                self._start_header_timer()
        else:
            self._stop_header_timer_when_headers_are_in()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _stop_header_timer_when_headers_are_in(self) -> None:
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = "%s:%d" % self.client if self.client else "a client"  # noqa: UP031
            log.info(
                "closed the connection of %s: no request headers within %g s",
                client,
                self.header_timeout,
            )
            self.transport.close()


def with_header_deadline(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with a ``seconds`` deadline."""
    return type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": float(seconds)}
    )
