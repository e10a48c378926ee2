"""``certward gateway``: the embedded gateway as pre-forked worker processes.

The parent binds the HTTPS and plain-HTTP sockets, then forks the workers, which all
accept on them (the kernel spreads connections). Each worker opens the installation
itself (its own database engine, nothing shared across ``fork``), follows the state
through `StateFollower` (a full snapshot at start, then the changed sites), and runs
`Gateway` on uvloop when it is installed. SIGTERM or SIGINT to the parent stops every
worker; a worker that dies is started again.

Each worker's gateway reaches upstreams under the operator's egress policy
(`Settings.egress_policy`, with the ports the gateway actually bound added to the
platform's own listeners), verifies ``https://`` upstreams against the public roots,
the platform CA's published certificates (read when the worker starts) and
``CERTWARD_UPSTREAM_CA_BUNDLE``, and bounds its connections with
``CERTWARD_GATEWAY_HEADER_TIMEOUT`` and ``CERTWARD_GATEWAY_IDLE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import uvloop
from OpenSSL import SSL

from certward.clock import SystemClock
from certward.dataplane.gateway import Gateway
from certward.dataplane.http_request import ConnectionLimits
from certward.dataplane.tls_contexts import base_context
from certward.dataplane.tls_policy import tls_policy
from certward.dataplane.upstream import upstream_tls_context
from certward.egress import EgressPolicy, Listener
from certward.errors import NotFound
from certward.platform import open_platform
from certward.services import platform_ca
from certward.services.context import Context
from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.dataplane_follower import StateFollower
from certward.settings import Settings, format_listen

log = logging.getLogger("certward.gateway")

RESTART_PAUSE_SECONDS = 1.0
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (even by SIGKILL), so a
    killed ``certward serve`` or gateway supervisor leaves no orphan holding the ports."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def bind(address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket on ``address`` (port 0: any free port)."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def run_gateway(
    settings: Settings,
    *,
    workers: int | None = None,
    ready: Callable[[int, int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; ``ready(https_port, http_port)`` once listening."""
    https = bind(settings.gateway_listen)
    http = bind(settings.gateway_http_listen)
    https_port, http_port = https.getsockname()[1], http.getsockname()[1]
    count = workers or settings.gateway_workers
    host = settings.gateway_listen[0]
    log.info(
        "gateway listening on https://%s and http://%s with %d worker(s)",
        format_listen((host, https_port)),
        format_listen((settings.gateway_http_listen[0], http_port)),
        count,
    )
    if ready is not None:
        ready(https_port, http_port)
    # Made before the workers fork, so they all hold its session-ticket keys: a client
    # resumes whichever worker accepts its next connection.
    session_context = base_context(tls_policy(settings.tls_policy))
    if count == 1:
        _worker(settings, https, http, session_context)
        return
    _supervise(settings, https, http, count, session_context)


def _supervise(
    settings: Settings,
    https: socket.socket,
    http: socket.socket,
    count: int,
    session_context: SSL.Context,
) -> None:
    children: set[int] = set()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            while len(children) < count and not stopping:
                children.add(_fork(settings, https, http, session_context))
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            children.discard(pid)
            if not stopping:
                log.warning("gateway worker %d exited (%s); starting another", pid, status)
                time.sleep(RESTART_PAUSE_SECONDS)
        clock = SystemClock()
        deadline = clock.monotonic() + 10
        while children and clock.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid:
                    children.discard(pid)
                    continue
            time.sleep(0.05)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _fork(
    settings: Settings, https: socket.socket, http: socket.socket, session_context: SSL.Context
) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        die_with_parent()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        _worker(settings, https, http, session_context)
    except BaseException:
        log.exception("gateway worker failed")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _worker(
    settings: Settings, https: socket.socket, http: socket.socket, session_context: SSL.Context
) -> None:
    platform = open_platform(settings, bootstrap=False)
    try:
        feed = StateFollower(DataPlaneFeed(platform.context), kind="gateway")
        gateway = Gateway(
            feed,
            refresh_seconds=settings.gateway_refresh.total_seconds(),
            egress=egress_policy(settings, https, http),
            upstream_tls=upstream_tls(settings, platform.context),
            limits=ConnectionLimits(
                header_seconds=settings.gateway_header_timeout.total_seconds(),
                idle_seconds=settings.gateway_idle_timeout.total_seconds(),
            ),
            tls=tls_policy(settings.tls_policy),
            session_context=session_context,
        )
        try:
            _run_loop(_serve(gateway, https, http))
        finally:
            feed.close()
    finally:
        platform.close()


def egress_policy(settings: Settings, *sockets: socket.socket) -> EgressPolicy:
    """The operator's policy, refusing the ports these sockets are bound to as well."""
    policy = settings.egress_policy()
    bound = tuple(
        Listener(host=str(sock.getsockname()[0]), port=int(sock.getsockname()[1]))
        for sock in sockets
    )
    return replace(policy, platform_listeners=(*policy.platform_listeners, *bound))


def upstream_tls(settings: Settings, ctx: Context) -> ssl.SSLContext:
    """The client context for https:// upstreams: public roots, the platform CA's
    published certificates, the operator's bundle."""
    try:
        published = platform_ca.show(ctx).published
    except NotFound:
        published = ()
    return upstream_tls_context(
        platform_ca_pem="".join(c.certificate_pem for c in published).encode("ascii"),
        ca_bundle=settings.upstream_ca_bundle,
    )


async def _serve(gateway: Gateway, https: socket.socket, http: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopped.set)
    await gateway.start_on_sockets(https, http)
    await stopped.wait()
    await gateway.close()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    uvloop.run(main)
