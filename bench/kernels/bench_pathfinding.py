"""Benchmark of the ``ai_pathfinding`` kernel against the pure-Python ``pathfinding`` package (PyPI).

The case: 256x256 maps with 25% random obstacles and 8 agents crossing the map (``example(rng, "large")``).
Both solvers get the same maps and agents, with the same movement rules (8-connected, no corner cutting:
``DiagonalMovement.only_when_no_obstacle``), and must report the same costs. Timed:

* ours: ``compute(inp)`` on a parsed input, output objects included;
* baseline: ``AStarFinder.find_path`` for the 8 agents on a ``Grid`` built beforehand (building the grid
  costs it another ~80 ms per map, left out in its favour);
* verify: ``verify(inp, out, rng)`` with a fresh rng per call, as a fraction of compute (its cost varies
  with the spot check drawn, so the mean matters as much as the median);
* tiny tasks: compute and verify on the round-trip benchmark's 8x8, one-agent task, where verify's fixed
  per-call cost, not its search, is what the coordinator's event loop pays for every result;
* cold start: a fresh interpreter importing the kind and running its first compute (numba's on-disk cache).

Run from the repository root: ``python -m bench.kernels.bench_pathfinding``.
"""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from pathfinding.core.diagonal_movement import DiagonalMovement
from pathfinding.core.grid import Grid
from pathfinding.finder.a_star import AStarFinder

from bench import harness
from p2c2r.tasks import pathfinding

MAPS = 8
OURS_REPEAT = 20
BASELINE_REPEAT = 2
VERIFY_DRAWS = 60
TINY_TASKS = 2000

COLD_START = """
import random, time
t0 = time.perf_counter()
from p2c2r.tasks import pathfinding as pf
inp = pf.parse_input(pf.example(random.Random(0), "large"))
out = pf.compute(inp)
pf.verify(inp, out, random.Random(0))
print((time.perf_counter() - t0) * 1000.0)
"""


def baseline_solver(inp: pathfinding.Input) -> tuple[Any, list[float]]:
    """A callable running the baseline for all agents, and the baseline's cost per agent (inf: none)."""
    free = (np.frombuffer(inp.grid, dtype=np.uint8).reshape(inp.height, inp.width) == 0).astype(np.int8)
    grid = Grid(matrix=free)  # the package reads nonzero as walkable
    finder = AStarFinder(
        diagonal_movement=DiagonalMovement.only_when_no_obstacle, time_limit=math.inf, max_runs=math.inf
    )

    def solve_all() -> list[list[tuple[int, int]]]:
        paths = []
        for agent in inp.agents:
            path, _runs = finder.find_path(grid.node(*agent.start), grid.node(*agent.goal), grid)
            paths.append([(node.x, node.y) for node in path])
        return paths

    costs = [path_cost(path) if path else math.inf for path in solve_all()]
    return solve_all, costs


def path_cost(path: list[tuple[int, int]]) -> float:
    diagonal = sum(1 for a, b in zip(path, path[1:]) if a[0] != b[0] and a[1] != b[1])
    return (len(path) - 1 - diagonal) + diagonal * math.sqrt(2.0)


def tiny_input(rng: random.Random) -> dict[str, Any]:
    """The tiny task of this bench and of bench/bench_roundtrip.py: an 8x8 map with 15% obstacles and one
    agent from corner to corner."""
    size = 8
    grid = bytearray(rng.random() < 0.15 for _ in range(size * size))
    grid[0] = grid[-1] = 0
    return {
        "width": size,
        "height": size,
        "grid": bytes(grid),
        "agents": [{"start": [0, 0], "goal": [size - 1, size - 1]}],
    }


def time_tiny_tasks() -> tuple[list[float], list[float]]:
    """Compute and verify times of ``TINY_TASKS`` different tiny tasks, one call each (rngs made beforehand,
    since making one costs half a verify here)."""
    task_rng = random.Random(1)
    tasks = [pathfinding.parse_input(tiny_input(task_rng)) for _ in range(TINY_TASKS)]
    compute: list[float] = []
    verify: list[float] = []
    for index, inp in enumerate(tasks):
        out = pathfinding.compute(inp)
        rng = random.Random(index)
        compute += harness.time_calls(lambda inp=inp: pathfinding.compute(inp), repeat=1, warmup=0)
        verify += harness.time_calls(
            lambda inp=inp, out=out, rng=rng: pathfinding.verify(inp, out, rng), repeat=1, warmup=0
        )
    return compute, verify


