"""When a result reaches its gamer relative to the commit that records and bills it, in process.

The coordinator sends a verified result while its completion commits, never before the task's own row
has committed (the Ack), and the commit stays the only place a task is billed. The store is real; the
writer thread is held on a gate to freeze a commit in flight, and the sessions are recorders.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from p2c2r import protocol as p
from p2c2r.cloud.coordinator import Coordinator
from p2c2r.cloud.store import BUSY_COMMIT_WRITES, Store
from p2c2r.cloud.validation import ValidationPolicy
from p2c2r.errors import StoreError
from p2c2r.tasks import get_kind
from tests.procs import async_wait_until

KIND = "ai_pathfinding"


@dataclass
class Recorder:
    """A session that keeps what the coordinator sends it."""

    client_id: str
    name: str
    role: str
    address: str = "127.0.0.1"
    sent: list[Any] = field(default_factory=list)

    def send(self, message: msgspec.Struct) -> None:
        self.sent.append(message)

    def kick(self, close_code: int, reason: str) -> None:
        self.sent.append(("kicked", close_code, reason))

    def of(self, cls: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, cls)]


class Net:
    def __init__(self, store: Store, coordinator: Coordinator) -> None:
        self.store = store
        self.coordinator = coordinator
        self.gamer = Recorder("gamer_aaa", "ann", "gamer")
        self.peer = Recorder("peer_bbb", "rig", "peer")
        coordinator.gamer_joined(self.gamer)
        coordinator.peer_joined(self.peer, slots=4, kinds=[KIND])
        self.rng = random.Random(7)

    def submit(self, gamer: Recorder, task_id: str, raw: Any | None = None) -> Any:
        raw = raw if raw is not None else get_kind(KIND).example(self.rng, "small")
        self.coordinator.submit(gamer, p.Submit(task_id, KIND, raw, deadline_ms=60_000))
        return raw

    async def answer_next_assign(self) -> None:
        assign = (await async_wait_until(lambda: self.peer.of(p.Assign), 10, "an Assign"))[0]
        self.peer.sent.remove(assign)
        kind = get_kind(KIND)
        output = msgspec.to_builtins(kind.compute(kind.parse_input(msgspec.msgpack.decode(assign.input))))
        self.coordinator.peer_result(self.peer, p.PeerResult(assign.attempt_id, output, 1.0))

    def hold_writer(self) -> threading.Event:
        """Block the store's writer thread until the returned gate is set: later writes wait behind it."""
        gate = threading.Event()
        self.store.write(lambda conn: gate.wait(10))
        return gate

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with sqlite3.connect(self.store.path) as conn:  # only what has committed
            return conn.execute(sql, params).fetchall()


@pytest.fixture
async def net(tmp_path) -> AsyncIterator[Net]:
    store = Store(tmp_path / "delivery.db")
    store.open()
    # No replicas or audits: one peer's verified result is accepted, which is what is under test here.
    coordinator = Coordinator(store, policy=ValidationPolicy(quorum=False, audit_start=0.0, audit_floor=0.0))
    try:
        yield Net(store, coordinator)
    finally:
        store.close()


async def test_a_verified_result_goes_to_its_gamer_before_the_peer_result_call_returns(net):
    """No loop turn between a peer's result and its delivery: each turn costs the round trip."""
    net.submit(net.gamer, "t1")
    await async_wait_until(lambda: net.gamer.of(p.Ack), 10, "the Ack")
    await net.answer_next_assign()  # ends with the peer_result call: no loop turn after it
    (result,) = net.gamer.of(p.Result)
    assert result.task_id == "t1" and result.source == "peer" and result.cost_micro_usd > 0
    await async_wait_until(lambda: net.coordinator.counters.completed == 1, 10, "the completion to commit")


