"""Benchmark of the ``physics`` kernel: 1,000 circles, one 1/60 s step, beside pymunk (Chipmunk2D).

    python -m bench.kernels.bench_physics

For each scene and sub-step count it times ``compute`` (median and p99; the target is 5 ms), the same
step in pymunk built from the same bodies (same sub-steps and solver iterations, one thread), and
``verify`` of the honest result as a fraction of ``compute``. Scenes:

    ball pit    the ``large`` example: 1,000 circles in loose rows at the bottom of a box, stirred
    settled     the same ball pit two seconds later: a pile where nearly every contact pushes
    scattered   1,000 circles spread out in a big box: mostly free flight and small islands
    polygons    the ``polygons`` example: 300 crates, triangles, hexagons and balls tossed in a box
    poly pile   the same two seconds later, settled into a pile of resting faces and corners

Chipmunk keeps contacts between steps (it warm-starts every step from the last one) while our step is
stateless, so pymunk is timed on a space that has already stepped once from the same state; its bodies
are reset before every timed step. Restitution and friction are mixed differently (Chipmunk multiplies
both; we take the larger restitution and the geometric mean of friction), so the two trajectories differ:
this compares cost, not results. Results go to bench/results/kernels_physics.json.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import msgspec
import numpy as np
import pymunk

from bench import harness
from p2c2r.tasks import physics

REPEAT = 40
VERIFY_SEEDS = 40


def scattered_scene(rng: random.Random, n: int = 1000) -> dict[str, Any]:
    columns = int(math.ceil(math.sqrt(n)))
    spacing = 2.0
    xs = [1.0 + (k % columns + 0.5) * spacing + rng.uniform(-0.5, 0.5) for k in range(n)]
    ys = [1.0 + (k // columns + 0.5) * spacing + rng.uniform(-0.5, 0.5) for k in range(n)]
    size = columns * spacing + 2.0
    return {
        "x": xs,
        "y": ys,
        "vx": [rng.uniform(-4, 4) for _ in range(n)],
        "vy": [rng.uniform(-4, 4) for _ in range(n)],
        "angular_velocity": [rng.uniform(-2, 2) for _ in range(n)],
        "radius": [rng.uniform(0.2, 0.45) for _ in range(n)],
        "mass": [1.0] * n,
        "restitution": 0.5,
        "friction": 0.4,
        "gravity": [0.0, -9.81],
        "world": {
            "min_x": 0.0,
            "min_y": 0.0,
            "max_x": size,
            "max_y": size,
            "restitution": 0.3,
            "friction": 0.5,
        },
        "dt": 1.0 / 60.0,
        "substeps": 4,
        "iterations": 4,
    }


def settled_scene(raw: dict[str, Any], seconds: float = 2.0) -> dict[str, Any]:
    """``raw`` stepped forward by our own kernel until it has settled into a pile."""
    inp = physics.parse_input(raw)
    for _ in range(round(seconds / inp.dt)):
        out = physics.compute(inp)
        inp = physics.parse_input({**raw, **{f: getattr(out, f) for f in physics._STATE_FIELDS}})
    return {**raw, **{f: getattr(out, f) for f in physics._STATE_FIELDS}}


class PymunkScene:
    """The same bodies in a pymunk space, resettable to the input state before every step."""

    def __init__(self, inp: physics.Input) -> None:
        columns = {f: np.frombuffer(getattr(inp, f), dtype="<f8") for f in physics._BODY_ROWS}
        self.space = pymunk.Space()
        self.space.gravity = tuple(inp.gravity)
        self.space.iterations = inp.iterations
        self.substeps = inp.substeps
        self.h = inp.dt / inp.substeps
        self.state = [columns[f].tolist() for f in ("x", "y", "vx", "vy", "angle", "angular_velocity")]
        self.bodies: list[pymunk.Body] = []
        polygons = polygon_vertices(inp)
        for i in range(len(columns["x"])):
            mass, radius = float(columns["mass"][i]), float(columns["radius"][i])
            outline = polygons[i]
            if mass <= 0.0:
                body = pymunk.Body(body_type=pymunk.Body.STATIC)
            elif outline is None:
                body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0.0, radius))
            else:
                body = pymunk.Body(mass, pymunk.moment_for_poly(mass, outline))
            body.position = (float(columns["x"][i]), float(columns["y"][i]))
            body.angle = float(columns["angle"][i])
            shape = pymunk.Circle(body, radius) if outline is None else pymunk.Poly(body, outline, radius=0.0)
            shape.elasticity = float(columns["restitution"][i])
            shape.friction = float(columns["friction"][i])
            self.space.add(body, shape)
            self.bodies.append(body)
        if inp.world is not None:
            w = inp.world
            corners = [(w.min_x, w.min_y), (w.max_x, w.min_y), (w.max_x, w.max_y), (w.min_x, w.max_y)]
            for a, b in zip(corners, corners[1:] + corners[:1]):
                wall = pymunk.Segment(self.space.static_body, a, b, 0.0)
                wall.elasticity, wall.friction = w.restitution, w.friction
                self.space.add(wall)
        self.reset()
        self.step()  # Chipmunk builds its contact cache on the first step; time it warm

    def reset(self) -> None:
        x, y, vx, vy, angle, angvel = self.state
        for i, body in enumerate(self.bodies):
            if body.body_type == pymunk.Body.DYNAMIC:
                body.position = (x[i], y[i])
                body.velocity = (vx[i], vy[i])
                body.angle = angle[i]
                body.angular_velocity = angvel[i]

    def step(self) -> None:
        for _ in range(self.substeps):
            self.space.step(self.h)


def polygon_vertices(inp: physics.Input) -> list[list[tuple[float, float]] | None]:
    """Each body's polygon as pymunk takes it (None for a circle), from the packed ``vertices``."""
    n = len(inp.x) // 8
    if inp.vertices is None:
        return [None] * n
    values = np.frombuffer(inp.vertices, dtype="<f8")
    outlines: list[list[tuple[float, float]] | None] = []
    at = n
    for count in values[:n].astype(int):
        flat = values[at : at + 2 * count]
        outlines.append([(float(flat[2 * k]), float(flat[2 * k + 1])) for k in range(count)] or None)
        at += 2 * count
    return outlines


