"""Uploads take turns before their bodies are read: one per app, a few in all.

The wall is exercised on its own, around an ASGI app that holds each upload until the
test lets it go, so the order of admission is observed, not inferred from timings.
"""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from certward.api.upload_turns import UploadTurns

FILES = {"file": ("c.p12", b"x" * 10_000)}


class HeldUploads:
    """An ASGI app that answers 201 once the test releases the request's app."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["path"].split("/")[4]
        self.running.append(app)
        while (await receive()).get("more_body", False):
            pass
        await self.release.setdefault(app, asyncio.Event()).wait()
        self.running.remove(app)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _wall(held: HeldUploads, refused: list[int], **overrides: float) -> UploadTurns:
    options: dict[str, float] = {"concurrent": 2, "queue": 2, "wait_seconds": 1.0}
    options.update(overrides)
    return UploadTurns(
        held,
        concurrent=int(options["concurrent"]),
        queue=int(options["queue"]),
        wait_seconds=options["wait_seconds"],
        retry_after=3,
        on_refused=lambda: refused.append(1),
    )


async def _post(client: httpx.AsyncClient, app: str) -> httpx.Response:
    return await client.post(f"/api/v1/apps/{app}/environments/prod/authorities", files=FILES)


def test_one_app_waits_for_its_own_upload_while_another_app_is_served() -> None:
    async def scenario() -> None:
        held, refused = HeldUploads(), []
        wall = _wall(held, refused, wait_seconds=5.0)
        transport = httpx.ASGITransport(app=wall)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(_post(client, "shop"))
            second = asyncio.create_task(_post(client, "shop"))
            other = asyncio.create_task(_post(client, "other"))
            await asyncio.sleep(0.2)
            assert sorted(held.running) == ["other", "shop"]  # shop's second waits
            held.release.setdefault("other", asyncio.Event()).set()
            assert (await other).status_code == 201
            held.release.setdefault("shop", asyncio.Event()).set()
            assert (await first).status_code == 201
            assert (await second).status_code == 201
        assert refused == []
        assert wall._lines == {}  # nothing kept for paths no request holds any more

    asyncio.run(scenario())


def test_an_upload_whose_turn_does_not_come_in_time_is_busy_with_retry_after() -> None:
    async def scenario() -> None:
        held, refused = HeldUploads(), []
        wall = _wall(held, refused, wait_seconds=0.3)
        transport = httpx.ASGITransport(app=wall)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(_post(client, "shop"))
            await asyncio.sleep(0.1)
            late = await _post(client, "shop")
            assert late.status_code == 503
            assert late.headers["Retry-After"] == "3"
            body = late.json()
            assert body["code"] == "busy"
            assert body["retry_after"] == 3
            assert "'shop'" in body["detail"]
            held.release.setdefault("shop", asyncio.Event()).set()
            assert (await first).status_code == 201
        assert refused == [1]

    asyncio.run(scenario())


def test_a_full_line_is_refused_at_once_and_reads_pass_untouched() -> None:
    async def scenario() -> None:
        held, refused = HeldUploads(), []
        wall = _wall(held, refused, queue=1, wait_seconds=5.0)
        transport = httpx.ASGITransport(app=wall)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            holder = asyncio.create_task(_post(client, "shop"))
            await asyncio.sleep(0.1)
            waiter = asyncio.create_task(_post(client, "shop"))
            await asyncio.sleep(0.1)
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert (await _post(client, "shop")).status_code == 503
            assert loop.time() - start < 1, "a full line must not make the caller wait"
            # Not multipart: never held by the wall (the held app answers it at once).
            held.release.setdefault("reader", asyncio.Event()).set()
            read = await client.get("/api/v1/apps/reader/environments")
            assert read.status_code == 201
            held.release.setdefault("shop", asyncio.Event()).set()
            assert (await holder).status_code == 201
            assert (await waiter).status_code == 201
        assert refused == [1]

    asyncio.run(scenario())


def test_the_platform_wide_limit_holds_uploads_of_different_apps() -> None:
    async def scenario() -> None:
        held, refused = HeldUploads(), []
        wall = _wall(held, refused, concurrent=1, wait_seconds=5.0)
        transport = httpx.ASGITransport(app=wall)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(_post(client, "shop"))
            await asyncio.sleep(0.1)
            second = asyncio.create_task(_post(client, "other"))
            await asyncio.sleep(0.2)
            assert held.running == ["shop"]
            held.release.setdefault("shop", asyncio.Event()).set()
            held.release.setdefault("other", asyncio.Event()).set()
            assert (await first).status_code == 201
            assert (await second).status_code == 201
        assert refused == []

    asyncio.run(scenario())


def test_waiters_under_made_up_app_names_are_bounded_in_all() -> None:
    async def scenario() -> None:
        held, refused = HeldUploads(), []
        wall = _wall(held, refused, concurrent=1, queue=2, wait_seconds=5.0)
        transport = httpx.ASGITransport(app=wall)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            holder = asyncio.create_task(_post(client, "shop"))
            await asyncio.sleep(0.1)
            waiters = [asyncio.create_task(_post(client, f"made-up-{n}")) for n in range(4)]
            await asyncio.sleep(0.1)
            assert (await _post(client, "made-up-5")).status_code == 503
            for name in ["shop", *(f"made-up-{n}" for n in range(4))]:
                held.release.setdefault(name, asyncio.Event()).set()
            assert (await holder).status_code == 201
            assert [(await w).status_code for w in waiters] == [201] * 4
        assert refused == [1]
        assert wall._lines == {}

    asyncio.run(scenario())
