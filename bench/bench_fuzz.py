"""A long fuzz run against a live coordinator: 100,000 hostile messages while an honest gamer and peer work.

    python -m bench.bench_fuzz [--messages 100000] [--window 200] [--seed 1]

The same families of frames as the pytest property test (``tests/fuzz_frames.py``: shaped, valid but
out of place, mutated, oversized, text), drawn from a seeded ``random.Random`` so a run can be repeated.
The fuzzer signs in as a gamer with no funds and as a peer that runs no kind, and sends its frames in
windows of ``--window`` (pipelined), each window closed by a sentinel whose answer marks the end of the
window's answers. Every 500 messages it also opens a connection whose first frame is garbage.

Figures: messages a second (hostile frames answered, end to end), errors returned against errors owed
(``unanswered`` must be 0), coordinator crashes (must be 0), honest tasks completed and failed (must be
0), and rows the fuzzer changed in the database (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import percentile, print_table, write_json  # noqa: E402
from p2c2r import protocol as p  # noqa: E402
from p2c2r.identity import Identity  # noqa: E402
from p2c2r.tasks import registry  # noqa: E402
from tests.fuzz_frames import Expect, expected, random_frame  # noqa: E402
from tests.honest_load import HonestGamer  # noqa: E402
from tests.identity_helpers import sign_in  # noqa: E402
from tests.procs import REPO, ProcessSet  # noqa: E402

MAX_BYTES = 64 * 1024
GARBAGE_EVERY = 500
HANDSHAKE_CLOSE_CODES = {p.CLOSE_UNSUPPORTED_VERSION, p.CLOSE_UNKNOWN_ROLE, p.CLOSE_BAD_HANDSHAKE, p.CLOSE_AUTH_FAILED}


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.errors_owed = 0
        self.errors_returned = 0
        self.by_code: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.garbage = 0
        self.garbage_refused = 0


class FuzzSession:
    def __init__(self, ws: websockets.ClientConnection, role: str, tally: Tally) -> None:
        self.ws = ws
        self.role = role
        self.tally = tally
        self.submits: Counter[str] = Counter()

    async def recv(self) -> object:
        return p.decode_from_server(await asyncio.wait_for(self.ws.recv(), 30), max_bytes=None)

    def _note(self, msg: object) -> bool:
        """Count an answer to an earlier submit (they may cross a sentinel); True if it was one."""
        task_id = getattr(msg, "task_id", None)
        if task_id is None or self.submits[task_id] == 0:
            return False
        self.submits[task_id] -= 1
        if isinstance(msg, p.Error):
            self.tally.errors_returned += 1
            self.tally.by_code[msg.code] += 1
        else:
            self.tally.unexpected.append(f"a submit with no funds was answered {msg!r}")
        return True

    async def window(self, frames: list) -> None:
        owed = stats_owed = 0
        for frame in frames:
            for want, _, task_id in expected(frame, self.role, MAX_BYTES):
                if want is Expect.TASK_ERROR:
                    self.submits[task_id] += 1
                    self.tally.errors_owed += 1
                elif want in (Expect.ERROR, Expect.UNKNOWN_TASK):
                    owed += 1
                elif want is Expect.STATS:
                    stats_owed += 1
            await self.ws.send(frame)
        self.tally.sent += len(frames)
        self.tally.errors_owed += owed
        sentinel = f"zz:sentinel:{secrets.token_hex(6)}"
        await self.ws.send(p.encode(p.Fetch(sentinel) if self.role == "gamer" else p.PeerResult(sentinel, None, 0.0)))
        errors = stats = 0
        while True:
            msg = await self.recv()
            if isinstance(msg, p.Error) and (msg.task_id == sentinel or sentinel in msg.message):
                break
            if self._note(msg):
                continue
            if isinstance(msg, p.Error):
                errors += 1
                self.tally.by_code[msg.code] += 1
            elif isinstance(msg, p.Stats):
                stats += 1
            else:
                self.tally.unexpected.append(repr(msg)[:200])
        self.tally.errors_returned += errors
        if stats != stats_owed:
            self.tally.unexpected.append(f"{stats} stats answers for {stats_owed} requests")

    async def settle(self) -> None:
        while sum(self.submits.values()):
            msg = await self.recv()
            if not self._note(msg):
                self.tally.unexpected.append(f"unexpected {msg!r}"[:200])


async def heartbeats(ws: websockets.ClientConnection) -> None:
    while True:
        await ws.send(p.encode(p.Heartbeat()))
        await asyncio.sleep(0.5)


async def garbage_connection(url: str, rng: random.Random, tally: Tally) -> None:
    tally.garbage += 1
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(random_frame(rng, MAX_BYTES))
        try:
            reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), 30), max_bytes=None)
        except websockets.ConnectionClosed:
            reply = None
        await asyncio.wait_for(ws.wait_closed(), 30)
        if isinstance(reply, p.Error) and ws.close_code in HANDSHAKE_CLOSE_CODES:
            tally.garbage_refused += 1


async def fuzz(url: str, messages: int, window: int, seed: int, gamer: Identity, peer: Identity) -> tuple[Tally, float]:
    rng = random.Random(seed)
    tally = Tally()
    async with websockets.connect(url, max_size=None) as gamer_ws, websockets.connect(url, max_size=None) as peer_ws:
        await sign_in(gamer_ws, role="gamer", identity=gamer, name="fuzzer")
        await sign_in(peer_ws, role="peer", identity=peer, name="fuzzer", kinds=[])
        heart = asyncio.get_running_loop().create_task(heartbeats(peer_ws))
        sessions = [FuzzSession(gamer_ws, "gamer", tally), FuzzSession(peer_ws, "peer", tally)]
        started = time.perf_counter()
        next_garbage = GARBAGE_EVERY
        while tally.sent < messages:
            session = sessions[0] if rng.random() < 0.6 else sessions[1]
            size = min(window, messages - tally.sent)
            await session.window([random_frame(rng, MAX_BYTES) for _ in range(size)])
            while tally.sent >= next_garbage:
                await garbage_connection(url, rng, tally)
                next_garbage += GARBAGE_EVERY
        for session in sessions:
            await session.settle()
        elapsed = time.perf_counter() - started
        heart.cancel()
    return tally, elapsed


def fuzz_rows(db: Path, ids: list[str]) -> int:
    with sqlite3.connect(db) as conn:
        return sum(conn.execute(sql, params).fetchone()[0] for sql, params in [
            ("SELECT COUNT(*) FROM tasks WHERE gamer_id IN (?, ?)", ids),
            ("SELECT COUNT(*) FROM attempts WHERE peer_id IN (?, ?)", ids),
            ("SELECT COUNT(*) FROM ledger WHERE account LIKE ? OR account LIKE ?", [f"%{i}" for i in ids]),
            ("SELECT COALESCE(SUM(tasks_done + tasks_invalid), 0) FROM peers WHERE id = ?", ids[1:]),
        ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    registry()  # import every kernel before the honest gamer's thread does
    with tempfile.TemporaryDirectory(prefix="p2c2r-fuzz-") as tmp:
        root = Path(tmp)
        ps = ProcessSet(root)
        honest = None
        try:
            cloud = ps.cloud(extra=["--free-allowance", "0", "--max-message-bytes", str(MAX_BYTES)])
            honest_key = root / "honest.key"
            honest_id = Identity.load_or_create(honest_key).client_id("gamer")
            subprocess.run([sys.executable, "-m", "p2c2r.cli", "admin", "--db", str(cloud.db_path), "credit", honest_id,
                            "10"], cwd=REPO, check=True, capture_output=True)
            ps.peer(cloud, "honest_peer", slots=1)
            cloud.wait_for_peers(1)
            honest = HonestGamer(cloud.url, str(honest_key))
            honest.start()
            gamer, peer = Identity.generate(), Identity.generate()
            print(f"fuzzing {cloud.url} with {args.messages} messages (seed {args.seed}) ...", flush=True)
            tally, elapsed = asyncio.run(fuzz(cloud.url, args.messages, args.window, args.seed, gamer, peer))
            crashes = 0 if cloud.alive() else 1
            honest.stop()
            changed = fuzz_rows(cloud.db_path, [gamer.client_id("gamer"), peer.client_id("peer")])
            stats = cloud.stats()
        finally:
            if honest is not None:
                honest.stop()
            ps.stop_all()

    row = {
        "messages": tally.sent,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(tally.sent / elapsed, 1),
        "errors_returned": tally.errors_returned,
        "errors_owed": tally.errors_owed,
        "unanswered": tally.errors_owed - tally.errors_returned,
        "unexpected_replies": len(tally.unexpected),
        "handshake_garbage": tally.garbage,
        "handshake_refused": tally.garbage_refused,
        "crashes": crashes,
        "honest_completed": honest.completed,
        "honest_failed": len(honest.failures),
        "honest_p50_ms": round(percentile(honest.latencies_ms, 50), 2),
        "honest_p99_ms": round(percentile(honest.latencies_ms, 99), 2),
        "fuzzer_rows_changed": changed,
    }
    print_table("Fuzzing a live coordinator (one gamer with no funds, one peer with no work)", [row], list(row))
    print_table("Errors returned by code", [{"code": c, "count": n} for c, n in tally.by_code.most_common()],
                ["code", "count"])
    for line in tally.unexpected[:10]:
        print("unexpected:", line)
    for line in honest.failures[:10]:
        print("honest failure:", line)
    write_json("fuzz", {
        "parameters": {"messages": args.messages, "window": args.window, "seed": args.seed, "max_message_bytes": MAX_BYTES},
        "result": row,
        "errors_by_code": dict(tally.by_code),
        "coordinator_not_assigned_counter": stats.get("validation", {}).get("not_assigned"),
    })
    ok = (crashes == 0 and row["unanswered"] == 0 and not tally.unexpected and not honest.failures and changed == 0
          and tally.garbage == tally.garbage_refused)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
