"""Uploaded material is read and judged in bounded worker processes, never on a serving thread.

`MaterialWorkers` is a small pool of processes (``CERTWARD_MATERIAL_WORKERS``, started
from a fork server, never forked from the threaded server) that run `load_material`
and `judge` on uploaded bytes. Each job has a budget:

* CPU: before each job the worker sets its own ``RLIMIT_CPU`` to what it has used so
  far plus ``CERTWARD_MATERIAL_CPU_SECONDS`` (rounded up to the next whole second, the
  kernel's unit); the kernel ends it with ``SIGXCPU`` when the job goes over.
* Wall time: the caller waits ``CERTWARD_MATERIAL_WALL_SECONDS`` for the answer, then
  kills the worker (``SIGKILL``).

A worker runs at a lower CPU priority than the server (``nice`` +10, `NICENESS`): when
hostile uploads keep every worker busy, the kernel still gives the serving process
and its other tenants the CPU first, and the workers the rest.

Either way the worker is gone, the next job starts a new one, and the upload is refused
with `MaterialError` ``too-expensive`` naming the limit (422 through the API). The
serving thread only waits on a pipe, without the GIL, so ``/healthz`` and every other
tenant's requests go on while a hostile file burns its budget elsewhere.

Admission: a job waits for a free worker at most half the wall deadline; at most
``8 x workers`` jobs wait at once, and at most half of those (``4 x workers``) for
one app; beyond any of these, `ServiceBusy` (503 ``busy`` with ``Retry-After``).
One app (the ``tenant`` of a job) holds at most ``workers - 1`` workers at a time when
there are two or more, so it can never occupy them all, nor the whole queue.

What crosses the pipe: the uploaded bytes and password in, certificates (DER), the
private key (PKCS#8 DER, unencrypted: the pipe is private to the two processes) and
the problems out. The parent rebuilds `Material` and `Judgement` from them, without
key validation (the worker validated the key) -- so the parent never parses anything
the worker has not parsed first.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import signal
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

from certward.clock import SystemClock
from certward.errors import MaterialError, ServiceBusy
from certward.pki.chains import RootStore
from certward.pki.checks import Judgement, Purpose, judge
from certward.pki.convert import private_key_der
from certward.pki.lenient import tolerating_lenient_encodings
from certward.pki.limits import Limits
from certward.pki.material import (
    Material,
    MaterialKind,
    Pkcs12Details,
    combine,
    load_material,
    load_stored_private_key,
)
from certward.pki.problems import Problem, ProblemCode

CPU_SETTING = "CERTWARD_MATERIAL_CPU_SECONDS"
WALL_SETTING = "CERTWARD_MATERIAL_WALL_SECONDS"
WORKERS_SETTING = "CERTWARD_MATERIAL_WORKERS"
NICENESS = 10  # added to the server's own niceness by every worker
# Budgets are real seconds, whatever clock the business logic runs on (tests fix theirs).
_REAL_TIME = SystemClock()


class Outcome:
    """Label values of ``certward_material_jobs_total``."""

    READ = "read"  # the worker answered (material, or a typed refusal)
    CPU = "cpu-budget"  # killed by the kernel at its CPU budget
    WALL = "wall-deadline"  # killed at the wall deadline
    CRASHED = "crashed"  # the worker died of something else
    BUSY = "busy"  # refused before it ran: no worker free in time


@dataclass(frozen=True, slots=True, kw_only=True)
class Examination:
    """What a worker does with uploaded files: read them (each with `load_material`,
    then `combine`), and judge the result when ``judged``.

    ``key`` (PKCS#8 DER) replaces the upload's key for the judgement: a CSR's key kept
    by certward. Nothing here appears in ``repr``.
    """

    files: tuple[bytes, ...] = field(repr=False)
    password: bytes | None = field(default=None, repr=False)
    limits: Limits
    expect_pkcs12: bool = False
    judged: bool = False
    purpose: Purpose | None = None
    hostnames: tuple[str, ...] = ()
    at: datetime | None = None
    key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Examined:
    """The material read, the judgement (when asked for) and the worker CPU it cost."""

    material: Material
    judgement: Judgement | None
    cpu_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class _Judged:
    leaf: bytes | None
    chain: tuple[bytes, ...]
    unrelated: tuple[bytes, ...]
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    """What crosses the pipe back: plain bytes and problems, never pyca objects."""

    refused: tuple[Problem, ...] | None = None
    failure: str | None = None  # an unexpected exception's type name
    kind: MaterialKind | None = None
    certificates: tuple[bytes, ...] = ()
    private_key: bytes | None = field(default=None, repr=False)
    pkcs12: Pkcs12Details | None = None
    problems: tuple[Problem, ...] = ()
    judged: _Judged | None = None
    cpu_seconds: float = 0.0


@dataclass(slots=True, eq=False)
class _Worker:
    process: BaseProcess
    connection: Connection


class MaterialWorkers:
    """The pool; thread-safe. Processes start on first use and after each kill."""

    def __init__(
        self,
        *,
        workers: int,
        cpu_seconds: int,
        wall_seconds: float,
        known_roots: RootStore,
        max_waiting: int | None = None,
    ) -> None:
        if workers < 1 or cpu_seconds < 1 or wall_seconds <= 0:
            raise ValueError("a material pool needs workers and a positive budget")
        self.workers = workers
        self.cpu_seconds = cpu_seconds
        self.wall_seconds = wall_seconds
        self.per_tenant = max(1, workers - 1)
        self.max_wait = wall_seconds / 2
        self.max_waiting = max_waiting if max_waiting is not None else 8 * workers
        self.max_waiting_per_tenant = max(1, self.max_waiting // 2)
        self._roots = tuple(
            c.public_bytes(serialization.Encoding.DER) for c in known_roots.anchors()
        )
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__])
        self._lock = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._free = workers
        self._in_flight: Counter[str] = Counter()
        self._waiting = 0
        self._waiting_of: Counter[str] = Counter()
        self._closed = False
        self._outcomes: Counter[str] = Counter()
        self._cpu_total = 0.0
        self._started = 0
        self._starting = 0  # processes being started, on demand or by `warm`

    # -- use ----------------------------------------------------------------------------------

    def examine(
        self,
        examination: Examination,
        *,
        tenant: str,
        key: PrivateKeyTypes | None = None,
    ) -> Examined:
        """Run ``examination`` in a worker for ``tenant`` (an app); `MaterialError` on a
        refusal (its own, or ``too-expensive`` over budget), `ServiceBusy` when full.

        ``key``, when given, is judged in place of the upload's key (the worker gets it
        as DER in ``examination.key``).
        """
        if key is not None:
            examination = replace(examination, key=private_key_der(key))
        worker = self._acquire(tenant)
        kept: _Worker | None = None
        try:
            answer = self._exchange(worker)(examination)
            kept = worker
        finally:
            self._release(worker, kept, tenant)
        return _rebuild(answer, examination, key)

    def warm(self) -> None:
        """Start the workers now, in the background, so the first uploads find them ready."""

        def start_all() -> None:
            for _ in range(self.workers):
                with self._lock:
                    if self._closed or self._free == 0:
                        return
                    if len(self._idle) + len(self._busy) + self._starting >= self.workers:
                        return
                    self._free -= 1
                    self._starting += 1
                try:
                    worker = self._start()
                except OSError:
                    worker = None
                with self._lock:
                    self._free += 1
                    self._starting -= 1
                    if worker is not None and not self._closed:
                        self._idle.append(worker)
                    self._lock.notify_all()
                if worker is not None and self._closed:
                    _stop(worker)
                if worker is None:
                    return

        threading.Thread(target=start_all, name="certward-material-warm", daemon=True).start()

    def statistics(self) -> dict[str, float]:
        """Counters for ``/metrics``: jobs by outcome, worker CPU seconds, starts, load."""
        with self._lock:
            numbers: dict[str, float] = {f"jobs:{k}": float(v) for k, v in self._outcomes.items()}
            numbers["cpu_seconds"] = self._cpu_total
            numbers["started"] = float(self._started)
            numbers["in_flight"] = float(sum(self._in_flight.values()))
            numbers["waiting"] = float(self._waiting)
        return numbers

    def close(self) -> None:
        """Stop every worker; later jobs raise `RuntimeError`."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            self._lock.notify_all()
        for worker in workers:
            _stop(worker)

    # -- admission ----------------------------------------------------------------------------

    def _acquire(self, tenant: str) -> _Worker:
        deadline = _REAL_TIME.monotonic() + self.max_wait
        with self._lock:
            if self._closed:
                raise RuntimeError("the material workers are closed")
            if not self._may_run(tenant) and (
                self._waiting >= self.max_waiting
                or self._waiting_of[tenant] >= self.max_waiting_per_tenant
            ):
                raise self._refuse_busy()
            self._waiting += 1
            self._waiting_of[tenant] += 1
            try:
                while not self._may_run(tenant):
                    remaining = deadline - _REAL_TIME.monotonic()
                    if remaining <= 0 or self._closed:
                        raise self._refuse_busy()
                    self._lock.wait(remaining)
            finally:
                self._waiting -= 1
                self._waiting_of[tenant] -= 1
                if self._waiting_of[tenant] <= 0:
                    del self._waiting_of[tenant]
            self._free -= 1
            self._in_flight[tenant] += 1
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                self._starting += 1
        if worker is None:
            try:
                worker = self._start()
            except BaseException:
                with self._lock:
                    self._starting -= 1
                self._release(None, None, tenant)
                raise
            with self._lock:
                self._starting -= 1
                self._busy.add(worker)
            return worker
        with self._lock:
            self._busy.add(worker)
        return worker

    def _may_run(self, tenant: str) -> bool:
        return self._free > 0 and self._in_flight[tenant] < self.per_tenant

    def count_busy(self) -> None:
        """Count an upload refused as busy before it reached the pool (its app's turn
        did not come in time), as one the pool refused."""
        with self._lock:
            self._outcomes[Outcome.BUSY] += 1

    def _refuse_busy(self) -> ServiceBusy:
        self._outcomes[Outcome.BUSY] += 1
        wait = max(1, math.ceil(self.wall_seconds))
        return ServiceBusy(
            f"Every worker that reads uploaded material is busy ({self.workers}, at most "
            f"{self.per_tenant} for one app; {WORKERS_SETTING}): try again in {wait} s.",
            retry_after=wait,
        )

    def _release(self, worker: _Worker | None, kept: _Worker | None, tenant: str) -> None:
        with self._lock:
            if worker is not None:
                self._busy.discard(worker)
            self._free += 1
            self._in_flight[tenant] -= 1
            if self._in_flight[tenant] <= 0:
                del self._in_flight[tenant]
            if kept is not None and not self._closed:
                self._idle.append(kept)
            self._lock.notify_all()
        if worker is not None and kept is None:
            _stop(worker)
            self.warm()  # its replacement starts now, not with the next upload

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=work,
            args=(child, self._roots, self.cpu_seconds),
            name="certward-material",
            daemon=True,
        )
        process.start()
        child.close()
        with self._lock:
            self._started += 1
        return _Worker(process=process, connection=parent)

    # -- one job ------------------------------------------------------------------------------

    def _exchange(self, worker: _Worker) -> _Exchange:
        return _Exchange(self, worker)

    def _count(self, outcome: str, cpu_seconds: float) -> None:
        with self._lock:
            self._outcomes[outcome] += 1
            self._cpu_total += cpu_seconds


