"""Task inputs built from the game state, and offloaded outputs applied back to it. Pure: no pygame.

Formats are the kinds' own (docs/tasks/*.md): inputs are builtins and ``bytes`` (msgpack ``bin``), outputs
arrive as the builtins the client decoded. Every request carries a ``meta`` describing what it was built
from (the tick, body ids and versions, enemy ids, object positions), which is what the stale-drop rules
compare against when the result comes back.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2c2r.game import config as c
from p2c2r.game.world import World

# Pathfinding --------------------------------------------------------------------------------------------

_CELL_X = (np.arange(c.GRID_W, dtype=np.float64) + 0.5) * c.CELL
_CELL_Y = (np.arange(c.GRID_H, dtype=np.float64) + 0.5) * c.CELL
CLEARANCE = c.ENEMY_RADIUS + 3.0


def rasterise(world: World, clearance: float = CLEARANCE) -> np.ndarray:
    """The arena's occupancy grid, (GRID_H, GRID_W) uint8: 1 where a cell's centre lies within an asteroid
    grown by ``clearance`` (so a route through free cells keeps a ship's hull off the rock)."""
    asteroids = [r for r in world.rocks if r.kind == "asteroid"]
    if not asteroids:
        return np.zeros((c.GRID_H, c.GRID_W), dtype=np.uint8)
    ax = np.array([r.x for r in asteroids])[:, None, None]
    ay = np.array([r.y for r in asteroids])[:, None, None]
    ar = np.array([r.radius + clearance for r in asteroids])[:, None, None]
    inside = (_CELL_X[None, None, :] - ax) ** 2 + (_CELL_Y[None, :, None] - ay) ** 2 < ar * ar
    return inside.any(axis=0).astype(np.uint8)


def cell_of(x: float, y: float) -> tuple[int, int]:
    return (min(max(int(x // c.CELL), 0), c.GRID_W - 1), min(max(int(y // c.CELL), 0), c.GRID_H - 1))


def cell_centre(cell: tuple[int, int] | list[int]) -> tuple[float, float]:
    return ((cell[0] + 0.5) * c.CELL, (cell[1] + 0.5) * c.CELL)


@dataclass(frozen=True, slots=True)
class PathMeta:
    tick: int
    enemy_ids: tuple[int, ...]


def build_pathfinding(world: World) -> tuple[dict[str, Any], PathMeta] | None:
    enemies = world.enemies[:64]
    if not enemies or not world.player.alive:
        return None
    grid = rasterise(world)
    agents = []
    for e in enemies:
        start = cell_of(e.x, e.y)
        goal = cell_of(*world.enemy_goal(e))
        # A ship pushed against a rock, or a goal beside one, may sit on a grown cell: free it, the
        # kind refuses a blocked start or goal.
        grid[start[1], start[0]] = 0
        grid[goal[1], goal[0]] = 0
        agents.append({"start": list(start), "goal": list(goal)})
    task = {"width": c.GRID_W, "height": c.GRID_H, "grid": grid.tobytes(), "agents": agents}
    return task, PathMeta(world.tick, tuple(e.id for e in enemies))


def apply_pathfinding(world: World, meta: PathMeta, output: dict[str, Any]) -> tuple[int, int]:
    """Give each enemy still alive its path. Returns (enemies given a path, entries dropped as stale)."""
    alive = world.enemy_by_id()
    applied = stale = 0
    for enemy_id, entry in zip(meta.enemy_ids, output.get("paths", ())):
        enemy = alive.get(enemy_id)
        if enemy is None:
            stale += 1
            continue
        if not entry.get("found"):
            continue
        enemy.path = [cell_centre(cell) for cell in entry["path"]]
        enemy.path_tick = meta.tick
        enemy.path_index = 0
        applied += 1
    return applied, stale


# Physics ------------------------------------------------------------------------------------------------

PHYSICS_STEP_TICKS = 3
PHYSICS_SUBSTEPS = 2
ROCK_RESTITUTION = 0.85
ROCK_FRICTION = 0.1


@dataclass(frozen=True, slots=True)
class PhysicsMeta:
    tick: int
    step_ticks: int
    ids: tuple[int, ...]
    versions: tuple[int, ...]


def _packed(values: list[float]) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def separate_overlaps(x: np.ndarray, y: np.ndarray, radius: np.ndarray, mass: np.ndarray, width: float,
                      height: float, passes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Push overlapping circles apart (mass-weighted), inside the box; returns new x, y.

    The local Euler step lets rocks pass through each other and split rocks are born touching; the physics
    kind starts from a clean state (an overlapping input makes its solver add energy that its own verify
    then rejects)."""
    x, y = x.copy(), y.copy()
    margin = 0.02  # a hair off the walls too: a body resting exactly on a wall trips the same check
    for _ in range(passes):
        dx = x[:, None] - x[None, :]
        dy = y[:, None] - y[None, :]
        dist = np.hypot(dx, dy)
        np.fill_diagonal(dist, np.inf)
        depth = radius[:, None] + radius[None, :] - dist + 1e-3
        ii, jj = np.nonzero(np.triu(depth > 0, 1))
        if len(ii) == 0:
            break
        for i, j in zip(ii.tolist(), jj.tolist()):
            d = max(float(dist[i, j]), 1e-9)
            nx, ny = dx[i, j] / d, dy[i, j] / d
            if d <= 1e-9:
                nx, ny = 1.0, 0.0
            share_i = mass[j] / (mass[i] + mass[j])
            x[i] += nx * depth[i, j] * share_i
            y[i] += ny * depth[i, j] * share_i
            x[j] -= nx * depth[i, j] * (1.0 - share_i)
            y[j] -= ny * depth[i, j] * (1.0 - share_i)
        np.clip(x, radius + margin, width - radius - margin, out=x)
        np.clip(y, radius + margin, height - radius - margin, out=y)
    np.clip(x, radius + margin, width - radius - margin, out=x)
    np.clip(y, radius + margin, height - radius - margin, out=y)
    return x, y


def build_physics(world: World, step_ticks: int = PHYSICS_STEP_TICKS) -> tuple[dict[str, Any], PhysicsMeta] | None:
    """The rocks' state now, to be stepped ``step_ticks`` ahead. Lengths in physics units (px / 10)."""
    rocks = world.rocks[:5000]
    if not rocks:
        return None
    s = 1.0 / c.PHYS_PX_PER_UNIT
    radius = np.array([r.radius * s for r in rocks])
    mass = np.array([r.mass for r in rocks])
    x, y = separate_overlaps(np.array([r.x * s for r in rocks]), np.array([r.y * s for r in rocks]), radius, mass,
                             world.width * s, world.height * s)
    task = {
        "x": x.astype("<f8").tobytes(),
        "y": y.astype("<f8").tobytes(),
        "vx": _packed([r.vx * s for r in rocks]),
        "vy": _packed([r.vy * s for r in rocks]),
        "angle": _packed([r.angle for r in rocks]),
        "angular_velocity": _packed([r.spin for r in rocks]),
        "radius": radius.astype("<f8").tobytes(),
        "mass": mass.astype("<f8").tobytes(),
        "restitution": ROCK_RESTITUTION,
        "friction": ROCK_FRICTION,
        "gravity": [0.0, 0.0],
        "world": {"min_x": 0.0, "min_y": 0.0, "max_x": world.width * s, "max_y": world.height * s,
                  "restitution": 0.9, "friction": 0.0},
        "dt": step_ticks * c.DT,
        "substeps": PHYSICS_SUBSTEPS,
        "iterations": 4,
    }
    meta = PhysicsMeta(world.tick, step_ticks, tuple(r.id for r in rocks), tuple(r.version for r in rocks))
    return task, meta


def _column(output: dict[str, Any], name: str, n: int) -> np.ndarray:
    value = output[name]
    arr = np.frombuffer(value, dtype="<f8") if isinstance(value, bytes | bytearray) else np.asarray(value, float)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise ValueError(f"physics output column {name} is not {n} finite numbers")
    return arr


def apply_physics(world: World, meta: PhysicsMeta, output: dict[str, Any]) -> tuple[int, int]:
    """Correct every rock that still exists and that the game has not changed since the request.

    The result is the state at ``meta.tick + step_ticks``; it is carried forward (or back) by Euler to the
    current tick. A rock destroyed since, or hit or pushed since (its version moved on), keeps its local
    state: its entry is dropped as stale. Returns (rocks corrected, entries dropped as stale)."""
    n = len(meta.ids)
    cols = {name: _column(output, name, n) for name in ("x", "y", "vx", "vy", "angle", "angular_velocity")}
    px = c.PHYS_PX_PER_UNIT
    ahead_s = (world.tick - (meta.tick + meta.step_ticks)) * c.DT
    rocks = world.rock_by_id()
    applied = stale = 0
    for i, (rock_id, version) in enumerate(zip(meta.ids, meta.versions)):
        rock = rocks.get(rock_id)
        if rock is None or rock.version != version:
            stale += 1
            continue
        world.correct_rock(rock, float(cols["x"][i]) * px, float(cols["y"][i]) * px, float(cols["vx"][i]) * px,
                           float(cols["vy"][i]) * px, float(cols["angle"][i]), float(cols["angular_velocity"][i]),
                           ahead_s)
        applied += 1
    return applied, stale


# Reflections --------------------------------------------------------------------------------------------

# Ships are traced as mirrored shield bubbles a little larger than the hull drawn on top of them.
PLAYER_HULL = {"color": [0.1, 0.3, 0.55], "reflectivity": 0.6, "specular": 0.95, "shininess": 40.0}
ENEMY_HULL = {"color": [0.5, 0.1, 0.14], "reflectivity": 0.5, "specular": 0.85, "shininess": 32.0}
BOSS_HULL = {"color": [0.6, 0.42, 0.1], "reflectivity": 0.6, "specular": 0.9, "shininess": 48.0}
SHIELD_PX = 7.0
ROCK_SURFACE = {"color": [0.32, 0.27, 0.24], "reflectivity": 0.0, "specular": 0.08, "shininess": 8.0}
PLAYER_SHOT = [0.5, 2.4, 3.2]
ENEMY_SHOT = [3.2, 0.7, 0.35]
SHOT_GLOW_RADIUS_PX = 7.0
MAX_RT_SHOTS = 26
MAX_RT_ROCKS = 20
RT_LIGHTS = (
    {"position": [-9.0, 14.0, -7.0], "color": [1.0, 0.86, 0.7], "intensity": 0.75},
    {"position": [11.0, 5.0, 8.0], "color": [0.45, 0.65, 1.0], "intensity": 0.55},
)


@dataclass(frozen=True, slots=True)
class SceneObject:
    key: tuple[str, int]
    x: float  # screen px at request time
    y: float
    radius: float  # screen px of the traced object


@dataclass(frozen=True, slots=True)
class ReflectionMeta:
    tick: int
    objects: tuple[SceneObject, ...]


def to_scene(x: float, y: float) -> list[float]:
    return [round((x - c.ARENA_W / 2) / c.RT_PX_PER_UNIT, 4), 0.0, round((y - c.ARENA_H / 2) / c.RT_PX_PER_UNIT, 4)]


def build_reflections(world: World) -> tuple[dict[str, Any], ReflectionMeta]:
    """A scene seen from a camera straight above the arena's centre, framing the arena exactly: ships are
    mirrored spheres, asteroids dull ones, shots emissive projectiles (larger than drawn: their glow)."""
    u = 1.0 / c.RT_PX_PER_UNIT
    spheres: list[dict[str, Any]] = []
    projectiles: list[dict[str, Any]] = []
    objects: list[SceneObject] = []
    p = world.player
    if p.alive:
        radius = c.PLAYER_RADIUS + SHIELD_PX
        spheres.append({"center": to_scene(p.x, p.y), "radius": radius * u, **PLAYER_HULL})
        objects.append(SceneObject(("player", 0), p.x, p.y, radius))
    for e in world.enemies[:12]:
        hull = BOSS_HULL if e.role == "boss" else ENEMY_HULL
        radius = e.radius + SHIELD_PX
        spheres.append({"center": to_scene(e.x, e.y), "radius": radius * u, **hull})
        objects.append(SceneObject(("enemy", e.id), e.x, e.y, radius))
    rocks = sorted((r for r in world.rocks if r.kind == "asteroid"),
                   key=lambda r: (r.x - p.x) ** 2 + (r.y - p.y) ** 2)[:MAX_RT_ROCKS]
    for r in rocks:
        spheres.append({"center": to_scene(r.x, r.y), "radius": r.radius * 0.92 * u, **ROCK_SURFACE})
        objects.append(SceneObject(("rock", r.id), r.x, r.y, r.radius))
    shots = sorted(world.shots, key=lambda s: s.ttl, reverse=True)[:MAX_RT_SHOTS]
    for s in shots:
        emission = PLAYER_SHOT if s.owner == "player" else ENEMY_SHOT
        projectiles.append({"center": to_scene(s.x, s.y), "radius": SHOT_GLOW_RADIUS_PX * u, "emission": emission})
        objects.append(SceneObject(("shot", s.id), s.x, s.y, SHOT_GLOW_RADIUS_PX))
    half_fov = math.atan((c.ARENA_H / 2) / c.RT_PX_PER_UNIT / c.RT_CAMERA_HEIGHT)
    task = {
        "camera": {"position": [0.0, c.RT_CAMERA_HEIGHT, 0.0], "look_at": [0.0, 0.0, 0.0], "up": [0.0, 0.0, -1.0],
                   "fov_deg": math.degrees(2 * half_fov)},
        "width": c.RT_W,
        "height": c.RT_H,
        "max_bounces": 1,
        "ambient": [0.0, 0.0, 0.0],
        "background": [0.0, 0.0, 0.0],
        "lights": list(RT_LIGHTS),
        "spheres": spheres,
        "projectiles": projectiles,
    }
    return task, ReflectionMeta(world.tick, tuple(objects))


def decode_reflections(output: dict[str, Any]) -> np.ndarray:
    """The traced image as (RT_H, RT_W, 3) uint8; ValueError unless it is exactly that."""
    w, h = int(output["width"]), int(output["height"])
    if (w, h) != (c.RT_W, c.RT_H):
        raise ValueError(f"reflections image is {w}x{h}, expected {c.RT_W}x{c.RT_H}")
    expected = w * h * 3
    inflater = zlib.decompressobj()
    raw = inflater.decompress(output["rgb_zlib"], expected)
    if len(raw) != expected:
        raise ValueError("reflections image has the wrong size")
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


@dataclass(frozen=True, slots=True)
class Patch:
    """A piece of the traced image around one object, to be drawn wherever that object is now."""

    key: tuple[str, int]
    dx: int  # top-left corner relative to the object's position, in screen px
    dy: int
    rgb: np.ndarray  # (h, w, 3) uint8, traced resolution


def cut_patches(image: np.ndarray, meta: ReflectionMeta, margin: float = 1.5) -> list[Patch]:
    """Cut the traced image into one patch per object, weighted by a soft disc around the object, so that
    each patch can follow its object between images (objects move on; the image is a moment ago)."""
    s = c.RT_SCALE
    h, w = image.shape[:2]
    patches = []
    for obj in meta.objects:
        cx, cy = obj.x / s, obj.y / s
        r = obj.radius / s
        half = r + margin
        x0, x1 = max(0, math.floor(cx - half)), min(w, math.ceil(cx + half))
        y0, y1 = max(0, math.floor(cy - half)), min(h, math.ceil(cy + half))
        if x1 <= x0 or y1 <= y0:
            continue
        crop = image[y0:y1, x0:x1].astype(np.float32)
        if not crop.any():
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
        weight = np.clip((half - dist) / margin, 0.0, 1.0)[..., None]
        rgb = (crop * weight).astype(np.uint8)
        patches.append(Patch(obj.key, round(x0 * s - obj.x), round(y0 * s - obj.y), rgb))
    return patches


# Dialogue -----------------------------------------------------------------------------------------------

# (event, persona, mood): who speaks when.
SPEAKERS = {
    "wave_start": ("commander", "alarmed"),
    "boss_appears": ("enemy_boss", "angry"),
    "enemy_destroyed": ("commander", "cheerful"),
    "player_hit": ("commander", "alarmed"),
    "low_health": ("commander", "alarmed"),
    "victory": ("commander", "cheerful"),
}
TAUNTS = {"enemy_destroyed": ("enemy_grunt", "angry"), "player_hit": ("enemy_grunt", "cheerful")}
EVENT_PRIORITY = {"boss_appears": 5, "wave_start": 4, "low_health": 4, "player_hit": 3, "victory": 3,
                  "enemy_destroyed": 1}


@dataclass(frozen=True, slots=True)
class DialogueMeta:
    tick: int
    persona: str
    event: str
    seed: int


def build_dialogue(event: str, recent: list[str], seed: int, tick: int, taunt: bool = False
                   ) -> tuple[dict[str, Any], DialogueMeta]:
    persona, mood = (TAUNTS.get(event) if taunt else None) or SPEAKERS.get(event, ("commander", "calm"))
    task = {"persona": persona, "mood": mood, "events": recent[-8:], "seed": seed, "max_words": 14}
    return task, DialogueMeta(tick, persona, event, seed)


def dialogue_line(output: dict[str, Any]) -> str:
    line = output.get("line")
    if not isinstance(line, str) or not line:
        raise ValueError("dialogue output has no line")
    return line
