"""Drawing: the arena, ships, rocks, shots, the traced reflection overlay, the HUD and subtitles.

Only this module and ``app`` touch pygame. Everything costly is prepared once (star field, glow sprites)
or when it changes (HUD text a few times a second, overlay surfaces once per traced image), so that a frame
is mostly blits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pygame

from p2c2r.game import config as c
from p2c2r.game.fallbacks import LOCAL, NET
from p2c2r.game.offload import Offload
from p2c2r.game.world import World

BG = (6, 8, 18)
CYAN = (110, 225, 255)
RED = (255, 90, 90)
GOLD = (255, 205, 90)
WHITE = (235, 240, 255)
DIM = (140, 150, 175)
GREEN = (90, 235, 140)
AMBER = (255, 180, 60)
PANEL = (12, 16, 34, 190)
PERSONA_NAMES = {"commander": "COMMANDER", "enemy_grunt": "RAIDER", "enemy_boss": "WARLORD", "pilot": "WINGMATE",
                 "merchant": "TRADER"}
PERSONA_COLOURS = {"commander": CYAN, "enemy_grunt": RED, "enemy_boss": GOLD}


@dataclass(slots=True)
class FrameInfo:
    fps: float
    frame_ms: float
    status: str  # "ONLINE", "RECONNECTING", "OFFLINE"
    target: str


def _font(size: int, bold: bool = False) -> pygame.font.Font:
    return pygame.font.SysFont("dejavusansmono,liberationmono,monospace", size, bold=bold)


def _glow_sprite(radius: int, colour: tuple[int, int, int], power: float = 2.0) -> pygame.Surface:
    size = radius * 2 + 1
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.hypot(xx - radius, yy - radius) / radius
    fall = np.clip(1.0 - d, 0.0, 1.0) ** power
    rgb = (np.array(colour, dtype=np.float32)[None, None, :] * fall[..., None]).astype(np.uint8)
    return pygame.surfarray.make_surface(rgb.swapaxes(0, 1))


def _star_field(w: int, h: int, seed: int = 7) -> pygame.Surface:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), dtype=np.float32)
    img[...] = BG
    # two faint nebula clouds
    for cx, cy, rad, col in ((0.22 * w, 0.3 * h, 0.45 * w, (40, 18, 60)), (0.8 * w, 0.75 * h, 0.5 * w, (10, 30, 58))):
        d = np.hypot(xx - cx, yy - cy) / rad
        img += np.clip(1 - d, 0, 1)[..., None] ** 2 * np.array(col, dtype=np.float32)
    # a faint grid: the occupancy grid the enemies' routes are planned on
    img[:, :: c.CELL * 4] += 7
    img[:: c.CELL * 4, :] += 7
    for n, lo, hi in ((260, 60, 140), (70, 150, 255)):
        xs = rng.integers(0, w, n)
        ys = rng.integers(0, h, n)
        val = rng.integers(lo, hi, n)
        img[ys, xs] = np.maximum(img[ys, xs], val[:, None] * np.array([0.9, 0.95, 1.0]))
    return pygame.surfarray.make_surface(np.clip(img, 0, 255).astype(np.uint8).swapaxes(0, 1))


def _rotated(points: tuple[tuple[float, float], ...], x: float, y: float, angle: float, scale: float = 1.0
             ) -> list[tuple[float, float]]:
    ca, sa = math.cos(angle), math.sin(angle)
    return [(x + (px * ca - py * sa) * scale, y + (px * sa + py * ca) * scale) for px, py in points]


PLAYER_SHAPE = ((16, 0), (-11, -11), (-6, 0), (-11, 11))
GRUNT_SHAPE = ((14, 0), (-4, -12), (-12, -6), (-8, 0), (-12, 6), (-4, 12))
FLANKER_SHAPE = ((15, 0), (0, -13), (-10, 0), (0, 13))
BOSS_SHAPE = tuple((math.cos(a) * 30, math.sin(a) * 30) for a in np.linspace(0, 2 * math.pi, 7)[:-1])


class Renderer:
    def __init__(self, screen: pygame.Surface) -> None:
        self.screen = screen
        w, h = screen.get_size()
        self.background = _star_field(w, h).convert()
        self.font = _font(13)
        self.font_big = _font(15, bold=True)
        self.font_title = _font(34, bold=True)
        self.font_sub = _font(17, bold=True)
        self.glow_player = _glow_sprite(14, (60, 170, 230)).convert()
        self.glow_enemy = _glow_sprite(14, (230, 70, 40)).convert()
        self.glow_engine = _glow_sprite(12, (255, 140, 40)).convert()
        self.glow_spark = _glow_sprite(6, (255, 200, 140)).convert()
        self._overlay_generation = -1
        self._overlay: dict[tuple[str, int], tuple[int, int, pygame.Surface]] = {}
        self._hud: pygame.Surface | None = None
        self._hud_frame = -999
        self._sub_key: Any = None
        self._sub_surface: pygame.Surface | None = None
        self._banner_key: Any = None
        self._banner: pygame.Surface | None = None
        self.overlay_blits = 0

    # Frame --------------------------------------------------------------------------------------------------

    def draw(self, world: World, offload: Offload, info: FrameInfo) -> None:
        screen = self.screen
        screen.blit(self.background, (0, 0))
        self._draw_paths(world)
        self._draw_rocks(world)
        # The traced overlay lies on the rocks and under the ships and shots drawn on top of it.
        self._draw_overlay(world, offload)
        self._draw_shots(world)
        self._draw_enemies(world)
        self._draw_player(world)
        self._draw_sparks(world)
        self._draw_top_bar(world)
        self._draw_hud(world, offload, info)
        self._draw_subtitle(world, offload)
        self._draw_banner(world, info)

    # World --------------------------------------------------------------------------------------------------

    def _draw_paths(self, world: World) -> None:
        for e in world.enemies:
            if not e.on_path or len(e.path) < 2:
                continue
            pts = e.path[e.path_index:]
            for i in range(0, len(pts) - 1, 2):
                pygame.draw.line(self.screen, (90, 40, 60), pts[i], pts[i + 1], 2)

    def _draw_rocks(self, world: World) -> None:
        screen = self.screen
        for r in world.rocks:
            x, y = r.x + r.smooth_x, r.y + r.smooth_y
            n = len(r.shape)
            pts = [(x + math.cos(r.angle + k * 2 * math.pi / n) * r.radius * m,
                    y + math.sin(r.angle + k * 2 * math.pi / n) * r.radius * m) for k, m in enumerate(r.shape)]
            if r.kind == "asteroid":
                fill = (150, 140, 135) if r.flash > 0 else (58, 52, 50)
                pygame.draw.polygon(screen, fill, pts)
                pygame.draw.polygon(screen, (128, 116, 104), pts, 2)
                # a crater or two, turning with the rock
                for k in (1, 4):
                    cx = x + math.cos(r.angle + k) * r.radius * 0.4
                    cy = y + math.sin(r.angle + k) * r.radius * 0.4
                    pygame.draw.circle(screen, (44, 40, 38), (cx, cy), max(2, r.radius * 0.18))
            else:
                fade = max(0.0, min(1.0, r.ttl / max(r.max_ttl, 1e-6)))
                col = (int(60 + 100 * fade), int(55 + 80 * fade), int(50 + 60 * fade))
                if len(pts) >= 3:
                    pygame.draw.polygon(screen, col, pts)

    def _draw_shots(self, world: World) -> None:
        screen = self.screen
        add = pygame.BLEND_RGB_ADD
        for s in world.shots:
            glow = self.glow_player if s.owner == "player" else self.glow_enemy
            screen.blit(glow, (s.x - 14, s.y - 14), special_flags=add)
            speed = math.hypot(s.vx, s.vy) or 1.0
            tail = (s.x - s.vx / speed * 9, s.y - s.vy / speed * 9)
            col = (200, 250, 255) if s.owner == "player" else (255, 170, 120)
            pygame.draw.line(screen, col, tail, (s.x, s.y), 3)

    def _draw_enemies(self, world: World) -> None:
        screen = self.screen
        for e in world.enemies:
            if e.role == "boss":
                pts = _rotated(BOSS_SHAPE, e.x, e.y, e.angle)
                pygame.draw.polygon(screen, (90, 60, 20) if e.flash <= 0 else (255, 255, 255), pts)
                pygame.draw.polygon(screen, GOLD, pts, 3)
                inner = _rotated(BOSS_SHAPE, e.x, e.y, -e.angle, 0.45)
                pygame.draw.polygon(screen, (255, 120, 40), inner, 2)
                frac = e.hp / c.ENEMY_HP["boss"]
                pygame.draw.rect(screen, (60, 30, 20), (e.x - 30, e.y - 44, 60, 5))
                pygame.draw.rect(screen, GOLD, (e.x - 30, e.y - 44, 60 * frac, 5))
                continue
            shape = FLANKER_SHAPE if e.role == "flanker" else GRUNT_SHAPE
            body = (255, 255, 255) if e.flash > 0 else ((80, 20, 60) if e.role == "flanker" else (90, 24, 24))
            edge = (255, 90, 200) if e.role == "flanker" else RED
            pts = _rotated(shape, e.x, e.y, e.angle)
            pygame.draw.polygon(screen, body, pts)
            pygame.draw.polygon(screen, edge, pts, 2)

    def _draw_player(self, world: World) -> None:
        p = world.player
        if not p.alive:
            return
        if p.invulnerable > 0 and (world.tick // 5) % 2:
            return
        screen = self.screen
        if p.thrusting:
            flicker = 0.7 + 0.3 * math.sin(world.tick * 1.7)
            tail = _rotated(((-8, -5), (-8 - 16 * flicker, 0), (-8, 5)), p.x, p.y, p.angle)
            pygame.draw.polygon(screen, (255, 160, 60), tail)
            bx, by = _rotated(((-14, 0),), p.x, p.y, p.angle)[0]
            screen.blit(self.glow_engine, (bx - 12, by - 12), special_flags=pygame.BLEND_RGB_ADD)
        pts = _rotated(PLAYER_SHAPE, p.x, p.y, p.angle)
        pygame.draw.polygon(screen, (20, 50, 90), pts)
        pygame.draw.polygon(screen, CYAN, pts, 2)

    def _draw_sparks(self, world: World) -> None:
        screen = self.screen
        for s in world.sparks:
            f = s.ttl / s.max_ttl
            col = (int(s.color[0] * f), int(s.color[1] * f), int(s.color[2] * f))
            pygame.draw.circle(screen, col, (s.x, s.y), max(1.0, s.size * f))
        if len(world.sparks) < 120:
            for s in world.sparks[::3]:
                screen.blit(self.glow_spark, (s.x - 6, s.y - 6), special_flags=pygame.BLEND_RGB_ADD)

    # Reflections --------------------------------------------------------------------------------------------

    def _overlay_surfaces(self, offload: Offload) -> dict[tuple[str, int], tuple[int, int, pygame.Surface]]:
        refl = offload.reflections
        if refl is None:
            return {}
        if refl.generation != self._overlay_generation:
            self._overlay_generation = refl.generation
            self._overlay = {}
            s = c.RT_SCALE
            for patch in refl.patches:
                h, w = patch.rgb.shape[:2]
                small = pygame.surfarray.make_surface(np.ascontiguousarray(patch.rgb.swapaxes(0, 1)))
                self._overlay[patch.key] = (patch.dx, patch.dy, pygame.transform.smoothscale(small, (w * s, h * s)))
        return self._overlay

    def _draw_overlay(self, world: World, offload: Offload) -> None:
        """Composite the traced image (160x90, scaled up, added) piece by piece at each object's position now:
        the image shows a moment ago, and each piece follows its object since."""
        refl = offload.reflections
        self.overlay_blits = 0
        if refl is None or not refl.fresh(world.tick):
            return
        surfaces = self._overlay_surfaces(offload)
        if not surfaces:
            return
        positions: dict[tuple[str, int], tuple[float, float]] = {}
        p = world.player
        if p.alive:
            positions[("player", 0)] = (p.x, p.y)
        for e in world.enemies:
            positions[("enemy", e.id)] = (e.x, e.y)
        for r in world.rocks:
            if r.kind == "asteroid":
                positions[("rock", r.id)] = (r.x + r.smooth_x, r.y + r.smooth_y)
        for sh in world.shots:
            positions[("shot", sh.id)] = (sh.x, sh.y)
        blits = []
        for key, (dx, dy, surf) in surfaces.items():
            pos = positions.get(key)
            if pos is not None:
                blits.append((surf, (pos[0] + dx, pos[1] + dy), None, pygame.BLEND_RGB_ADD))
        if blits:
            self.screen.blits(blits, doreturn=False)
        self.overlay_blits = len(blits)

    # HUD ----------------------------------------------------------------------------------------------------

    def _text(self, text: str, colour: tuple[int, int, int], font: pygame.font.Font | None = None) -> pygame.Surface:
        return (font or self.font).render(text, True, colour)

    def _draw_top_bar(self, world: World) -> None:
        screen = self.screen
        key = (world.score, world.wave, world.player.lives)
        if key != getattr(self, "_top_key", None):
            self._top_key = key
            surf = pygame.Surface((300, 26), pygame.SRCALPHA)
            surf.blit(self._text(f"SCORE {world.score:>6}", WHITE, self.font_big), (0, 4))
            surf.blit(self._text(f"WAVE {world.wave}", CYAN, self.font_big), (150, 4))
            self._top = surf
        screen.blit(self._top, (12, 8))
        for i in range(max(0, world.player.lives)):
            pts = _rotated(PLAYER_SHAPE, 250 + i * 22, 21, -math.pi / 2, 0.55)
            pygame.draw.polygon(screen, CYAN, pts, 2)

    def _draw_hud(self, world: World, offload: Offload, info: FrameInfo) -> None:
        if self._hud is None or world.tick - self._hud_frame >= 12:
            self._hud_frame = world.tick
            self._hud = self._render_hud(world, offload, info)
        self.screen.blit(self._hud, (self.screen.get_width() - self._hud.get_width() - 8, 8))

    def _render_hud(self, world: World, offload: Offload, info: FrameInfo) -> pygame.Surface:
        lh = 16
        rows: list[list[tuple[str, tuple[int, int, int]]]] = []
        status_col = GREEN if info.status == "ONLINE" else AMBER if info.status == "RECONNECTING" else DIM
        rows.append([("P2C2R ", WHITE), (f"{info.status:<12}", status_col),
                     (f"FPS {info.fps:4.0f}  {info.frame_ms:4.1f} ms", WHITE)])
        rows.append([("kind      p50ms   ok local stale now", DIM)])
        for kind in c.KINDS:
            if kind not in offload.stats:
                continue
            st = offload.stats[kind]
            p50 = st.latency_p50
            use = offload.usage_now.get(kind)
            lat = f"{p50:5.0f}" if p50 is not None else "    -"
            line = f"{c.SHORT_NAMES[kind]:<9}{lat} {st.applied:>5} {st.local:>5} {st.stale + st.late:>5} "
            tag, col = {NET: ("NET", GREEN), LOCAL: ("LOCAL", AMBER)}.get(use or "", ("-", DIM))
            rows.append([(line, WHITE), (tag, col)])
        src = offload.sources
        rows.append([(f"in flight {offload.in_flight:>3}   peers {offload.peer_share() * 100:5.1f}%", WHITE)])
        rows.append([(f"cache {src.get('cache', 0):>4}   cloud fallback {src.get('cloud', 0):>4}", WHITE)])
        cost = offload.cost_usd()
        saved = offload.savings_usd(world.tick)
        rows.append([(f"cost ${cost:.6f}", WHITE)])
        rows.append([(f"vs local GPU: {'saved' if saved >= 0 else 'extra'} ${abs(saved):.6f}",
                      GREEN if saved >= 0 else AMBER)])
        width = 330
        surf = pygame.Surface((width, lh * len(rows) + 12), pygame.SRCALPHA)
        surf.fill(PANEL)
        pygame.draw.rect(surf, (60, 80, 130, 220), surf.get_rect(), 1)
        for i, parts in enumerate(rows):
            x = 8
            for text, col in parts:
                t = self._text(text, col)
                surf.blit(t, (x, 6 + i * lh))
                x += t.get_width()
        return surf

    def _draw_subtitle(self, world: World, offload: Offload) -> None:
        dialogue = offload.dialogue
        sub = dialogue.subtitle if dialogue else None
        if sub is None:
            return
        key = (sub.persona, sub.text, sub.source)
        if key != self._sub_key:
            self._sub_key = key
            name = PERSONA_NAMES.get(sub.persona, sub.persona.upper())
            head = self._text(f"{name}: ", PERSONA_COLOURS.get(sub.persona, WHITE), self.font_sub)
            body = self._text(f"\u201c{sub.text}\u201d", WHITE, self.font_sub)
            tag = self._text("  (local)" if sub.source == LOCAL else "", AMBER, self.font)
            w = head.get_width() + body.get_width() + tag.get_width() + 24
            surf = pygame.Surface((w, 32), pygame.SRCALPHA)
            surf.fill((8, 10, 24, 200))
            pygame.draw.rect(surf, (70, 90, 140, 230), surf.get_rect(), 1)
            surf.blit(head, (12, 6))
            surf.blit(body, (12 + head.get_width(), 6))
            surf.blit(tag, (12 + head.get_width() + body.get_width(), 9))
            self._sub_surface = surf
        assert self._sub_surface is not None
        sw, sh = self.screen.get_size()
        self.screen.blit(self._sub_surface, ((sw - self._sub_surface.get_width()) // 2, sh - 48))

    def _draw_banner(self, world: World, info: FrameInfo) -> None:
        text = None
        if world.state == "game_over":
            text = "GAME OVER"
        elif world.state == "wave_break" and world.wave > 0:
            text = f"WAVE {world.wave} CLEAR"
        elif world.state == "playing" and world.tick % 120 < 90 and world.wave and world.tick < 150:
            text = f"WAVE {world.wave}"
        if text is None:
            return
        if text != self._banner_key:
            self._banner_key = text
            self._banner = self._text(text, WHITE, self.font_title)
        assert self._banner is not None
        sw, sh = self.screen.get_size()
        self.screen.blit(self._banner, ((sw - self._banner.get_width()) // 2, sh // 2 - 70))
