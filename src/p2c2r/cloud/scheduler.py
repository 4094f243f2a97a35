"""Who runs what, and what to do when it goes wrong: a pure state machine. No I/O, no clock.

The server feeds it events (a peer joined or left, a task arrived, an attempt finished, time passed) with
the current time ``now`` in seconds; it answers with decisions for the server to carry out:

    Dispatch(attempt_id, task_id, peer_id)   send the task to that peer
    CancelAttempt(attempt_id, peer_id)       tell the peer to drop it (hedge lost, task done elsewhere)
    RunFallback(task_id, reason)             the coordinator computes it itself
    FailTask(task_id, code, message)         explicit error to the gamer

Routing: a task goes to the peer expected to finish it first: among peers with a free slot that run its
kind, have every feature it needs (a model only some peers hold, say) and have not failed it, the smallest
measured latency for that kind (moving average), inflated by how busy the peer already is. A peer holds its slots' tasks plus a short queue, so that its next task is there
when a slot frees: at least ``peer_queue_per_slot`` per slot, and more for peers whose tasks are quick,
up to about ``peer_queue_budget_ms`` of work per slot (measured service times, moving average); deep queues
of quick tasks are what lets results and assignments share frames at high rates. No peer: the task waits
in FIFO order; re-routed tasks go to the front.
Deadlines: a task still unfinished when its deadline minus the expected fallback time arrives is handed
to the coordinator's own compute. Hedging: a task flagged latency-critical that has not returned by the
95th percentile of its kind's latency gets a second copy on another peer.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from p2c2r.protocol import E_OVERLOADED

log = logging.getLogger(__name__)

# Weight of the newest latency sample in a kind's moving average.
LATENCY_EWMA_ALPHA = 0.2
# What we assume about a peer's latency for a kind before it has done one.
DEFAULT_LATENCY_MS = 50.0
DEFAULT_FALLBACK_MS = 30.0
# Fallback starts this long before the deadline, on top of the expected fallback compute time.
FALLBACK_SAFETY_MS = 10.0
# Recent latencies kept per kind, to estimate the 95th percentile for hedging.
LATENCY_WINDOW = 256
HEDGE_MIN_SAMPLES = 20
# A peer's queue per slot, in tasks, whatever its service time says.
MAX_QUEUE_PER_SLOT = 31
# What each task costs a peer beyond its kernel's compute time (pipes, framing), for the queue budget.
JOB_OVERHEAD_MS = 0.1


# Decisions ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatch:
    attempt_id: str
    task_id: str
    peer_id: str
    kind: str
    hedge: bool = False


@dataclass(frozen=True, slots=True)
class CancelAttempt:
    attempt_id: str
    peer_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class RunFallback:
    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class FailTask:
    task_id: str
    code: str
    message: str


Decision = Dispatch | CancelAttempt | RunFallback | FailTask


# State ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class PeerState:
    peer_id: str
    slots: int
    kinds: frozenset[str]
    owner: str
    network: str
    # Extras of its kinds it has installed, qualified "kind:feature" (see p2c2r.tasks).
    features: frozenset[str] = frozenset()
    # Tasks it may hold at once: its slots plus a short queue, so that the next task is already there
    # when a slot frees (the network round trip overlaps with compute instead of adding to it).
    capacity: int = 0
    running: set[str] = field(default_factory=set)
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Moving average of what one task costs it (kernel time reported by the peer plus JOB_OVERHEAD_MS).
    service_ms: float | None = None
    done: int = 0

    @property
    def free_slots(self) -> int:
        return self.capacity - len(self.running)


@dataclass(slots=True)
class TaskEntry:
    task_id: str
    kind: str
    submitted_at: float
    deadline_at: float
    latency_critical: bool = False
    # Features a peer must have to run it, qualified like PeerState.features; usually none.
    needs: frozenset[str] = frozenset()
    # Replicas that must agree before the result is accepted (quorum); 1 = a single attempt.
    replicas: int = 1
    attempts_failed: int = 0
    # Replicas that came back and wait for their partners (quorum).
    returned: int = 0
    excluded: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    queued: bool = False
    hedged: bool = False


@dataclass(slots=True)
class AttemptEntry:
    attempt_id: str
    task_id: str
    peer_id: str
    started_at: float
    hedge: bool


class Scheduler:
    def __init__(
        self,
        *,
        new_attempt_id: Callable[[], str],
        max_attempts: int = 3,
        max_queued: int | None = 100_000,
        hedging: bool = True,
        peer_queue_per_slot: int = 3,
        peer_queue_budget_ms: float = 2.0,
    ) -> None:
        self._new_attempt_id = new_attempt_id
        self._max_attempts = max_attempts
        self._max_queued = max_queued
        self._hedging = hedging
        self._peer_queue_per_slot = peer_queue_per_slot
        self._peer_queue_budget_ms = peer_queue_budget_ms
        self.peers: dict[str, PeerState] = {}
        self.tasks: dict[str, TaskEntry] = {}
        self.attempts: dict[str, AttemptEntry] = {}
        self._queue: deque[str] = deque()
        self._free_slots = 0
        self._fallback_ms: dict[str, float] = {}
        self._recent_latency: dict[str, deque[float]] = {}
        # (when, task_id) timers; stale entries are skipped when popped.
        self._timers: list[tuple[float, str]] = []

    # Queries ----------------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return sum(1 for t in self._queue if t in self.tasks and self.tasks[t].queued)

    @property
    def in_flight(self) -> int:
        return len(self.attempts)

    def next_wakeup(self) -> float | None:
        while self._timers and self._timers[0][1] not in self.tasks:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def latency_p95_ms(self, kind: str) -> float | None:
        window = self._recent_latency.get(kind)
        if not window or len(window) < HEDGE_MIN_SAMPLES:
            return None
        ordered = sorted(window)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def peer_of(self, attempt_id: str) -> str | None:
        attempt = self.attempts.get(attempt_id)
        return attempt.peer_id if attempt else None

    # Events: peers ----------------------------------------------------------------------------------

    def add_peer(
        self,
        peer_id: str,
        *,
        slots: int,
        kinds: Iterable[str],
        now: float,
        owner: str | None = None,
        network: str = "",
        features: Iterable[str] = (),
    ) -> list[Decision]:
        if peer_id in self.peers:
            raise ValueError(f"peer {peer_id} is already connected")
        peer = PeerState(peer_id, slots, frozenset(kinds), owner or peer_id, network, frozenset(features),
                         capacity=slots * (1 + self._peer_queue_per_slot))
        self.peers[peer_id] = peer
        self._free_slots += max(0, peer.free_slots)
        return self._drain(now)

    def remove_peer(self, peer_id: str, now: float) -> list[Decision]:
        """The peer is gone (closed, crashed or silent): everything it ran is re-routed."""
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return []
        self._free_slots -= max(0, peer.free_slots)
        decisions: list[Decision] = []
        for attempt_id in sorted(peer.running):
            attempt = self.attempts.pop(attempt_id)
            decisions += self._attempt_lost(attempt, now)
        peer.running.clear()
        return decisions + self._drain(now)

    # Events: tasks ----------------------------------------------------------------------------------

    def submit(
        self,
        task_id: str,
        kind: str,
        *,
        now: float,
        deadline_at: float,
        latency_critical: bool = False,
        replicas: int = 1,
        submitted_at: float | None = None,
        needs: Iterable[str] = (),
    ) -> list[Decision]:
        if task_id in self.tasks:
            return []
        if self._max_queued is not None and len(self._queue) >= self._max_queued:
            return [FailTask(task_id, E_OVERLOADED, f"the coordinator's queue is full ({self._max_queued} tasks)")]
        task = TaskEntry(
            task_id,
            kind,
            submitted_at if submitted_at is not None else now,
            deadline_at,
            latency_critical=latency_critical,
            needs=frozenset(needs),
            replicas=replicas,
        )
        self.tasks[task_id] = task
        self._arm(task)
        self._enqueue(task, front=False)
        return self._drain(now)

    def attempt_succeeded(self, attempt_id: str, now: float, compute_ms: float | None = None) -> list[Decision]:
        """The attempt's result was accepted: the task is done and its other attempts are cancelled.
        ``compute_ms``: the kernel time the peer reported, which sizes its queue."""
        attempt = self.attempts.pop(attempt_id, None)
        if attempt is None:
            return []
        self._release(attempt, now, record_latency=True, compute_ms=compute_ms)
        task = self.tasks.get(attempt.task_id)
        decisions: list[Decision] = []
        if task is not None:
            task.live.discard(attempt_id)
            decisions += self._finish(task)
        return decisions + self._drain(now)

    def attempt_returned(self, attempt_id: str, now: float, compute_ms: float | None = None) -> list[Decision]:
        """A replica came back and awaits its partner (quorum): free the slot, keep the task."""
        attempt = self.attempts.pop(attempt_id, None)
        if attempt is None:
            return []
        self._release(attempt, now, record_latency=True, compute_ms=compute_ms)
        task = self.tasks.get(attempt.task_id)
        if task is not None:
            task.live.discard(attempt_id)
            task.returned += 1
            task.excluded.add(attempt.peer_id)  # its partner must come from someone else
        return self._drain(now)

    def add_replica(self, task_id: str, now: float) -> list[Decision]:
        """Ask for one more copy of the task on a peer of another owner (quorum)."""
        task = self.tasks.get(task_id)
        if task is None:
            return []
        task.replicas += 1
        task.hedged = True  # a quorum task already runs twice: no hedge on top
        if not task.queued:
            self._enqueue(task, front=True)
        return self._drain(now)

    def drop_replicas(self, task_id: str) -> None:
        """Stop looking for partners: the coordinator checks the returned replica itself."""
        task = self.tasks.get(task_id)
        if task is not None:
            task.replicas = len(task.live) + task.returned
            task.queued = False

    def waiting_for_replica(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and (bool(task.live) or task.queued)

    def attempt_failed(self, attempt_id: str, now: float, *, blame_peer: bool = True) -> list[Decision]:
        """The peer reported an error, returned an invalid result, or timed out."""
        attempt = self.attempts.pop(attempt_id, None)
        if attempt is None:
            return []
        self._release(attempt, now, record_latency=False)
        return self._attempt_lost(attempt, now, blame_peer=blame_peer) + self._drain(now)

    def task_done(self, task_id: str, now: float) -> list[Decision]:
        """The task ended outside the peers (fallback, failure): cancel whatever still runs."""
        task = self.tasks.get(task_id)
        if task is None:
            return []
        return self._finish(task) + self._drain(now)

    def redispatch(self, task_id: str, now: float, *, exclude: Iterable[str] = ()) -> list[Decision]:
        """Run the task again on another peer (e.g. the replicas disagreed and a fresh one is wanted)."""
        task = self.tasks.get(task_id)
        if task is None:
            return []
        task.excluded.update(exclude)
        if not task.live and not task.queued:
            self._enqueue(task, front=True)
        return self._drain(now)

    def note_fallback_ms(self, kind: str, elapsed_ms: float) -> None:
        previous = self._fallback_ms.get(kind)
        self._fallback_ms[kind] = (
            elapsed_ms if previous is None else previous + LATENCY_EWMA_ALPHA * (elapsed_ms - previous)
        )

    # Events: time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Decision]:
        decisions: list[Decision] = []
        while self._timers and self._timers[0][0] <= now:
            _, task_id = heapq.heappop(self._timers)
            task = self.tasks.get(task_id)
            if task is None:
                continue
            if now >= self._fallback_at(task):
                decisions.append(RunFallback(task_id, "deadline"))
                decisions += self._finish(task)
            else:
                decisions += self._maybe_hedge(task, now)
                self._arm(task)
        return decisions + self._drain(now)

    # Internals --------------------------------------------------------------------------------------

    def _fallback_at(self, task: TaskEntry) -> float:
        expected_ms = self._fallback_ms.get(task.kind, DEFAULT_FALLBACK_MS) + FALLBACK_SAFETY_MS
        return max(task.submitted_at, task.deadline_at - expected_ms / 1000.0)

    def _arm(self, task: TaskEntry) -> None:
        when = self._fallback_at(task)
        if self._hedging and task.latency_critical and not task.hedged:
            p95 = self.latency_p95_ms(task.kind)
            if p95 is not None:
                when = min(when, task.submitted_at + p95 / 1000.0)
        heapq.heappush(self._timers, (when, task.task_id))

    def _maybe_hedge(self, task: TaskEntry, now: float) -> list[Decision]:
        if task.hedged or len(task.live) != 1 or task.replicas > 1:
            return []
        p95 = self.latency_p95_ms(task.kind)
        if p95 is None or now < task.submitted_at + p95 / 1000.0:
            return []
        (running_attempt,) = task.live
        busy = {self.attempts[running_attempt].peer_id} | task.excluded
        peer = self._best_peer(task, busy)
        if peer is None:
            return []
        task.hedged = True
        return [self._start(task, peer, now, hedge=True)]

    def _enqueue(self, task: TaskEntry, *, front: bool) -> None:
        task.queued = True
        if front:
            self._queue.appendleft(task.task_id)
        else:
            self._queue.append(task.task_id)

    def _finish(self, task: TaskEntry) -> list[Decision]:
        self.tasks.pop(task.task_id, None)
        task.queued = False
        decisions: list[Decision] = []
        for attempt_id in sorted(task.live):
            attempt = self.attempts.pop(attempt_id, None)
            if attempt is None:
                continue
            peer = self.peers.get(attempt.peer_id)
            if peer is not None:
                self._vacate(peer, attempt_id)
            decisions.append(CancelAttempt(attempt_id, attempt.peer_id, task.task_id))
        task.live.clear()
        return decisions

    # ``_free_slots`` counts the room left on every peer (a peer whose capacity shrank below what it runs
    # has none, not a negative amount), so that "is there room anywhere" is one comparison.

    def _occupy(self, peer: PeerState, attempt_id: str) -> None:
        before = max(0, peer.free_slots)
        peer.running.add(attempt_id)
        self._free_slots += max(0, peer.free_slots) - before

    def _vacate(self, peer: PeerState, attempt_id: str) -> None:
        before = max(0, peer.free_slots)
        peer.running.discard(attempt_id)
        self._free_slots += max(0, peer.free_slots) - before

    def _resize(self, peer: PeerState, capacity: int) -> None:
        before = max(0, peer.free_slots)
        peer.capacity = capacity
        self._free_slots += max(0, peer.free_slots) - before

    def _release(self, attempt: AttemptEntry, now: float, *, record_latency: bool,
                 compute_ms: float | None = None) -> None:
        peer = self.peers.get(attempt.peer_id)
        task = self.tasks.get(attempt.task_id)
        if peer is None:
            return
        self._vacate(peer, attempt.attempt_id)
        if compute_ms is not None:
            sample = compute_ms + JOB_OVERHEAD_MS
            peer.service_ms = sample if peer.service_ms is None else \
                peer.service_ms + LATENCY_EWMA_ALPHA * (sample - peer.service_ms)
            per_slot = min(MAX_QUEUE_PER_SLOT, max(self._peer_queue_per_slot,
                                                   int(self._peer_queue_budget_ms / peer.service_ms)))
            self._resize(peer, peer.slots * (1 + per_slot))
        if record_latency and task is not None:
            sample = (now - attempt.started_at) * 1000.0
            previous = peer.latency_ms.get(task.kind)
            peer.latency_ms[task.kind] = (
                sample if previous is None else previous + LATENCY_EWMA_ALPHA * (sample - previous)
            )
            window = self._recent_latency.setdefault(task.kind, deque(maxlen=LATENCY_WINDOW))
            window.append(sample)
            peer.done += 1

    def _attempt_lost(self, attempt: AttemptEntry, now: float, *, blame_peer: bool = True) -> list[Decision]:
        task = self.tasks.get(attempt.task_id)
        if task is None:
            return []
        task.live.discard(attempt.attempt_id)
        task.excluded.add(attempt.peer_id)
        if blame_peer:
            task.attempts_failed += 1
        if task.live or task.returned:
            # Another replica or hedge is still out, or came back and waits for a partner: find a new one.
            if task.returned + len(task.live) < task.replicas and not task.queued:
                self._enqueue(task, front=True)
            return []
        if task.attempts_failed >= self._max_attempts:
            decisions: list[Decision] = [RunFallback(task.task_id, "attempts exhausted")]
            return decisions + self._finish(task)
        self._enqueue(task, front=True)
        return []

    def _best_peer(self, task: TaskEntry, avoid: set[str]) -> PeerState | None:
        best: PeerState | None = None
        best_score = 0.0
        # Replicas must come from different owners and networks, or they could agree on a lie together.
        avoid_owners = {self.peers[p].owner for p in avoid if p in self.peers}
        avoid_networks = {self.peers[p].network for p in avoid if p in self.peers and self.peers[p].network}
        for peer in self.peers.values():
            if peer.free_slots <= 0 or task.kind not in peer.kinds or peer.peer_id in avoid:
                continue
            if task.needs and not task.needs <= peer.features:
                continue
            if task.replicas > 1 and (peer.owner in avoid_owners or (peer.network and peer.network in avoid_networks)):
                continue
            latency = peer.latency_ms.get(task.kind, DEFAULT_LATENCY_MS)
            # Expected finish: its latency for the kind, stretched by the work already ahead of this task
            # (running beyond its slots means waiting in its queue).
            score = latency * (1.0 + len(peer.running) / max(peer.slots, 1))
            if best is None or score < best_score or (score == best_score and peer.peer_id < best.peer_id):
                best, best_score = peer, score
        return best

    def _start(self, task: TaskEntry, peer: PeerState, now: float, *, hedge: bool = False) -> Dispatch:
        attempt_id = self._new_attempt_id()
        self.attempts[attempt_id] = AttemptEntry(attempt_id, task.task_id, peer.peer_id, now, hedge)
        self._occupy(peer, attempt_id)
        task.live.add(attempt_id)
        return Dispatch(attempt_id, task.task_id, peer.peer_id, task.kind, hedge=hedge)

    def _drain(self, now: float) -> list[Decision]:
        decisions: list[Decision] = []
        if self._free_slots <= 0 or not self._queue:
            return decisions
        waiting: deque[str] = deque()
        while self._queue and self._free_slots > 0:
            task_id = self._queue.popleft()
            task = self.tasks.get(task_id)
            if task is None or not task.queued:
                continue
            decisions += self._start_replicas(task, now)
            if len(task.live) + task.returned >= task.replicas:
                task.queued = False
            else:
                waiting.append(task_id)
        # Tasks no free peer could take keep their place, ahead of those not yet looked at.
        self._queue.extendleft(reversed(waiting))
        return decisions

    def _start_replicas(self, task: TaskEntry, now: float) -> list[Dispatch]:
        avoid = set(task.excluded)
        avoid.update(self.attempts[a].peer_id for a in task.live)
        picks: list[PeerState] = []
        for _ in range(task.replicas - len(task.live) - task.returned):
            peer = self._best_peer(task, avoid | {p.peer_id for p in picks})
            if peer is None:
                break
            picks.append(peer)
        if not picks:
            return []
        # A quorum task that finds only one peer starts with it; its partner is sought on later events.
        return [self._start(task, peer, now) for peer in picks]
