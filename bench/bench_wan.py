"""End-to-end latency per kind over WAN-like links, and the bandwidth a peer needs at the demo's load.

    python -m bench.bench_wan [--one-way-ms 50] [--samples 25] [--seconds 10]

Set-up: a coordinator, two peers and this process as the gamer, all on this machine; every link goes
through a ``LinkProxy`` (gamer->coordinator and each peer->coordinator), so the WAN latency is real
waiting on real sockets.

1. Latency. Tasks one at a time, per kind, first with the proxies at 0 ms (the floor: compute, the
   coordinator's own work, the proxies themselves) and then at ``--one-way-ms`` in each direction. A task
   crosses four one-way links (gamer->coordinator->peer->coordinator->gamer), so the model is

       2 round trips + compute + 5 ms  =  4 x one-way + compute + 5 ms

   with compute the kernel's median time on the same inputs here. Reported: p50/p99 at both settings, the
   model, and p50 / model (1.0 = the system adds nothing to the wire but 5 ms).
2. Bandwidth. The demo's load (``run_gamer``'s WORK_PLAN at 60 frames a second: physics every 4th frame,
   paths every 15th, reflections every 30th, a line of dialogue every 180th) through the same links for
   ``--seconds``, deadlines long enough that the peers do all of it (the worst case for them). Reported:
   bytes per second per peer link, each direction, against the seed's "~1 Mbps per peer".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import percentile, print_table, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import Proc, ProcessSet  # noqa: E402

MODEL_OVERHEAD_MS = 5.0
PEER_TARGET_BPS = 1_000_000
LONG_DEADLINE_MS = 60_000


def kernel_ms(kind_name: str, inputs: list) -> float:
    from p2c2r.tasks import get_kind

    kind = get_kind(kind_name)
    parsed = [kind.parse_input(raw) for raw in inputs]
    kind.compute(parsed[0])  # JIT and caches, as the warmed-up workers have
    samples = []
    for inp in parsed:
        t0 = time.perf_counter()
        kind.compute(inp)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


async def serial_latency(client, kinds: list[str], samples: int, rng: random.Random) -> dict[str, dict]:
    from p2c2r.tasks import get_kind

    out: dict[str, dict] = {}
    for kind_name in kinds:
        kind = get_kind(kind_name)
        lat, sources, inputs = [], {}, []
        for _ in range(samples):
            raw = kind.example(rng, "small")
            inputs.append(raw)
            result = await client.submit(kind_name, raw, deadline_ms=LONG_DEADLINE_MS)
            sources[result.source] = sources.get(result.source, 0) + 1
            if result.source == "peer":
                lat.append(result.latency_ms)
        out[kind_name] = {"samples": lat, "sources": sources, "inputs": inputs}
    return out


async def demo_load(client, seconds: float, rng: random.Random) -> dict:
    from p2c2r.gamer.session import WORK_PLAN
    from p2c2r.network_config import GAME_FPS
    from p2c2r.tasks import get_kind, registry

    futures = []
    frames = int(seconds * GAME_FPS)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for frame in range(1, frames + 1):
        for kind_name, every, _ in WORK_PLAN:
            if frame % every == 0 and kind_name in registry():
                futures.append(client.submit_nowait(kind_name, get_kind(kind_name).example(rng, "small"),
                                                    deadline_ms=LONG_DEADLINE_MS))
        await asyncio.sleep(max(0.0, start + frame / GAME_FPS - loop.time()))
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 120)
    sources: dict[str, int] = {}
    for r in results:
        key = "failed" if isinstance(r, BaseException) else r.source
        sources[key] = sources.get(key, 0) + 1
    return {"tasks": len(futures), "sources": sources, "frames": frames}


async def run(args: argparse.Namespace, gamer_port: int, links: dict) -> dict:
    from p2c2r.gamer.client import GamerClient
    from p2c2r.tasks import registry

    kinds = sorted(registry())
    rng = random.Random(1)
    async with GamerClient(f"ws://127.0.0.1:{gamer_port}", name="bench_wan") as client:
        await serial_latency(client, kinds, 10, rng)  # warm-up: workers, caches, the peers' trust
        floor = await serial_latency(client, kinds, args.samples, rng)
        for link in links.values():
            link.set_latency((args.one_way_ms, args.one_way_ms))
        wan = await serial_latency(client, kinds, args.samples, rng)
        before = {name: (link.bytes_up, link.bytes_down) for name, link in links.items()}
        t0 = time.perf_counter()
        load = await demo_load(client, args.seconds, rng)
        elapsed = time.perf_counter() - t0
        after = {name: (link.bytes_up, link.bytes_down) for name, link in links.items()}
    load["elapsed_s"] = elapsed
    load["links"] = {name: {"up_bytes": after[name][0] - before[name][0], "down_bytes": after[name][1] - before[name][1]}
                     for name in links}
    return {"kinds": kinds, "floor": floor, "wan": wan, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one-way-ms", type=float, default=50.0)
    parser.add_argument("--samples", type=int, default=25, help="tasks per kind and setting")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of the demo's load")
    args = parser.parse_args()

    from p2c2r.testing.proxy import ThreadedLinkProxy

    with tempfile.TemporaryDirectory(prefix="p2c2r-bench-wan-") as tmp:
        os.environ.setdefault("P2C2R_KEY_DIR", str(Path(tmp) / "keys"))  # the in-process gamer's key
        ps = ProcessSet(Path(tmp))
        links: dict[str, ThreadedLinkProxy] = {}
        try:
            cloud = ps.cloud(extra=["--quiet"])
            for name in ("gamer", "peer1", "peer2"):
                links[name] = ThreadedLinkProxy("127.0.0.1", cloud.port, seed=len(links)).start()
            for name in ("peer1", "peer2"):
                ps.procs.append(Proc(["peer", "--cloud-ip", "127.0.0.1", "--cloud-port", str(links[name].port),
                                      "--name", f"bench_{name}", "--slots", "1", "--quiet"], Path(tmp) / f"{name}.log"))
            cloud.wait_for_peers(2, timeout_s=180)
            data = asyncio.run(run(args, links["gamer"].port, {n: links[n] for n in links}))
        finally:
            for link in links.values():
                link.stop()
            ps.stop_all()

    rows = []
    for kind in data["kinds"]:
        floor, wan = data["floor"][kind], data["wan"][kind]
        compute = kernel_ms(kind, wan["inputs"])
        model = 4 * args.one_way_ms + compute + MODEL_OVERHEAD_MS
        p50 = percentile(wan["samples"], 50)
        rows.append({
            "kind": kind,
            "n": len(wan["samples"]),
            "floor_p50_ms": percentile(floor["samples"], 50),
            "wan_p50_ms": p50,
            "wan_p99_ms": percentile(wan["samples"], 99),
            "compute_ms": compute,
            "model_ms": model,
            "p50/model": p50 / model,
            "sources": " ".join(f"{k}:{v}" for k, v in sorted(wan["sources"].items())),
        })
    print_table(f"End-to-end latency, tasks one at a time: floor (links at 0 ms) and {args.one_way_ms:g} ms one way "
                f"on every link; model = 2 round trips + compute + {MODEL_OVERHEAD_MS:g} ms",
                rows, ["kind", "n", "floor_p50_ms", "wan_p50_ms", "wan_p99_ms", "compute_ms", "model_ms", "p50/model",
                       "sources"])

    load = data["load"]
    bw_rows = []
    for name, b in load["links"].items():
        up_bps = b["up_bytes"] * 8 / load["elapsed_s"]
        down_bps = b["down_bytes"] * 8 / load["elapsed_s"]
        bw_rows.append({"link": name, "down_kbit_s": down_bps / 1000, "up_kbit_s": up_bps / 1000,
                        "busiest_dir_vs_1Mbps": max(up_bps, down_bps) / PEER_TARGET_BPS})
    print_table(f"Bandwidth at the demo's load: {load['tasks']} tasks in {load['elapsed_s']:.1f} s "
                f"({load['tasks'] / load['elapsed_s']:.1f}/s), sources {load['sources']}",
                bw_rows, ["link", "down_kbit_s", "up_kbit_s", "busiest_dir_vs_1Mbps"])
    peers = [r for r in bw_rows if r["link"].startswith("peer")]
    worst = max(r["busiest_dir_vs_1Mbps"] for r in peers)
    print(f"\nworst peer link direction: {worst * 1000:.0f} kbit/s of the 1 Mbit/s target "
          f"({'within' if worst < 1 else 'OVER'}); p50/model per kind: "
          + ", ".join(f"{r['kind']} {r['p50/model']:.2f}" for r in rows))
    write_json("wan", {
        "params": vars(args),
        "latency": rows,
        "bandwidth": {"rows": bw_rows, "tasks": load["tasks"], "elapsed_s": load["elapsed_s"], "sources": load["sources"],
                      "worst_peer_direction_vs_1Mbps": worst},
        "model": f"4 x one-way ({args.one_way_ms:g} ms) + compute + {MODEL_OVERHEAD_MS:g} ms",
        "targets": {"peer_bps_max": PEER_TARGET_BPS, "p50_over_model_max": 1.25},
    })


if __name__ == "__main__":
    main()