def cold_start_ms() -> float:
    done = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    started = time.perf_counter()
    ours: list[float] = []
    baseline: list[float] = []
    verify: list[float] = []
    parse: list[float] = []
    ratios_per_map = []
    fractions_per_map = []
    for seed in range(MAPS):
        raw = pathfinding.example(random.Random(seed), "large")
        parse += harness.time_calls(lambda raw=raw: pathfinding.parse_input(raw), repeat=5)
        inp = pathfinding.parse_input(raw)
        out = pathfinding.compute(inp)

        solve_all, baseline_costs = baseline_solver(inp)
        for ours_path, theirs in zip(out.paths, baseline_costs, strict=True):
            if ours_path.found != math.isfinite(theirs) or (
                ours_path.found and abs(ours_path.cost - theirs) > pathfinding.COST_TOLERANCE
            ):
                raise SystemExit(f"map {seed}: costs differ from the baseline: {ours_path.cost} vs {theirs}")

        map_ours = harness.time_calls(lambda inp=inp: pathfinding.compute(inp), repeat=OURS_REPEAT)
        map_baseline = harness.time_calls(solve_all, repeat=BASELINE_REPEAT, warmup=0)
        draws = iter(range(VERIFY_DRAWS + 1))
        map_verify = harness.time_calls(
            lambda inp=inp, out=out, draws=draws: pathfinding.verify(inp, out, random.Random(next(draws))),
            repeat=VERIFY_DRAWS,
        )
        ours += map_ours
        baseline += map_baseline
        verify += map_verify
        ratios_per_map.append(statistics.median(map_baseline) / statistics.median(map_ours))
        fractions_per_map.append(statistics.mean(map_verify) / statistics.mean(map_ours))

    tiny_compute, tiny_verify = time_tiny_tasks()
    cold_ms = cold_start_ms()
    summary = {
        "ours_compute": harness.summarise_ms(ours),
        "baseline_pathfinding_pypi": harness.summarise_ms(baseline),
        "ours_verify": harness.summarise_ms(verify),
        "ours_parse_input": harness.summarise_ms(parse),
        "ours_compute_tiny_8x8": harness.summarise_ms(tiny_compute),
        "ours_verify_tiny_8x8": harness.summarise_ms(tiny_verify),
    }
    ours_median = summary["ours_compute"]["median_ms"]
    speedup = summary["baseline_pathfinding_pypi"]["median_ms"] / ours_median
    verify_median_fraction = summary["ours_verify"]["median_ms"] / ours_median
    verify_mean_fraction = statistics.mean(verify) / statistics.mean(ours)

    rows = [{"subject": name, **stats} for name, stats in summary.items()]
    harness.print_table(
        f"ai_pathfinding: 256x256, 25% obstacles, 8 agents, {MAPS} maps (one core)",
        rows,
        ["subject", "median_ms", "p99_ms", "min_ms", "n"],
    )
    derived = {
        "speedup_median": speedup,
        "speedup_worst_map": min(ratios_per_map),
        "verify_fraction_median": verify_median_fraction,
        "verify_fraction_mean": verify_mean_fraction,
        "verify_fraction_mean_worst_map": max(fractions_per_map),
        "tiny_compute_median_us": statistics.median(tiny_compute) * 1e6,
        "tiny_verify_median_us": statistics.median(tiny_verify) * 1e6,
        "cold_start_ms": cold_ms,
    }
    harness.print_table(
        "derived", [{"measure": k, "value": v} for k, v in derived.items()], ["measure", "value"]
    )
    targets = {
        "compute_median_under_30ms": ours_median <= 30.0,
        "speedup_at_least_20x": speedup >= 20.0,
        "verify_mean_under_10pct": verify_mean_fraction <= 0.10,
    }
    print("\ntargets: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in targets.items()))
    harness.write_json(
        "kernels_pathfinding",
        {
            "case": {"width": 256, "height": 256, "obstacles": 0.25, "agents": 8, "maps": MAPS},
            "kernel_version": pathfinding.VERSION,
            "results": summary,
            "derived": derived,
            "targets": targets,
            "runtime_s": time.perf_counter() - started,
        },
    )


if __name__ == "__main__":
    main()
