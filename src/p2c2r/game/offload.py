"""The offload manager: what the game sends to the network, when, and what it does with what comes back.

Each frame, ``Offload.update(world)``:

1. takes every finished task from the gamer's ``poll()`` (never waits) and judges it (``judge``):
   *apply* it, or drop it as *late* (past the game's deadline: the local approximation already took
   over) or *stale* (the game has already applied a result requested later). A kind's applier may also
   drop parts of a result as stale: physics entries for rocks destroyed or changed since the request,
   paths of enemies shot down since;
2. expires the tasks past their deadline: each one counts a local fallback, and the kind's handler
   switches to its local approximation (a dialogue line becomes a canned line marked local);
3. submits the kinds that are due (``submit`` returns at once) or, without a connection, counts a local
   fallback instead of piling tasks up;
4. records for each kind whether this frame used an offloaded result or the local approximation.

Game logic works in ticks only (no clocks), so all of this is testable with a fake gamer.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from p2c2r.game import config as c
from p2c2r.game import requests as rq
from p2c2r.game.fallbacks import LOCAL, NET, canned_line, choose_source
from p2c2r.game.world import World
from p2c2r.network_config import local_gpu_cost_usd_per_hour

# An expired task still unanswered this long after its request no longer counts as in flight.
FORGET_TICKS = 3 * c.FPS

APPLY = "apply"
LATE = "late"
STALE = "stale"


def judge(request_tick: int, now_tick: int, deadline_ticks: int, newest_applied_tick: int | None) -> str:
    """What to do with a result that arrives at ``now_tick`` for a request made at ``request_tick``.

    STALE when a result requested at the same tick or later has already been applied (the game has moved
    past this state); LATE when it arrives after the game's deadline; APPLY otherwise."""
    if newest_applied_tick is not None and request_tick <= newest_applied_tick:
        return STALE
    if now_tick - request_tick > deadline_ticks:
        return LATE
    return APPLY


