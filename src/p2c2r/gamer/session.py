"""``run_gamer.py``: a scripted game session that offloads every task kind, many tasks in flight.

Each frame submits the work a space shooter would (physics every other frame, enemy paths, reflections,
an NPC line now and then) without waiting for earlier results; results are taken as they come. At the end
it waits (bounded) for what is still out and prints the seed's totals, or one JSON line with ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from p2c2r.cloud.ledger import usd
from p2c2r.console import Console, money
from p2c2r.errors import TaskFailed
from p2c2r.gamer.client import GamerClient, TaskResult
from p2c2r.network_config import GAME_FPS, local_gpu_cost_usd_per_hour, terms_for
from p2c2r.quantiles import percentile
from p2c2r.tasks import get_kind, registry

# (kind, every n frames, what the seed's console calls it)
WORK_PLAN: tuple[tuple[str, int, str], ...] = (
    ("physics", 4, "asteroid physics"),
    ("ai_pathfinding", 15, "pathfinding for enemies"),
    ("rt_reflections", 30, "ray tracing (reflections)"),
    ("ai_npc_dialogue", 180, "NPC dialogue"),
)


@dataclass
class SessionSettings:
    frames: int = 300
    fps: float = GAME_FPS  # 0 = as fast as possible
    seed: int = 1
    json_output: bool = False
    drain_timeout_s: float = 30.0



async def play(client: GamerClient, settings: SessionSettings, console: Console) -> dict[str, Any]:
    rng = random.Random(settings.seed)
    results: list[TaskResult] = []
    failures: list[TaskFailed] = []
    outstanding: set[asyncio.Future[TaskResult]] = set()
    submitted = 0
    started = time.perf_counter()

    def on_done(frame: int, label: str, fut: asyncio.Future[TaskResult]) -> None:
        outstanding.discard(fut)
        exc = fut.exception()
        if exc is not None:
            failures.append(exc if isinstance(exc, TaskFailed) else TaskFailed("?", "client", str(exc)))
            console.task_line(f"[Frame {frame}] ❌ {label}: {exc}")
            return
        r = fut.result()
        results.append(r)
        console.task_line(f"[Frame {frame}] ✅ {label}: ⏱️  {r.latency_ms:.0f}ms ({r.source}), 💰 {money(r.cost_micro_usd)}")

    for frame in range(1, settings.frames + 1):
        frame_start = time.perf_counter()
        for kind_name, every, label in WORK_PLAN:
            if frame % every or kind_name not in registry():
                continue
            task_input = get_kind(kind_name).example(rng, "small")
            fut = client.submit_nowait(kind_name, task_input, deadline_ms=terms_for(kind_name).deadline_ms)
            submitted += 1
            outstanding.add(fut)
            fut.add_done_callback(lambda f, fr=frame, lb=label: on_done(fr, lb, f))
            console.task_line(f"[Frame {frame}] → Offloading {label}")
        if settings.fps > 0:
            await asyncio.sleep(max(0.0, 1.0 / settings.fps - (time.perf_counter() - frame_start)))
        else:
            await asyncio.sleep(0)
    if outstanding:
        await asyncio.wait(set(outstanding), timeout=settings.drain_timeout_s)
    lost = len(outstanding)
    elapsed = time.perf_counter() - started
    return summarise(results, failures, submitted, lost, frames=settings.frames, fps=settings.fps, elapsed_s=elapsed)


def summarise(results: list[TaskResult], failures: list[TaskFailed], submitted: int, lost: int, *,
              frames: int, fps: float, elapsed_s: float) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r.latency_ms)
    latencies = [r.latency_ms for r in results]
    cost_micro = sum(r.cost_micro_usd for r in results)
    gameplay_hours = (frames / (fps or GAME_FPS)) / 3600.0
    local_cost = gameplay_hours * local_gpu_cost_usd_per_hour()
    return {
        "tasks": submitted,
        "completed": len(results),
        "failed": len(failures) + lost,
        "latency_ms": {"p50": round(percentile(latencies, 50), 3), "p99": round(percentile(latencies, 99), 3)},
        "by_kind": {
            kind: {"count": len(v), "p50_ms": round(percentile(v, 50), 3), "p99_ms": round(percentile(v, 99), 3)}
            for kind, v in sorted(by_kind.items())
        },
        "by_source": {s: sum(1 for r in results if r.source == s) for s in ("peer", "cache", "cloud")},
        "cost_usd": usd(cost_micro),
        "savings_usd": round(local_cost - usd(cost_micro), 6),
        "gameplay_s": round(frames / (fps or GAME_FPS), 3),
        "elapsed_s": round(elapsed_s, 3),
    }


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.line("")
    console.line(f"Tasks: {summary['tasks']} submitted, {summary['completed']} completed, {summary['failed']} failed")
    console.line(f"Latency: p50 {summary['latency_ms']['p50']:.0f}ms, p99 {summary['latency_ms']['p99']:.0f}ms")
    for kind, row in summary["by_kind"].items():
        console.line(f"  {kind:<16} {row['count']:>5} tasks  p50 {row['p50_ms']:.0f}ms  p99 {row['p99_ms']:.0f}ms")
    cost = summary["cost_usd"]
    local = cost + summary["savings_usd"]
    share = (summary["savings_usd"] / local * 100.0) if local > 0 else 0.0
    console.line(f"Total cost: ${cost:.6f} ({summary['gameplay_s']:.0f} s gameplay)")
    if summary["savings_usd"] >= 0:
        console.line(f"Savings vs local GPU: ${summary['savings_usd']:.4f} ({share:.1f}% cheaper!)")
    else:
        console.line(f"Extra cost vs local GPU: ${-summary['savings_usd']:.4f} ({-share:.1f}% more expensive)")


async def run_gamer_session(url: str, *, name: str, settings: SessionSettings, console: Console,
                            key_path: str | None = None, cafile: str | None = None) -> dict[str, Any]:
    console.banner("🎮 P2C2R GAMER CLIENT")
    client = GamerClient(url, name=name, key_path=key_path, cafile=cafile)
    console.line(f"🔑 Identity: {client.identity.describe('gamer')}")
    console.line(f"🔌 Connecting to cloud at {url.split('://', 1)[-1]}...")
    await client.connect(timeout_s=30)
    console.line("✅ Connected! Ready to offload compute.")
    console.line(f"💰 Prices: {', '.join(f'{k} {money(terms_for(k).price_micro_usd)}' for k, _, _ in WORK_PLAN)}")
    console.line("")
    console.banner("🎯 Game Demo: Space Shooter with P2C2R")
    try:
        summary = await play(client, settings, console)
    finally:
        await client.close()
    print_summary(summary, console)
    if settings.json_output:
        print(json.dumps(summary), flush=True)
    return summary