class _Exchange:
    """Send one examination to ``worker`` and wait for its answer within the budget."""

    __slots__ = ("pool", "worker")

    def __init__(self, pool: MaterialWorkers, worker: _Worker) -> None:
        self.pool = pool
        self.worker = worker

    def __call__(self, examination: Examination) -> _Answer:
        pool, connection = self.pool, self.worker.connection
        started = _REAL_TIME.monotonic()
        try:
            connection.send(examination)
            if not connection.poll(pool.wall_seconds):
                _stop(self.worker)
                pool._count(Outcome.WALL, pool.cpu_seconds)
                raise _too_expensive(
                    f"reading it took longer than the {pool.wall_seconds:g} s allowed "
                    f"({WALL_SETTING})"
                )
            answer: _Answer = connection.recv()
        except (EOFError, OSError):
            _stop(self.worker)
            code = self.worker.process.exitcode
            if code in (-signal.SIGXCPU, -signal.SIGKILL):
                pool._count(Outcome.CPU, pool.cpu_seconds)
                raise _too_expensive(
                    f"reading it used more than the {pool.cpu_seconds} s of CPU allowed "
                    f"({CPU_SETTING})"
                ) from None
            pool._count(Outcome.CRASHED, _REAL_TIME.monotonic() - started)
            raise MaterialError(
                [
                    Problem.error(
                        ProblemCode.CORRUPTED,
                        "The upload could not be read: the parser stopped on it "
                        f"(exit status {code}). It is damaged or deliberately malformed.",
                    )
                ]
            ) from None
        pool._count(Outcome.READ, answer.cpu_seconds)
        return answer


