"""The game's fixed numbers: arena, timing, and how each task kind is offloaded.

Game logic counts time in ticks (frames of 1/60 s), never with a clock, so that it is deterministic and
testable; deadlines given in milliseconds are turned into ticks at the nominal 60 fps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from p2c2r.network_config import GAME_FPS

FPS = GAME_FPS
DT = 1.0 / FPS

ARENA_W = 960
ARENA_H = 540

# Occupancy grid for ai_pathfinding: one cell is CELL px square.
CELL = 12
GRID_W = ARENA_W // CELL  # 80
GRID_H = ARENA_H // CELL  # 45

# rt_reflections: the traced image's size; each traced pixel covers RT_SCALE x RT_SCALE screen pixels.
RT_W = 160
RT_H = 90
RT_SCALE = ARENA_W // RT_W  # 6
# Screen pixels per scene unit (the arena is 16 x 9 units, camera high above its centre).
RT_PX_PER_UNIT = 60.0
RT_CAMERA_HEIGHT = 40.0

# physics: pixels per physics unit (the arena is 96 x 54 units).
PHYS_PX_PER_UNIT = 10.0

KINDS = ("physics", "ai_pathfinding", "rt_reflections", "ai_npc_dialogue")
SHORT_NAMES = MappingProxyType(
    {"physics": "physics", "ai_pathfinding": "paths", "rt_reflections": "reflect", "ai_npc_dialogue": "dialogue"}
)


def ms_to_ticks(ms: float) -> int:
    return max(1, math.ceil(ms * FPS / 1000.0))


@dataclass(frozen=True, slots=True)
class KindPlan:
    """How the game offloads one kind.

    every_ticks: submit a new task this often (event-driven kinds: at most this often).
    max_in_flight: never more of this kind outstanding at once (a slow link gets fewer, not a pile).
    deadline_ms: the game's own deadline, submit to result, link included. A result later than this is
        not used: the local approximation has already taken over, and the result is dropped as stale.
    hold_ms: an applied result stays in use this long after its request (then the local approximation).
    """

    every_ticks: int
    max_in_flight: int
    deadline_ms: float
    hold_ms: float

    @property
    def deadline_ticks(self) -> int:
        return ms_to_ticks(self.deadline_ms)

    @property
    def hold_ticks(self) -> int:
        return ms_to_ticks(self.hold_ms)


PLANS = MappingProxyType(
    {
        # Asteroids and debris: a 50 ms step of the world every 3 frames, corrected forward on arrival.
        "physics": KindPlan(every_ticks=3, max_in_flight=8, deadline_ms=320.0, hold_ms=450.0),
        # Enemy routes on the occupancy grid, four times a second.
        "ai_pathfinding": KindPlan(every_ticks=15, max_in_flight=3, deadline_ms=450.0, hold_ms=900.0),
        # The reflection overlay, five times a second.
        "rt_reflections": KindPlan(every_ticks=12, max_in_flight=3, deadline_ms=400.0, hold_ms=650.0),
        # NPC lines on game events, at most one request every 1.5 s.
        "ai_npc_dialogue": KindPlan(every_ticks=90, max_in_flight=2, deadline_ms=900.0, hold_ms=3000.0),
    }
)

# Player ship
PLAYER_RADIUS = 14.0
PLAYER_TURN_RATE = 4.4  # rad/s
PLAYER_THRUST = 520.0  # px/s^2
PLAYER_MAX_SPEED = 330.0
PLAYER_DRAG = 0.8  # 1/s
PLAYER_FIRE_COOLDOWN = 0.16  # s
PLAYER_LIVES = 3
PLAYER_INVULNERABLE_S = 2.0
SHOT_SPEED = 640.0
SHOT_TTL = 1.1
ENEMY_SHOT_SPEED = 330.0
ENEMY_SHOT_TTL = 2.4

# Enemies
ENEMY_RADIUS = 13.0
BOSS_RADIUS = 30.0
ENEMY_SPEED = {"grunt": 120.0, "flanker": 150.0, "boss": 70.0}
ENEMY_HP = {"grunt": 2, "flanker": 2, "boss": 18}
ENEMY_SCORE = {"grunt": 100, "flanker": 150, "boss": 1000}
FLANK_DISTANCE = 170.0

# Asteroids (radius by size class) and debris
ASTEROID_RADIUS = {3: 38.0, 2: 25.0, 1: 15.0}
ASTEROID_HP = {3: 4, 2: 2, 1: 1}
ASTEROID_SCORE = {3: 20, 2: 30, 1: 50}
DEBRIS_RADIUS = (3.0, 5.5)
DEBRIS_TTL = (1.6, 3.0)
MAX_DEBRIS = 36
MAX_ASTEROIDS = 22
WAVE_BREAK_S = 2.0
RESPAWN_S = 2.5
