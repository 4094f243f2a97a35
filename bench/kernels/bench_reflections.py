"""Benchmark of the ``rt_reflections`` kernel on one CPU core.

Case: the large example scene (320x180, 2 bounces, 20 objects: 15 spheres, 4 projectiles, 1 mirror floor;
3 lights). Target: at most 80 ms a frame.

Baselines, run side by side in the same process:

* the same NumPy tracer with ``max_bounces=0``: what the two reflection bounces cost;
* a straightforward per-pixel pure-Python tracer of the same model (``trace_pixel_reference``), timed on the
  same scene at 80x45 and scaled by the pixel count to 320x180: what vectorising buys.

Also reported: verify as a fraction of compute, compressed bytes a frame and the frame rate that fits in
1 Mbit/s. Run as ``python -m bench.kernels.bench_reflections`` from the repository root.
"""

from __future__ import annotations

import os

# One core, as a peer's task slot gets: fix BLAS and OpenMP pools before NumPy loads them.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

import msgspec  # noqa: E402
import numpy as np  # noqa: E402

from bench import harness  # noqa: E402
from p2c2r.tasks import reflections as rt  # noqa: E402

TARGET_MS = 80.0
LINK_BYTES_PER_S = 1_000_000 / 8
SEEDS = (0, 1, 2)
REPEAT = 15
REFERENCE_SIZE = (80, 45)


def _scene(seed: int, **changes: object) -> rt.Input:
    return msgspec.structs.replace(rt.parse_input(rt.example(random.Random(seed), "large")), **changes)


def _reference_ms(inp: rt.Input) -> tuple[float, float]:
    """Seconds for the pure-Python tracer on a REFERENCE_SIZE image, and that time scaled to ``inp``'s size."""
    small = msgspec.structs.replace(inp, width=REFERENCE_SIZE[0], height=REFERENCE_SIZE[1])
    started = time.perf_counter()
    for y in range(small.height):
        for x in range(small.width):
            rt.trace_pixel_reference(small, x, y)
    elapsed = time.perf_counter() - started
    scale = (inp.width * inp.height) / (small.width * small.height)
    return elapsed * 1000.0, elapsed * 1000.0 * scale


def _measure(seed: int) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Table rows and a summary for one example scene."""
    inp = _scene(seed)
    flat = _scene(seed, max_bounces=0)
    big = _scene(seed, width=640, height=360)
    out = rt.compute(inp)
    raw_rgb = rt.decode_image(out).tobytes()
    rngs = iter(random.Random(i) for i in range(10_000))

    compute = harness.summarise_ms(harness.time_calls(lambda: rt.compute(inp), repeat=REPEAT))
    no_bounce = harness.summarise_ms(harness.time_calls(lambda: rt.compute(flat), repeat=REPEAT))
    max_size = harness.summarise_ms(harness.time_calls(lambda: rt.compute(big), repeat=3))
    verify = harness.summarise_ms(
        harness.time_calls(lambda: rt.verify(inp, out, next(rngs)), repeat=REPEAT * 2)
    )
    compress = harness.summarise_ms(
        harness.time_calls(lambda: zlib.compress(raw_rgb, rt.COMPRESSION_LEVEL), repeat=REPEAT)
    )
    reference_measured_ms, reference_ms = _reference_ms(inp)
    frame_bytes = len(out.rgb_zlib)

    label = f"seed {seed}"
    rows: list[dict[str, object]] = [
        {"case": label, "what": "numpy tracer, 2 bounces (subject)", **compute},
        {"case": label, "what": "numpy tracer, 0 bounces (baseline)", **no_bounce},
        {
            "case": label,
            "what": f"pure-Python per pixel (baseline; {REFERENCE_SIZE[0]}x{REFERENCE_SIZE[1]} scaled x16)",
            "n": 1,
            "median_ms": reference_ms,
            "min_ms": reference_ms,
        },
        {"case": label, "what": "verify (~256 re-traced pixels)", **verify},
        {"case": label, "what": f"zlib level {rt.COMPRESSION_LEVEL} of the frame", **compress},
        {"case": label, "what": "numpy tracer at 640x360 (max size)", **max_size},
    ]
    summary: dict[str, object] = {
        "seed": seed,
        "compute_median_ms": compute["median_ms"],
        "no_bounce_median_ms": no_bounce["median_ms"],
        "reference_measured_ms_80x45": reference_measured_ms,
        "reference_extrapolated_ms": reference_ms,
        "speedup_vs_pure_python": reference_ms / compute["median_ms"],
        "bounce_cost_ratio": compute["median_ms"] / no_bounce["median_ms"],
        "verify_median_ms": verify["median_ms"],
        "verify_fraction_of_compute": verify["median_ms"] / compute["median_ms"],
        "compress_median_ms": compress["median_ms"],
        "frame_bytes": frame_bytes,
        "raw_bytes": len(raw_rgb),
        "fps_at_1_mbps": LINK_BYTES_PER_S / frame_bytes,
        "max_size_median_ms": max_size["median_ms"],
    }
    return rows, summary


def main() -> None:
    rows: list[dict[str, object]] = []
    per_seed: list[dict[str, object]] = []
    for seed in SEEDS:
        seed_rows, summary = _measure(seed)
        rows += seed_rows
        per_seed.append(summary)

    harness.print_table(
        "rt_reflections: 320x180, 2 bounces, 20 objects, 3 lights, one core",
        rows,
        ["case", "what", "n", "median_ms", "p99_ms", "min_ms"],
    )
    summary_rows = [
        {
            "seed": s["seed"],
            "speedup_vs_python": s["speedup_vs_pure_python"],
            "bounces_cost_x": s["bounce_cost_ratio"],
            "verify/compute": s["verify_fraction_of_compute"],
            "frame_bytes": s["frame_bytes"],
            "fps_at_1Mbps": s["fps_at_1_mbps"],
        }
        for s in per_seed
    ]
    harness.print_table(
        "ratios",
        summary_rows,
        ["seed", "speedup_vs_python", "bounces_cost_x", "verify/compute", "frame_bytes", "fps_at_1Mbps"],
    )
    worst_median = max(float(s["compute_median_ms"]) for s in per_seed)  # type: ignore[arg-type]
    verdict = "meets" if worst_median <= TARGET_MS else "MISSES"
    print(f"\nworst median compute {worst_median:.1f} ms {verdict} the {TARGET_MS:.0f} ms target")
    harness.write_json(
        "kernels_reflections",
        {
            "kernel": rt.NAME,
            "version": rt.VERSION,
            "case": "example(size='large'): 320x180, 2 bounces, 15 spheres + 4 projectiles + 1 plane, 3 lights",
            "threads": 1,
            "target_ms": TARGET_MS,
            "meets_target": worst_median <= TARGET_MS,
            "baselines": {
                "no_bounce": "same numpy tracer with max_bounces=0",
                "pure_python": f"trace_pixel_reference per pixel at {REFERENCE_SIZE[0]}x{REFERENCE_SIZE[1]}, "
                "scaled by pixel count to 320x180",
            },
            "compression_level": rt.COMPRESSION_LEVEL,
            "link_bits_per_s": LINK_BYTES_PER_S * 8,
            "median_frame_bytes": statistics.median(int(s["frame_bytes"]) for s in per_seed),  # type: ignore[call-overload]
            "numpy": np.__version__,
            "per_seed": per_seed,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
