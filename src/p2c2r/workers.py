"""Sandboxed kernel workers: one process per slot, each with CPU-time and memory limits and a timeout.

Used by peers to run assigned tasks and by the coordinator for cloud fallback and audits. A job is sent to
a worker over its pipe; the event loop learns of the answer through ``add_reader`` on the pipe, so no
thread sits waiting. With ``pipeline`` > 1 a busy worker is also handed the next jobs, which wait in its
pipe: the worker goes from one job to the next without a round trip through the parent, and answers that
finish close together are read in one wake-up (and leave the peer in one frame). A job's timeout starts
when the worker starts it. A worker that crashes, exceeds its limits or overruns its timeout is killed and
replaced; only the job it was running fails, with an error that says why, and the jobs waiting in its pipe
go to another worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec

from p2c2r.errors import P2C2RError, TaskInputError
from p2c2r.protocol import E_BAD_INPUT, E_COMPUTE_FAILED, E_TIMEOUT, E_UNKNOWN_KIND, E_WORKER_CRASHED

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT_BYTES = 4 * 1024**3
WORKER_START_TIMEOUT_S = 120.0
# Bytes of jobs that may wait in a worker's pipe: under Linux's 64 KiB pipe buffer, so writing them never blocks.
PIPE_QUEUE_BYTES = 48 * 1024


@dataclass(frozen=True, slots=True)
class JobOutcome:
    ok: bool
    output: bytes = b""  # MessagePack of the kind's Output
    compute_ms: float = 0.0
    code: str = ""
    message: str = ""


class _Job(msgspec.Struct, array_like=True):
    job_id: int
    kind: str
    input: bytes
    cpu_budget_s: float


class _Answer(msgspec.Struct, array_like=True):
    job_id: int
    ok: bool
    output: bytes
    compute_ms: float
    code: str
    message: str


# Worker side ----------------------------------------------------------------------------------------


def _worker_main(conn: multiprocessing.connection.Connection, memory_limit_bytes: int | None) -> None:
    # The parent handles Ctrl+C; a worker dies with its pipe instead of printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    from p2c2r.tasks import get_kind, registry

    _warm_up(registry())
    decoder = msgspec.msgpack.Decoder(_Job)
    encoder = msgspec.msgpack.Encoder()
    conn.send_bytes(b"ready")
    while True:
        try:
            frame = conn.recv_bytes()
        except (EOFError, OSError):
            return
        job = decoder.decode(frame)
        _limit_cpu(job.cpu_budget_s)
        started = time.perf_counter()
        try:
            kind = get_kind(job.kind)
            inp = kind.parse_input(msgspec.msgpack.decode(job.input))
            out = encoder.encode(kind.compute(inp))
            answer = _Answer(job.job_id, True, out, (time.perf_counter() - started) * 1000.0, "", "")
        except TaskInputError as exc:
            answer = _Answer(job.job_id, False, b"", 0.0, E_BAD_INPUT, str(exc))
        except P2C2RError as exc:
            code = E_UNKNOWN_KIND if exc.code == "unknown_kind" else E_COMPUTE_FAILED
            answer = _Answer(job.job_id, False, b"", 0.0, code, str(exc))
        except MemoryError:
            answer = _Answer(job.job_id, False, b"", 0.0, E_COMPUTE_FAILED, "kernel exceeded the memory limit")
        except Exception as exc:  # a kernel bug must fail only this job
            answer = _Answer(job.job_id, False, b"", 0.0, E_COMPUTE_FAILED, f"{type(exc).__name__}: {exc}")
        conn.send_bytes(encoder.encode(answer))


def _warm_up(kinds: Any) -> None:
    """Run each kernel before saying ready: the first real task then pays no import, JIT-compile or
    cache-load cost (hundreds of ms to seconds for numba kernels) against its deadline."""
    from p2c2r.tasks.base import warm_up_kind

    for kind in kinds.values():
        try:
            warm_up_kind(kind)
        except Exception:  # a kernel that cannot warm up will report its error on a real task
            log.warning("warm-up of %s failed", kind.name, exc_info=True)


def _limit_cpu(budget_s: float) -> None:
    # RLIMIT_CPU counts the process's whole life, so each job moves the soft limit to "used + budget".
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = int(math.ceil(used + budget_s)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


# Parent side ----------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, ctx: Any, memory_limit_bytes: int | None) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn: multiprocessing.connection.Connection = parent
        self.process = ctx.Process(target=_worker_main, args=(child, memory_limit_bytes), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        # Jobs handed to it, oldest (the one running) first: (job, timeout_s, future, frame size).
        self.jobs: deque[tuple[_Job, float | None, asyncio.Future[JobOutcome], int]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """``size`` sandboxed worker processes running task kernels."""

    def __init__(
        self,
        size: int,
        *,
        memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES,
        cpu_budget_s: float = 30.0,
        pipeline: int = 1,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        if pipeline < 1:
            raise ValueError("pipeline must be at least 1 (one job at a time per worker)")
        self.size = size
        self.pipeline = pipeline
        self._memory_limit = memory_limit_bytes
        self._cpu_budget_s = cpu_budget_s
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._waiting: deque[tuple[_Job, float | None, asyncio.Future[JobOutcome]]] = deque()
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._all_ready: asyncio.Future[None] | None = None
        self.crashes = 0
        self.timeouts = 0

    @property
    def busy(self) -> int:
        return sum(1 for w in self._workers if w.jobs)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._all_ready = self._loop.create_future()
        for _ in range(self.size):
            self._spawn()
        await asyncio.wait_for(asyncio.shield(self._all_ready), WORKER_START_TIMEOUT_S)

    def _spawn(self) -> None:
        assert self._loop is not None
        # Workers must not inherit the parent's OpenBLAS thread pool size: one slot, one core.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        worker = _Worker(self._ctx, self._memory_limit)
        self._workers.append(worker)
        self._loop.add_reader(worker.conn.fileno(), self._on_readable, worker)
        # uvloop makes a watched fd non-blocking; multiprocessing's framing needs blocking reads and writes
        # (an answer larger than the pipe buffer arrives in pieces). Readiness still comes from the loop.
        os.set_blocking(worker.conn.fileno(), True)

    def _on_readable(self, worker: _Worker) -> None:
        while True:  # every answer already in the pipe, in one wake-up
            try:
                frame = worker.conn.recv_bytes()
            except (EOFError, OSError):
                self._on_worker_death(worker)
                return
            if not worker.ready:
                worker.ready = True
                if self._all_ready is not None and not self._all_ready.done() and all(w.ready for w in self._workers):
                    self._all_ready.set_result(None)
            else:
                self._on_answer(worker, msgspec.msgpack.decode(frame, type=_Answer))
            try:
                more = worker.conn.poll(0)
            except (EOFError, OSError):
                more = False
            if not more:
                break
        self._pump()

    def _on_answer(self, worker: _Worker, answer: _Answer) -> None:
        if not worker.jobs or worker.jobs[0][0].job_id != answer.job_id:
            log.warning("worker answered a job it was not given (%s)", answer.job_id)
            return
        fut = worker.jobs.popleft()[2]
        self._start_clock(worker)
        if not fut.done():
            fut.set_result(JobOutcome(answer.ok, answer.output, answer.compute_ms, answer.code, answer.message))

    def _start_clock(self, worker: _Worker) -> None:
        """Time the job the worker runs now (the oldest it holds)."""
        assert self._loop is not None
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        if worker.jobs:
            timeout_s = worker.jobs[0][1]
            if timeout_s is not None:
                worker.timer = self._loop.call_later(timeout_s, self._on_timeout, worker, timeout_s)

    def _on_worker_death(self, worker: _Worker, *, code: str = E_WORKER_CRASHED, reason: str | None = None) -> None:
        assert self._loop is not None
        self._loop.remove_reader(worker.conn.fileno())
        worker.kill()
        if worker in self._workers:
            self._workers.remove(worker)
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        if worker.jobs:
            fut = worker.jobs.popleft()[2]  # the job it was running: it fails
            if reason is None:
                self.crashes += 1
                reason = _describe_exit(worker.process.exitcode)
            if not fut.done():
                fut.set_result(JobOutcome(False, code=code, message=reason))
            # The jobs still waiting in its pipe never started: they go first to the next free worker.
            self._waiting.extendleft((job, timeout_s, fut) for job, timeout_s, fut, _ in reversed(worker.jobs))
            worker.jobs.clear()
        if not self._closed:
            self._spawn()
        self._pump()

    def _on_timeout(self, worker: _Worker, timeout_s: float) -> None:
        self.timeouts += 1
        self._on_worker_death(worker, code=E_TIMEOUT, reason=f"the kernel ran past its {timeout_s * 1000:.0f} ms limit")

    def run(self, kind: str, input_bytes: bytes, *, timeout_s: float | None = None) -> asyncio.Future[JobOutcome]:
        """Queue a job; the future resolves with its outcome (never raises for kernel failures)."""
        if self._loop is None or self._closed:
            raise RuntimeError("the worker pool is not running")
        fut: asyncio.Future[JobOutcome] = self._loop.create_future()
        self._next_id += 1
        budget = self._cpu_budget_s if timeout_s is None else max(1.0, min(self._cpu_budget_s, timeout_s * 2))
        self._waiting.append((_Job(self._next_id, kind, input_bytes, budget), timeout_s, fut))
        self._pump()
        return fut

    def _pump(self) -> None:
        """Hand waiting jobs to the ready worker holding the fewest: an idle one takes any job; a busy one
        takes up to ``pipeline`` in all, as long as those waiting in its pipe fit in the pipe's buffer
        (a write into a full pipe would block the event loop until the worker finishes its job)."""
        while self._waiting:
            worker = min((w for w in self._workers if w.ready), key=lambda w: len(w.jobs), default=None)
            if worker is None or len(worker.jobs) >= self.pipeline:
                return
            job, timeout_s, fut = self._waiting[0]
            frame = msgspec.msgpack.encode(job)
            if worker.jobs and sum(size for *_, size in list(worker.jobs)[1:]) + len(frame) > PIPE_QUEUE_BYTES:
                return
            self._waiting.popleft()
            if fut.done():  # cancelled while waiting
                continue
            worker.jobs.append((job, timeout_s, fut, len(frame)))
            if len(worker.jobs) == 1:
                self._start_clock(worker)
            try:
                worker.conn.send_bytes(frame)
            except OSError:
                self._on_worker_death(worker)
                return

    async def close(self) -> None:
        self._closed = True
        for worker in list(self._workers):
            if self._loop is not None:
                self._loop.remove_reader(worker.conn.fileno())
            if worker.timer is not None:
                worker.timer.cancel()
            for _, _, fut, _ in worker.jobs:
                if not fut.done():
                    fut.set_result(JobOutcome(False, code=E_WORKER_CRASHED, message="worker pool closed"))
            worker.kill()
        for _, _, fut in self._waiting:
            if not fut.done():
                fut.set_result(JobOutcome(False, code=E_WORKER_CRASHED, message="worker pool closed"))
        self._workers.clear()
        self._waiting.clear()


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        sig = -exitcode
        if sig == signal.SIGXCPU:
            return "the kernel exceeded its CPU-time limit and its worker was stopped"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"the worker running the kernel died ({name})"
    return f"the worker running the kernel exited unexpectedly (exit code {exitcode})"
