"""The simulation state of the space shooter and its local step. Pure: no pygame, no network, no clock.

Time is counted in ticks of ``DT``. ``World.step(controls)`` advances one tick: the player, the enemies
(steering along their offloaded paths while those are fresh, straight at their goal otherwise), the rocks
(asteroids and debris: a local Euler step every tick, corrected by offloaded physics results when they
arrive), the shots, collisions, waves. What happened during the tick is listed in ``events`` (the names
``ai_npc_dialogue`` knows: ``wave_start``, ``enemy_destroyed``, ``player_hit``, ...).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from p2c2r.game import config as c
from p2c2r.game.fallbacks import euler_step, path_target, straight_line_target


@dataclass(slots=True)
class Controls:
    turn: float = 0.0  # -1 left (counter-clockwise on screen), +1 right
    thrust: bool = False
    brake: bool = False
    fire: bool = False


@dataclass(slots=True)
class Ship:
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    angle: float = -math.pi / 2  # facing up
    lives: int = c.PLAYER_LIVES
    invulnerable: float = c.PLAYER_INVULNERABLE_S
    cooldown: float = 0.0
    alive: bool = True
    respawn: float = 0.0
    thrusting: bool = False


@dataclass(slots=True)
class Enemy:
    id: int
    role: str  # "grunt", "flanker" or "boss"
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    angle: float = 0.0
    hp: int = 2
    cooldown: float = 2.0
    side: int = 1  # which flank a flanker takes
    radius: float = c.ENEMY_RADIUS
    path: list[tuple[float, float]] = field(default_factory=list)
    path_tick: int = -1  # request tick of the path (-1: none)
    path_index: int = 0
    on_path: bool = False  # followed an offloaded path this tick
    flash: float = 0.0


@dataclass(slots=True)
class Rock:
    id: int
    kind: str  # "asteroid" or "debris"
    size: int  # 3, 2, 1 for asteroids; 0 for debris
    x: float
    y: float
    vx: float
    vy: float
    radius: float
    angle: float = 0.0
    spin: float = 0.0
    hp: int = 1
    version: int = 0  # bumped whenever the game changes the body's state itself (a hit, a push)
    ttl: float = math.inf
    max_ttl: float = math.inf
    shape: tuple[float, ...] = ()
    # Render-only: the visual offset left by an offloaded correction, decayed over a few frames.
    smooth_x: float = 0.0
    smooth_y: float = 0.0
    flash: float = 0.0

    @property
    def mass(self) -> float:
        density = 1.0 if self.kind == "asteroid" else 0.6
        return density * (self.radius / c.PHYS_PX_PER_UNIT) ** 2 * math.pi


@dataclass(slots=True)
class Shot:
    id: int
    owner: str  # "player" or "enemy"
    x: float
    y: float
    vx: float
    vy: float
    ttl: float


@dataclass(slots=True)
class Spark:
    x: float
    y: float
    vx: float
    vy: float
    ttl: float
    max_ttl: float
    color: tuple[int, int, int]
    size: float = 2.0


def _wrap_angle(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class World:
    def __init__(self, seed: int = 1, *, width: int = c.ARENA_W, height: int = c.ARENA_H) -> None:
        self.rng = random.Random(seed)
        self.width = width
        self.height = height
        self.tick = 0
        self.score = 0
        self.wave = 0
        self.games = 1
        self.state = "wave_break"
        self.state_timer = 0.4
        self.player = Ship(width / 2, height / 2)
        self.enemies: list[Enemy] = []
        self.rocks: list[Rock] = []
        self.shots: list[Shot] = []
        self.sparks: list[Spark] = []
        self.events: list[str] = []
        self.path_hold_ticks = c.PLANS["ai_pathfinding"].hold_ticks
        self._next_id = 1
        self.kills = 0
        self.hits_taken = 0
        for _ in range(8):
            self._spawn_asteroid(3 if self.rng.random() < 0.5 else 2)

    # Ids ------------------------------------------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def rock_by_id(self) -> dict[int, Rock]:
        return {r.id: r for r in self.rocks}

    def enemy_by_id(self) -> dict[int, Enemy]:
        return {e.id: e for e in self.enemies}

    @property
    def asteroids(self) -> list[Rock]:
        return [r for r in self.rocks if r.kind == "asteroid"]

    # Spawning -------------------------------------------------------------------------------------------

    def _free_spot(self, radius: float, min_player_dist: float, edge: bool) -> tuple[float, float]:
        rng = self.rng
        best = (radius + 1.0, radius + 1.0)
        for _ in range(40):
            if edge:
                side = rng.randrange(4)
                t = rng.random()
                m = radius + 4.0
                x, y = [(m, t * self.height), (self.width - m, t * self.height),
                        (t * self.width, m), (t * self.width, self.height - m)][side]
            else:
                x = rng.uniform(radius + 2, self.width - radius - 2)
                y = rng.uniform(radius + 2, self.height - radius - 2)
            x = min(max(x, radius + 1.0), self.width - radius - 1.0)
            y = min(max(y, radius + 1.0), self.height - radius - 1.0)
            best = (x, y)
            if math.hypot(x - self.player.x, y - self.player.y) < min_player_dist:
                continue
            if any(math.hypot(x - r.x, y - r.y) < radius + r.radius + 6 for r in self.rocks):
                continue
            return x, y
        return best

    def _shape(self) -> tuple[float, ...]:
        n = self.rng.randint(9, 13)
        return tuple(self.rng.uniform(0.78, 1.12) for _ in range(n))

    def _spawn_asteroid(self, size: int, at: tuple[float, float] | None = None,
                        vel: tuple[float, float] | None = None) -> Rock:
        radius = c.ASTEROID_RADIUS[size]
        x, y = at if at is not None else self._free_spot(radius, 170.0, edge=False)
        if vel is None:
            speed = self.rng.uniform(20.0, 60.0) * (4 - size) ** 0.5
            heading = self.rng.uniform(0, 2 * math.pi)
            vel = (speed * math.cos(heading), speed * math.sin(heading))
        rock = Rock(self.new_id(), "asteroid", size, x, y, vel[0], vel[1], radius,
                    angle=self.rng.uniform(0, 2 * math.pi), spin=self.rng.uniform(-1.0, 1.0),
                    hp=c.ASTEROID_HP[size], shape=self._shape())
        self.rocks.append(rock)
        return rock

    def _spawn_debris(self, x: float, y: float, vx: float, vy: float, count: int) -> None:
        debris = [r for r in self.rocks if r.kind == "debris"]
        for _ in range(count):
            if len(debris) >= c.MAX_DEBRIS:
                oldest = min(debris, key=lambda r: r.ttl)
                self.rocks.remove(oldest)
                debris.remove(oldest)
            heading = self.rng.uniform(0, 2 * math.pi)
            speed = self.rng.uniform(40.0, 150.0)
            ttl = self.rng.uniform(*c.DEBRIS_TTL)
            radius = self.rng.uniform(*c.DEBRIS_RADIUS)
            px = min(max(x + math.cos(heading) * 6, radius + 1), self.width - radius - 1)
            py = min(max(y + math.sin(heading) * 6, radius + 1), self.height - radius - 1)
            rock = Rock(self.new_id(), "debris", 0, px, py, vx * 0.4 + speed * math.cos(heading),
                        vy * 0.4 + speed * math.sin(heading), radius, angle=heading,
                        spin=self.rng.uniform(-6, 6), ttl=ttl, max_ttl=ttl, shape=self._shape()[:5])
            self.rocks.append(rock)
            debris.append(rock)

    def _spawn_enemy(self, role: str, side: int) -> None:
        radius = c.BOSS_RADIUS if role == "boss" else c.ENEMY_RADIUS
        x, y = self._free_spot(radius, 320.0, edge=True)
        self.enemies.append(Enemy(self.new_id(), role, x, y, hp=c.ENEMY_HP[role], side=side, radius=radius,
                                  cooldown=self.rng.uniform(1.5, 3.0),
                                  angle=math.atan2(self.player.y - y, self.player.x - x)))

    def _start_wave(self) -> None:
        self.wave += 1
        self.state = "playing"
        self.events.append("wave_start")
        n = min(3 + self.wave, 10)
        for i in range(n):
            self._spawn_enemy("flanker" if i % 2 else "grunt", 1 if i % 4 < 2 else -1)
        if self.wave % 3 == 0:
            self._spawn_enemy("boss", 1)
            self.events.append("boss_appears")
        target = min(8 + self.wave, c.MAX_ASTEROIDS)
        missing = target - len(self.asteroids)
        for _ in range(max(0, missing)):
            self._spawn_asteroid(3 if self.rng.random() < 0.4 else 2)

    def _new_game(self) -> None:
        self.games += 1
        self.score = 0
        self.wave = 0
        self.enemies.clear()
        self.shots.clear()
        self.player = Ship(self.width / 2, self.height / 2)
        self.state = "wave_break"
        self.state_timer = 1.0

    # Goals ----------------------------------------------------------------------------------------------

    def enemy_goal(self, enemy: Enemy) -> tuple[float, float]:
        """Grunts and the boss chase the player; flankers head for a point beside the player's course."""
        p = self.player
        if enemy.role != "flanker":
            return p.x, p.y
        speed = math.hypot(p.vx, p.vy)
        heading = math.atan2(p.vy, p.vx) if speed > 30 else math.atan2(enemy.y - p.y, enemy.x - p.x) + math.pi / 2
        side = heading + enemy.side * math.pi / 2
        gx = p.x + math.cos(side) * c.FLANK_DISTANCE + math.cos(heading) * 60.0
        gy = p.y + math.sin(side) * c.FLANK_DISTANCE + math.sin(heading) * 60.0
        m = enemy.radius + 2
        return min(max(gx, m), self.width - m), min(max(gy, m), self.height - m)

    def enemy_target(self, enemy: Enemy) -> tuple[float, float]:
        """The point an enemy steers at this tick: along its offloaded path while the path is fresh,
        straight at its goal otherwise (the local approximation)."""
        goal = self.enemy_goal(enemy)
        fresh = enemy.path and enemy.path_tick >= 0 and self.tick - enemy.path_tick <= self.path_hold_ticks
        if fresh:
            target, enemy.path_index = path_target(enemy.path, enemy.path_index, enemy.x, enemy.y)
            if enemy.path_index >= len(enemy.path) - 2:
                target = goal  # at the end of the route: close in directly
            enemy.on_path = True
            return target
        enemy.on_path = False
        return straight_line_target(goal)

    # Step -----------------------------------------------------------------------------------------------

    def step(self, controls: Controls) -> None:
        dt = c.DT
        self.tick += 1
        self.events = []
        self._step_player(controls, dt)
        self._step_enemies(dt)
        for rock in self.rocks:
            euler_step(rock, dt, self.width, self.height)
            rock.smooth_x *= 0.82
            rock.smooth_y *= 0.82
            rock.flash = max(0.0, rock.flash - dt)
            if rock.kind == "debris":
                rock.ttl -= dt
        self.rocks = [r for r in self.rocks if r.ttl > 0]
        for shot in self.shots:
            shot.x += shot.vx * dt
            shot.y += shot.vy * dt
            shot.ttl -= dt
        self.shots = [s for s in self.shots if s.ttl > 0 and 0 <= s.x <= self.width and 0 <= s.y <= self.height]
        for spark in self.sparks:
            spark.x += spark.vx * dt
            spark.y += spark.vy * dt
            spark.vx *= 0.96
            spark.vy *= 0.96
            spark.ttl -= dt
        self.sparks = [s for s in self.sparks if s.ttl > 0]
        self._collide()
        self._step_waves(dt)

    def _step_player(self, ctl: Controls, dt: float) -> None:
        p = self.player
        if not p.alive:
            p.respawn -= dt
            if p.respawn <= 0 and p.lives > 0:
                self.player = Ship(self.width / 2, self.height / 2, lives=p.lives)
            return
        p.angle = _wrap_angle(p.angle + ctl.turn * c.PLAYER_TURN_RATE * dt)
        p.thrusting = ctl.thrust
        if ctl.thrust:
            p.vx += math.cos(p.angle) * c.PLAYER_THRUST * dt
            p.vy += math.sin(p.angle) * c.PLAYER_THRUST * dt
        drag = c.PLAYER_DRAG * (4.0 if ctl.brake else 1.0)
        p.vx -= p.vx * drag * dt
        p.vy -= p.vy * drag * dt
        speed = math.hypot(p.vx, p.vy)
        if speed > c.PLAYER_MAX_SPEED:
            p.vx *= c.PLAYER_MAX_SPEED / speed
            p.vy *= c.PLAYER_MAX_SPEED / speed
        p.x += p.vx * dt
        p.y += p.vy * dt
        r = c.PLAYER_RADIUS
        if not r <= p.x <= self.width - r:
            p.x = min(max(p.x, r), self.width - r)
            p.vx *= -0.4
        if not r <= p.y <= self.height - r:
            p.y = min(max(p.y, r), self.height - r)
            p.vy *= -0.4
        p.invulnerable = max(0.0, p.invulnerable - dt)
        p.cooldown = max(0.0, p.cooldown - dt)
        if ctl.fire and p.cooldown <= 0:
            p.cooldown = c.PLAYER_FIRE_COOLDOWN
            ca, sa = math.cos(p.angle), math.sin(p.angle)
            self.shots.append(Shot(self.new_id(), "player", p.x + ca * r, p.y + sa * r,
                                   p.vx * 0.3 + ca * c.SHOT_SPEED, p.vy * 0.3 + sa * c.SHOT_SPEED, c.SHOT_TTL))

    def _step_enemies(self, dt: float) -> None:
        p = self.player
        for e in self.enemies:
            tx, ty = self.enemy_target(e)
            dx, dy = tx - e.x, ty - e.y
            dist = math.hypot(dx, dy) or 1.0
            speed = c.ENEMY_SPEED[e.role]
            if e.role != "flanker" and p.alive and math.hypot(p.x - e.x, p.y - e.y) < 110:
                speed *= 0.3  # hover at close range rather than ram
            want_vx, want_vy = dx / dist * speed, dy / dist * speed
            e.vx += (want_vx - e.vx) * min(1.0, 3.5 * dt)
            e.vy += (want_vy - e.vy) * min(1.0, 3.5 * dt)
            # keep apart from the other enemies
            for o in self.enemies:
                if o is e:
                    continue
                ox, oy = e.x - o.x, e.y - o.y
                d2 = ox * ox + oy * oy
                limit = e.radius + o.radius + 10
                if 0 < d2 < limit * limit:
                    d = math.sqrt(d2)
                    e.vx += ox / d * 220 * dt
                    e.vy += oy / d * 220 * dt
            e.x = min(max(e.x + e.vx * dt, e.radius), self.width - e.radius)
            e.y = min(max(e.y + e.vy * dt, e.radius), self.height - e.radius)
            e.flash = max(0.0, e.flash - dt)
            if p.alive:
                aim = math.atan2(p.y - e.y, p.x - e.x)
                e.angle = aim if e.role != "flanker" else math.atan2(e.vy, e.vx) if (e.vx or e.vy) else aim
                e.cooldown -= dt
                in_range = math.hypot(p.x - e.x, p.y - e.y) < 430
                if e.cooldown <= 0 and in_range and self.state == "playing":
                    self._enemy_fire(e, aim)

    def _enemy_fire(self, e: Enemy, aim: float) -> None:
        spread = (-0.25, 0.0, 0.25) if e.role == "boss" else (0.0,)
        for da in spread:
            a = aim + da + self.rng.uniform(-0.06, 0.06)
            self.shots.append(Shot(self.new_id(), "enemy", e.x + math.cos(a) * e.radius, e.y + math.sin(a) * e.radius,
                                   math.cos(a) * c.ENEMY_SHOT_SPEED, math.sin(a) * c.ENEMY_SHOT_SPEED,
                                   c.ENEMY_SHOT_TTL))
        e.cooldown = self.rng.uniform(0.9, 1.3) if e.role == "boss" else self.rng.uniform(1.8, 3.2)

    # Collisions -----------------------------------------------------------------------------------------

    def _burst(self, x: float, y: float, color: tuple[int, int, int], n: int, speed: float = 160.0) -> None:
        for _ in range(n):
            a = self.rng.uniform(0, 2 * math.pi)
            s = self.rng.uniform(0.2, 1.0) * speed
            ttl = self.rng.uniform(0.3, 0.8)
            self.sparks.append(Spark(x, y, math.cos(a) * s, math.sin(a) * s, ttl, ttl, color,
                                     self.rng.uniform(1.5, 3.0)))

    def _hit_player(self) -> None:
        p = self.player
        if not p.alive or p.invulnerable > 0:
            return
        p.lives -= 1
        self.hits_taken += 1
        self.events.append("player_hit")
        self._burst(p.x, p.y, (120, 220, 255), 40, 220.0)
        if p.lives == 1:
            self.events.append("low_health")
        p.alive = False
        p.respawn = c.RESPAWN_S
        if p.lives <= 0:
            self.state = "game_over"
            self.state_timer = 3.0

    def _split(self, rock: Rock, shot: Shot | None) -> None:
        self.rocks.remove(rock)
        self.score += c.ASTEROID_SCORE[rock.size]
        self._burst(rock.x, rock.y, (200, 170, 140), 14, 120.0)
        self._spawn_debris(rock.x, rock.y, rock.vx, rock.vy, 3 + rock.size)
        if rock.size > 1 and len(self.asteroids) < c.MAX_ASTEROIDS:
            base = math.atan2(shot.vy, shot.vx) if shot else self.rng.uniform(0, 2 * math.pi)
            for sign in (-1, 1):
                a = base + sign * math.pi / 2 + self.rng.uniform(-0.3, 0.3)
                r = c.ASTEROID_RADIUS[rock.size - 1]
                x = min(max(rock.x + math.cos(a) * r * 0.9, r + 1), self.width - r - 1)
                y = min(max(rock.y + math.sin(a) * r * 0.9, r + 1), self.height - r - 1)
                s = self.rng.uniform(50.0, 90.0)
                self._spawn_asteroid(rock.size - 1, (x, y), (rock.vx + math.cos(a) * s, rock.vy + math.sin(a) * s))

    def _collide(self) -> None:
        p = self.player
        asteroids = [r for r in self.rocks if r.kind == "asteroid"]
        spent: set[int] = set()
        for shot in self.shots:
            hit = False
            if shot.owner == "player":
                for e in self.enemies:
                    if (shot.x - e.x) ** 2 + (shot.y - e.y) ** 2 < (e.radius + 3) ** 2:
                        e.hp -= 1
                        e.flash = 0.12
                        hit = True
                        self._burst(shot.x, shot.y, (140, 230, 255), 5, 90.0)
                        break
            elif p.alive and (shot.x - p.x) ** 2 + (shot.y - p.y) ** 2 < (c.PLAYER_RADIUS + 2) ** 2:
                hit = True
                self._hit_player()
            if not hit:
                for rock in asteroids:
                    if rock.id in spent:
                        continue
                    if (shot.x - rock.x) ** 2 + (shot.y - rock.y) ** 2 < (rock.radius + 2) ** 2:
                        hit = True
                        if shot.owner == "player":
                            rock.hp -= 1
                            rock.flash = 0.1
                            # the shot's momentum nudges the rock: the game changed the body itself
                            rock.vx += shot.vx * 0.02 / rock.size
                            rock.vy += shot.vy * 0.02 / rock.size
                            rock.version += 1
                            if rock.hp <= 0:
                                spent.add(rock.id)
                                self._split(rock, shot)
                        break
            if hit:
                shot.ttl = 0.0
        self.shots = [s for s in self.shots if s.ttl > 0]
        dead = [e for e in self.enemies if e.hp <= 0]
        for e in dead:
            self.enemies.remove(e)
            self.score += c.ENEMY_SCORE[e.role]
            self.kills += 1
            self.events.append("enemy_destroyed")
            color = (255, 200, 90) if e.role == "boss" else (255, 110, 80)
            self._burst(e.x, e.y, color, 60 if e.role == "boss" else 26, 240.0 if e.role == "boss" else 170.0)
        # ships against asteroids: pushed out; the player also loses a life
        for rock in self.rocks:
            if rock.kind != "asteroid":
                continue
            for e in self.enemies:
                dx, dy = e.x - rock.x, e.y - rock.y
                d = math.hypot(dx, dy) or 1.0
                if d < rock.radius + e.radius:
                    push = rock.radius + e.radius - d
                    e.x += dx / d * push
                    e.y += dy / d * push
            if p.alive:
                dx, dy = p.x - rock.x, p.y - rock.y
                d = math.hypot(dx, dy) or 1.0
                if d < rock.radius + c.PLAYER_RADIUS * 0.8:
                    push = rock.radius + c.PLAYER_RADIUS * 0.8 - d
                    p.x += dx / d * push
                    p.y += dy / d * push
                    rock.vx -= dx / d * 30.0
                    rock.vy -= dy / d * 30.0
                    rock.version += 1
                    self._hit_player()
        if p.alive:
            for e in self.enemies:
                if (e.x - p.x) ** 2 + (e.y - p.y) ** 2 < (e.radius + c.PLAYER_RADIUS * 0.8) ** 2:
                    if e.role != "boss":
                        e.hp = 0
                    self._hit_player()
            killed = [e for e in self.enemies if e.hp <= 0]
            for e in killed:
                self.enemies.remove(e)
                self.events.append("enemy_destroyed")
                self._burst(e.x, e.y, (255, 110, 80), 26, 170.0)

    def _step_waves(self, dt: float) -> None:
        if self.state == "playing" and not self.enemies:
            self.events.append("victory")
            self.state = "wave_break"
            self.state_timer = c.WAVE_BREAK_S
        elif self.state in ("wave_break", "game_over"):
            self.state_timer -= dt
            if self.state_timer <= 0:
                if self.state == "game_over":
                    self._new_game()
                else:
                    self._start_wave()

    # Correction from offloaded physics ------------------------------------------------------------------

    def correct_rock(self, rock: Rock, x: float, y: float, vx: float, vy: float, angle: float, spin: float,
                     ahead_s: float) -> None:
        """Take an offloaded state of ``rock``, carried ``ahead_s`` forward by Euler to the current tick.

        The jump is hidden by a render offset that decays over a few frames (not for a large jump)."""
        nx = x + vx * ahead_s
        ny = y + vy * ahead_s
        r = rock.radius
        nx = min(max(nx, r), self.width - r)
        ny = min(max(ny, r), self.height - r)
        jump_x = rock.x - nx + rock.smooth_x
        jump_y = rock.y - ny + rock.smooth_y
        if jump_x * jump_x + jump_y * jump_y < 40.0 * 40.0:
            rock.smooth_x, rock.smooth_y = jump_x, jump_y
        else:
            rock.smooth_x = rock.smooth_y = 0.0
        rock.x, rock.y, rock.vx, rock.vy = nx, ny, vx, vy
        rock.angle = angle + spin * ahead_s
        rock.spin = spin
