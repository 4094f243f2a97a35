"""A task's life as a table: its states and the transitions allowed between them. Pure.

    queued ──assign──> running ──accept──> completed
      │  ^               │  │
      │  └──requeue──────┘  └──fallback──> fallback ──> completed | failed
      ├──cache hit────────────────────────────────────> completed
      ├──fallback─────────────────────────> fallback
      └──reject (bad input, no capacity)──> failed

A task is acknowledged to its gamer only once its ``queued`` row is durable; ``completed`` and ``failed``
are terminal and each task reaches exactly one of them.
"""

from __future__ import annotations

import logging
from enum import Enum

from p2c2r.errors import P2C2RError

log = logging.getLogger(__name__)


class TaskState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FALLBACK = "fallback"
    COMPLETED = "completed"
    FAILED = "failed"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.FALLBACK, TaskState.COMPLETED, TaskState.FAILED}),
    # running -> running: a hedge or quorum replica starts while the first attempt is still out.
    TaskState.RUNNING: frozenset(
        {TaskState.RUNNING, TaskState.QUEUED, TaskState.FALLBACK, TaskState.COMPLETED, TaskState.FAILED}
    ),
    # A peer's valid answer may still arrive while the coordinator computes: the first one wins.
    TaskState.FALLBACK: frozenset({TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset(),
}

TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED})


class IllegalTransition(P2C2RError):
    code = "illegal_transition"


def transition(task_id: str, current: TaskState, new: TaskState) -> TaskState:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"task {task_id}: {current.value} -> {new.value} is not allowed")
    log.debug("task %s: %s -> %s", task_id, current.value, new.value)
    return new


def mermaid() -> str:
    """The table drawn as a Mermaid state diagram (for the docs)."""
    lines = ["stateDiagram-v2", "    [*] --> queued"]
    for src, targets in TRANSITIONS.items():
        lines.extend(f"    {src.value} --> {dst.value}" for dst in sorted(targets, key=lambda s: s.value))
    lines.extend(f"    {s.value} --> [*]" for s in sorted(TERMINAL, key=lambda s: s.value))
    return "\n".join(lines)
