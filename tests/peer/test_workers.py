"""Worker isolation: a stuck, crashing or memory-hungry kernel fails only its own job."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import msgspec
import pytest

from p2c2r import protocol as p
from p2c2r.tasks import get_kind
from p2c2r.workers import PIPE_QUEUE_BYTES, WorkerPool


def small_job() -> bytes:
    return msgspec.msgpack.encode(get_kind("ai_npc_dialogue").example(random.Random(1), "small"))


def heavy_reflections() -> bytes:
    raw = get_kind("rt_reflections").example(random.Random(2), "large")
    raw.update(width=640, height=360, max_bounces=4)
    return msgspec.msgpack.encode(raw)


async def running(pool: WorkerPool):
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def pool():
    async for started in running(WorkerPool(1, memory_limit_bytes=None)):
        yield started


async def test_a_job_past_its_timeout_kills_only_its_worker(pool):
    outcome = await asyncio.wait_for(pool.run("rt_reflections", heavy_reflections(), timeout_s=0.02), 60)
    assert not outcome.ok and outcome.code == p.E_TIMEOUT and "limit" in outcome.message
    after = await asyncio.wait_for(pool.run("ai_npc_dialogue", small_job(), timeout_s=30), 120)
    assert after.ok and pool.timeouts == 1


async def test_a_crashing_worker_reports_an_error_and_is_replaced(pool):
    job = pool.run("rt_reflections", heavy_reflections(), timeout_s=60)
    worker = pool._workers[0]
    await asyncio.sleep(0)  # let the job reach the worker
    os.kill(worker.process.pid, signal.SIGKILL)
    outcome = await asyncio.wait_for(job, 60)
    assert not outcome.ok and outcome.code == p.E_WORKER_CRASHED and "SIGKILL" in outcome.message
    after = await asyncio.wait_for(pool.run("ai_npc_dialogue", small_job(), timeout_s=30), 120)
    assert after.ok and pool.crashes == 1


async def test_bad_input_and_unknown_kind_are_errors_not_crashes(pool):
    bad = await pool.run("ai_pathfinding", msgspec.msgpack.encode({"width": -3}), timeout_s=10)
    assert not bad.ok and bad.code == p.E_BAD_INPUT and "width" in bad.message
    unknown = await pool.run("warp_drive", msgspec.msgpack.encode({}), timeout_s=10)
    assert not unknown.ok and unknown.code == p.E_UNKNOWN_KIND


async def test_workers_run_under_memory_and_cpu_limits():
    limit = 3 * 1024**3
    pool = WorkerPool(1, memory_limit_bytes=limit, cpu_budget_s=5.0)
    await pool.start()
    try:
        outcome = await asyncio.wait_for(pool.run("ai_npc_dialogue", small_job(), timeout_s=30), 120)
        assert outcome.ok
        limits = Path(f"/proc/{pool._workers[0].process.pid}/limits").read_text().splitlines()
        address_space = next(line for line in limits if line.startswith("Max address space")).split()
        assert int(address_space[3]) == limit
        cpu = next(line for line in limits if line.startswith("Max cpu time")).split()
        assert cpu[3] != "unlimited" and int(cpu[3]) <= 60  # moved to "used + budget" for each job
    finally:
        await pool.close()


def test_large_answers_cross_the_pipe_under_uvloop():
    """uvloop makes watched fds non-blocking; answers bigger than the pipe buffer must still arrive whole."""
    uvloop = pytest.importorskip("uvloop")

    async def run() -> list[bool]:
        pool = WorkerPool(1, memory_limit_bytes=None)
        await pool.start()
        try:
            rng = random.Random(5)
            jobs = [msgspec.msgpack.encode(get_kind("rt_reflections").example(rng, "large")) for _ in range(4)]
            return [(await pool.run("rt_reflections", job, timeout_s=60)).ok for job in jobs]
        finally:
            await pool.close()

    assert uvloop.run(run()) == [True] * 4


@pytest.fixture
async def piped():
    async for started in running(WorkerPool(1, memory_limit_bytes=None, pipeline=4)):
        yield started


async def test_pipelined_jobs_wait_in_the_pipe_and_all_complete_in_order(piped):
    rng = random.Random(3)
    inputs = [msgspec.msgpack.encode(get_kind("ai_npc_dialogue").example(rng, "small")) for _ in range(10)]
    futures = [piped.run("ai_npc_dialogue", raw, timeout_s=30) for raw in inputs]
    worker = piped._workers[0]
    assert len(worker.jobs) == 4 and len(piped._waiting) == 6  # one running, three in its pipe
    outcomes = await asyncio.wait_for(asyncio.gather(*futures), 120)
    kind = get_kind("ai_npc_dialogue")
    for raw, outcome in zip(inputs, outcomes, strict=True):
        assert outcome.ok
        assert msgspec.msgpack.decode(outcome.output) == msgspec.to_builtins(kind.compute(kind.parse_input(msgspec.msgpack.decode(raw))))


async def test_a_timeout_fails_only_the_running_job_and_the_piped_ones_run_elsewhere(piped):
    stuck = piped.run("rt_reflections", heavy_reflections(), timeout_s=0.05)
    behind = [piped.run("ai_npc_dialogue", small_job(), timeout_s=30) for _ in range(3)]
    assert len(piped._workers[0].jobs) == 4
    outcome = await asyncio.wait_for(stuck, 60)
    assert not outcome.ok and outcome.code == p.E_TIMEOUT
    # The jobs behind it never started on the killed worker: the replacement runs them, and their own
    # clocks started only then (30 s each), not while they waited behind the stuck one.
    rest = await asyncio.wait_for(asyncio.gather(*behind), 120)
    assert all(r.ok for r in rest) and piped.timeouts == 1


async def test_a_piped_job_is_timed_from_its_start_not_from_its_queueing(piped):
    slow = piped.run("rt_reflections", heavy_reflections(), timeout_s=60)
    quick = piped.run("ai_npc_dialogue", small_job(), timeout_s=0.03)  # shorter than the job ahead of it
    first = await asyncio.wait_for(slow, 120)
    second = await asyncio.wait_for(quick, 60)
    assert first.ok and first.compute_ms > 60, "the job ahead must outlast the next one's timeout"
    assert second.ok and piped.timeouts == 0


async def test_large_jobs_are_not_piped_where_they_could_fill_the_pipe(piped):
    # Writing into a full pipe would block the event loop until the worker finished its job.
    half_the_limit = msgspec.msgpack.encode({**get_kind("ai_pathfinding").example(random.Random(1), "small"),
                                             "pad": b"x" * (PIPE_QUEUE_BYTES // 2)})
    futures = [piped.run("ai_pathfinding", half_the_limit, timeout_s=30) for _ in range(3)]
    # The running one and one waiting in the pipe fit; a second waiting one would pass the limit.
    assert len(piped._workers[0].jobs) == 2 and len(piped._waiting) == 1
    outcomes = await asyncio.wait_for(asyncio.gather(*futures), 60)
    assert all(o.code == p.E_BAD_INPUT and "pad" in o.message for o in outcomes)  # refused, each in turn
