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
from p2c2r.workers import WorkerPool


def small_job() -> bytes:
    return msgspec.msgpack.encode(get_kind("ai_npc_dialogue").example(random.Random(1), "small"))


def heavy_reflections() -> bytes:
    raw = get_kind("rt_reflections").example(random.Random(2), "large")
    raw.update(width=640, height=360, max_bounces=4)
    return msgspec.msgpack.encode(raw)


@pytest.fixture
async def pool():
    pool = WorkerPool(1, memory_limit_bytes=None)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


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
