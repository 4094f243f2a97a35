"""Property-based fuzzing of a live coordinator process while an honest gamer and peer keep working.

The fuzzer signs in properly, as a gamer with no funds and as a peer that runs no kind, then throws
hostile frames (``tests/fuzz_frames.py``) at it, each followed by a sentinel ``Fetch`` so that the answers
to each frame can be told apart. Properties:

* every frame gets the answer it is owed: an ``Error`` for every frame that does not decode or is wrong
  for the role, ``unknown_task`` for another gamer's task ids, an ``Error`` for every submit (no funds),
  ``not_assigned`` for every peer result; handshake-stage garbage gets an ``Error`` and a 400x close code;
* the coordinator keeps serving the honest gamer and peer (every honest task completes, correctly);
* nothing changes that the fuzzer has no right to change: no task, attempt or ledger row for its ids,
  and the honest gamer's rows hold exactly its credit and its own charges.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import msgspec
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2c2r import protocol as p
from p2c2r.identity import Identity
from p2c2r.tasks import registry
from tests.fuzz_frames import Expect, Frame, expected, frames, handshake_garbage
from tests.honest_load import HonestGamer
from tests.identity_helpers import sign_in
from tests.procs import REPO, CloudProcess, ProcessSet, scaled, wait_until

MAX_BYTES = 64 * 1024
FUZZ_GAMER = Identity.generate()
FUZZ_PEER = Identity.generate()
REPLY_TIMEOUT_S = 10.0
# P2C2R_FUZZ_SCALE=10 runs ten times the examples (about ten times as long).
FUZZ_SCALE = float(os.environ.get("P2C2R_FUZZ_SCALE", "1"))


@pytest.fixture(scope="module")
def fuzz_net(tmp_path_factory) -> Iterator[tuple[CloudProcess, HonestGamer]]:
    root = tmp_path_factory.mktemp("fuzz")
    ps = ProcessSet(root)
    honest = None
    try:
        # No free allowance: the fuzzer's gamer has no money, so no submit of it may ever be accepted.
        cloud = ps.cloud(extra=["--free-allowance", "0", "--max-message-bytes", str(MAX_BYTES)])
        key_path = root / "honest.key"
        honest_id = Identity.load_or_create(key_path).client_id("gamer")
        credit = subprocess.run([sys.executable, "-m", "p2c2r.cli", "admin", "--db", str(cloud.db_path), "credit",
                                 honest_id, "1"], cwd=REPO, capture_output=True, text=True, timeout=scaled(60))
        assert credit.returncode == 0, credit.stderr
        ps.peer(cloud, "honest_peer", slots=1)
        cloud.wait_for_peers(1)
        registry()  # import every kernel (and numpy) here, not half-way in the honest thread while hypothesis runs
        honest = HonestGamer(cloud.url, str(key_path))
        honest.start()
        yield cloud, honest
    finally:
        if honest is not None:
            honest.stop()
        ps.stop_all()


class Session:
    """One signed-in fuzzing connection and the answers it still owes."""

    def __init__(self, ws: websockets.ClientConnection, role: str) -> None:
        self.ws = ws
        self.role = role
        self.submits: dict[str, int] = {}  # task id -> answers still owed (may come after a sentinel)

    async def recv(self) -> msgspec.Struct:
        return p.decode_from_server(await asyncio.wait_for(self.ws.recv(), scaled(REPLY_TIMEOUT_S)), max_bytes=None)

    def _owed_submit(self, msg: msgspec.Struct) -> bool:
        task_id = getattr(msg, "task_id", None)
        if task_id is None or self.submits.get(task_id, 0) == 0:
            return False
        assert isinstance(msg, p.Error), f"a submit with no funds was answered {msg!r}"
        self.submits[task_id] -= 1
        return True

    async def check(self, frame: Frame) -> None:
        wants = expected(frame, self.role, MAX_BYTES)
        for want, _, task_id in wants:
            if want is Expect.TASK_ERROR:
                self.submits[task_id] = self.submits.get(task_id, 0) + 1
        # The sentinel: a fetch of a task nobody has (gamer), a result for an attempt nobody has (peer).
        sentinel = f"zz:sentinel:{secrets.token_hex(6)}"
        await self.ws.send(frame)
        await self.ws.send(p.encode(p.Fetch(sentinel) if self.role == "gamer" else p.PeerResult(sentinel, None, 0.0)))
        got = []
        while True:
            msg = await self.recv()
            if isinstance(msg, p.Error) and (msg.task_id == sentinel or sentinel in msg.message):
                assert msg.code == (p.E_UNKNOWN_TASK if self.role == "gamer" else p.E_NOT_ASSIGNED), msg
                break
            if not self._owed_submit(msg):
                got.append(msg)
        owed = [(want, code) for want, code, _ in wants if want not in (Expect.TASK_ERROR, Expect.NOTHING)]
        context = f"{self.role} sent {frame[:200]!r}: expected {owed}, got {got}"
        assert len(got) == len(owed), context
        for (want, code), msg in zip(owed, got, strict=True):
            if want in (Expect.ERROR, Expect.UNKNOWN_TASK):
                assert isinstance(msg, p.Error), context
                assert code is None or msg.code == code, context
            else:
                assert isinstance(msg, p.Stats), context

    async def settle(self) -> None:
        while any(self.submits.values()):
            msg = await self.recv()
            assert self._owed_submit(msg), f"unexpected {msg!r} while waiting for submit answers {self.submits}"


async def heartbeats(ws: websockets.ClientConnection) -> None:
    while True:  # no answer is owed to a heartbeat, so these never mix with the answers being checked
        await ws.send(p.encode(p.Heartbeat()))
        await asyncio.sleep(0.5)


async def run_batch(url: str, batch: list[tuple[str, Frame]], garbage: list[Frame]) -> None:
    async with websockets.connect(url, max_size=None) as gamer_ws, websockets.connect(url, max_size=None) as peer_ws:
        await sign_in(gamer_ws, role="gamer", identity=FUZZ_GAMER, name="fuzzer")
        await sign_in(peer_ws, role="peer", identity=FUZZ_PEER, name="fuzzer", kinds=[])
        heart = asyncio.get_running_loop().create_task(heartbeats(peer_ws))  # a silent peer is dropped
        sessions = {"gamer": Session(gamer_ws, "gamer"), "peer": Session(peer_ws, "peer")}
        try:
            for role, frame in batch:
                await sessions[role].check(frame)
            for session in sessions.values():
                await session.settle()
        finally:
            heart.cancel()
    for frame in garbage:  # handshake stage: an Error, then a close code that says why
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(frame)
            reply = p.decode_from_server(await asyncio.wait_for(ws.recv(), scaled(REPLY_TIMEOUT_S)), max_bytes=None)
            assert isinstance(reply, p.Error), (frame, reply)
            await asyncio.wait_for(ws.wait_closed(), scaled(REPLY_TIMEOUT_S))
            assert ws.close_code in (p.CLOSE_UNSUPPORTED_VERSION, p.CLOSE_UNKNOWN_ROLE, p.CLOSE_BAD_HANDSHAKE,
                                     p.CLOSE_AUTH_FAILED), (frame, reply, ws.close_code)


def fuzz_rows(db_path) -> dict[str, list[tuple]]:
    ids = [FUZZ_GAMER.client_id("gamer"), FUZZ_PEER.client_id("peer")]
    with sqlite3.connect(db_path) as conn:
        return {
            "tasks": conn.execute("SELECT * FROM tasks WHERE gamer_id IN (?, ?)", ids).fetchall(),
            "attempts": conn.execute("SELECT * FROM attempts WHERE peer_id IN (?, ?)", ids).fetchall(),
            "ledger": conn.execute("SELECT * FROM ledger WHERE account LIKE ? OR account LIKE ?",
                                   [f"%{i}" for i in ids]).fetchall(),
            "work": conn.execute("SELECT tasks_done, tasks_invalid FROM peers WHERE id = ?", ids[1:]).fetchall(),
        }


@settings(max_examples=int(600 * FUZZ_SCALE), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(batch=st.lists(st.tuples(st.sampled_from(["gamer", "gamer", "peer"]), frames(MAX_BYTES)), min_size=1, max_size=12),
       garbage=st.lists(handshake_garbage(MAX_BYTES), max_size=1))
def test_every_hostile_frame_is_answered_and_harmless(fuzz_net, batch, garbage):
    cloud, honest = fuzz_net
    asyncio.run(run_batch(cloud.url, batch, garbage))
    assert cloud.alive(), cloud.output[-3000:]


def test_the_fuzzer_changed_nothing_and_honest_work_went_on(fuzz_net):
    cloud, honest = fuzz_net
    done_before = honest.completed
    wait_until(lambda: honest.completed >= done_before + 5 or honest.failures, 60, "more honest tasks")
    assert cloud.alive()
    assert honest.failures == []
    assert honest.completed >= 10
    # The fuzzer's identities own nothing: no task, no attempt, no ledger row, no work counted.
    rows = fuzz_rows(cloud.db_path)
    assert rows["tasks"] == [] and rows["attempts"] == [] and rows["ledger"] == [], rows
    assert rows["work"] in ([], [(0, 0)]), rows
    with sqlite3.connect(cloud.db_path) as conn:
        assert conn.execute("SELECT COALESCE(SUM(amount_micro_usd), 0) FROM ledger").fetchone() == (0,)
        honest_id = Identity.load_or_create(honest.key_path).client_id("gamer")
        keys = {k.split(":")[0] for (k,) in conn.execute(
            "SELECT posting_key FROM ledger WHERE account = ?", (f"gamer:{honest_id}",))}
        assert keys <= {"credit", "charge"}, keys
        states = dict(conn.execute("SELECT state, COUNT(*) FROM tasks WHERE gamer_id = ? GROUP BY state", (honest_id,)))
    assert states.get("failed", 0) == 0, states
    stats = cloud.stats()
    assert stats["validation"]["not_assigned"] > 0 and stats["invalid_results"] == 0