class Gamer(Protocol):
    """What the game needs from ``ThreadedGamer`` (tests pass a fake)."""

    @property
    def connected(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...

    def submit(self, kind: str, task_input: Any, *, deadline_ms: int | None = None, tag: Any = None) -> str: ...

    def poll(self) -> list[Any]: ...


@dataclass(slots=True)
class Ticket:
    task_id: str
    kind: str
    tick: int
    deadline_tick: int
    meta: Any
    expired: bool = False


@dataclass(slots=True)
class KindStats:
    submitted: int = 0
    applied: int = 0
    local: int = 0
    stale: int = 0
    late: int = 0
    failed: int = 0
    stale_parts: int = 0
    frames_net: int = 0
    frames_local: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=60))

    @property
    def latency_p50(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None

    @property
    def net_share(self) -> float:
        total = self.frames_net + self.frames_local
        return self.frames_net / total if total else 0.0


# Per-kind handlers ----------------------------------------------------------------------------------------


class Handler:
    kind = ""

    def build(self, world: World) -> tuple[Any, Any] | None:
        raise NotImplementedError

    def apply(self, world: World, meta: Any, output: Any) -> tuple[int, int]:
        """Apply an output; returns (parts applied, parts dropped as stale). ValueError if malformed."""
        raise NotImplementedError

    def local(self, world: World, meta: Any | None) -> None:
        """The local approximation takes over for this request (``meta`` None: it was never sent)."""

    def usage(self, world: World, newest_applied_tick: int | None, hold_ticks: int) -> str | None:
        """NET or LOCAL for this frame, or None when the kind has nothing to do."""
        return choose_source(newest_applied_tick, world.tick, hold_ticks)


class PhysicsHandler(Handler):
    kind = "physics"

    def build(self, world: World) -> tuple[Any, Any] | None:
        return rq.build_physics(world)

    def apply(self, world: World, meta: Any, output: Any) -> tuple[int, int]:
        return rq.apply_physics(world, meta, output)

    def usage(self, world: World, newest_applied_tick: int | None, hold_ticks: int) -> str | None:
        if not world.rocks:
            return None
        return choose_source(newest_applied_tick, world.tick, hold_ticks)


class PathfindingHandler(Handler):
    kind = "ai_pathfinding"

    def build(self, world: World) -> tuple[Any, Any] | None:
        return rq.build_pathfinding(world)

    def apply(self, world: World, meta: Any, output: Any) -> tuple[int, int]:
        return rq.apply_pathfinding(world, meta, output)

    def usage(self, world: World, newest_applied_tick: int | None, hold_ticks: int) -> str | None:
        if not world.enemies:
            return None
        on_path = sum(1 for e in world.enemies if e.on_path)
        return NET if on_path * 2 >= len(world.enemies) else LOCAL


class ReflectionHandler(Handler):
    kind = "rt_reflections"

    def __init__(self) -> None:
        self.patches: list[rq.Patch] = []
        self.patch_tick: int | None = None
        self.image: np.ndarray | None = None
        self.generation = 0  # bumped with every applied image (the renderer caches its surfaces by it)

    def build(self, world: World) -> tuple[Any, Any] | None:
        return rq.build_reflections(world)

    def apply(self, world: World, meta: Any, output: Any) -> tuple[int, int]:
        image = rq.decode_reflections(output)
        self.image = image
        self.patches = rq.cut_patches(image, meta)
        self.patch_tick = meta.tick
        self.generation += 1
        return len(self.patches), 0

    def fresh(self, tick: int) -> bool:
        return choose_source(self.patch_tick, tick, c.PLANS[self.kind].hold_ticks) == NET


@dataclass(slots=True)
class Subtitle:
    persona: str
    text: str
    source: str  # NET or LOCAL
    request_tick: int
    shown_tick: int


class DialogueHandler(Handler):
    kind = "ai_npc_dialogue"
    SHOW_TICKS = 200
    CHATTER_TICKS = 330

    def __init__(self, seed: int = 1) -> None:
        self.pending: str | None = None
        self.recent: list[str] = []
        self.subtitle: Subtitle | None = None
        self.seed = seed * 1_000_003
        self.requests = 0
        self.last_request_tick = 0

    def observe(self, world: World) -> None:
        """Note this tick's game events; the most important one waiting is the next thing said."""
        for event in world.events:
            if event not in rq.EVENT_PRIORITY:
                continue
            self.recent = (self.recent + [event])[-8:]
            if self.pending is None or rq.EVENT_PRIORITY[event] >= rq.EVENT_PRIORITY[self.pending]:
                self.pending = event
        idle = world.tick - max(self.last_request_tick, self.subtitle.shown_tick if self.subtitle else 0)
        if self.pending is None and world.state == "playing" and idle > self.CHATTER_TICKS and self.recent:
            self.pending = self.recent[-1]
        if self.subtitle and world.tick - self.subtitle.shown_tick > self.SHOW_TICKS:
            self.subtitle = None

    def build(self, world: World) -> tuple[Any, Any] | None:
        if self.pending is None:
            return None
        event, self.pending = self.pending, None
        self.requests += 1
        self.last_request_tick = world.tick
        taunt = event in rq.TAUNTS and self.requests % 2 == 0
        return rq.build_dialogue(event, self.recent, self.seed + self.requests, world.tick, taunt)

    def _show(self, world: World, meta: rq.DialogueMeta, text: str, source: str) -> bool:
        if self.subtitle is not None and meta.tick < self.subtitle.request_tick:
            return False  # a line for a later moment is already up
        self.subtitle = Subtitle(meta.persona, text, source, meta.tick, world.tick)
        return True

    def apply(self, world: World, meta: Any, output: Any) -> tuple[int, int]:
        line = rq.dialogue_line(output)
        return (1, 0) if self._show(world, meta, line, NET) else (0, 1)

    def local(self, world: World, meta: Any | None) -> None:
        if meta is not None:
            self._show(world, meta, canned_line(meta.persona, meta.event, meta.seed), LOCAL)

    def usage(self, world: World, newest_applied_tick: int | None, hold_ticks: int) -> str | None:
        return self.subtitle.source if self.subtitle else None


def default_handlers(seed: int = 1) -> dict[str, Handler]:
    return {h.kind: h for h in (PhysicsHandler(), PathfindingHandler(), ReflectionHandler(), DialogueHandler(seed))}


# The manager ----------------------------------------------------------------------------------------------


class Offload:
    def __init__(self, gamer: Gamer | None, handlers: Mapping[str, Handler] | None = None,
                 plans: Mapping[str, c.KindPlan] = c.PLANS) -> None:
        self.gamer = gamer
        self.handlers = dict(handlers or default_handlers())
        self.plans = dict(plans)
        self.tickets: dict[str, Ticket] = {}
        self.stats = {kind: KindStats() for kind in self.handlers}
        self.newest_applied: dict[str, int | None] = {kind: None for kind in self.handlers}
        self.last_submit: dict[str, int] = {kind: -10**9 for kind in self.handlers}
        self.sources: Counter[str] = Counter()
        self.cost_micro_usd = 0
        self.results = 0
        self.frames = 0
        self.usage_now: dict[str, str | None] = {kind: None for kind in self.handlers}
        self._forgotten: dict[str, str] = {}

    @property
    def connected(self) -> bool:
        return self.gamer is not None and self.gamer.connected

    @property
    def in_flight(self) -> int:
        return self.gamer.in_flight if self.gamer is not None else 0

    @property
    def dialogue(self) -> DialogueHandler | None:
        h = self.handlers.get("ai_npc_dialogue")
        return h if isinstance(h, DialogueHandler) else None

    @property
    def reflections(self) -> ReflectionHandler | None:
        h = self.handlers.get("rt_reflections")
        return h if isinstance(h, ReflectionHandler) else None

    def in_flight_of(self, kind: str) -> int:
        """Outstanding tasks of ``kind``, late ones included: a slow link gets fewer tasks, not a pile."""
        return sum(1 for t in self.tickets.values() if t.kind == kind)

    # One frame ----------------------------------------------------------------------------------------------

    def update(self, world: World) -> None:
        if self.dialogue is not None:
            self.dialogue.observe(world)
        if self.gamer is not None:
            for done in self.gamer.poll():
                self._complete(world, done)
        self._expire(world)
        self._submit_due(world)
        self.frames += 1
        for kind, handler in self.handlers.items():
            use = handler.usage(world, self.newest_applied[kind], self.plans[kind].hold_ticks)
            self.usage_now[kind] = use
            if use == NET:
                self.stats[kind].frames_net += 1
            elif use == LOCAL:
                self.stats[kind].frames_local += 1

    def _complete(self, world: World, done: Any) -> None:
        ticket = self.tickets.pop(done.task_id, None)
        if ticket is None:
            kind = self._forgotten.pop(done.task_id, None)
            if kind is not None and done.ok:
                self._paid(done.result)
                self.stats[kind].late += 1
            return
        stats = self.stats[ticket.kind]
        handler = self.handlers[ticket.kind]
        if not done.ok:
            stats.failed += 1
            if not ticket.expired:
                stats.local += 1
                handler.local(world, ticket.meta)
            return
        result = done.result
        self._paid(result)
        verdict = LATE if ticket.expired else judge(ticket.tick, world.tick, self.plans[ticket.kind].deadline_ticks,
                                                      self.newest_applied[ticket.kind])
        if verdict == LATE:
            stats.late += 1
            return
        if verdict == STALE:
            stats.stale += 1
            return
        try:
            applied, stale_parts = handler.apply(world, ticket.meta, result.output)
        except (ValueError, KeyError, TypeError):
            stats.failed += 1
            stats.local += 1
            handler.local(world, ticket.meta)
            return
        stats.stale_parts += stale_parts
        if applied == 0 and stale_parts > 0:
            stats.stale += 1  # nothing left to apply it to
            return
        stats.applied += 1
        self.newest_applied[ticket.kind] = ticket.tick

    def _paid(self, result: Any) -> None:
        """Every result is paid for and counted, whether it is applied or dropped."""
        self.results += 1
        self.sources[result.source] += 1
        self.cost_micro_usd += result.cost_micro_usd
        self.stats[result.kind].latencies.append(result.latency_ms)

    def _expire(self, world: World) -> None:
        for ticket in self.tickets.values():
            if not ticket.expired and world.tick > ticket.deadline_tick:
                ticket.expired = True
                self.stats[ticket.kind].local += 1
                self.handlers[ticket.kind].local(world, ticket.meta)
        # A long-expired task may never come back (the coordinator went away): stop counting it in flight,
        # but remember it, so that a result arriving after all is still counted as late.
        forget = [tid for tid, t in self.tickets.items() if t.expired and world.tick - t.tick > FORGET_TICKS]
        for tid in forget:
            self._forgotten[tid] = self.tickets.pop(tid).kind
        while len(self._forgotten) > 4096:
            del self._forgotten[next(iter(self._forgotten))]

    def _submit_due(self, world: World) -> None:
        for kind, handler in self.handlers.items():
            plan = self.plans[kind]
            if world.tick - self.last_submit[kind] < plan.every_ticks:
                continue
            if self.connected and self.in_flight_of(kind) >= plan.max_in_flight:
                continue
            built = handler.build(world)
            if built is None:
                continue
            task_input, meta = built
            self.last_submit[kind] = world.tick
            stats = self.stats[kind]
            if not self.connected:
                stats.local += 1
                handler.local(world, meta)
                continue
            assert self.gamer is not None
            task_id = self.gamer.submit(kind, task_input)
            stats.submitted += 1
            self.tickets[task_id] = Ticket(task_id, kind, world.tick, world.tick + plan.deadline_ticks, meta)

    # Figures ------------------------------------------------------------------------------------------------

    def cost_usd(self) -> float:
        return self.cost_micro_usd / 1_000_000

    def savings_usd(self, ticks: int) -> float:
        hours = ticks / c.FPS / 3600.0
        return hours * local_gpu_cost_usd_per_hour() - self.cost_usd()

    def peer_share(self) -> float:
        return self.sources["peer"] / self.results if self.results else 0.0

    def summary(self, ticks: int) -> dict[str, Any]:
        kinds = list(self.handlers)
        return {
            "applied": {k: self.stats[k].applied for k in kinds},
            "local_fallbacks": {k: self.stats[k].local for k in kinds},
            "stale_dropped": {k: self.stats[k].stale + self.stats[k].late for k in kinds},
            "late": {k: self.stats[k].late for k in kinds},
            "stale_parts_dropped": {k: self.stats[k].stale_parts for k in kinds},
            "submitted": {k: self.stats[k].submitted for k in kinds},
            "failed": {k: self.stats[k].failed for k in kinds},
            "offloaded_frame_share": {k: round(self.stats[k].net_share, 4) for k in kinds},
            "latency_p50_ms": {k: (round(v, 2) if (v := self.stats[k].latency_p50) is not None else None)
                               for k in kinds},
            "sources": {s: self.sources.get(s, 0) for s in ("peer", "cache", "cloud")},
            "results": self.results,
            "cost_usd": round(self.cost_usd(), 6),
            "savings_usd": round(self.savings_usd(ticks), 6),
        }
