"""SQLite persistence: tasks, attempts, cached results, peers, gamers, trust and the ledger.

One write connection, used by a writer thread and by the event loop in turn. Callers hand it small writes;
every write that is waiting runs in one transaction that commits once: group commit, so that storage does
not cap throughput. Bundles commit on the event loop itself, right after the sends of the loop turn that
queued them, whenever the writer thread is idle (see ``_Writer.submit``; a deferrable one, such as the
completion of a task already delivered, may wait a couple of milliseconds to share the next commit; under
load, commits are paced so that each holds more); jobs, and everything queued behind them, go to the
thread, in order; with ``synchronous=FULL`` or ``EXTRA`` (an fsync per commit) everything
does. Each
write succeeds or fails on its own (a SAVEPOINT around anything of more than one statement), and ``await``
on it returns only after its commit, which is how the coordinator acknowledges a task only once it is
durable. Writes come in two forms: a bundle of statements given as data (one statement, or several that
commit together such as completing a task; a run of bundles of the same shape executes column by column,
one ``executemany`` per statement), and a job, any function of the connection. Bookkeeping rows nobody
waits on (the attempt log, trust counters) are written behind: they ride along with the next commit.

WAL mode with ``synchronous=NORMAL`` survives a crash of the coordinator process (SIGKILL included);
``synchronous=FULL`` also survives power loss, at the cost of an fsync per commit. Checkpoints (copying the
WAL into the database, with its fsync) run in a thread of their own every ``CHECKPOINT_INTERVAL_S`` rather
than inside the commit that crosses SQLite's threshold: that commit's task used to pay milliseconds.

Reads are point lookups on a second connection in the caller's thread (WAL lets readers run beside the
writer). sqlite3 errors are translated into ``StoreError`` at this boundary.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2c2r.cloud.ledger import Posting
from p2c2r.errors import StoreError

log = logging.getLogger(__name__)

# Most jobs a single transaction takes; bounds the latency one commit adds to the first job in it.
MAX_JOBS_PER_COMMIT = 2048
# Longest written-behind rows wait for a commit when nothing else is written.
WRITE_BEHIND_DELAY_S = 0.05
# Longest a deferrable write (see Store.complete_task) waits for a commit that someone is waiting on.
DEFERRED_COMMIT_DELAY_S = 0.002
# A commit of at least this many writes on the loop means a busy coordinator: the next such commit then
# waits until COMMIT_PACING_S after it, so that under load commits are fewer and larger (a dozen tasks'
# writes per commit cost 86 us of SQLite per task, fifty 52, two hundred 39: measured in process).
BUSY_COMMIT_WRITES = 8
COMMIT_PACING_S = 0.02
# How often the WAL is copied into the database (see _Checkpointer).
CHECKPOINT_INTERVAL_S = 2.0
# Expired cache rows deleted per commit (a few milliseconds of the writer's time; see Store.purge_expired).
PURGE_CHUNK_ROWS = 250

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    gamer_id TEXT NOT NULL,
    client_task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    input BLOB NOT NULL,
    cache_key TEXT NOT NULL,
    price_micro_usd INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    state TEXT NOT NULL,
    source TEXT,
    latency_ms REAL,
    cost_micro_usd INTEGER,
    error_code TEXT,
    error_message TEXT,
    finished_at REAL,
    UNIQUE (gamer_id, client_task_id)
);
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks(state) WHERE state NOT IN ('completed', 'failed');
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task_id);
CREATE TABLE IF NOT EXISTS results (
    cache_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    output BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS results_expiry ON results(expires_at);
CREATE TABLE IF NOT EXISTS peers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key BLOB,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    tasks_done INTEGER NOT NULL DEFAULT 0,
    tasks_invalid INTEGER NOT NULL DEFAULT 0,
    banned INTEGER NOT NULL DEFAULT 0,
    ban_reason TEXT
);
CREATE TABLE IF NOT EXISTS gamers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key BLOB,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trust (
    peer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    consecutive_valid INTEGER NOT NULL DEFAULT 0,
    total_valid INTEGER NOT NULL DEFAULT 0,
    total_invalid INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (peer_id, kind)
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    posting_key TEXT NOT NULL,
    task_id TEXT,
    account TEXT NOT NULL,
    amount_micro_usd INTEGER NOT NULL,
    memo TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- A posting is applied at most once: a task is never billed twice.
CREATE UNIQUE INDEX IF NOT EXISTS ledger_posting ON ledger(posting_key, account);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger(account);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Closed mode: who may join. An entry is a client id (peer_..., gamer_...) or a public key in hex.
CREATE TABLE IF NOT EXISTS allowlist (entry TEXT PRIMARY KEY, label TEXT NOT NULL DEFAULT '', added_at REAL NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    gamer_id: str
    client_task_id: str
    kind: str
    input: bytes
    cache_key: str
    price_micro_usd: int
    deadline_ms: int
    submitted_at: float
    state: str
    source: str | None = None
    latency_ms: float | None = None
    cost_micro_usd: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None


_TASK_COLUMNS = ", ".join(TaskRow.__slots__)  # type: ignore[attr-defined]
_INSERT_TASK = f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({', '.join('?' * len(TaskRow.__slots__))})"  # type: ignore[attr-defined]
_INSERT_ATTEMPT = "INSERT OR IGNORE INTO attempts (id, task_id, peer_id, started_at) VALUES (?, ?, ?, ?)"
_FINISH_ATTEMPT = "UPDATE attempts SET finished_at = ?, outcome = ?, detail = ? WHERE id = ?"
_SAVE_TRUST = (
    "INSERT INTO trust (peer_id, kind, consecutive_valid, total_valid, total_invalid) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(peer_id, kind) DO UPDATE SET consecutive_valid = excluded.consecutive_valid, "
    "total_valid = excluded.total_valid, total_invalid = excluded.total_invalid"
)
_CACHE_RESULT = (
    "INSERT INTO results (cache_key, kind, version, output, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(cache_key) DO UPDATE SET output = excluded.output, created_at = excluded.created_at, "
    "expires_at = excluded.expires_at"
)
_TASK_COMPLETED = (
    "UPDATE tasks SET state = 'completed', source = ?, latency_ms = ?, cost_micro_usd = ?, finished_at = ? "
    "WHERE id = ? AND state NOT IN ('completed', 'failed')"
)
_INSERT_LEDGER = (
    "INSERT INTO ledger (posting_key, task_id, account, amount_micro_usd, memo, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_PEER_DID_ONE = "UPDATE peers SET tasks_done = tasks_done + 1 WHERE id = ?"
_PURGE_CHUNK = (
    "DELETE FROM results WHERE rowid IN (SELECT rowid FROM results WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
)
# Written-behind statements run in this order within a commit: an attempt is inserted before it is finished.
_BEHIND_ORDER = {_INSERT_ATTEMPT: 0, _FINISH_ATTEMPT: 1, _SAVE_TRUST: 2}

WriteJob = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Job:
    """Several statements that commit together or not at all (run under a SAVEPOINT)."""

    run: WriteJob
    fut: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _Bundle:
    """Statements that commit together or not at all, given as data (unlike a ``_Job``) so that a run of
    bundles of the same shape executes column by column: each statement once, through ``executemany``, for
    all of them (a run of single statements is one ``executemany``). When ``exactly_one`` names one of the
    statements, each of its rows must change exactly one row, or the run is retried one bundle at a time."""

    statements: tuple[tuple[str, list[tuple[Any, ...]]], ...]
    exactly_one: str | None
    conflict: str  # the error when ``exactly_one`` changed no row
    fut: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop

    @property
    def shape(self) -> tuple[str, ...]:
        return tuple(sql for sql, _ in self.statements)


class _Conflict(Exception):
    pass


_WAKE = object()  # written-behind rows are waiting: run a batch even if no other job comes


class _Writer(threading.Thread):
    """The write connection, and the thread that commits what the event loop should not wait on."""

    def __init__(self, path: str, synchronous: str) -> None:
        super().__init__(name="p2c2r-store-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self.jobs: queue.SimpleQueue[_Job | _Bundle | object | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.open_error: BaseException | None = None
        self.commits = 0
        self.jobs_done = 0
        # Rows written behind (see Store._write_behind): appended by the event loop, taken by each batch.
        self._behind_lock = threading.Lock()
        self._behind: list[tuple[int, str, tuple[Any, ...]]] = []
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()  # the thread's batch or the loop's, never both
        self._inline_allowed = synchronous in ("OFF", "NORMAL")
        # Items handed to the thread (counted by the event loop) and done by it (counted by the thread):
        # equal when the thread is idle. A stale read only sends work to the thread.
        self._queued = 0
        self._done = 0
        # This loop turn's writes, to commit on the loop at the end of the turn; None when there are none.
        self._inline: list[Any] | None = None
        # When ``_inline`` commits (loop time) and the handle that will do it; None when nothing is due.
        self._commit_due: float | None = None
        self._commit_handle: asyncio.Handle | None = None
        # After a busy commit, writes that someone waits on commit no sooner than this (time.monotonic()).
        self._paced_until = 0.0

    def submit(self, item: Any, loop: asyncio.AbstractEventLoop, *, deferrable: bool = False) -> None:
        """Queue a write (from the event loop's thread), in order after every write queued before it.

        A bundle commits on the loop, with the rest of this loop turn's bundles, when the thread is idle:
        the thread's hand-off each way, and its Python contending with the loop for the GIL while the loop
        sends the result of the task being committed, cost more than the commit itself (with the ordering
        below, p50 round trip of a trivial task 1.2 -> 0.95 ms, measured). A job (any function, maybe slow:
        a purge) goes to the thread, after this turn's bundles commit, and so does everything queued while
        the thread has work.

        A ``deferrable`` bundle (nobody needs it soon) that finds nothing to join waits up to
        ``DEFERRED_COMMIT_DELAY_S``, and commits with the next write that someone waits on if that comes
        first. A finished task's commit, run at once, held up the next task that arrived just behind it (a
        serial client's next submit waited ~0.14 ms on a trivial task's round trip); deferred, it commits
        with that task's own row, one commit for both, while a peer computes.

        Under load (the last commit held ``BUSY_COMMIT_WRITES`` or more) the next commit waits until
        ``COMMIT_PACING_S`` after it, unless ``commit_soon`` says that someone cannot wait.
        """
        inline_kind = item is _WAKE or isinstance(item, _Bundle)
        if self._inline is not None:
            if inline_kind:
                self._inline.append(item)
                if not deferrable:
                    self._commit_by(loop, self._paced_time(loop))
                return
            self.commit_inline()  # what was queued before this job commits before it
        if inline_kind and self._inline_allowed and self._conn is not None and self._queued == self._done:
            self._inline = [item]
            self._commit_by(loop, self._paced_time(loop, DEFERRED_COMMIT_DELAY_S if deferrable else 0.0))
            return
        self._queued += 1
        self.jobs.put(item)

    def commit_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's pending writes commit at the end of this turn, whatever the pacing: someone waits."""
        if self._inline is not None:
            self._commit_by(loop, loop.time())

    def _paced_time(self, loop: asyncio.AbstractEventLoop, delay_s: float = 0.0) -> float:
        return loop.time() + max(delay_s, self._paced_until - time.monotonic())

    def _commit_by(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Make sure that the pending writes commit by ``when`` (loop time; now or earlier: this turn)."""
        if self._commit_due is not None and self._commit_due <= when:
            return
        if self._commit_handle is not None:
            self._commit_handle.cancel()
        self._commit_due = when
        delay = when - loop.time()
        self._commit_handle = (loop.call_soon(self._commit_after_sends, loop) if delay <= 0
                               else loop.call_later(delay, self.commit_inline))

    def _commit_after_sends(self, loop: asyncio.AbstractEventLoop) -> None:
        # One turn later still: the connection writers woken in the turn that queued these writes (sending a
        # task's Assign or its Result, which wait on no commit) run first, and the commit overlaps their
        # flight instead of delaying it (about 80 us of a trivial task's round trip).
        self._commit_handle = loop.call_soon(self.commit_inline)

    def commit_inline(self) -> None:
        """Commit this loop turn's writes now, on the caller's (the event loop's) thread."""
        batch, self._inline = self._inline, None
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        self._commit_due = None
        if not batch:
            return
        if self._conn is None:  # the writer stopped under them
            _settle([(item.fut, False, "the database writer is not running") for item in batch if item is not _WAKE])
            return
        with self._conn_lock:
            self._run_batch(self._conn, batch, on_loop=True)
        self._paced_until = time.monotonic() + COMMIT_PACING_S if len(batch) >= BUSY_COMMIT_WRITES else 0.0

    def write_behind(self, order: int, sql: str, params: tuple[Any, ...]) -> bool:
        """Append a row; True when it is the first since the last commit took them (so the caller makes
        sure that a commit comes: see Store._write_behind)."""
        with self._behind_lock:
            self._behind.append((order, sql, params))
            first = len(self._behind) == 1
        return first

    def wake_if_behind(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._behind_lock:
            waiting = bool(self._behind)
        if waiting:
            self.submit(_WAKE, loop)

    def _take_behind(self) -> list[tuple[int, str, tuple[Any, ...]]]:
        with self._behind_lock:
            rows, self._behind = self._behind, []
        return rows

    def run(self) -> None:
        try:
            conn = _connect(self._path, self._synchronous)
            conn.executescript(SCHEMA)
        except BaseException as exc:  # reported to open()
            self.open_error = exc
            self.ready.set()
            return
        self._conn = conn
        self.ready.set()
        try:
            while True:
                first = self.jobs.get()
                if first is None:
                    with self._conn_lock:
                        self._run_batch(conn, [])  # what was written behind
                    return
                batch = [first]
                while len(batch) < MAX_JOBS_PER_COMMIT:
                    try:
                        item = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self.jobs.put(None)  # finish this batch, then stop
                        break
                    batch.append(item)
                with self._conn_lock:
                    self._run_batch(conn, batch)
                self._done += len(batch)
        finally:
            with self._conn_lock:
                self._conn = None
                conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any], *, on_loop: bool = False) -> None:
        outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, bool, Any]] = []
        items = [item for item in batch if item is not _WAKE]
        try:
            conn.execute("BEGIN IMMEDIATE")
            index = 0
            while index < len(items):
                item = items[index]
                if isinstance(item, _Job):
                    outcomes.append(_run_job(conn, item))
                    index += 1
                    continue
                end = index + 1
                while end < len(items) and isinstance(items[end], _Bundle) and items[end].shape == item.shape:
                    end += 1
                outcomes.extend(_run_bundles(conn, items[index:end]))
                index = end
            _run_behind(conn, self._take_behind())
            conn.execute("COMMIT")
            self.commits += 1
            self.jobs_done += len(items)
        except sqlite3.Error as exc:
            log.error("store commit failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            outcomes = [(item.fut, item.loop, False, exc) for item in items]
        if on_loop:
            _settle([(fut, ok, value) for fut, _, ok, value in outcomes])
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for fut, loop, ok, value in outcomes:
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass


def _run_job(conn: sqlite3.Connection, job: _Job) -> tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, bool, Any]:
    conn.execute("SAVEPOINT job")
    try:
        value = job.run(conn)
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return job.fut, job.loop, False, exc
    conn.execute("RELEASE job")
    return job.fut, job.loop, True, value