def time_pymunk(scene: PymunkScene) -> list[float]:
    samples = []
    for _ in range(REPEAT):
        scene.reset()
        t0 = time.perf_counter()
        scene.step()
        samples.append(time.perf_counter() - t0)
    return samples


def measure(name: str, raw: dict[str, Any], substeps: int) -> dict[str, Any]:
    inp = physics.parse_input({**raw, "substeps": substeps})
    out = physics.compute(inp)
    ours = harness.summarise_ms(harness.time_calls(lambda: physics.compute(inp), repeat=REPEAT, warmup=3))
    theirs = harness.summarise_ms(time_pymunk(PymunkScene(inp)))
    verify_samples = []
    verdicts = []
    for seed in range(VERIFY_SEEDS):
        rng = random.Random(seed)
        t0 = time.perf_counter()
        verdicts.append(bool(physics.verify(inp, out, rng)))
        verify_samples.append(time.perf_counter() - t0)
    checked = harness.summarise_ms(verify_samples)
    return {
        "scene": name,
        "bodies": len(inp.x) // 8,
        "substeps": substeps,
        "iterations": inp.iterations,
        "ours_median_ms": ours["median_ms"],
        "ours_p99_ms": ours["p99_ms"],
        "within_5ms": ours["p99_ms"] <= 5.0,
        "pymunk_median_ms": theirs["median_ms"],
        "pymunk_p99_ms": theirs["p99_ms"],
        "pymunk_over_ours": theirs["median_ms"] / ours["median_ms"],
        "verify_median_ms": checked["median_ms"],
        "verify_p99_ms": checked["p99_ms"],
        "verify_fraction": checked["median_ms"] / ours["median_ms"],
        "verify_mean_fraction": float(np.mean(verify_samples)) * 1000.0 / ours["median_ms"],
        "honest_accepted": f"{sum(verdicts)}/{len(verdicts)}",
    }


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, including verify's full re-simulation path."""
    inp = physics.parse_input(physics.example(random.Random(0), "large"))
    physics.verify(inp, physics.compute(inp), random.Random(0))
    lazy = physics.Output(
        x=inp.x, y=inp.y, vx=inp.vx, vy=inp.vy, angle=inp.angle, angular_velocity=inp.angular_velocity
    )
    physics.verify(inp, lazy, random.Random(0))  # a screen disagrees: the whole island is re-simulated
    inp = physics.parse_input(physics.example(random.Random(0), "polygons"))
    physics.verify(inp, physics.compute(inp), random.Random(0))


def main() -> None:
    warm_up()
    ball_pit = physics.example(random.Random(1), "large")
    polygons = physics.example(random.Random(1), "polygons")
    scenes = {
        "ball pit": ball_pit,
        "settled": settled_scene(ball_pit),
        "scattered": scattered_scene(random.Random(2)),
        "polygons": polygons,
        "poly pile": settled_scene(polygons),
    }
    rows = [measure(name, raw, substeps) for name, raw in scenes.items() for substeps in (1, 4, 8)]
    columns = [
        "scene", "substeps", "ours_median_ms", "ours_p99_ms", "pymunk_median_ms", "pymunk_over_ours",
        "verify_median_ms", "verify_fraction", "verify_mean_fraction", "honest_accepted",
    ]  # fmt: skip
    harness.print_table(
        "physics: 1,000 circles (300 polygons and circles), one 1/60 s step (one core)", rows, columns
    )
    harness.write_json(
        "kernels_physics",
        {
            "kernel": physics.NAME,
            "version": physics.VERSION,
            "pymunk": pymunk.version,
            "target_ms": 5.0,
            "rows": rows,
            "example_large": msgspec.to_builtins(
                {k: v for k, v in scenes["ball pit"].items() if k not in physics._BODY_ROWS}
            ),
        },
    )


if __name__ == "__main__":
    main()
