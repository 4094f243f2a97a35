"""Round trip and throughput of the whole path, against a bare websockets relay run side by side.

    python -m bench.bench_roundtrip [--tasks 10000] [--inflight 1000] [--serial 1000] [--rounds 10]

P2C2R: gamer -> coordinator (validate, SQLite, schedule) -> peer (worker process) -> coordinator (verify,
bill, SQLite) -> gamer, with a trivial task (a tiny A* search, every input different so no cache hits).
Floor: a websockets server that forwards the gamer's frame to a worker connection and the worker's answer
back, nothing else, on the same event loop as P2C2R's processes (uvloop). Sandboxed floor: the same relay,
whose worker hands each frame (the same tiny A* input as P2C2R's) to the peer's sandboxed worker pool
(``p2c2r.workers``) and returns the kernel's output: the hops and the compute that P2C2R's design cannot
do without, so that what lies between it and P2C2R is the coordinator's and the peer's own work. All three
run at once; the one-at-a-time samples alternate between them in rounds, so that a machine that slows
down for a while slows all three. The ratio to the floor is the figure that survives a noisy machine; the spread of the rounds'
own ratios shows how much it does. During the throughput runs, the CPU time each process uses per task
(from /proc) shows where the work is, which wall time on a shared machine blurs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from bench.harness import percentile, print_table, process_tree_cpu_s, write_json
from bench.kernels.bench_pathfinding import tiny_input as trivial_input
from p2c2r.gamer.client import GamerClient
from p2c2r.peer.agent import WORKER_PIPELINE
from p2c2r.workers import WorkerPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import ProcessSet  # noqa: E402


class P2C2RPath:
    """The subject: a trivial task submitted through the client library, one at a time or many in flight."""

    def __init__(self, client: GamerClient) -> None:
        self._client = client
        self._rng = random.Random(1)
        self.sources: dict[str, int] = {}

    async def once(self) -> float:
        inp = trivial_input(self._rng)
        t0 = time.perf_counter()
        await self._client.submit("ai_pathfinding", inp, deadline_ms=60_000)
        return time.perf_counter() - t0

    def prepare(self, total: int) -> None:
        self._inputs = [trivial_input(self._rng) for _ in range(total)]

    async def throughput(self, total: int, inflight: int) -> float:
        inputs = self._inputs
        sem = asyncio.Semaphore(inflight)

        async def one(inp: dict) -> None:
            async with sem:
                r = await self._client.submit("ai_pathfinding", inp, deadline_ms=60_000)
                self.sources[r.source] = self.sources.get(r.source, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in inputs))
        return total / (time.perf_counter() - t0)


# The floor: a bare relay ------------------------------------------------------------------------------


def _run_like_p2c2r(coro: Any) -> None:
    """The floor's relay and worker run on the event loop that P2C2R's processes use (uvloop where it is
    installed, as ``p2c2r.cli`` does), so that the ratio compares the designs, not the loops. The measuring
    gamer, in this process, runs on asyncio's loop for both."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _relay_main(port_queue: multiprocessing.Queue) -> None:
    async def main() -> None:
        worker: list = []
        gamers: dict = {}

        async def handler(ws) -> None:
            role = await ws.recv()
            if role == b"worker":
                worker.append(ws)
                port_queue.put("worker ready")
                async for frame in ws:  # answer: 8-byte gamer tag + payload
                    g = gamers.get(frame[:8])
                    if g is not None:
                        await g.send(frame[8:])
            else:
                tag = role[:8]
                gamers[tag] = ws
                async for frame in ws:
                    await worker[0].send(tag + frame)

        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port_queue.put(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    _run_like_p2c2r(main())


def _worker_main(port: int) -> None:
    async def main() -> None:
        async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
            await ws.send(b"worker")
            async for frame in ws:
                await ws.send(frame)

    _run_like_p2c2r(main())


def _sandboxed_worker_main(port: int) -> None:
    """The relay's worker for the sandboxed floor: each frame's input runs in the peer's worker pool (one
    sandboxed process, jobs pipelined as the peer does) and its output goes back, tagged as it came."""
    async def main() -> None:
        pool = WorkerPool(1, pipeline=WORKER_PIPELINE)
        await pool.start()
        answers: asyncio.Queue[bytes] = asyncio.Queue()
        async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
            await ws.send(b"worker")

            async def writer() -> None:
                while True:
                    await ws.send(await answers.get())

            writing = asyncio.create_task(writer())
            async for frame in ws:
                job = pool.run("ai_pathfinding", frame[8:])
                job.add_done_callback(lambda done, tag=frame[:8]: answers.put_nowait(tag + done.result().output))
            writing.cancel()
        await pool.close()

    _run_like_p2c2r(main())


class RelayPath:
    """The floor: a frame of a trivial task's size through the bare relay and back."""

    PAYLOAD = b"x" * 120

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def _payload(self) -> bytes:
        return self.PAYLOAD

    def prepare(self, total: int) -> None:
        self._payloads = [self._payload() for _ in range(total)]

    async def once(self) -> float:
        payload = self._payload()
        t0 = time.perf_counter()
        await self._ws.send(payload)
        await self._ws.recv()
        return time.perf_counter() - t0

    async def throughput(self, total: int, inflight: int) -> float:
        sent = 0
        received = 0

        async def reader() -> None:
            nonlocal received
            while received < total:
                await self._ws.recv()
                received += 1

        payloads = self._payloads
        t0 = time.perf_counter()
        reader_task = asyncio.create_task(reader())
        while sent < total:
            while sent - received < inflight and sent < total:
                await self._ws.send(payloads[sent])
                sent += 1
            await asyncio.sleep(0)
        await reader_task
        return total / (time.perf_counter() - t0)


class SandboxedRelayPath(RelayPath):
    """The sandboxed floor: P2C2R's tiny A* inputs, as MessagePack, through the relay to the sandboxed
    kernel and back."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self._rng = random.Random(1)

    def _payload(self) -> bytes:
        return msgspec.msgpack.encode(trivial_input(self._rng))


async def _throughput_with_cpu(path: Any, pids: dict[str, int], total: int, inflight: int) -> tuple[float, dict[str, float]]:
    """Tasks per second, and the CPU microseconds per task that each process of the path (and this one, the
    gamer) used meanwhile: the cost that a noisy machine's wall clock hides."""
    path.prepare(total)  # inputs made before, not counted
    before = {role: process_tree_cpu_s(pid) for role, pid in pids.items()}
    gamer_before = time.process_time()
    rate = await path.throughput(total, inflight)
    cpu_us = {role: (process_tree_cpu_s(pid) - before[role]) / total * 1e6 for role, pid in pids.items()}
    cpu_us["gamer"] = (time.process_time() - gamer_before) / total * 1e6
    return rate, cpu_us


PATHS = (("floor", "bare websockets relay (floor)"),
         ("sandboxed", "relay + sandboxed A* worker (floor of the design)"),
         ("ours", "p2c2r gamer->cloud->peer->cloud->gamer"))


async def measure(relay_ports: dict[str, int], cloud_url: str, serial: int, rounds: int, total: int,
                  inflight: int, pids: dict[str, dict[str, int]]) -> dict:
    """The three paths, their one-at-a-time samples taken in alternating rounds (a machine that slows down
    for a while slows all, and each round gives ratios of its own), then each one's throughput."""
    async with connect(f"ws://127.0.0.1:{relay_ports['floor']}", compression=None, max_size=None) as floor_ws, \
            connect(f"ws://127.0.0.1:{relay_ports['sandboxed']}", compression=None, max_size=None) as sandboxed_ws, \
            GamerClient(cloud_url, name="bench") as client:
        await floor_ws.send(b"gamer001")
        await sandboxed_ws.send(b"gamer002")
        ours = P2C2RPath(client)
        paths = {"floor": RelayPath(floor_ws), "sandboxed": SandboxedRelayPath(sandboxed_ws), "ours": ours}
        for _ in range(50):  # warm-up
            for path in paths.values():
                await path.once()
        samples: dict[str, list[float]] = {key: [] for key in paths}
        round_ratios: dict[str, list[float]] = {"ours": [], "sandboxed": []}
        per_round = max(1, serial // rounds)
        for _ in range(rounds):
            this_round = {}
            for key, path in paths.items():
                this_round[key] = [await path.once() for _ in range(per_round)]
                samples[key] += this_round[key]
            floor_p50 = percentile(this_round["floor"], 50)
            for key in round_ratios:
                round_ratios[key].append(percentile(this_round[key], 50) / floor_p50)
        throughput, cpu_us = {}, {}
        for key, path in paths.items():
            throughput[key], cpu_us[key] = await _throughput_with_cpu(path, pids[key], total, inflight)
    return {"samples": samples, "throughput": throughput, "cpu_us": cpu_us, "round_ratios": round_ratios,
            "sources": ours.sources}


def _start_relay(ctx: Any, worker_main: Any) -> tuple[int, list[multiprocessing.process.BaseProcess]]:
    q = ctx.Queue()
    relay = ctx.Process(target=_relay_main, args=(q,), daemon=True)
    relay.start()
    processes = [relay]
    try:
        port = q.get(timeout=30)
        # Not a daemon: the sandboxed floor's worker has worker processes of its own.
        worker = ctx.Process(target=worker_main, args=(port,))
        worker.start()
        processes.append(worker)
        if q.get(timeout=120) != "worker ready":
            raise RuntimeError("the relay's worker did not register")
    except BaseException:
        for proc in processes:
            proc.kill()
        raise
    return port, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serial", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds the serial samples are split into")
    # 10,000 tasks (about 3 s) rather than fewer: a shorter window is at the mercy of one GC pass or checkpoint.
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument("--peer-slots", type=int, default=1)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    relays: dict[str, tuple[int, list[multiprocessing.process.BaseProcess]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["P2C2R_KEY_DIR"] = str(Path(tmp) / "keys")  # the bench's own gamer key, not the user's
        ps = ProcessSet(Path(tmp))
        try:
            relays["floor"] = _start_relay(ctx, _worker_main)
            relays["sandboxed"] = _start_relay(ctx, _sandboxed_worker_main)
            # The per-gamer submit rate limit (1,000/s by default) would cap this one gamer's load.
            cloud = ps.cloud(extra=["--quiet", "--submit-rate", "1000000", "--submit-burst", "1000000"])
            peer = ps.peer(cloud, "bench_peer", slots=args.peer_slots, extra=["--quiet"])
            cloud.wait_for_peers(1)
            pids = {key: {"server": procs[0].pid, "worker": procs[1].pid} for key, (_, procs) in relays.items()}
            pids["ours"] = {"server": cloud.popen.pid, "worker": peer.popen.pid}  # the peer with its workers
            ports = {key: port for key, (port, _) in relays.items()}
            result = asyncio.run(measure(ports, cloud.url, args.serial, args.rounds, args.tasks, args.inflight, pids))
        finally:
            ps.stop_all()
            for _, procs in relays.values():
                for proc in procs:
                    proc.kill()

    rows = []
    for key, name in PATHS:
        samples_ms = [s * 1000 for s in result["samples"][key]]
        cpu = result["cpu_us"][key]
        rows.append({
            "path": name,
            "p50_ms": percentile(samples_ms, 50),
            "p99_ms": percentile(samples_ms, 99),
            "tasks_per_s": result["throughput"][key],
            "cpu_us_server": cpu["server"],
            "cpu_us_worker": cpu["worker"],
            "cpu_us_gamer": cpu["gamer"],
            "cpu_us_total": cpu["server"] + cpu["worker"] + cpu["gamer"],
        })
    floor, sandboxed, ours = rows
    ratio_p50 = ours["p50_ms"] / floor["p50_ms"]
    ratio_tp = ours["tasks_per_s"] / floor["tasks_per_s"]
    ratio_cpu = ours["cpu_us_total"] / floor["cpu_us_total"]
    sandboxed_p50 = sandboxed["p50_ms"] / floor["p50_ms"]
    round_ratios = result["round_ratios"]
    print_table(f"Round trip one at a time ({args.serial}, in {args.rounds} alternating rounds) and throughput "
                f"({args.tasks} tasks, {args.inflight} in flight; CPU microseconds per task during the latter, by "
                f"process: server = relay or coordinator, worker = relay's worker (with its sandboxed worker) or "
                f"peer with its workers)", rows,
                ["path", "p50_ms", "p99_ms", "tasks_per_s", "cpu_us_server", "cpu_us_worker", "cpu_us_gamer",
                 "cpu_us_total"])
    print(f"\nratio p50 vs floor: {ratio_p50:.2f}x (per round {min(round_ratios['ours']):.2f}-"
          f"{max(round_ratios['ours']):.2f}x)   throughput vs floor: {ratio_tp:.2f}x   CPU per task vs floor: "
          f"{ratio_cpu:.1f}x   sources: {result['sources']}")
    print(f"the design's floor (relay + sandboxed A*): p50 {sandboxed_p50:.2f}x the floor (per round "
          f"{min(round_ratios['sandboxed']):.2f}-{max(round_ratios['sandboxed']):.2f}x); P2C2R's own work "
          f"on top of it: +{ours['p50_ms'] - sandboxed['p50_ms']:.3f} ms p50 "
          f"({ours['p50_ms'] / sandboxed['p50_ms']:.2f}x the design's floor), "
          f"+{ours['cpu_us_total'] - sandboxed['cpu_us_total']:.0f} us CPU per task")
    write_json("roundtrip", {"rows": rows, "ratio_p50_vs_floor": ratio_p50, "ratio_throughput_vs_floor": ratio_tp,
                             "ratio_cpu_per_task_vs_floor": ratio_cpu,
                             "ratio_p50_per_round": round_ratios["ours"],
                             "sandboxed_floor_ratio_p50_vs_floor": sandboxed_p50,
                             "sandboxed_floor_ratio_p50_per_round": round_ratios["sandboxed"],
                             "ratio_p50_vs_sandboxed_floor": ours["p50_ms"] / sandboxed["p50_ms"],
                             "targets": {"p50_ms": 1.0, "ratio_p50_max": 2.5, "tasks_per_s_min": 3000},
                             "params": vars(args), "sources": result["sources"]})


if __name__ == "__main__":
    main()
