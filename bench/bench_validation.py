"""Validation overhead and cheater detection, on a real local network.

    python -m bench.bench_validation [--tasks 800]

1. Honest network at steady state (after a warm-up that builds trust): extra compute spent on checking
   (quorum replicas, the coordinator's audits and arbitrations, verify) as a share of useful compute.
   Baseline side by side: the same load with every check but ``verify`` switched off is not possible
   without weakening the product, so the useful compute itself is the baseline of the ratio.
2. For each cheat mode, two honest peers and one cheater (33% cheating peers): overhead, detection rate
   (invalid results caught / results the cheater returned) and tasks assigned to the cheater until banned.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

from bench.harness import print_table, write_json
from p2c2r.gamer.client import GamerClient
from p2c2r.peer.cheats import MODES
from p2c2r.tasks import get_kind

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import ProcessSet  # noqa: E402

KINDS = ("ai_pathfinding", "ai_npc_dialogue", "physics", "rt_reflections")


async def load(url: str, count: int, seed: int, size: str) -> None:
    rng = random.Random(seed)
    sem = asyncio.Semaphore(16)
    async with GamerClient(url, name=f"bench_{seed}") as client:
        async def one(i: int) -> None:
            kind = KINDS[i % len(KINDS)]
            async with sem:
                await client.submit(kind, get_kind(kind).example(rng, size), deadline_ms=60_000)

        await asyncio.gather(*(one(i) for i in range(count)))


def overhead(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in ("useful_compute_ms", "replica_compute_ms", "coordinator_check_ms", "verify_ms")}
    extra = d["replica_compute_ms"] + d["coordinator_check_ms"] + d["verify_ms"]
    return {**d, "overhead_share": extra / d["useful_compute_ms"] if d["useful_compute_ms"] else float("nan")}


def scenario(root: Path, cheat: str | None, tasks: int, warmup: int, size: str) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    ps = ProcessSet(root)
    try:
        cloud = ps.cloud(extra=["--quiet"])
        for i in (1, 2):
            ps.peer(cloud, f"honest_{i}", extra=["--quiet"])
        if cheat:
            ps.peer(cloud, f"cheat_{cheat}", extra=["--quiet", "--cheat", cheat])
        cloud.wait_for_peers(3 if cheat else 2, 120)
        asyncio.run(load(cloud.url, warmup, 1, size))
        before = cloud.stats()["validation"]
        asyncio.run(load(cloud.url, tasks, 2, size))
        after = cloud.stats()["validation"]
        row = {"scenario": f"cheater: {cheat}" if cheat else "honest peers, steady state", **overhead(before, after)}
        if cheat:
            with sqlite3.connect(cloud.db_path) as conn:
                pid = conn.execute("SELECT id FROM peers WHERE name = ?", (f"cheat_{cheat}",)).fetchone()[0]
                outcomes = dict(conn.execute("SELECT outcome, COUNT(*) FROM attempts WHERE peer_id = ? GROUP BY outcome",
                                             (pid,)).fetchall())
                banned = conn.execute("SELECT banned FROM peers WHERE id = ?", (pid,)).fetchone()[0]
                assigned = conn.execute("SELECT COUNT(*) FROM attempts WHERE peer_id = ?", (pid,)).fetchone()[0]
            returned = outcomes.get("invalid", 0) + outcomes.get("valid", 0)
            row.update(detection_rate=outcomes.get("invalid", 0) / returned if returned else float("nan"),
                       tasks_until_banned=assigned if banned else None, banned=bool(banned))
        return row
    finally:
        ps.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--size", choices=["small", "large"], default="large",
                        help="task size: 'large' is the game-sized work of the kernel benchmarks")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(scenario(Path(tmp) / "honest", None, args.tasks, args.warmup, args.size))
        for mode in MODES:
            rows.append(scenario(Path(tmp) / mode, mode, args.tasks // 2, 0, args.size))
    print_table("Validation overhead (extra compute / useful compute) and cheater detection", rows,
                ["scenario", "useful_compute_ms", "replica_compute_ms", "coordinator_check_ms", "verify_ms",
                 "overhead_share", "detection_rate", "tasks_until_banned"])
    write_json("validation", {"rows": rows, "targets": {"honest_overhead_share_max": 0.15}, "params": vars(args)})


if __name__ == "__main__":
    main()