def _run_bundles(conn: sqlite3.Connection, run: list[_Bundle]) -> list[tuple[Any, ...]]:
    if len(run) > 1:
        conn.execute("SAVEPOINT run")
        try:
            for position, sql in enumerate(run[0].shape):
                rows = [row for bundle in run for row in bundle.statements[position][1]]
                changed = conn.executemany(sql, rows).rowcount
                if sql == run[0].exactly_one and changed != len(rows):
                    raise _Conflict
        except (sqlite3.Error, _Conflict):
            conn.execute("ROLLBACK TO run")  # find which bundle is at fault, one at a time below
            conn.execute("RELEASE run")
        else:
            conn.execute("RELEASE run")
            return [(bundle.fut, bundle.loop, True, None) for bundle in run]
    outcomes = []
    for bundle in run:
        # One statement of one row is atomic alone (SQLite undoes a failed statement itself).
        alone = len(bundle.statements) == 1 and len(bundle.statements[0][1]) == 1
        if not alone:
            conn.execute("SAVEPOINT job")
        try:
            for sql, rows in bundle.statements:
                changed = conn.executemany(sql, rows).rowcount
                if sql == bundle.exactly_one and changed != len(rows):
                    raise sqlite3.IntegrityError(bundle.conflict)
        except sqlite3.Error as exc:
            if not alone:
                conn.execute("ROLLBACK TO job")
            outcomes.append((bundle.fut, bundle.loop, False, exc))
        else:
            outcomes.append((bundle.fut, bundle.loop, True, None))
        if not alone:
            conn.execute("RELEASE job")
    return outcomes


