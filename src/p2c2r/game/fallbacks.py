"""The cheap local approximations the game uses when no offloaded result is fresh enough, and the rule that
chooses between the two. Pure: no pygame, no network, no clock.

    kind             offloaded result                    local approximation
    ai_pathfinding   follow the A* path on the grid      fly straight at the goal
    physics          network step, corrected forward     Euler step, bounce off the arena walls only
    rt_reflections   traced overlay composited           no overlay (sprites only)
    ai_npc_dialogue  the model's line                    a canned line, marked as local
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from p2c2r.game.config import ARENA_H, ARENA_W

NET = "net"
LOCAL = "local"


def choose_source(last_applied_request_tick: int | None, now_tick: int, hold_ticks: int) -> str:
    """``NET`` while the newest applied result was requested at most ``hold_ticks`` ago, else ``LOCAL``."""
    if last_applied_request_tick is None:
        return LOCAL
    return NET if now_tick - last_applied_request_tick <= hold_ticks else LOCAL


# Enemy steering -----------------------------------------------------------------------------------------


def straight_line_target(goal: tuple[float, float]) -> tuple[float, float]:
    """The local approximation of a path: the goal itself."""
    return goal


def path_target(path: Sequence[tuple[float, float]], start_index: int, x: float, y: float,
                lookahead: int = 3) -> tuple[tuple[float, float], int]:
    """Where to head on ``path`` from (x, y): a few cells past the nearest point at or after ``start_index``.

    Returns the target and the new index of the nearest point (never moves backwards along the path).
    """
    best_i = start_index
    best_d = math.inf
    # Only look a little way ahead: the enemy moves at most a few cells between path updates.
    for i in range(start_index, min(len(path), start_index + 12)):
        px, py = path[i]
        d = (px - x) ** 2 + (py - y) ** 2
        if d < best_d:
            best_i, best_d = i, d
    return path[min(best_i + lookahead, len(path) - 1)], best_i


# Physics ------------------------------------------------------------------------------------------------


class Body(Protocol):
    x: float
    y: float
    vx: float
    vy: float
    angle: float
    spin: float
    radius: float


WALL_RESTITUTION = 0.9


def euler_step(body: Body, dt: float, width: float = ARENA_W, height: float = ARENA_H) -> None:
    """One explicit Euler step in free space, bouncing off the arena walls (no body-body contacts)."""
    body.x += body.vx * dt
    body.y += body.vy * dt
    body.angle += body.spin * dt
    r = body.radius
    if body.x < r:
        body.x = r
        body.vx = abs(body.vx) * WALL_RESTITUTION
    elif body.x > width - r:
        body.x = width - r
        body.vx = -abs(body.vx) * WALL_RESTITUTION
    if body.y < r:
        body.y = r
        body.vy = abs(body.vy) * WALL_RESTITUTION
    elif body.y > height - r:
        body.y = height - r
        body.vy = -abs(body.vy) * WALL_RESTITUTION


# Dialogue -----------------------------------------------------------------------------------------------

CANNED_LINES: dict[tuple[str, str], tuple[str, ...]] = {
    ("commander", "wave_start"): ("New wave inbound. Stay sharp, pilot.", "Contacts on all sides. Weapons free."),
    ("commander", "enemy_destroyed"): ("Good kill.", "Target down. Keep it up."),
    ("commander", "player_hit"): ("You're hit! Watch your shields.", "Evade, evade!"),
    ("commander", "low_health"): ("Hull critical. Last ship, pilot.",),
    ("commander", "victory"): ("Wave clear. Regroup.", "Sector clear. Nice flying."),
    ("commander", "boss_appears"): ("Capital ship on the scope!",),
    ("enemy_grunt", "wave_start"): ("For the fleet!", "There it is. Swarm it."),
    ("enemy_grunt", "enemy_destroyed"): ("We lost one!", "Avenge them!"),
    ("enemy_grunt", "player_hit"): ("Got you!", "Direct hit!"),
    ("enemy_boss", "boss_appears"): ("You cannot stop the fleet.",),
    ("enemy_boss", "enemy_destroyed"): ("Insolent pilot.",),
}
SILENT = "..."


def canned_line(persona: str, event: str, seed: int) -> str:
    """The local stand-in for an NPC line: a fixed line for (persona, event), picked by the seed."""
    lines = CANNED_LINES.get((persona, event)) or CANNED_LINES.get(("commander", event)) or (SILENT,)
    return lines[seed % len(lines)]
