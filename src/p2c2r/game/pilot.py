"""A scripted pilot that plays the game by itself (headless runs, tests, benchmarks, ``--autopilot``).

It picks the nearest enemy (or, between waves, the nearest asteroid), turns to lead it, closes in to a
comfortable range, fires when lined up, and steers away from rocks ahead and from the walls. Pure: it reads
the world and returns ``Controls``.
"""

from __future__ import annotations

import math

from p2c2r.game import config as c
from p2c2r.game.world import Controls, World

ENGAGE_RANGE = 240.0
TOO_CLOSE = 130.0
FIRE_CONE = 0.14  # rad
FIRE_RANGE = 520.0
AVOID_LOOKAHEAD = 95.0
WALL_MARGIN = 70.0


def _angle_to(dx: float, dy: float, heading: float) -> float:
    return (math.atan2(dy, dx) - heading + math.pi) % (2 * math.pi) - math.pi


def pick_target(world: World) -> tuple[float, float, float, float] | None:
    """(x, y, vx, vy) of what to shoot: the nearest enemy, else the nearest asteroid."""
    p = world.player
    candidates = [(e.x, e.y, e.vx, e.vy) for e in world.enemies]
    if not candidates:
        candidates = [(r.x, r.y, r.vx, r.vy) for r in world.rocks if r.kind == "asteroid"]
    if not candidates:
        return None
    return min(candidates, key=lambda t: (t[0] - p.x) ** 2 + (t[1] - p.y) ** 2)


def lead(px: float, py: float, tx: float, ty: float, tvx: float, tvy: float, speed: float = c.SHOT_SPEED
         ) -> tuple[float, float]:
    """Where to aim so that a shot at ``speed`` meets a target moving in a straight line (one refinement)."""
    t = math.hypot(tx - px, ty - py) / speed
    ax, ay = tx + tvx * t, ty + tvy * t
    t = math.hypot(ax - px, ay - py) / speed
    return tx + tvx * t, ty + tvy * t


def danger_ahead(world: World) -> tuple[float, float] | None:
    """The nearest rock or enemy shot in the ship's way, as an (x, y) to steer away from."""
    p = world.player
    ca, sa = math.cos(p.angle), math.sin(p.angle)
    best = None
    best_d = math.inf
    for r in world.rocks:
        if r.kind != "asteroid":
            continue
        dx, dy = r.x - p.x, r.y - p.y
        along = dx * ca + dy * sa
        across = abs(-dx * sa + dy * ca)
        clearance = r.radius + c.PLAYER_RADIUS + 8
        if -clearance < along < AVOID_LOOKAHEAD + clearance and across < clearance:
            d = math.hypot(dx, dy)
            if d < best_d:
                best, best_d = (r.x, r.y), d
    for s in world.shots:
        if s.owner != "enemy":
            continue
        dx, dy = s.x - p.x, s.y - p.y
        d = math.hypot(dx, dy)
        closing = -(dx * s.vx + dy * s.vy) / (d or 1.0)
        if d < 90 and closing > 0 and d < best_d:
            best, best_d = (s.x, s.y), d
    return best


def steer(world: World) -> Controls:
    p = world.player
    ctl = Controls()
    if not p.alive:
        return ctl
    target = pick_target(world)
    heading_goal: float | None = None
    want_thrust = False
    dist = math.inf
    if target is not None:
        tx, ty, tvx, tvy = target
        ax, ay = lead(p.x, p.y, tx, ty, tvx, tvy)
        dist = math.hypot(tx - p.x, ty - p.y)
        heading_goal = math.atan2(ay - p.y, ax - p.x)
        want_thrust = dist > ENGAGE_RANGE
    danger = danger_ahead(world)
    if danger is not None:
        away = math.atan2(p.y - danger[1], p.x - danger[0])
        heading_goal = away
        want_thrust = True
    # keep off the walls
    wx = (WALL_MARGIN - p.x if p.x < WALL_MARGIN else (world.width - WALL_MARGIN) - p.x if p.x > world.width - WALL_MARGIN else 0.0)
    wy = (WALL_MARGIN - p.y if p.y < WALL_MARGIN else (world.height - WALL_MARGIN) - p.y if p.y > world.height - WALL_MARGIN else 0.0)
    if (wx or wy) and danger is None:
        heading_goal = math.atan2(world.height / 2 - p.y, world.width / 2 - p.x)
        want_thrust = True
    if heading_goal is None:
        ctl.brake = True
        return ctl
    err = (heading_goal - p.angle + math.pi) % (2 * math.pi) - math.pi
    ctl.turn = max(-1.0, min(1.0, err * 4.0))
    ctl.thrust = want_thrust and abs(err) < 0.6
    ctl.brake = dist < TOO_CLOSE or math.hypot(p.vx, p.vy) > 0.8 * c.PLAYER_MAX_SPEED
    if target is not None:
        tx, ty, tvx, tvy = target
        ax, ay = lead(p.x, p.y, tx, ty, tvx, tvy)
        aim_err = abs(_angle_to(ax - p.x, ay - p.y, p.angle))
        ctl.fire = aim_err < FIRE_CONE and dist < FIRE_RANGE
    return ctl