def _too_expensive(reason: str) -> MaterialError:
    return MaterialError(
        [
            Problem.error(
                ProblemCode.TOO_EXPENSIVE,
                f"The upload was refused: {reason}. Real certificate material takes "
                "milliseconds; this file is built to waste CPU.",
            )
        ]
    )


def _stop(worker: _Worker) -> None:
    process = worker.process
    if process.is_alive():
        process.kill()
    process.join(timeout=5)
    worker.connection.close()


# -- the parent's side: rebuilding what the worker read ---------------------------------------


def _rebuild(answer: _Answer, examination: Examination, key: PrivateKeyTypes | None) -> Examined:
    if answer.failure is not None:
        raise RuntimeError(f"reading uploaded material failed unexpectedly: {answer.failure}")
    if answer.refused is not None:
        raise MaterialError(list(answer.refused))
    parsed: dict[bytes, x509.Certificate] = {}

    def certificate(data: bytes) -> x509.Certificate:
        if data not in parsed:
            parsed[data] = x509.load_der_x509_certificate(data)
        return parsed[data]

    if answer.kind is None:
        raise RuntimeError("a worker answered without material")
    material = Material(
        kind=answer.kind,
        certificates=tuple(certificate(c) for c in answer.certificates),
        private_key=None
        if answer.private_key is None
        else load_stored_private_key(answer.private_key),
        pkcs12=answer.pkcs12,
        problems=answer.problems,
    )
    judgement = None
    if answer.judged is not None:
        judged = answer.judged
        judged_material = material if key is None else replace(material, private_key=key)
        judgement = Judgement(
            purpose=examination.purpose,
            material=judged_material,
            leaf=None if judged.leaf is None else certificate(judged.leaf),
            chain=tuple(certificate(c) for c in judged.chain),
            problems=judged.problems,
            unrelated=tuple(certificate(c) for c in judged.unrelated),
        )
    return Examined(material=material, judgement=judgement, cpu_seconds=answer.cpu_seconds)