def _run_behind(conn: sqlite3.Connection, rows: list[tuple[int, str, tuple[Any, ...]]]) -> None:
    """Rows nobody waits for, grouped by statement in a fixed order (an attempt's insert before its
    update), each statement's rows in the order they were written."""
    if not rows:
        return
    rows.sort(key=lambda row: row[0])  # stable: keeps the order within a statement
    start = 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and rows[end][0] == rows[start][0]:
            end += 1
        try:
            conn.executemany(rows[start][1], [row[2] for row in rows[start:end]])
        except sqlite3.Error as exc:  # bookkeeping only; never let it cost a task its commit
            log.error("store: %d written-behind rows lost: %s", end - start, exc)
        start = end


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(StoreError(f"database write failed: {value}"))
            fut.exception()  # a job nobody awaits must not warn "exception never retrieved"


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    # Checkpoints (copying the WAL into the database, with an fsync) run in _Checkpointer's thread, not in
    # whichever commit crosses the threshold: that commit, and the task waiting on it, paid milliseconds.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


class _Checkpointer(threading.Thread):
    """Moves the WAL into the database every ``interval_s`` on its own connection. PASSIVE checkpoints run
    beside the writer's commits (WAL mode lets them), so no commit waits on one."""

    def __init__(self, path: str, interval_s: float) -> None:
        super().__init__(name="p2c2r-store-checkpoint", daemon=True)
        self._path = path
        self._interval_s = interval_s
        self.stopping = threading.Event()
        self.checkpoints = 0

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            log.error("store: checkpoints stopped, cannot connect: %s", exc)
            return
        try:
            while not self.stopping.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or locked now: the next round catches up
                    log.info("store: checkpoint skipped: %s", exc)
        finally:
            conn.close()


