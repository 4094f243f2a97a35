"""The coordinator's service layer: turns protocol messages into scheduler events and carries out decisions.

It owns the pieces below it (scheduler, store, worker pool for cloud fallback, tariff) and the live
sessions; the WebSocket server (``server.py``) only authenticates connections and feeds messages here.
Everything runs on one event loop, so state is touched by one thread only.

A task's path through this module:

    submit()   validate input -> cache lookup -> durable insert -> Ack -> scheduler.submit
    _apply()   Dispatch -> Assign to a peer | RunFallback -> _run_fallback | FailTask -> _fail
    peer_result()   check_output -> accepted: _complete: Result, store + bill in one commit -> Earned
                                 -> rejected: scheduler.attempt_failed -> re-route
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from p2c2r import protocol as p
from p2c2r.cloud import ledger
from p2c2r.cloud.admission import Admission, AdmissionLimits
from p2c2r.cloud.lifecycle import TaskState, transition
from p2c2r.cloud.scheduler import CancelAttempt, Decision, Dispatch, FailTask, RunFallback, Scheduler
from p2c2r.cloud.store import Store, TaskRow
from p2c2r.cloud.validation import TrustRecord, ValidationPolicy, check_output, outputs_agree
from p2c2r.console import Console, money
from p2c2r.errors import StoreError, TaskInputError, UnknownTaskKind
from p2c2r.network_config import CACHE_TTL_S, MAX_ATTEMPTS_PER_TASK, MAX_QUEUED_TASKS, terms_for
from p2c2r.tasks import TaskKind, feature_kind, get_kind, qualified_feature, registry
from p2c2r.tasks.base import warm_up_kind
from p2c2r.workers import WorkerPool

log = logging.getLogger(__name__)

# Recent events kept for the dashboard's feed.
EVENT_FEED_LENGTH = 200
# Earnings news is batched per peer over this long.
EARNINGS_FLUSH_S = 0.05
# Tasks with deadlines this short are worth a hedged second copy when they run late.
LATENCY_CRITICAL_MS = 1000
# The stats' count of cache entries is refreshed at most this often (see Coordinator.cache_entries).
CACHE_COUNT_MAX_AGE_S = 1.0


class Session(Protocol):
    client_id: str
    name: str
    role: str
    address: str

    def send(self, message: msgspec.Struct) -> None: ...

    def kick(self, close_code: int, reason: str) -> None: ...


@dataclass(slots=True)
class ActiveTask:
    task_id: str
    gamer_id: str
    client_task_id: str
    kind: TaskKind
    input: Any
    input_bytes: bytes
    cache_key: str
    price_micro_usd: int
    deadline_ms: int
    submitted_mono: float
    state: TaskState = TaskState.QUEUED
    # The task's row has committed (the gamer holds an Ack, or it was resumed from the database): from
    # then on its result may be sent before the completion commits (see Coordinator._complete).
    durable: bool = False
    result: p.Result | None = None  # verified and billed (or being billed), once there is one
    result_sent_to: Session | None = None  # the gamer's session that has it
    finishing: bool = False
    peers_tried: list[str] = field(default_factory=list)
    # Quorum: replicas that passed verify and wait to be compared.
    quorum: bool = False
    candidates: list[Candidate] = field(default_factory=list)
    arbitrating: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    peer_id: str
    attempt_id: str
    output_bytes: bytes
    output: Any
    compute_ms: float


@dataclass(slots=True)
class PeerLink:
    session: Session
    slots: int
    kinds: frozenset[str]
    last_seen: float
    earned_micro_usd: int = 0
    completed: int = 0
    unreported_micro_usd: int = 0
    last_attempt_id: str = ""
    earnings_timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class Counters:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    fallbacks: int = 0
    rerouted: int = 0
    invalid_results: int = 0
    bad_messages: int = 0
    backlog_closes: int = 0  # connections closed because they stopped reading (see ServerSettings)
    not_assigned: int = 0
    hedges: int = 0
    quorum_tasks: int = 0
    quorum_disagreements: int = 0
    arbitrations: int = 0
    audits: int = 0
    audit_failures: int = 0
    bans: int = 0
    # Compute spent: the accepted result's own (useful) and what checking it cost (replicas, audits,
    # arbitration, verify), for the validation-overhead benchmark.
    useful_compute_ms: float = 0.0
    replica_compute_ms: float = 0.0
    coordinator_check_ms: float = 0.0
    verify_ms: float = 0.0
    by_kind_completed: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)


def cache_key_for(kind: TaskKind, canonical_input: bytes) -> str:
    h = hashlib.sha256()
    h.update(kind.name.encode())
    h.update(b"\0")
    h.update(kind.version.encode())
    h.update(b"\0")
    h.update(canonical_input)
    return h.hexdigest()


class Coordinator:
    def __init__(
        self,
        store: Store,
        *,
        console: Console | None = None,
        fallback_workers: int = 1,
        tariff: ledger.Tariff | None = None,
        cache_ttl_s: float = CACHE_TTL_S,
        max_attempts: int = MAX_ATTEMPTS_PER_TASK,
        max_queued: int | None = MAX_QUEUED_TASKS,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        policy: ValidationPolicy | None = None,
    ) -> None:
        self.store = store
        self.console = console or Console(enabled=False)
        self.tariff = tariff or ledger.Tariff()
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        # Spot checks must be unpredictable to peers: seed from the OS unless a test pins it.
        self.rng = rng or random.Random(secrets.randbits(64))
        self.boot_id = secrets.token_hex(4)
        self._attempt_seq = 0
        self._task_seq = 0
        self.scheduler = Scheduler(new_attempt_id=self._new_attempt_id, max_attempts=max_attempts, max_queued=max_queued)
        self.fallback_pool = WorkerPool(fallback_workers)
        self.tasks: dict[str, ActiveTask] = {}
        self._by_client: dict[tuple[str, str], str] = {}
        # Outputs delivered whose completion (which also fills the cache) is still committing, by cache key:
        # an identical task submitted by a gamer that has just seen the result is a cache hit all the same.
        self._recording: dict[str, bytes] = {}
        self.peers: dict[str, PeerLink] = {}
        self.gamers: dict[str, Session] = {}
        self.counters = Counters()
        self.policy = policy or ValidationPolicy()
        self.trust: dict[tuple[str, str], TrustRecord] = {}
        self.banned: set[str] = set()
        self._ban_writes: dict[str, asyncio.Future[Any]] = {}
        self.peer_names: dict[str, str] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_FEED_LENGTH)
        self.started_at = time.time()
        self._cache_entries: int | None = None
        self._cache_entries_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        # Set by the server from the database at start; guards admin-only views and endpoints.
        self.admin_token: str | None = None
        # Per-gamer submit rate, tasks in flight and balance; the server installs the configured one.
        self.admission = Admission(AdmissionLimits(max_in_flight=None, submit_rate_per_s=None, fetch_rate_per_s=None,
                                                    enforce_balance=False))

    def _new_task_id(self) -> str:
        # Unique across restarts thanks to the boot id; cheaper than asking the OS for randomness per task.
        self._task_seq += 1
        return f"t{self.boot_id}{self._task_seq:x}"

    def _new_attempt_id(self) -> str:
        self._attempt_seq += 1
        return f"a{self.boot_id}{self._attempt_seq:x}"

    # Lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(_warm_up_verifiers)
        await self.fallback_pool.start()
        await self._resume_unfinished()
        self._spawn(self._purge_cache_forever())

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        await self.fallback_pool.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_crash)
        return task

    async def _resume_unfinished(self) -> None:
        """Every acknowledged task that had not finished when the coordinator stopped starts again."""
        rows = self.store.unfinished_tasks()
        for row in rows:
            kind = get_kind(row.kind)
            inp = kind.parse_input(msgspec.msgpack.decode(row.input))
            task = ActiveTask(
                row.id, row.gamer_id, row.client_task_id, kind, inp, row.input, row.cache_key,
                row.price_micro_usd, row.deadline_ms, self._clock(), durable=True,
            )
            self._track(task)
            # The coordinator was away: give the task a fresh deadline window rather than falling back at once.
            self._apply(self.scheduler.submit(task.task_id, kind.name, now=task.submitted_mono,
                                              deadline_at=task.submitted_mono + row.deadline_ms / 1000.0,
                                              needs=_needs(kind, inp)))
        if rows:
            self.console.line(f"♻️  Resumed {len(rows)} unfinished task(s) from the database")
            self._event("resumed", count=len(rows))

    def _track(self, task: ActiveTask) -> None:
        if task.task_id not in self.tasks:
            self.admission.reserve(task.gamer_id, task.price_micro_usd)
        self.tasks[task.task_id] = task
        self._by_client[(task.gamer_id, task.client_task_id)] = task.task_id

    def _untrack(self, task: ActiveTask) -> None:
        if self.tasks.pop(task.task_id, None) is not None:
            self.admission.release(task.gamer_id, task.price_micro_usd, answered=task.result_sent_to is not None)
        self._by_client.pop((task.gamer_id, task.client_task_id), None)

    # Sessions ---------------------------------------------------------------------------------------

    def gamer_joined(self, session: Session) -> None:
        self.gamers[session.client_id] = session
        self.console.line(f"🎮 Gamer connected: {session.name} ({session.address})")
        self._event("gamer_joined")

    def gamer_left(self, session: Session) -> None:
        if self.gamers.get(session.client_id) is session:
            del self.gamers[session.client_id]
            self.console.line(f"👋 Gamer disconnected: {session.name}")
            self._event("gamer_left")

    def peer_joined(self, session: Session, *, slots: int, kinds: list[str], features: Iterable[str] = (),
                    owner: str | None = None) -> None:
        usable = frozenset(kinds) & frozenset(registry())
        # Features count only within the kinds the peer runs here ("kind:feature", see p2c2r.tasks).
        extras = frozenset(f for f in features if feature_kind(f) in usable)
        self.peers[session.client_id] = PeerLink(session, slots, usable, self._clock())
        self.peer_names[session.client_id] = session.name
        for _, kind_name, consecutive, valid, invalid in self.store.trust_rows(session.client_id):
            self.trust[(session.client_id, kind_name)] = TrustRecord(consecutive, valid, invalid)
        self.console.line(f"📡 Peer connected: {session.name} ({session.address}), {slots} slot(s)")
        self._event("peer_joined", peer=session.client_id, name=session.name)
        # Replicas must come from different networks (/24); loopback peers count as separate networks so
        # that a quorum can form on one machine (tests, the local demo).
        network = "" if session.address.startswith("127.") or ":" in session.address else \
            ".".join(session.address.split(".")[:3])
        self._apply(self.scheduler.add_peer(session.client_id, slots=slots, kinds=usable, features=extras,
                                            now=self._clock(), owner=owner, network=network))

    def peer_left(self, session: Session, reason: str = "disconnected") -> None:
        link = self.peers.get(session.client_id)
        if link is None or link.session is not session:
            return
        del self.peers[session.client_id]
        running = len(self.scheduler.peers.get(session.client_id).running) if session.client_id in self.scheduler.peers else 0
        self.console.line(f"🔌 Peer {reason}: {session.name}" + (f" ({running} task(s) to re-route)" if running else ""))
        self._event("peer_left", peer=session.client_id, name=session.name, rerouted=running)
        self.counters.rerouted += running
        self._apply(self.scheduler.remove_peer(session.client_id, self._clock()))

    def peer_heartbeat(self, session: Session) -> None:
        link = self.peers.get(session.client_id)
        if link is not None:
            link.last_seen = self._clock()

    def silent_peers(self, silence_s: float) -> list[Session]:
        cutoff = self._clock() - silence_s
        return [link.session for link in self.peers.values() if link.last_seen < cutoff]

    # Gamer messages ---------------------------------------------------------------------------------

    def submit(self, gamer: Session, msg: p.Submit) -> None:
        """Validate, admit, store and schedule a task; the Ack goes out once its row has committed.

        Synchronous up to the insert, with the rest in a callback: at thousands of submits a second, a
        coroutine task per submit would cost more than the scheduling it waits on."""
        key = (gamer.client_id, msg.task_id)
        if key in self._by_client:  # a resubmission of a task still in progress: acknowledge again
            self._answer_in_progress(gamer, self.tasks[self._by_client[key]])
            return
        try:
            kind = get_kind(msg.kind)
            inp = kind.parse_input(msg.input)
        except (UnknownTaskKind, TaskInputError) as exc:
            gamer.send(p.Error(exc.code, str(exc), task_id=msg.task_id))
            return
        canonical = p.canonical_bytes(inp)
        terms = terms_for(kind.name)
        deadline_ms = msg.deadline_ms or terms.deadline_ms
        task = ActiveTask(
            task_id=self._new_task_id(),
            gamer_id=gamer.client_id,
            client_task_id=msg.task_id,
            kind=kind,
            input=inp,
            input_bytes=canonical,
            cache_key=cache_key_for(kind, canonical),
            price_micro_usd=terms.price_micro_usd,
            deadline_ms=deadline_ms,
            submitted_mono=self._clock(),
        )
        refusal = self.admission.admit(gamer.client_id, task.price_micro_usd)
        if refusal is not None:
            gamer.send(p.Error(refusal.code, refusal.message, task_id=msg.task_id))
            return
        self.counters.submitted += 1
        self._track(task)
        self.console.task_line(f"📥 Task received: {kind.name} from {gamer.name}")
        cached = self._recording.get(task.cache_key) or self.store.cached_output(task.cache_key, time.time())
        if cached is None:
            # A peer may start before the row is durable, and even before it is written (the Assign goes out
            # first, the row's bookkeeping then overlaps the peer's work): nothing is promised to the gamer
            # until the Ack, and the single writer commits this row before any result of the task.
            self.counters.cache_misses += 1
            self._apply(self.scheduler.submit(task.task_id, kind.name, now=task.submitted_mono,
                                              deadline_at=task.submitted_mono + deadline_ms / 1000.0,
                                              latency_critical=deadline_ms <= LATENCY_CRITICAL_MS,
                                              needs=_needs(kind, inp)))
        row = TaskRow(task.task_id, gamer.client_id, msg.task_id, kind.name, canonical, task.cache_key,
                      task.price_micro_usd, deadline_ms, time.time(), TaskState.QUEUED.value)
        insert = self.store.add_task(row)
        insert.add_done_callback(lambda done: self._stored(gamer, msg, task, cached, done))

    def _stored(self, gamer: Session, msg: p.Submit, task: ActiveTask, cached: bytes | None,
                insert: asyncio.Future[Any]) -> None:
        """The task's row committed (acknowledge it) or could not be written (undo and say so)."""
        if insert.cancelled() or insert.exception() is not None:
            exc = insert.exception() if not insert.cancelled() else StoreError("the write was cancelled")
            task.finishing = True
            self._apply(self.scheduler.task_done(task.task_id, self._clock()))
            self._untrack(task)
            self.counters.submitted -= 1
            stored = self.store.task_by_client_id(gamer.client_id, msg.task_id)
            if stored is not None:  # the id was used before (a resubmission after a reconnect): answer it
                self._answer_from_row(gamer, stored)
                return
            self.counters.submitted += 1
            gamer.send(p.Error(p.E_INTERNAL, f"the task could not be stored, nothing was charged: {exc}", task_id=msg.task_id))
            return
        task.durable = True
        gamer.send(p.Ack(msg.task_id))
        if task.result is not None:  # it finished before its row committed: it was waiting for the Ack
            self._deliver(task)
        if cached is not None:
            self.counters.cache_hits += 1
            self.console.task_line("   ⚡ Answered from cache (no peer work)")
            self._finish(task, cached, source="cache")

    def fetch(self, gamer: Session, msg: p.Fetch) -> None:
        refusal = self.admission.admit_fetch(gamer.client_id)
        if refusal is not None:
            gamer.send(p.Error(refusal.code, refusal.message, task_id=msg.task_id))
            return
        task_id = self._by_client.get((gamer.client_id, msg.task_id))
        if task_id is not None:
            self._answer_in_progress(gamer, self.tasks[task_id])
            return
        row = self.store.task_by_client_id(gamer.client_id, msg.task_id)
        if row is None:
            gamer.send(p.Error(p.E_UNKNOWN_TASK, f"no task {msg.task_id!r} was submitted by you", task_id=msg.task_id))
            return
        self._answer_from_row(gamer, row)

    def _answer_in_progress(self, gamer: Session, task: ActiveTask) -> None:
        if task.durable and task.result is not None:  # done, its completion still committing
            self._deliver(task, gamer)
        else:
            gamer.send(p.Ack(task.client_task_id, state=task.state.value))

    def _answer_from_row(self, gamer: Session, row: TaskRow) -> None:
        if row.state == TaskState.FAILED.value:
            gamer.send(p.Error(row.error_code or p.E_INTERNAL, row.error_message or "failed", task_id=row.client_task_id))
            return
        if row.state != TaskState.COMPLETED.value:  # in the database but not in memory: resumed at start
            gamer.send(p.Ack(row.client_task_id, state=row.state))
            return
        output = self.store.cached_output(row.cache_key, 0.0)
        if output is None:
            gamer.send(p.Error(p.E_RESULT_EXPIRED, "the result was purged from the store", task_id=row.client_task_id))
            return
        gamer.send(p.Result(row.client_task_id, row.kind, msgspec.Raw(output), row.source or "peer",
                            row.latency_ms or 0.0, row.cost_micro_usd or 0))

    # Peer messages ----------------------------------------------------------------------------------

    def peer_result(self, peer: Session, msg: p.PeerResult) -> None:
        attempt = self.scheduler.attempts.get(msg.attempt_id)
        if attempt is None or attempt.peer_id != peer.client_id:
            self.counters.not_assigned += 1
            peer.send(p.Error(p.E_NOT_ASSIGNED, f"attempt {msg.attempt_id} is not assigned to you (cancelled or unknown)"))
            return
        task = self.tasks[attempt.task_id]
        started = time.perf_counter()
        checked = check_output(task.kind, task.input, msg.output, self.rng)
        self.counters.verify_ms += (time.perf_counter() - started) * 1000.0
        now = self._clock()
        if checked.internal_error:
            log.error("verifying %s from peer %s failed on our side: %s", task.kind.name, peer.client_id,
                      checked.verdict.reason)
            self.store.finish_attempt(msg.attempt_id, "unverifiable", checked.verdict.reason)
            self._apply(self.scheduler.attempt_failed(msg.attempt_id, now, blame_peer=False))
            return
        if not checked.verdict.ok:
            self.store.finish_attempt(msg.attempt_id, "invalid", checked.verdict.reason)
            self._penalise(peer.client_id, task.kind.name, checked.verdict.reason,
                           evidence=f"attempt {msg.attempt_id}, verify: {checked.verdict.reason}")
            self._apply(self.scheduler.attempt_failed(msg.attempt_id, now))
            return
        self.store.finish_attempt(msg.attempt_id, "valid")
        output = msgspec.msgpack.encode(checked.output)
        if task.quorum:
            task.candidates.append(Candidate(peer.client_id, msg.attempt_id, output, checked.output, msg.compute_ms))
            self._apply(self.scheduler.attempt_returned(msg.attempt_id, now, msg.compute_ms))
            self._resolve_quorum(task)
            return
        audit = self.policy.audit(self._trust_of(peer.client_id, task.kind.name), self.rng)
        self._reward(peer.client_id, task.kind.name)
        self.counters.useful_compute_ms += msg.compute_ms
        self._apply(self.scheduler.attempt_succeeded(msg.attempt_id, now, msg.compute_ms))
        payee = Candidate(peer.client_id, msg.attempt_id, output, checked.output, msg.compute_ms)
        self._finish(task, output, source="peer", payees=[payee], audit=audit)

    def _resolve_quorum(self, task: ActiveTask) -> None:
        """Two agreeing replicas are accepted; a disagreement, or a replica with no partner in sight, is
        settled by the coordinator's own computation."""
        if task.finishing or task.arbitrating:
            return
        first = task.candidates[0]
        if len(task.candidates) >= 2:
            second = task.candidates[1]
            if outputs_agree(task.kind, first.output, second.output):
                for c in (first, second):
                    self._reward(c.peer_id, task.kind.name)
                self.counters.useful_compute_ms += first.compute_ms
                self.counters.replica_compute_ms += second.compute_ms
                self._finish(task, first.output_bytes, source="peer", payees=[first, second])
            else:
                self.counters.quorum_disagreements += 1
                self._event("quorum_disagreement", kind=task.kind.name)
                self._spawn(self._arbitrate(task, "the replicas disagreed"))
            return
        sched_task = self.scheduler.tasks.get(task.task_id)
        if sched_task is None or not sched_task.live:
            # Nobody independent is computing the partner replica right now: check it ourselves at once
            # rather than let the gamer wait for a peer that may never come.
            self.scheduler.drop_replicas(task.task_id)
            self._spawn(self._arbitrate(task, "no independent peer for a second replica"))

    async def _authoritative_output(self, task: ActiveTask) -> tuple[bytes, Any] | None:
        outcome = await self.fallback_pool.run(task.kind.name, task.input_bytes,
                                               timeout_s=max(5.0, task.deadline_ms / 1000.0))
        self.counters.coordinator_check_ms += outcome.compute_ms
        if not outcome.ok:
            log.error("coordinator could not compute task %s for checking: %s", task.task_id, outcome.message)
            return None
        return outcome.output, task.kind.parse_output(msgspec.msgpack.decode(outcome.output))

    async def _arbitrate(self, task: ActiveTask, reason: str) -> None:
        task.arbitrating = True
        self.counters.arbitrations += 1
        try:
            authority = await self._authoritative_output(task)
        except Exception:
            log.exception("arbitration of task %s failed", task.task_id)
            authority = None
        if task.finishing:
            return
        candidates = list(task.candidates)
        if authority is None:
            # Our own compute failed; the replicas all passed verify, so the first one stands, unrewarded.
            await self._complete(task, candidates[0].output_bytes, source="peer", payees=candidates[:1])
            return
        authority_bytes, authority_output = authority
        right = [c for c in candidates if outputs_agree(task.kind, authority_output, c.output)]
        for c in candidates:
            if c in right:
                self._reward(c.peer_id, task.kind.name)
            else:
                self._penalise(c.peer_id, task.kind.name, f"disagreed with the coordinator's own result ({reason})",
                               evidence=f"attempt {c.attempt_id} of task {task.task_id}")
        if right:
            self.counters.useful_compute_ms += right[0].compute_ms
            self.counters.replica_compute_ms += sum(c.compute_ms for c in right[1:])
            await self._complete(task, right[0].output_bytes, source="peer", payees=right)
        else:
            await self._complete(task, authority_bytes, source="cloud")

    async def _audit(self, task: ActiveTask, payee: Candidate, escrowed_micro_usd: int) -> None:
        """Recompute an accepted result; release the peer's escrow if it holds, refund the gamer if not."""
        self.counters.audits += 1
        authority = await self._authoritative_output(task)
        if payee.peer_id in self.banned:
            return  # its balance was forfeited with the ban
        if authority is None or outputs_agree(task.kind, authority[1], payee.output):
            await self.store.post(ledger.release_escrow(task_id=task.task_id, peer_id=payee.peer_id,
                                                        amount_micro_usd=escrowed_micro_usd))
            link = self.peers.get(payee.peer_id)
            if link is not None:
                link.earned_micro_usd += escrowed_micro_usd
            return
        self.counters.audit_failures += 1
        await self.store.post(ledger.reverse_escrow(task_id=task.task_id, peer_id=payee.peer_id,
                                                    gamer_id=task.gamer_id, amount_micro_usd=escrowed_micro_usd,
                                                    reason="audit failed"))
        self._event("audit_failed", peer=payee.peer_id, kind=task.kind.name)
        self._penalise(payee.peer_id, task.kind.name, "an audit recomputed the task and got a different result",
                       evidence=f"attempt {payee.attempt_id} of task {task.task_id}")

    def _tell_earnings(self, link: PeerLink, attempt_id: str, earned: int) -> None:
        """Earnings reach the peer in one message per ``EARNINGS_FLUSH_S``: at high task rates a message
        per task would cost the coordinator a socket write each for a console line."""
        link.unreported_micro_usd += earned
        link.last_attempt_id = attempt_id
        if link.earnings_timer is None:
            def flush() -> None:
                link.earnings_timer = None
                link.session.send(p.Earned(link.last_attempt_id, link.unreported_micro_usd, link.earned_micro_usd))
                link.unreported_micro_usd = 0

            link.earnings_timer = asyncio.get_running_loop().call_later(EARNINGS_FLUSH_S, flush)

    # Trust ------------------------------------------------------------------------------------------

    def _trust_of(self, peer_id: str, kind: str) -> TrustRecord:
        return self.trust.get((peer_id, kind), TrustRecord())

    def _save_trust(self, peer_id: str, kind: str, record: TrustRecord) -> None:
        self.trust[(peer_id, kind)] = record
        self.store.save_trust(peer_id, kind, record.consecutive_valid, record.total_valid, record.total_invalid)

    def _reward(self, peer_id: str, kind: str) -> None:
        self._save_trust(peer_id, kind, self._trust_of(peer_id, kind).after_valid())

    def _penalise(self, peer_id: str, kind: str, reason: str, *, evidence: str) -> None:
        self._save_trust(peer_id, kind, self._trust_of(peer_id, kind).after_invalid())
        self.store.note_invalid(peer_id)
        self.counters.invalid_results += 1
        name = self.peer_names.get(peer_id, peer_id)
        log.warning("invalid result from peer %s (%s) for %s: %s; evidence: %s", peer_id, name, kind, reason, evidence)
        self.console.line(f"🚨 Invalid result from {name} for {kind}: {reason}")
        self._event("invalid_result", peer=peer_id, name=name, kind=kind, reason=reason)
        invalid = sum(r.total_invalid for (p_id, _), r in self.trust.items() if p_id == peer_id)
        if peer_id not in self.banned and self.policy.should_ban(invalid):
            self._ban(peer_id, f"{invalid} invalid results; last: {reason}")

    def _ban(self, peer_id: str, reason: str) -> None:
        self.banned.add(peer_id)
        self.counters.bans += 1
        name = self.peer_names.get(peer_id, peer_id)
        log.warning("banning peer %s (%s): %s", peer_id, name, reason)
        self.console.line(f"🚫 Cheater caught and banned: {name} ({reason})")
        self._event("cheater_banned", peer=peer_id, name=name, reason=reason)
        self._ban_writes[peer_id] = self.store.ban_peer(peer_id, reason)
        self._spawn(self._forfeit(peer_id, reason))
        link = self.peers.get(peer_id)
        if link is not None:
            self.peer_left(link.session, "banned")  # no more work for it, whatever its socket does
            link.session.kick(p.CLOSE_BANNED, "banned: repeated invalid results")

    async def _forfeit(self, peer_id: str, reason: str) -> None:
        await self.store.write(lambda conn: None)  # let earlier postings for this peer commit first
        for account in (ledger.peer_account(peer_id), ledger.escrow_account(peer_id)):
            balance = self.store.balance(account)
            if balance > 0:
                await self.store.post(ledger.forfeit(key=f"forfeit:{account}:{secrets.token_hex(4)}", account=account,
                                                     amount_micro_usd=balance, reason=reason[:200]))

    def is_banned(self, peer_id: str) -> bool:
        """The database decides (``p2c2r admin ban|unban`` writes it while we run); a ban of ours counts
        from the moment we decide it, before its row has committed."""
        record = self.store.peer_record(peer_id)
        in_database = record is not None and bool(record[1])
        if peer_id in self.banned and not in_database:
            write = self._ban_writes.get(peer_id)
            if write is None or not write.done() or write.cancelled() or write.exception() is not None:
                return True  # our ban is still on its way to the database (or could not be written)
            self.banned.discard(peer_id)  # the operator lifted it since
            self._ban_writes.pop(peer_id, None)
            log.info("peer %s was unbanned by the operator", peer_id)
        return in_database or peer_id in self.banned

    def trust_view(self, peer_id: str) -> dict[str, float]:
        return {kind: round(self.policy.trust_score(rec), 3) for (p_id, kind), rec in sorted(self.trust.items())
                if p_id == peer_id}

    def peer_error(self, peer: Session, msg: p.PeerError) -> None:
        attempt = self.scheduler.attempts.get(msg.attempt_id)
        if attempt is None or attempt.peer_id != peer.client_id:
            self.counters.not_assigned += 1
            peer.send(p.Error(p.E_NOT_ASSIGNED, f"attempt {msg.attempt_id} is not assigned to you (cancelled or unknown)"))
            return
        task = self.tasks.get(attempt.task_id)
        self.store.finish_attempt(msg.attempt_id, "error", f"{msg.code}: {msg.message}")
        if task is not None and msg.code == p.E_BAD_INPUT:
            # The coordinator validated this input itself, so a peer calling it bad is the peer's problem.
            log.warning("peer %s refused input of task %s: %s", peer.client_id, task.task_id, msg.message)
        self.console.task_line(f"   ⚠️  {peer.name} failed a task: {msg.code}")
        self._apply(self.scheduler.attempt_failed(msg.attempt_id, self._clock()))

    # Decisions --------------------------------------------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Dispatch):
                self._dispatch(decision)
            elif isinstance(decision, CancelAttempt):
                link = self.peers.get(decision.peer_id)
                if link is not None:
                    link.session.send(p.Cancel(decision.attempt_id))
                self.store.finish_attempt(decision.attempt_id, "cancelled")
            elif isinstance(decision, RunFallback):
                task = self.tasks.get(decision.task_id)
                if task is not None and not task.finishing and not task.arbitrating:
                    if task.candidates:  # a replica came back: check it against our own result
                        self._spawn(self._arbitrate(task, decision.reason))
                    else:
                        self._spawn(self._run_fallback(task, decision.reason))
            elif isinstance(decision, FailTask):
                task = self.tasks.get(decision.task_id)
                if task is not None:
                    self._spawn(self._fail(task, decision.code, decision.message))
        self._rearm_timer()

    def _dispatch(self, decision: Dispatch) -> None:
        task = self.tasks[decision.task_id]
        link = self.peers[decision.peer_id]
        if task.state != TaskState.RUNNING:
            task.state = transition(task.task_id, task.state, TaskState.RUNNING)
        task.peers_tried.append(decision.peer_id)
        remaining_ms = task.deadline_ms - (self._clock() - task.submitted_mono) * 1000.0
        link.session.send(p.Assign(decision.attempt_id, decision.kind, msgspec.Raw(task.input_bytes),
                                   max(1, min(int(remaining_ms), p.MAX_DEADLINE_MS))))
        self.store.record_attempt(decision.attempt_id, task.task_id, decision.peer_id, time.time())
        if decision.hedge:
            self.counters.hedges += 1
            self._event("hedged", kind=task.kind.name, peer=decision.peer_id)
        if not task.quorum and self.policy.replicate(self._trust_of(decision.peer_id, task.kind.name), self.rng):
            # A peer without a long record gets a partner replica on another owner's machine.
            task.quorum = True
            self.counters.quorum_tasks += 1
            self._apply(self.scheduler.add_replica(task.task_id, self._clock()))
        sched_task = self.scheduler.tasks.get(task.task_id)
        if sched_task is not None and sched_task.attempts_failed and not decision.hedge:
            self.console.task_line(f"   ↪️  Re-routing {task.kind.name} to {link.session.name}")
            self._event("rerouted", kind=task.kind.name, peer=decision.peer_id, name=link.session.name)
        elif len(task.peers_tried) > 1:
            self.console.task_line(f"   ⧉ Second copy of {task.kind.name} to {link.session.name}"
                                   f" ({'hedge' if decision.hedge else 'quorum replica'})")
        else:
            self.console.task_line(f"   → Routing to {link.session.name}")

    def _rearm_timer(self) -> None:
        when = self.scheduler.next_wakeup()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, when - self._clock())
            self._timer = loop.call_at(loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._apply(self.scheduler.tick(self._clock()))

    # Endings ----------------------------------------------------------------------------------------

    async def _run_fallback(self, task: ActiveTask, reason: str) -> None:
        try:
            await self._fallback(task, reason)
        except Exception as exc:  # whatever broke, the gamer hears of it: no task ends in silence
            log.exception("cloud fallback of task %s crashed", task.task_id)
            await self._fail(task, p.E_INTERNAL, f"the coordinator failed while computing the task: {exc}")

    async def _fallback(self, task: ActiveTask, reason: str) -> None:
        task.state = transition(task.task_id, task.state, TaskState.FALLBACK)
        self.counters.fallbacks += 1
        self.console.task_line(f"   ☁️  Cloud fallback for {task.kind.name} ({reason})")
        self._event("fallback", kind=task.kind.name, reason=reason)
        self.store.set_task_state(task.task_id, TaskState.FALLBACK.value)
        started = self._clock()
        outcome = await self.fallback_pool.run(task.kind.name, task.input_bytes, timeout_s=max(5.0, task.deadline_ms / 1000.0))
        self.scheduler.note_fallback_ms(task.kind.name, (self._clock() - started) * 1000.0)
        if task.finishing:
            return
        if not outcome.ok:
            await self._fail(task, outcome.code, f"the coordinator could not compute the task: {outcome.message}")
            return
        checked = check_output(task.kind, task.input, msgspec.msgpack.decode(outcome.output), self.rng)
        if not checked.verdict.ok:  # our own kernel disagrees with its verifier: a bug, never deliver it
            log.error("fallback output for task %s failed verification: %s", task.task_id, checked.verdict.reason)
            await self._fail(task, p.E_INTERNAL, f"the coordinator's result failed verification: {checked.verdict.reason}")
            return
        await self._complete(task, outcome.output, source="cloud")

    async def _complete(self, task: ActiveTask, output: bytes, *, source: str,
                        payees: list[Candidate] | None = None) -> None:
        """``_finish`` (with no audit), waiting until the completion is recorded."""
        recording = self._finish(task, output, source=source, payees=payees)
        if recording is not None:
            await recording

    def _finish(
        self,
        task: ActiveTask,
        output: bytes,
        *,
        source: str,
        payees: list[Candidate] | None = None,
        audit: bool = False,
    ) -> asyncio.Task[None] | None:
        """Bill a verified result and deliver it now, in this turn of the loop (a task spawned first would
        cost the round trip a turn); its recording goes on in the task returned (None: already finishing)."""
        if task.finishing:
            return None
        task.finishing = True
        self._apply(self.scheduler.task_done(task.task_id, self._clock()))
        latency_ms = (self._clock() - task.submitted_mono) * 1000.0
        # A peer banned while its result was in flight earns nothing for it (its balance was forfeited).
        payees = [c for c in payees or () if c.peer_id not in self.banned]
        if payees:
            posting = ledger.bill_peer_task(self.tariff, task_id=task.task_id, gamer_id=task.gamer_id,
                                            peer_ids=[c.peer_id for c in payees], price_micro_usd=task.price_micro_usd,
                                            escrow=audit)
        else:
            posting = ledger.bill_coordinator_task(self.tariff, task_id=task.task_id, gamer_id=task.gamer_id,
                                                   source=source, price_micro_usd=task.price_micro_usd)
        cost = -posting.entries[0].amount_micro_usd
        task.result = p.Result(task.client_task_id, task.kind.name, msgspec.Raw(output), source, latency_ms, cost)
        # The result goes out while its completion commits, not after: the commit was a quarter of a task's
        # round trip. It is verified, and billing stays exactly once, as the commit is the only place a
        # task is billed: if the coordinator dies before it, the task is still unfinished in the database,
        # is computed again at the next start and billed then (the gamer, reconnecting, fetches it; the
        # client library ignores a second result of a task it already has). A task whose row has not
        # committed yet is delivered by _stored, right after its Ack: a Result never comes before the Ack.
        # A delivered result's commit may wait for the next one (the store's deferrable writes), which
        # widens that window by a couple of milliseconds, or by the store's commit pacing under load.
        if task.durable:
            self._deliver(task)
        else:  # its row's commit, and with it the Ack and this result, must not wait for the store's pacing
            self.store.commit_soon()
        self._recording[task.cache_key] = output
        return self._spawn(self._record_completion(task, output, source, payees, audit, posting,
                                                   latency_ms, cost))

    async def _record_completion(self, task: ActiveTask, output: bytes, source: str, payees: list[Candidate],
                                 audit: bool, posting: ledger.Posting, latency_ms: float, cost: int) -> None:
        """Commit a finished task (its result, cache row and billing), then pay its peers and say so."""
        try:
            await self.store.complete_task(
                task_id=task.task_id, source=source, latency_ms=latency_ms, cost_micro_usd=cost,
                cache_key=task.cache_key, kind=task.kind.name, version=task.kind.version, output=output,
                cache_ttl_s=self.cache_ttl_s, posting=posting, peer_id=payees[0].peer_id if payees else None,
                deferrable=task.result_sent_to is not None,
            )
        except StoreError as exc:
            self._forget_recording(task.cache_key, output)
            if task.result_sent_to is not None:
                # Nothing to take back from the gamer, and nothing was charged: the row stays unfinished,
                # so the next start computes the task again and bills it then, as after a crash.
                log.error("task %s was delivered but its result could not be recorded (%s); it will be "
                          "computed again at the next start", task.task_id, exc)
                self._untrack(task)
                return
            log.error("could not record the result of task %s: %s", task.task_id, exc)
            task.result = None
            task.finishing = False
            await self._fail(task, p.E_INTERNAL, "the result could not be stored; nothing was charged")
            return
        self._forget_recording(task.cache_key, output)
        task.state = transition(task.task_id, task.state, TaskState.COMPLETED)
        self._untrack(task)
        self.admission.charged(task.gamer_id, cost)
        self.counters.completed += 1
        self.counters.by_kind_completed[task.kind.name] += 1
        self.counters.by_source[source] += 1
        if source == "cache":
            self.store.touch_cache_hit(task.cache_key)
        # The gamer was away, or it was not durable yet, or the gamer reconnected since (the result may
        # have been lost with the old connection).
        self._deliver(task)
        for payee in payees:
            earned = ledger.earnings_of(posting, payee.peer_id)
            link = self.peers.get(payee.peer_id)
            if link is None:
                continue
            link.completed += 1
            if audit:
                self._spawn(self._audit(task, payee, earned))
            else:
                link.earned_micro_usd += earned
            self._tell_earnings(link, payee.attempt_id, earned)
        gamer = task.result_sent_to
        self.console.task_line(f"📤 Result ready: {task.kind.name} ({latency_ms:.0f}ms, {source})"
                               + (f" → Sent to {gamer.name}" if gamer else " (gamer away: kept for fetch)"))
        self._event("completed", kind=task.kind.name, source=source, latency_ms=round(latency_ms, 2))

    def _forget_recording(self, cache_key: str, output: bytes) -> None:
        if self._recording.get(cache_key) is output:  # not a later task's with the same key
            del self._recording[cache_key]

    def _deliver(self, task: ActiveTask, gamer: Session | None = None) -> None:
        """Send the task's result to ``gamer`` (by default its gamer's current session), unless that session
        has it already."""
        gamer = gamer or self.gamers.get(task.gamer_id)
        if gamer is None or task.result is None or task.result_sent_to is gamer:
            return
        gamer.send(task.result)
        if task.result_sent_to is None:  # answered: the gamer's in-flight count goes down now, not at the commit
            self.admission.answered(task.gamer_id)
        task.result_sent_to = gamer

    async def _fail(self, task: ActiveTask, code: str, message: str) -> None:
        if task.finishing:
            return
        task.finishing = True
        self._apply(self.scheduler.task_done(task.task_id, self._clock()))
        try:
            await self.store.fail_task(task.task_id, code, message)
        except StoreError as exc:
            log.error("could not record the failure of task %s: %s", task.task_id, exc)
        task.state = transition(task.task_id, task.state, TaskState.FAILED)
        self._untrack(task)
        self.counters.failed += 1
        gamer = self.gamers.get(task.gamer_id)
        if gamer is not None:
            gamer.send(p.Error(code, message, task_id=task.client_task_id))
        self.console.line(f"❌ Task failed: {task.kind.name} ({code}): {message}")
        self._event("failed", kind=task.kind.name, code=code)

    # Housekeeping -----------------------------------------------------------------------------------

    async def _purge_cache_forever(self) -> None:
        from p2c2r.network_config import CACHE_PURGE_INTERVAL_S

        while True:
            try:
                purged = await self.store.purge_expired(time.time())
                if purged:
                    log.info("purged %d expired cache entries", purged)
            except StoreError as exc:
                log.warning("cache purge failed: %s", exc)
            await asyncio.sleep(CACHE_PURGE_INTERVAL_S)

    def _event(self, event_name: str, **fields: Any) -> None:
        event = {"t": round(time.time(), 3), "event": event_name, **fields}
        self.events.append(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a dashboard listener must never disturb the coordinator
                log.exception("event listener failed")

    def public_stats(self) -> dict[str, Any]:
        return stats_snapshot(self)

    def cache_entries(self) -> int:
        """Live rows of the results cache, counted at most once per ``CACHE_COUNT_MAX_AGE_S``: the count
        walks an index of up to a day of results (milliseconds at a few hundred thousand), and anyone may
        ask for the stats that show it."""
        now = self._clock()
        if self._cache_entries is None or now - self._cache_entries_at >= CACHE_COUNT_MAX_AGE_S:
            self._cache_entries = self.store.cache_entries(time.time())
            self._cache_entries_at = now
        return self._cache_entries

    def summary_lines(self) -> list[str]:
        fees = self.store.balance(ledger.FEES_ACCOUNT)
        compute = self.store.balance(ledger.COMPUTE_ACCOUNT)
        # Charged to gamers = credit they were given (funding's negative balance) less what they still hold.
        revenue = -(self.store.balance(ledger.FUNDING_ACCOUNT) + sum(v for a, v in self.store.balances("gamer:").items()))
        return [
            f"Network: {len(self.peers)} peer(s), {len(self.gamers)} gamer(s), {self.counters.completed} tasks completed"
            f" ({self.counters.cache_hits} from cache, {self.counters.fallbacks} cloud fallback, "
            f"{self.scheduler.queue_depth} queued)",
            f"Revenue: {money(revenue, 6)} (coordinator fee: {money(fees, 6)}, coordinator compute: {money(compute, 6)})",
        ]


def _warm_up_verifiers() -> None:
    """Run every kind's verify once at start, so that imports and JIT compilation (seconds for numba
    kernels with a cold cache) do not happen inside the event loop on the first real result."""
    for kind in registry().values():
        try:
            warm_up_kind(kind)
        except Exception:
            log.exception("warm-up of %s failed", kind.name)


def _needs(kind: TaskKind, inp: Any) -> frozenset[str]:
    """The features a peer must have to run this input, qualified as peers advertise them."""
    required = kind.requirements(inp)
    return frozenset(qualified_feature(kind.name, f) for f in required) if required else frozenset()


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def stats_snapshot(coordinator: Coordinator, *, include_gamers: bool = False) -> dict[str, Any]:
    """Counts for /api/stats and the dashboard. Gamer identities only when ``include_gamers`` (admin)."""
    c = coordinator
    store = c.store
    now = time.time()
    balances = store.balances()
    peer_earned = {a.removeprefix("peer:"): v for a, v in balances.items() if a.startswith("peer:")}
    # What gamers paid for tasks: what left their accounts beyond the credit they were given.
    charged = -(balances.get(ledger.FUNDING_ACCOUNT, 0) + sum(v for a, v in balances.items() if a.startswith("gamer:")))
    peers = []
    for peer_id, link in sorted(c.peers.items()):
        sched = c.scheduler.peers.get(peer_id)
        peers.append({
            "id": peer_id,
            "name": link.session.name,
            "connected": True,
            "slots": link.slots,
            "kinds": sorted(link.kinds),
            "features": sorted(sched.features) if sched else [],
            "running": len(sched.running) if sched else 0,
            "tasks_done": link.completed,
            "earned_micro_usd": peer_earned.get(peer_id, 0),
            "latency_ms": {k: round(v, 3) for k, v in (sched.latency_ms.items() if sched else ())},
            "trust": c.trust_view(peer_id),
            "banned": peer_id in c.banned,
        })
    stats: dict[str, Any] = {
        "uptime_s": round(now - c.started_at, 3),
        "peers": peers,
        "gamers": {"connected": len(c.gamers), "known": store.gamer_count()},
        "tasks": {
            "submitted": c.counters.submitted,
            "queued": c.scheduler.queue_depth,
            "in_flight": c.scheduler.in_flight,
            "completed": c.counters.completed,
            "failed": c.counters.failed,
            "by_kind": dict(c.counters.by_kind_completed),
            "by_source": dict(c.counters.by_source),
        },
        "cache": {"entries": c.cache_entries(), "hits": c.counters.cache_hits, "misses": c.counters.cache_misses},
        "cloud_fallback": c.counters.fallbacks,
        "rerouted": c.counters.rerouted,
        "backlog_closes": c.counters.backlog_closes,
        "invalid_results": c.counters.invalid_results,
        "validation": {
            "invalid_results": c.counters.invalid_results,
            "quorum_tasks": c.counters.quorum_tasks,
            "quorum_disagreements": c.counters.quorum_disagreements,
            "arbitrations": c.counters.arbitrations,
            "audits": c.counters.audits,
            "audit_failures": c.counters.audit_failures,
            "hedges": c.counters.hedges,
            "not_assigned": c.counters.not_assigned,
            "bans": c.counters.bans,
            "useful_compute_ms": round(c.counters.useful_compute_ms, 3),
            "replica_compute_ms": round(c.counters.replica_compute_ms, 3),
            "coordinator_check_ms": round(c.counters.coordinator_check_ms, 3),
            "verify_ms": round(c.counters.verify_ms, 3),
        },
        "banned_peers": [{"id": pid, "name": name, "reason": reason} for pid, name, reason in store.banned_peers()],
        "ledger": {
            "charged_micro_usd": charged,
            "paid_to_peers_micro_usd": sum(peer_earned.values()),
            "fee_micro_usd": balances.get(ledger.FEES_ACCOUNT, 0),
            "coordinator_compute_micro_usd": balances.get(ledger.COMPUTE_ACCOUNT, 0),
            "balance_micro_usd": sum(balances.values()),
            "balanced": sum(balances.values()) == 0,
        },
    }
    if include_gamers:  # admin only: identities, task counts and spending per gamer
        stats["gamers"]["list"] = [
            {"id": g, "name": name, "connected": g in c.gamers, "tasks": tasks, "spent_micro_usd": spent,
             "balance_micro_usd": balances.get(ledger.gamer_account(g), 0)}
            for g, name, tasks, spent in store.gamer_summaries()
        ]
    return stats
