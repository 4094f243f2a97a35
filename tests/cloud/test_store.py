"""The store's single writer: grouped statements, failures isolated per write, rows written behind."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time

import pytest

from p2c2r.cloud import ledger
from p2c2r.cloud.ledger import Tariff
from p2c2r.cloud.store import BUSY_COMMIT_WRITES, Store, TaskRow
from p2c2r.errors import StoreError
from tests.procs import async_wait_until


def row(n: int, client_task_id: str | None = None) -> TaskRow:
    return TaskRow(f"t{n}", "gamer_1", client_task_id or f"c{n}", "ai_pathfinding", b"\x80", f"key{n}", 15, 1000,
                   time.time(), "queued")


@pytest.fixture
async def store(tmp_path):
    store = Store(tmp_path / "store.db")
    store.open()
    try:
        yield store
    finally:
        store.close()


def read(store: Store, sql: str) -> list[tuple]:
    with sqlite3.connect(store.path) as conn:  # a separate connection sees only what committed
        return conn.execute(sql).fetchall()


async def test_a_run_of_inserts_commits_together_and_a_bad_row_fails_alone(store):
    # t2 reuses t0's (gamer, client task id): the unique key refuses it, and only it.
    writes = [store.add_task(row(0)), store.add_task(row(1)), store.add_task(row(2, client_task_id="c0")),
              store.add_task(row(3))]
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert [isinstance(r, StoreError) for r in results] == [False, False, True, False]
    assert "UNIQUE" in str(results[2])
    assert [r[0] for r in read(store, "SELECT id FROM tasks ORDER BY id")] == ["t0", "t1", "t3"]


async def test_rows_written_behind_commit_soon_in_order_with_nothing_else_written(store):
    store.record_attempt("a1", "t1", "peer_1", time.time())
    store.finish_attempt("a1", "valid")  # in the same commit as its insert: the insert runs first
    store.save_trust("peer_1", "physics", 1, 1, 0)
    store.save_trust("peer_1", "physics", 2, 2, 0)  # the later value wins
    await store.write(lambda conn: None)  # a commit that follows them: they are in it or an earlier one
    assert read(store, "SELECT id, outcome FROM attempts") == [("a1", "valid")]
    assert read(store, "SELECT consecutive_valid, total_valid FROM trust") == [(2, 2)]


async def test_rows_written_behind_are_flushed_on_close(tmp_path):
    store = Store(tmp_path / "close.db")
    store.open()
    store.record_attempt("a9", "t9", "peer_1", time.time())
    store.close()
    assert read(store, "SELECT id FROM attempts") == [("a9",)]


async def test_a_failing_job_is_undone_alone_and_the_same_commit_keeps_the_rest(store):
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', 'x')")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    bad = store.write(half_then_fail)
    good = store.set_meta("kept", "yes")
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(results[0], StoreError) and not isinstance(results[1], Exception)
    assert read(store, "SELECT key FROM meta WHERE key IN ('half', 'kept')") == [("kept",)]


async def test_writes_after_the_writer_stopped_are_refused(tmp_path):
    store = Store(tmp_path / "stopped.db")
    store.open()
    store.close()
    with pytest.raises(StoreError):
        store.add_task(row(1))
    with pytest.raises(StoreError):
        store.record_attempt("a1", "t1", "peer_1", time.time())


async def test_a_loop_turns_bundles_commit_together_on_the_loop_while_the_thread_is_idle(store):
    before = store.commits
    writes = [store.add_task(row(n)) for n in range(5)]
    assert not any(w.done() for w in writes)  # at the end of this loop turn, not inside the call
    await asyncio.gather(*writes)
    assert store.commits == before + 1 and store._writer._queued == 0  # one commit, no thread hand-off
    assert read(store, "SELECT COUNT(*) FROM tasks") == [(5,)]


async def test_writes_keep_their_order_across_the_loop_and_the_thread(store):
    gate = threading.Event()
    seen: list[int] = []
    first = store.add_task(row(0))  # on the loop, at the end of this turn
    counted = store.write(lambda conn: seen.append(conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]))
    await asyncio.gather(first, counted)
    assert seen == [1]  # the job ran after the bundle queued before it had committed
    held = store.write(lambda conn: gate.wait(10))  # the thread is busy from here on
    behind = store.add_task(row(1))  # so this waits behind the job, on the thread
    await asyncio.sleep(0.05)
    assert not behind.done()
    gate.set()
    await asyncio.gather(held, behind)
    assert read(store, "SELECT id FROM tasks ORDER BY id") == [("t0",), ("t1",)]


async def test_a_random_mix_of_writes_commits_in_the_order_it_was_queued(store):
    # Bundles (on the loop while the thread is idle) and jobs (always on the thread, some slow), queued over
    # many loop turns: each write records its number, and the table's row order is the order they committed.
    rng = random.Random(5)
    writes = []
    for number in range(400):
        if rng.random() < 0.2:
            pause = rng.choice((0.0, 0.0, 0.002))
            writes.append(store.write(lambda conn, number=number, pause=pause: (
                time.sleep(pause), conn.execute("INSERT INTO meta (key, value) VALUES (?, 'job')", (f"{number:04d}",)))))
        else:
            writes.append(store.set_meta(f"{number:04d}", "bundle"))
        if rng.random() < 0.3:
            await asyncio.sleep(0)  # a new loop turn
    await asyncio.gather(*writes)
    keys = [key for (key,) in read(store, "SELECT key FROM meta WHERE key GLOB '[0-9][0-9][0-9][0-9]' ORDER BY rowid")]
    assert keys == [f"{number:04d}" for number in range(400)]
    assert 0 < store._writer._queued < 400  # both paths were taken: some writes went to the thread, some not


async def test_with_an_fsync_per_commit_every_write_goes_to_the_thread(tmp_path):
    store = Store(tmp_path / "full.db", synchronous="FULL")
    store.open()
    try:
        await asyncio.gather(*(store.add_task(row(n)) for n in range(3)))
        assert store._writer._queued == 3  # all handed to the thread: the loop never waits on the disk
    finally:
        store.close()
    assert read(store, "SELECT COUNT(*) FROM tasks") == [(3,)]


async def test_writes_still_waiting_for_the_end_of_the_loop_turn_commit_on_close(tmp_path):
    store = Store(tmp_path / "closing.db")
    store.open()
    pending = store.add_task(row(0))
    store.close()
    await pending
    assert read(store, "SELECT id FROM tasks") == [("t0",)]


async def test_completions_of_a_batch_commit_together_and_a_finished_task_fails_alone(store):
    await asyncio.gather(*(store.add_task(row(n)) for n in range(4)))
    posting = ledger.bill_coordinator_task(Tariff(), task_id="t0", gamer_id="gamer_1", source="cloud",
                                           price_micro_usd=15)

    def complete(n: int):
        return store.complete_task(task_id=f"t{n}", source="cloud", latency_ms=1.0, cost_micro_usd=15,
                                   cache_key=f"key{n}", kind="ai_pathfinding", version="1", output=b"\xc0",
                                   cache_ttl_s=60.0, posting=posting if n == 0 else None)

    await complete(2)
    results = await asyncio.gather(complete(0), complete(1), complete(2), complete(3), return_exceptions=True)
    assert [isinstance(r, StoreError) for r in results] == [False, False, True, False]
    assert "t2 is already finished" in str(results[2])
    assert read(store, "SELECT id FROM tasks WHERE state = 'completed' ORDER BY id") == [("t0",), ("t1",), ("t2",), ("t3",)]
    assert read(store, "SELECT COUNT(*) FROM results") == [(4,)]
    assert read(store, "SELECT SUM(amount_micro_usd), COUNT(*) FROM ledger") == [(0, len(posting.entries))]


def _complete(store: Store, n: int, *, deferrable: bool) -> asyncio.Future:
    return store.complete_task(task_id=f"t{n}", source="cloud", latency_ms=1.0, cost_micro_usd=15,
                               cache_key=f"key{n}", kind="ai_pathfinding", version="1", output=b"\xc0",
                               cache_ttl_s=60.0, posting=None, deferrable=deferrable)


async def test_a_deferrable_completion_waits_for_its_timer_when_nothing_else_commits(store):
    await store.add_task(row(0))
    before = store.commits
    done = _complete(store, 0, deferrable=True)
    for _ in range(5):  # an ordinary write would have committed within two turns
        await asyncio.sleep(0)
    assert not done.done() and store.commits == before
    await asyncio.wait_for(done, 5)
    assert store.commits == before + 1
    assert read(store, "SELECT state FROM tasks WHERE id = 't0'") == [("completed",)]


async def test_a_deferrable_completion_commits_with_the_next_write_someone_waits_on(store):
    await store.add_task(row(0))
    before = store.commits
    completed = _complete(store, 0, deferrable=True)
    await asyncio.sleep(0)  # a later loop turn: the next task arrives
    inserted = store.add_task(row(1))
    for _ in range(5):
        await asyncio.sleep(0)
    assert inserted.done() and completed.done()  # without waiting for the timer
    assert store.commits == before + 1  # one commit for both
    assert read(store, "SELECT id, state FROM tasks ORDER BY id") == [("t0", "completed"), ("t1", "queued")]
    await asyncio.sleep(0.01)  # past the cancelled timer: nothing more commits
    assert store.commits == before + 1


async def _busy_commit(store: Store, first: int) -> None:
    """One commit of BUSY_COMMIT_WRITES task rows: the store now paces its commits."""
    await asyncio.gather(*(store.add_task(row(n)) for n in range(first, first + BUSY_COMMIT_WRITES)))


async def test_after_a_busy_commit_the_next_one_waits_and_gathers_what_comes_meanwhile(store):
    await _busy_commit(store, 0)
    before = store.commits
    first = store.add_task(row(100))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not first.done()  # paced: an idle store would have committed it within two turns
    second = store.add_task(row(101))
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert store.commits == before + 1  # both in one commit
    # That commit was small: the one after it is not paced.
    third = store.add_task(row(102))
    for _ in range(5):
        await asyncio.sleep(0)
    assert third.done()


async def test_commit_soon_overrides_the_pacing(store):
    await _busy_commit(store, 0)
    waiting = store.add_task(row(100))
    await asyncio.sleep(0)
    assert not waiting.done()
    store.commit_soon()  # e.g. the task's result is in and waits for its row
    for _ in range(5):
        await asyncio.sleep(0)
    assert waiting.done()


async def test_a_small_commit_does_not_pace_the_next(store):
    await asyncio.gather(*(store.add_task(row(n)) for n in range(BUSY_COMMIT_WRITES - 1)))
    later = store.add_task(row(100))
    for _ in range(5):
        await asyncio.sleep(0)
    assert later.done()


async def test_a_deferrable_completion_still_waiting_commits_on_close(tmp_path):
    store = Store(tmp_path / "deferred.db")
    store.open()
    await store.add_task(row(0))
    pending = _complete(store, 0, deferrable=True)
    store.close()
    await pending
    assert read(store, "SELECT state FROM tasks") == [("completed",)]


async def test_commits_never_checkpoint_and_the_checkpointer_moves_the_wal_into_the_database(tmp_path):
    big = b"\x00" * 64 * 1024

    async def fill(store: Store) -> None:
        for n in range(100):  # about 6.4 MB: past SQLite's default auto-checkpoint of 1,000 pages
            await store.add_task(TaskRow(f"t{n}", "g", f"c{n}", "physics", big, f"k{n}", 2, 100, 0.0, "queued"))

    idle = Store(tmp_path / "idle.db", checkpoint_interval_s=3600)  # no checkpoint while it runs
    idle.open()
    try:
        await fill(idle)
        assert (tmp_path / "idle.db-wal").stat().st_size > 6 * 1024 * 1024
        assert (tmp_path / "idle.db").stat().st_size < 1024 * 1024
    finally:
        idle.close()
    assert len(read(idle, "SELECT id FROM tasks")) == 100
    busy = Store(tmp_path / "busy.db", checkpoint_interval_s=0.01)
    busy.open()
    try:
        await fill(busy)
        await async_wait_until(lambda: (tmp_path / "busy.db").stat().st_size > 6 * 1024 * 1024, 10,
                               "the checkpointer to copy the WAL into the database")
        assert busy.checkpoints >= 1
    finally:
        busy.close()


async def test_balances_follow_every_commit_including_another_process_writes(store):
    def full_sums() -> dict[str, int]:
        return dict(read(store, "SELECT account, SUM(amount_micro_usd) FROM ledger GROUP BY account"))

    assert store.balances() == {} and store.balance("fees") == 0
    for n in range(5):
        await store.post(ledger.bill_coordinator_task(Tariff(), task_id=f"t{n}", gamer_id="gamer_1", source="cloud",
                                                      price_micro_usd=15))
        assert store.balances() == full_sums()  # read between commits: only the new rows are added
    # Another writer on the same file (p2c2r admin credit does this while the coordinator runs).
    with sqlite3.connect(store.path) as other:
        other.execute("INSERT INTO ledger (posting_key, task_id, account, amount_micro_usd, memo, created_at) "
                      "VALUES ('credit:x', NULL, 'gamer:gamer_1', 1000, 'credit', 0), "
                      "('credit:x', NULL, 'funding', -1000, 'credit', 0)")
    assert store.balances() == full_sums()
    assert store.balance("gamer:gamer_1") == full_sums()["gamer:gamer_1"]
    assert store.balances("gamer:") == {"gamer:gamer_1": full_sums()["gamer:gamer_1"]}
    assert sum(store.balances().values()) == store.ledger_total() == 0


async def test_expired_cache_rows_are_purged_in_chunks_with_other_writes_committing_between(store, monkeypatch):
    from p2c2r.cloud import store as store_module

    monkeypatch.setattr(store_module, "PURGE_CHUNK_ROWS", 7)
    now = 1_000.0

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO results (cache_key, kind, version, output, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(f"old{i}", "physics", "1", b"x", 0.0, now - i) for i in range(50)]  # 50 expired (one exactly now)
            + [(f"live{i}", "physics", "1", b"x", 0.0, now + 1 + i) for i in range(5)])

    await store.write(fill)
    assert store.cached_output("old3", now) is None and store.cached_output("live0", now) == b"x"
    commits_before = store.commits
    purge = asyncio.ensure_future(store.purge_expired(now))
    await asyncio.sleep(0)  # the first chunk is queued
    between = store.add_task(row(1))  # a task's row, waiting for its Ack
    await between
    assert not purge.done()  # it committed between two chunks, not after the whole purge
    assert await purge == 50
    assert store.commits - commits_before >= 50 // 7 + 1
    assert read(store, "SELECT cache_key FROM results ORDER BY cache_key") == [(f"live{i}",) for i in range(5)]
