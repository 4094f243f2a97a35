"""The main loop: input (keyboard or pilot), offload bookkeeping, the local step, drawing, pacing.

A frame never waits on the network: tasks go out through ``ThreadedGamer.submit`` and come back through
``poll``. The frame time recorded is the work of the frame (events, update, draw, flip), not the pacing
sleep after it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from p2c2r.game import config as c
from p2c2r.game.offload import Offload, default_handlers
from p2c2r.game.options import GameOptions
from p2c2r.game.pilot import steer
from p2c2r.game.world import Controls, World
from p2c2r.quantiles import percentile


def _prepare_sdl(headless: bool) -> None:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


class GameApp:
    """One game session. ``start()``, then ``run()`` (or ``frame()`` repeatedly), then ``close()``."""

    def __init__(self, options: GameOptions, gamer: Any | None = None) -> None:
        self.options = options
        self.world = World(options.seed)
        self._gamer = gamer
        self._own_gamer = False
        self.offload: Offload | None = None
        self.screen: Any = None
        self.renderer: Any = None
        self.frame_ms: list[float] = []
        self.frames = 0
        self.autopilot = options.headless or options.autopilot
        self.quit = False
        self._fps_window: list[float] = []
        self._stop_requested = False

    # Set-up -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        _prepare_sdl(self.options.headless)
        import pygame

        from p2c2r.game.render import Renderer

        pygame.display.init()
        pygame.font.init()
        self.screen = pygame.display.set_mode((c.ARENA_W, c.ARENA_H))
        pygame.display.set_caption("P2C2R space shooter: enemy AI, reflections, physics and NPC lines on the network")
        self.renderer = Renderer(self.screen)
        if self._gamer is None and self.options.url:
            from p2c2r.endpoints import client_ssl_context
            from p2c2r.gamer.threaded import ThreadedGamer
            from p2c2r.gamer.transport import WebSocketTransport

            ctx = client_ssl_context(self.options.url, self.options.cafile)
            self._gamer = ThreadedGamer(self.options.url, name=self.options.name,
                                        transport=WebSocketTransport(ssl_context=ctx))
            self._gamer.start()
            self._own_gamer = True
        self.offload = Offload(self._gamer, default_handlers(self.options.seed))
        if self._gamer is not None and self.options.connect_wait_s > 0:
            deadline = time.monotonic() + self.options.connect_wait_s
            while not self._gamer.connected and time.monotonic() < deadline:
                time.sleep(0.02)

    def close(self) -> None:
        if self._own_gamer and self._gamer is not None:
            try:
                self._gamer.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self._gamer = None
        import pygame

        pygame.display.quit()

    def request_stop(self) -> None:
        self._stop_requested = True

    @property
    def status(self) -> str:
        if self._gamer is None:
            return "OFFLINE"
        return "ONLINE" if self._gamer.connected else "RECONNECTING"

    # Frames -------------------------------------------------------------------------------------------------

    def _controls(self) -> Controls:
        import pygame

        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.quit = True
            elif event.type == pygame.KEYDOWN:
                if event.key in (pygame.K_ESCAPE, pygame.K_q):
                    self.quit = True
                elif event.key == pygame.K_TAB:
                    self.autopilot = not self.autopilot
        if self.autopilot:
            return steer(self.world)
        keys = pygame.key.get_pressed()
        turn = (keys[pygame.K_RIGHT] or keys[pygame.K_d]) - (keys[pygame.K_LEFT] or keys[pygame.K_a])
        return Controls(turn=float(turn), thrust=bool(keys[pygame.K_UP] or keys[pygame.K_w]),
                        brake=bool(keys[pygame.K_DOWN] or keys[pygame.K_s]), fire=bool(keys[pygame.K_SPACE]))

    def frame(self) -> float:
        """Play one frame; returns its work time in ms."""
        import pygame

        from p2c2r.game.render import FrameInfo

        assert self.offload is not None and self.renderer is not None
        t0 = time.perf_counter()
        controls = self._controls()
        self.world.step(controls)
        self.offload.update(self.world)
        fps = (len(self._fps_window) - 1) / (self._fps_window[-1] - self._fps_window[0]) \
            if len(self._fps_window) > 1 and self._fps_window[-1] > self._fps_window[0] else 0.0
        recent = self.frame_ms[-30:]
        info = FrameInfo(fps=fps, frame_ms=sum(recent) / len(recent) if recent else 0.0, status=self.status,
                         target=self.options.url or "offline")
        self.renderer.draw(self.world, self.offload, info)
        pygame.display.flip()
        work = (time.perf_counter() - t0) * 1000.0
        self.frame_ms.append(work)
        self.frames += 1
        self._fps_window.append(time.perf_counter())
        if len(self._fps_window) > 61:
            del self._fps_window[0]
        return work

    def run(self, frames: int | None = None, on_frame: Callable[[GameApp], None] | None = None) -> dict[str, Any]:
        """Play ``frames`` frames (0 or None: until quit), paced at ``options.fps`` (0: unpaced)."""
        frames = self.options.frames if frames is None else frames
        period = 1.0 / self.options.fps if self.options.fps > 0 else 0.0
        next_at = time.perf_counter()
        played = 0
        while not self.quit and not self._stop_requested and (not frames or played < frames):
            self.frame()
            played += 1
            if on_frame is not None:
                on_frame(self)
            if period:
                next_at += period
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.25:  # far behind (a stall outside the game): do not try to catch up
                    next_at = time.perf_counter()
        return self.summary()

    def screenshot(self, path: str) -> None:
        import pygame

        pygame.image.save(self.screen, path)

    def summary(self) -> dict[str, Any]:
        assert self.offload is not None
        return {
            "frames": self.frames,
            "frame_ms": {"p50": round(percentile(self.frame_ms, 50), 3), "p99": round(percentile(self.frame_ms, 99), 3),
                         "max": round(max(self.frame_ms, default=0.0), 3),
                         "mean": round(sum(self.frame_ms) / len(self.frame_ms), 3) if self.frame_ms else 0.0},
            "fps_target": self.options.fps,
            "status": self.status,
            **self.offload.summary(self.world.tick),
            "score": self.world.score,
            "wave": self.world.wave,
            "kills": self.world.kills,
            "games": self.world.games,
        }


# Command line ---------------------------------------------------------------------------------------------


def options_from_args(args: argparse.Namespace, url: str | None) -> GameOptions:
    headless = bool(args.headless)
    frames = args.frames if args.frames is not None else (600 if headless else 0)
    wait = args.connect_wait if args.connect_wait is not None else (20.0 if headless or args.local else 0.0)
    return GameOptions(url=url, headless=headless, autopilot=bool(args.autopilot), frames=frames, fps=args.fps,
                       seed=args.seed, screenshot=args.screenshot, json_output=bool(args.json),
                       name=args.name or f"gamer_{socket.gethostname()}", connect_wait_s=wait, cafile=args.cafile)


def run_game(args: argparse.Namespace) -> int:
    from p2c2r.endpoints import cloud_url

    if not (args.cloud_ip or args.local or args.offline):
        print("❌ give --cloud-ip HOST, or --local (a network on this machine), or --offline", file=sys.stderr)
        return 2
    network = None
    app: GameApp | None = None
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread:
        # SIGTERM ends the game like Ctrl+C: the summary is printed and a --local network is stopped.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.local:
            from p2c2r.game.localnet import LocalNetwork

            network = LocalNetwork()
            url: str | None = network.start(say=not args.json)
        elif args.offline:
            url = None
        else:
            url = cloud_url(args.cloud_ip, args.cloud_port, tls=args.tls)
        options = options_from_args(args, url)
        app = GameApp(options)
        app.start()
        try:
            summary = app.run()
        except KeyboardInterrupt:
            summary = app.summary()
        if options.screenshot:
            app.screenshot(options.screenshot)
        if options.json_output:
            print(json.dumps(summary), flush=True)
        else:
            _print_summary(summary)
        return 0
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError) as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    finally:
        if app is not None:
            app.close()
        if network is not None:
            network.stop()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_summary(s: dict[str, Any]) -> None:
    print(f"🎮 {s['frames']} frames, frame time p50 {s['frame_ms']['p50']:.1f} ms, p99 {s['frame_ms']['p99']:.1f} ms")
    print(f"   score {s['score']}, wave {s['wave']}")
    for kind in c.KINDS:
        print(f"   {kind:<16} applied {s['applied'].get(kind, 0):>5}  local {s['local_fallbacks'].get(kind, 0):>4}  "
              f"stale {s['stale_dropped'].get(kind, 0):>4}  offloaded frames {s['offloaded_frame_share'].get(kind, 0) * 100:5.1f}%")
    print(f"   results: {s['sources']}; cost ${s['cost_usd']:.6f}; vs local GPU ${s['savings_usd']:+.6f}")