# -- the worker's side ------------------------------------------------------------------------


def work(connection: Connection, roots: Sequence[bytes], cpu_seconds: int) -> None:
    """A worker's life: answer examinations until the pipe closes (or the budget ends it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops us
    os.nice(NICENESS)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would otherwise dump core
    with warnings.catch_warnings():
        # A few public roots carry non-positive serial numbers; they are still roots.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        with tolerating_lenient_encodings():
            known_roots = RootStore(x509.load_der_x509_certificate(r) for r in roots)
    while True:
        try:
            examination: Examination = connection.recv()
        except (EOFError, OSError):
            return
        start = _cpu_used()
        _limit_cpu(start + cpu_seconds)
        answer = examine_here(examination, known_roots)
        connection.send(replace(answer, cpu_seconds=_cpu_used() - start))


def examine_here(examination: Examination, known_roots: RootStore) -> _Answer:
    """Read (and judge) in this process; every failure becomes part of the answer."""
    try:
        parts = [
            load_material(
                data,
                password=examination.password,
                limits=examination.limits,
                expect_pkcs12=examination.expect_pkcs12,
            )
            for data in examination.files
        ]
        material = combine(parts)
        judged = None
        if examination.judged:
            if examination.at is None:
                raise ValueError("a judgement needs a moment")
            subject = material
            if examination.key is not None:
                subject = replace(material, private_key=load_stored_private_key(examination.key))
            judgement = judge(
                subject,
                at=examination.at,
                purpose=examination.purpose,
                hostnames=examination.hostnames,
                known_roots=known_roots,
            )
            judged = _Judged(
                leaf=None if judgement.leaf is None else _der(judgement.leaf),
                chain=_ders(judgement.chain),
                unrelated=_ders(judgement.unrelated),
                problems=judgement.problems,
            )
        return _Answer(
            kind=material.kind,
            certificates=_ders(material.certificates),
            private_key=None
            if material.private_key is None
            else private_key_der(material.private_key),
            pkcs12=material.pkcs12,
            problems=material.problems,
            judged=judged,
        )
    except MaterialError as refusal:
        return _Answer(refused=refusal.problems)
    except Exception as exc:
        return _Answer(failure=type(exc).__name__)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _ders(certificates: Iterable[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(_der(c) for c in certificates)


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _limit_cpu(until: float) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(until)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


__all__ = [
    "CPU_SETTING",
    "WALL_SETTING",
    "WORKERS_SETTING",
    "Examination",
    "Examined",
    "MaterialWorkers",
    "Outcome",
    "examine_here",
    "work",
]