class Store:
    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL",
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self._writer = _Writer(self.path, synchronous)
        self._checkpointer = _Checkpointer(self.path, checkpoint_interval_s)
        self._reader: sqlite3.Connection | None = None
        # Running balances of the ledger (see _ledger_totals) and the highest row id they include.
        self._ledger_by_account: dict[str, int] = {}
        self._ledger_seen_id = 0

    # Lifecycle --------------------------------------------------------------------------------------

    def open(self) -> None:
        # The writer thread and the event loop hand the GIL back and forth on every commit; Python's
        # default 5 ms switch interval would add up to that to each hand-off, so ask for a finer one.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0002))
        self._writer.start()
        self._writer.ready.wait()
        if self._writer.open_error is not None:
            raise StoreError(f"cannot open database {self.path}: {self._writer.open_error}") from self._writer.open_error
        try:
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._reader.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._ledger_totals()  # the one pass over the whole ledger, at start rather than on a first request
        self._checkpointer.start()

    def close(self) -> None:
        if self._checkpointer.is_alive():
            self._checkpointer.stopping.set()
            self._checkpointer.join(timeout=30)
        if self._writer.is_alive():
            self._writer.commit_inline()  # a loop turn's writes still waiting for the end of the turn
            self._writer.jobs.put(None)
            self._writer.join(timeout=30)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def commits(self) -> int:
        return self._writer.commits

    @property
    def checkpoints(self) -> int:
        return self._checkpointer.checkpoints

    # Writing ----------------------------------------------------------------------------------------

    def write(self, job: WriteJob) -> asyncio.Future[Any]:
        """Queue a job for the writer; the future resolves once its transaction has committed."""
        loop, fut = self._future()
        self._writer.submit(_Job(job, fut, loop), loop)
        return fut

    def _execute(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue one statement; the future resolves once it has committed."""
        loop, fut = self._future()
        self._writer.submit(_Bundle(((sql, [params]),), None, "", fut, loop), loop)
        return fut

    def _write_behind(self, statement: str, params: tuple[Any, ...]) -> None:
        """Write a bookkeeping row with the next commit, without a future: for the attempt log and trust
        counters, which nobody waits on and which a crash may cost the last few milliseconds of (the
        tasks, results and ledger rows are never written this way)."""
        if not self._writer.is_alive():
            raise StoreError("the database writer is not running")
        if self._writer.write_behind(_BEHIND_ORDER[statement], statement, params):
            # Not a wake-up of the writer per row: they ride with the next commit, which nearly always comes
            # within a few milliseconds (a task's completion follows its attempt's rows). Waking the writer
            # for them would cost the event loop a hand-off of the GIL on the latency-critical path.
            loop = asyncio.get_running_loop()
            loop.call_later(WRITE_BEHIND_DELAY_S, self._writer.wake_if_behind, loop)

    def _future(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]:
        if not self._writer.is_alive():
            raise StoreError("the database writer is not running")
        loop = asyncio.get_running_loop()
        return loop, loop.create_future()

    def add_task(self, row: TaskRow) -> asyncio.Future[Any]:
        return self._execute(_INSERT_TASK, tuple(getattr(row, c) for c in TaskRow.__slots__))  # type: ignore[attr-defined]

    def record_attempt(self, attempt_id: str, task_id: str, peer_id: str, started_at: float) -> None:
        self._write_behind(_INSERT_ATTEMPT, (attempt_id, task_id, peer_id, started_at))

    def finish_attempt(self, attempt_id: str, outcome: str, detail: str = "") -> None:
        self._write_behind(_FINISH_ATTEMPT, (time.time(), outcome, detail[:500], attempt_id))

    def set_task_state(self, task_id: str, state: str) -> asyncio.Future[Any]:
        return self._execute("UPDATE tasks SET state = ? WHERE id = ?", (state, task_id))

    def commit_soon(self) -> None:
        """What is waiting to commit on the loop commits at the end of this turn, even when commits are
        being paced under load: someone cannot wait for it (a task's result waits for the task's row)."""
        self._writer.commit_soon(asyncio.get_running_loop())

    def complete_task(
        self,
        *,
        task_id: str,
        source: str,
        latency_ms: float,
        cost_micro_usd: int,
        cache_key: str,
        kind: str,
        version: str,
        output: bytes,
        cache_ttl_s: float,
        posting: Posting | None,
        peer_id: str | None = None,
        deferrable: bool = False,
    ) -> asyncio.Future[Any]:
        """Result cached, task completed and billed: one bundle, so all of it commits or none.
        ``deferrable``: nobody waits on this commit (the result has been delivered), so it may wait for
        the next one (see ``_Writer.submit``)."""
        now = time.time()
        statements: list[tuple[str, list[tuple[Any, ...]]]] = [
            (_CACHE_RESULT, [(cache_key, kind, version, output, now, now + cache_ttl_s)]),
            (_TASK_COMPLETED, [(source, latency_ms, cost_micro_usd, now, task_id)]),
        ]
        if posting is not None:
            statements.append((_INSERT_LEDGER, _posting_rows(posting, now)))
        if peer_id is not None:
            statements.append((_PEER_DID_ONE, [(peer_id,)]))
        loop, fut = self._future()
        self._writer.submit(_Bundle(tuple(statements), _TASK_COMPLETED, f"task {task_id} is already finished",
                                    fut, loop), loop, deferrable=deferrable)
        return fut

    def fail_task(self, task_id: str, code: str, message: str) -> asyncio.Future[Any]:
        now = time.time()
        return self._execute(
            "UPDATE tasks SET state = 'failed', error_code = ?, error_message = ?, finished_at = ? "
            "WHERE id = ? AND state NOT IN ('completed', 'failed')",
            (code, message[:2000], now, task_id),
        )

    def post(self, posting: Posting) -> asyncio.Future[Any]:
        now = time.time()
        loop, fut = self._future()
        self._writer.submit(_Bundle(((_INSERT_LEDGER, _posting_rows(posting, now)),), None, "", fut, loop), loop)
        return fut

    def touch_cache_hit(self, cache_key: str) -> asyncio.Future[Any]:
        return self._execute("UPDATE results SET hits = hits + 1 WHERE cache_key = ?", (cache_key,))

    def upsert_peer(self, peer_id: str, name: str, public_key: bytes | None = None) -> asyncio.Future[Any]:
        return self._upsert_client("peers", peer_id, name, public_key)

    def upsert_gamer(self, gamer_id: str, name: str, public_key: bytes | None = None) -> asyncio.Future[Any]:
        return self._upsert_client("gamers", gamer_id, name, public_key)

    def _upsert_client(self, table: str, client_id: str, name: str, public_key: bytes | None) -> asyncio.Future[Any]:
        """Record a connection; the first key seen for an id stays pinned to it."""
        assert table in ("peers", "gamers")
        now = time.time()
        sql = (
            f"INSERT INTO {table} (id, name, public_key, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, last_seen = excluded.last_seen, "
            f"public_key = COALESCE({table}.public_key, excluded.public_key)"
        )
        return self._execute(sql, (client_id, name, public_key, now, now))

    def save_trust(self, peer_id: str, kind: str, consecutive: int, valid: int, invalid: int) -> None:
        self._write_behind(_SAVE_TRUST, (peer_id, kind, consecutive, valid, invalid))

    def ban_peer(self, peer_id: str, reason: str) -> asyncio.Future[Any]:
        return self._execute("UPDATE peers SET banned = 1, ban_reason = ? WHERE id = ?", (reason[:2000], peer_id))

    def note_invalid(self, peer_id: str) -> asyncio.Future[Any]:
        return self._execute("UPDATE peers SET tasks_invalid = tasks_invalid + 1 WHERE id = ?", (peer_id,))

    async def purge_expired(self, now: float) -> int:
        """Delete the cache rows expired by ``now``, ``PURGE_CHUNK_ROWS`` per commit; returns how many.

        In chunks because the writer runs one job at a time: one DELETE of a minute's expired rows at a few
        thousand tasks a second (100,000 rows: 0.6 s, measured) held up every commit behind it, and with them
        the Acks of new tasks. Between chunks, whatever was queued meanwhile commits."""
        purged = 0
        while True:
            deleted = await self.write(lambda conn: conn.execute(_PURGE_CHUNK, (now, PURGE_CHUNK_ROWS)).rowcount)
            purged += deleted
            if deleted < PURGE_CHUNK_ROWS:
                return purged

    # Reading ----------------------------------------------------------------------------------------

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise StoreError("the database is not open")
        try:
            return self._reader.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc

    def cached_output(self, cache_key: str, now: float) -> bytes | None:
        rows = self._read("SELECT output FROM results WHERE cache_key = ? AND expires_at > ?", (cache_key, now))
        return rows[0][0] if rows else None

    def task_by_client_id(self, gamer_id: str, client_task_id: str) -> TaskRow | None:
        rows = self._read(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE gamer_id = ? AND client_task_id = ?", (gamer_id, client_task_id)
        )
        return TaskRow(*rows[0]) if rows else None

    def task(self, task_id: str) -> TaskRow | None:
        rows = self._read(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return TaskRow(*rows[0]) if rows else None

    def unfinished_tasks(self) -> list[TaskRow]:
        rows = self._read(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state NOT IN ('completed', 'failed') ORDER BY submitted_at"
        )
        return [TaskRow(*r) for r in rows]

    def peer_record(self, peer_id: str) -> tuple[str, int, str | None] | None:
        rows = self._read("SELECT name, banned, ban_reason FROM peers WHERE id = ?", (peer_id,))
        return rows[0] if rows else None

    def banned_peers(self) -> list[tuple[str, str, str]]:
        return self._read("SELECT id, name, COALESCE(ban_reason, '') FROM peers WHERE banned = 1 ORDER BY id")

    def trust_rows(self, peer_id: str | None = None) -> list[tuple[str, str, int, int, int]]:
        if peer_id is None:
            return self._read("SELECT peer_id, kind, consecutive_valid, total_valid, total_invalid FROM trust")
        return self._read(
            "SELECT peer_id, kind, consecutive_valid, total_valid, total_invalid FROM trust WHERE peer_id = ?", (peer_id,)
        )

    def balance(self, account: str) -> int:
        return self._ledger_totals().get(account, 0)

    def balances(self, prefix: str = "") -> dict[str, int]:
        """Every account (starting with ``prefix``) that has ledger rows, with its balance."""
        return {a: v for a, v in self._ledger_totals().items() if a.startswith(prefix)}

    def _ledger_totals(self) -> dict[str, int]:
        """Balances by account, kept up to date from the rows committed since the last call.

        Summing the whole ledger on each call (the dashboard asks every second) grew with every task ever
        billed: at thousands of tasks a second, seconds of the event loop within the hour. Ledger rows are
        never updated or deleted and each commit's ids are above every id committed before it (one writer
        at a time), so the rows past the highest id seen are exactly what is new.
        """
        if self._reader is None:
            raise StoreError("the database is not open")
        try:
            self._reader.execute("BEGIN")  # one snapshot for the bound and the sums
            try:
                top = self._reader.execute("SELECT COALESCE(MAX(id), 0) FROM ledger").fetchone()[0]
                if top > self._ledger_seen_id:
                    for account, amount in self._reader.execute(
                        "SELECT account, SUM(amount_micro_usd) FROM ledger WHERE id > ? AND id <= ? GROUP BY account",
                        (self._ledger_seen_id, top),
                    ):
                        self._ledger_by_account[account] = self._ledger_by_account.get(account, 0) + int(amount)
                    self._ledger_seen_id = top
            finally:
                self._reader.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc
        return self._ledger_by_account

    def ledger_total(self) -> int:
        return int(self._read("SELECT COALESCE(SUM(amount_micro_usd), 0) FROM ledger")[0][0])

    def task_counts(self) -> dict[str, int]:
        return {state: n for state, n in self._read("SELECT state, COUNT(*) FROM tasks GROUP BY state")}

    def gamer_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM gamers")[0][0])

    def gamer_summaries(self, limit: int = 500) -> list[tuple[str, str, int, int]]:
        """(id, name, tasks submitted, micro-USD spent on tasks net of refunds; credits left out) of the most
        recently seen gamers: the admin's view on the dashboard."""
        return self._read(
            "SELECT g.id, g.name, (SELECT COUNT(*) FROM tasks t WHERE t.gamer_id = g.id), "
            "(SELECT COALESCE(-SUM(l.amount_micro_usd), 0) FROM ledger l "
            " WHERE l.account = 'gamer:' || g.id AND l.task_id IS NOT NULL) "
            "FROM gamers g ORDER BY g.last_seen DESC LIMIT ?", (limit,)
        )

    def cache_entries(self, now: float) -> int:
        return int(self._read("SELECT COUNT(*) FROM results WHERE expires_at > ?", (now,))[0][0])

    def meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> asyncio.Future[Any]:
        return self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def is_writable(self) -> bool:
        return self._writer.is_alive()


def _posting_rows(posting: Posting, now: float) -> list[tuple[Any, ...]]:
    return [(posting.key, posting.task_id, e.account, e.amount_micro_usd, e.memo, now) for e in posting.entries]
