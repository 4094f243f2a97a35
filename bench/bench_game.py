"""Frame times of the headless game with 100 ms of one-way latency on the link to the coordinator.

    python -m bench.bench_game [--frames 1200] [--latency-ms 100]

One coordinator and two peers run on this machine (``--local``'s launcher). The same game (same seed,
scripted pilot, paced at 60 fps) is played three times in this process, side by side:

    offline        local approximations only (no network): the baseline frame cost
    direct         straight to the coordinator (0 ms added)
    latency        through ``ThreadedLinkProxy`` adding ``--latency-ms`` each way

For each: frame time p50/p99 (the work of a frame, pacing sleep excluded; target p99 <= 16.7 ms), and for
each kind the share of frames that used an offloaded result, with applied / local / stale counts and the
median round trip. Results go to bench/results/game.json.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench.harness import print_table, write_json

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

TARGET_P99_MS = 1000.0 / 60.0


def play(url: str | None, frames: int, seed: int) -> dict[str, Any]:
    from p2c2r.game.app import GameApp
    from p2c2r.game.options import GameOptions

    app = GameApp(GameOptions(url=url, headless=True, fps=60, seed=seed, name="bench_gamer",
                              connect_wait_s=30.0 if url else 0.0))
    app.start()
    try:
        return app.run(frames=frames)
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1200, help="frames per run (default 1200 = 20 s)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="one-way latency added (default 100)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    from p2c2r.game import config as c
    from p2c2r.game.localnet import LocalNetwork
    from p2c2r.testing.proxy import ThreadedLinkProxy

    network = LocalNetwork()
    runs: dict[str, dict[str, Any]] = {}
    try:
        network.start(say=True)
        # Warm the coordinator and peers up (first tasks of a fresh process pay one-time costs).
        play(network.url, 120, args.seed + 1)
        runs["offline"] = play(None, args.frames, args.seed)
        runs["direct"] = play(network.url, args.frames, args.seed)
        lat = args.latency_ms
        proxy = ThreadedLinkProxy("127.0.0.1", network.port, latency_ms=(lat, lat)).start()
        try:
            runs[f"latency {lat:g} ms"] = play(f"ws://127.0.0.1:{proxy.port}", args.frames, args.seed)
        finally:
            proxy.stop()
    finally:
        network.stop()

    rows = []
    for name, s in runs.items():
        row: dict[str, Any] = {"run": name, "p50_ms": s["frame_ms"]["p50"], "p99_ms": s["frame_ms"]["p99"],
                               "max_ms": s["frame_ms"]["max"],
                               "p99<=16.7": "yes" if s["frame_ms"]["p99"] <= TARGET_P99_MS else "NO"}
        for kind in c.KINDS:
            row[f"{c.SHORT_NAMES[kind]}_net%"] = round(100.0 * s["offloaded_frame_share"][kind], 1)
        rows.append(row)
    print_table(f"Headless game, {args.frames} frames at 60 fps: frame time (work per frame) and offloaded share",
                rows, list(rows[0]))
    detail = []
    for name, s in runs.items():
        for kind in c.KINDS:
            detail.append({"run": name, "kind": kind, "applied": s["applied"][kind],
                           "local": s["local_fallbacks"][kind], "stale": s["stale_dropped"][kind],
                           "rtt_p50_ms": s["latency_p50_ms"][kind] if s["latency_p50_ms"][kind] is not None else "-",
                           "frames_net%": round(100.0 * s["offloaded_frame_share"][kind], 1)})
    print_table("Per kind", detail, list(detail[0]))
    write_json("game", {
        "frames": args.frames,
        "latency_ms_one_way": args.latency_ms,
        "target_p99_ms": round(TARGET_P99_MS, 2),
        "runs": runs,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
