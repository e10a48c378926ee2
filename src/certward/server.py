"""``certward serve``: open the platform, say where it listens, run the API, the
renewal worker (in a background thread that stops with the server) and the HTTPS
gateway (``certward gateway`` in a child process that stops with the server).

Uploaded material is read in worker processes started here (`certward.material_workers`).
The API's connections have a deadline for each request's headers
(``CERTWARD_HEADER_TIMEOUT``, `certward.api.listener`) and are closed when idle between
requests (``CERTWARD_IDLE_TIMEOUT``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import uvicorn
from rich.console import Console
from rich.text import Text

from certward import __version__
from certward.api import create_app
from certward.api.listener import with_header_deadline
from certward.dataplane.gateway_runner import die_with_parent
from certward.platform import Platform, open_platform
from certward.services.acme_issuing import check_acme_profile
from certward.settings import Settings, format_listen
from certward.worker import RenewalWorker

SWITCH_INTERVAL_SECONDS = 0.001  # the GIL's hand-over interval in certward serve (default 5 ms)


def banner(platform: Platform) -> list[str]:
    """What an operator needs to know on start: where, and how to authenticate."""
    settings = platform.context.settings
    base = f"http://{settings.listen}"
    lines = [
        f"certward {__version__}",
        f"  API:       {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json,"
        f" docs: {base}/api/v1/docs)",
        f"  console:   {base}/   (sign in with a token)",
        f"  health:    {base}/healthz",
        f"  CA:        {base}/api/v1/platform/ca   (the platform root to trust; managed"
        f" certificates renewed every {settings.renewal_interval.total_seconds():g} s)",
        f"  data:      {settings.data_dir.resolve()}  (database: "
        f"{platform.engine.url.render_as_string(hide_password=True)})",
    ]
    if platform.admin_token_file is not None:
        lines.append(
            f"  admin:     a new admin token was written to {platform.admin_token_file.resolve()}"
            " (mode 0600)"
        )
    elif settings.admin_token:
        lines.append("  admin:     the admin token is the value of CERTWARD_ADMIN_TOKEN")
    else:
        lines.append(
            f"  admin:     use the admin token created at first start ({settings.admin_token_file})"
        )
    lines.append('  authenticate with the header "Authorization: Bearer <token>"')
    return lines


def serve(settings: Settings, *, gateway: bool = True) -> None:
    os.umask(0o077)  # the database, its journal and every file certward writes: owner only
    platform = open_platform(settings)
    try:
        check_acme_profile(platform.context)
    except BaseException:
        platform.close()
        raise
    console = Console(highlight=False, soft_wrap=True)
    for line in banner(platform):
        console.print(Text(line))
    if gateway:
        console.print(
            Text(
                f"  gateway:   https://{format_listen(settings.gateway_listen)}  (ACME challenges"
                f" and redirects on http://{format_listen(settings.gateway_http_listen)})"
            )
        )
    app = create_app(platform.context)
    # Everything loaded so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, which otherwise stall requests for 100 ms and more.
    gc.collect()
    gc.freeze()
    # Uploads, reads and the event loop share one interpreter. A thread that blocks (a
    # database call, a pipe to a material worker) waits for the running thread to give
    # up the GIL, up to one switch interval each time: at the default 5 ms, a read that
    # blocks a dozen times gains 50 ms behind another tenant's upload thread. 1 ms keeps
    # that wait short (`benchmarks/bench_hostile_tenant.py`).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    # The processes that read uploads start now, so that the first upload finds them ready.
    platform.context.material_workers.warm()
    worker = RenewalWorker(platform.context)
    worker.start()
    # Migrations ran above: the gateway's workers open the same installation.
    gateway_process = (
        subprocess.Popen([sys.executable, "-m", "certward", "gateway"], preexec_fn=die_with_parent)  # noqa: PLW1509 - only a prctl call
        if gateway
        else None
    )
    try:
        uvicorn.run(
            app,
            host=settings.listen_host,
            port=settings.listen_port,
            log_level="info",
            server_header=False,
            http=with_header_deadline(settings.header_timeout.total_seconds()),
            timeout_keep_alive=int(settings.idle_timeout.total_seconds()),
        )
    finally:
        if gateway_process is not None:
            gateway_process.terminate()
            try:
                gateway_process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gateway_process.kill()
        worker.stop()
        platform.close()