async def test_the_result_goes_out_while_its_completion_commits_and_is_billed_by_that_commit(net):
    raw = net.submit(net.gamer, "t1")
    await async_wait_until(lambda: net.gamer.of(p.Ack), 10, "the Ack")
    gate = net.hold_writer()
    await net.answer_next_assign()
    result = (await async_wait_until(lambda: net.gamer.of(p.Result), 10, "the Result"))[0]
    assert result.source == "peer" and result.cost_micro_usd > 0
    # Delivered, not yet recorded: no charge, no cache row, the task still open in the database.
    assert net.rows("SELECT COUNT(*) FROM ledger WHERE task_id IS NOT NULL") == [(0,)]
    assert net.rows("SELECT state FROM tasks") != [("completed",)]
    # No longer in flight for the gamer's limit; its price stays held until the commit charges it.
    wallet = net.coordinator.admission.wallets["gamer_aaa"]
    assert wallet.in_flight == 0 and wallet.reserved == result.cost_micro_usd
    # A gamer who has just seen the result and asks again is answered from it, with no peer work.
    other = Recorder("gamer_ccc", "cy", "gamer")
    net.coordinator.gamer_joined(other)
    net.submit(other, "again", raw)
    gate.set()
    again = (await async_wait_until(lambda: other.of(p.Result), 10, "the second gamer's Result"))[0]
    assert again.source == "cache" and bytes(again.output) == bytes(result.output)
    assert net.peer.of(p.Assign) == []
    await async_wait_until(lambda: net.coordinator.counters.completed == 2, 10, "both completions to commit")
    charges = net.rows("SELECT account, amount_micro_usd FROM ledger WHERE task_id IS NOT NULL")
    assert sum(amount for _, amount in charges) == 0
    assert -sum(amount for account, amount in charges if account == "gamer:gamer_aaa") == result.cost_micro_usd
    assert net.rows("SELECT state FROM tasks") == [("completed",), ("completed",)]
    assert len(net.gamer.of(p.Result)) == 1  # the commit did not send it a second time


async def test_a_result_never_overtakes_the_ack_of_its_task(net):
    gate = net.hold_writer()
    net.submit(net.gamer, "t1")  # a peer may start before the row is durable
    await net.answer_next_assign()
    await asyncio.sleep(0.05)  # let a wrongly early Result go out, if the coordinator would send one
    assert net.gamer.sent == []
    gate.set()
    await async_wait_until(lambda: net.gamer.of(p.Result), 10, "the Result")
    assert [type(m) for m in net.gamer.sent] == [p.Ack, p.Result]


async def test_a_result_waiting_for_its_tasks_row_does_not_wait_for_the_stores_pacing(net):
    # A busy commit: the store now paces its commits (see store.COMMIT_PACING_S).
    await asyncio.gather(*(net.store.set_meta(f"k{n}", "v") for n in range(BUSY_COMMIT_WRITES)))
    net.submit(net.gamer, "t1")
    await net.answer_next_assign()  # in before the task's row has committed
    assert net.gamer.sent == []
    for _ in range(10):  # a few loop turns, far less than the pacing
        await asyncio.sleep(0)
    assert [type(m) for m in net.gamer.sent] == [p.Ack, p.Result]


async def test_a_gamer_that_reconnects_while_the_completion_commits_gets_the_result_again(net):
    net.submit(net.gamer, "t1")
    await async_wait_until(lambda: net.gamer.of(p.Ack), 10, "the Ack")
    gate = net.hold_writer()
    await net.answer_next_assign()
    first = (await async_wait_until(lambda: net.gamer.of(p.Result), 10, "the Result"))[0]
    net.coordinator.gamer_left(net.gamer)  # the result may have died with this connection
    back = Recorder("gamer_aaa", "ann", "gamer")
    net.coordinator.gamer_joined(back)
    net.coordinator.fetch(back, p.Fetch("t1"))
    assert [type(m) for m in back.sent] == [p.Result] and back.sent[0] == first
    later = Recorder("gamer_aaa", "ann", "gamer")  # and once more, with nothing fetched this time
    net.coordinator.gamer_left(back)
    net.coordinator.gamer_joined(later)
    gate.set()
    await async_wait_until(lambda: later.of(p.Result), 10, "the Result on the newest connection")
    assert later.of(p.Result)[0] == first and len(back.of(p.Result)) == 1


async def test_a_delivered_result_that_cannot_be_recorded_stays_unbilled_and_unfinished(net, monkeypatch):
    net.submit(net.gamer, "t1")
    await async_wait_until(lambda: net.gamer.of(p.Ack), 10, "the Ack")

    def refuse(**_: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(StoreError("database write failed: disk I/O error"))
        return fut

    monkeypatch.setattr(net.store, "complete_task", refuse)
    await net.answer_next_assign()
    await async_wait_until(lambda: not net.coordinator.tasks, 10, "the task to be let go")
    # The gamer has its result and no error after it; nothing was charged; the next start computes the
    # task again (and bills it then), exactly as after a crash before the commit.
    assert [type(m) for m in net.gamer.sent] == [p.Ack, p.Result]
    assert net.rows("SELECT COUNT(*) FROM ledger WHERE task_id IS NOT NULL") == [(0,)]
    assert [row.client_task_id for row in net.store.unfinished_tasks()] == ["t1"]
    assert net.coordinator.counters.completed == 0
