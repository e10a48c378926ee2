"""Uploads take turns: one at a time per app, a few at a time in all, before any parsing.

An upload costs the serving process about ten times a read before its material even
reaches a worker (multipart, lookups, the judgement's answer), and the serving process
is one interpreter. Eight concurrent uploads from one tenant would otherwise hold eight
of its threads and queue every other tenant's reads behind them. `UploadTurns` is an
ASGI wall in front of everything: a multipart request (every upload of the API and the
console is one) waits, without reading its body, until its app has no other upload in
progress and fewer than ``concurrent`` uploads run in all. A request that cannot get
its turn within ``wait_seconds``, or finds ``queue`` others of its app (or twice that
of all apps: the app in the path is the caller's to choose) already waiting,
is answered 503 ``busy`` with ``Retry-After`` — the same answer as a full worker pool,
counted with the pool's own busy refusals (``certward_material_jobs_total``).

The app is the path segment after ``apps`` (``/api/v1/apps/<app>/…`` and the console's
``/apps/<app>/…``); uploads outside any app share one line of their own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from certward.errors import RefusalCode

_WRITES = frozenset({"POST", "PUT", "PATCH"})
_NO_APP = ""


@dataclass(slots=True)
class _Line:
    """One app's turn and the requests waiting for it."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class UploadTurns:
    """Admit multipart requests one per app and ``concurrent`` in all (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        concurrent: int,
        queue: int,
        wait_seconds: float,
        retry_after: int,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self.queue = queue
        self.retry_after = retry_after
        self.on_refused = on_refused
        self.concurrent = concurrent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all = asyncio.Semaphore(concurrent)
        self._lines: dict[str, _Line] = {}

    def _bind(self) -> None:
        """Fresh primitives when served by another event loop (a restarted server)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._all = asyncio.Semaphore(self.concurrent)
            self._lines = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_upload(scope):
            await self.app(scope, receive, send)
            return
        self._bind()
        app_name = _app_of(scope.get("path", ""))
        line = self._lines.setdefault(app_name, _Line())
        if line.waiting >= self.queue or self._waiting_in_all >= 2 * self.queue:
            self._forget_if_idle(app_name, line)
            await self._refuse(receive, send, app_name)
            return
        with self._waiting_for(line):
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await line.turn.acquire()
                    try:
                        await self._all.acquire()
                    except BaseException:
                        line.turn.release()
                        raise
            except TimeoutError:
                self._forget_if_idle(app_name, line)
                await self._refuse(receive, send, app_name)
                return
        try:
            await self.app(scope, receive, send)
        finally:
            self._all.release()
            line.turn.release()
            self._forget_if_idle(app_name, line)

    @property
    def _waiting_in_all(self) -> int:
        return sum(line.waiting for line in self._lines.values())

    @staticmethod
    @contextmanager
    def _waiting_for(line: _Line) -> Iterator[None]:
        line.waiting += 1
        try:
            yield
        finally:
            line.waiting -= 1

    def _forget_if_idle(self, app_name: str, line: _Line) -> None:
        """Drop an app's line once nobody holds or awaits it: the path is the caller's
        to choose, so lines must not outlive their requests."""
        if line.waiting == 0 and not line.turn.locked() and self._lines.get(app_name) is line:
            del self._lines[app_name]

    async def _refuse(self, receive: Receive, send: Send, app_name: str) -> None:
        """503 ``busy``, after reading (and dropping) the body: a client still sending
        it would otherwise see its connection reset instead of the answer. The body is
        within the size wall in front of this one."""
        self.on_refused()
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        retry_after = self.retry_after
        whose = f"app {app_name!r}" if app_name else "the platform"
        body = json.dumps(
            {
                "type": f"urn:certward:problem:{RefusalCode.BUSY}",
                "title": "Service Unavailable",
                "status": 503,
                "code": RefusalCode.BUSY,
                "detail": (
                    f"Other uploads of {whose} are still being read: try again in {retry_after} s."
                ),
                "problems": [],
                "retry_after": retry_after,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _is_upload(scope: Scope) -> bool:
    if scope["type"] != "http" or scope.get("method") not in _WRITES:
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value[:19].lower() == b"multipart/form-data")
    return False


def _app_of(path: str) -> str:
    """The app an upload path names: the segment after the first ``apps``."""
    segments = path.split("/")
    for index, segment in enumerate(segments[:-1]):
        if segment == "apps":
            return segments[index + 1]
    return _NO_APP
