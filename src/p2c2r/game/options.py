"""The game's command line (``p2c2r game`` and ``game_demo.py``). No pygame here: ``p2c2r --help`` stays fast."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from p2c2r.network_config import DEFAULT_PORT, GAME_FPS


def add_game_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("network")
    target.add_argument("--cloud-ip", help="coordinator host or address, or a ws:// / wss:// URL")
    target.add_argument("--cloud-port", type=int, default=DEFAULT_PORT, help=f"coordinator port (default {DEFAULT_PORT})")
    target.add_argument("--tls", action="store_true", help="connect with wss:// (TLS), verifying the certificate")
    target.add_argument("--cafile", help="CA certificate to verify the coordinator with (default: system store)")
    target.add_argument("--name", help="a label shown to the coordinator (default: gamer_<host name>)")
    target.add_argument("--local", action="store_true",
                        help="start a coordinator and two peers on this machine for the game (stopped on exit)")
    target.add_argument("--offline", action="store_true",
                        help="no network at all: local approximations only (a baseline)")
    target.add_argument("--connect-wait", type=float, default=None,
                        help="seconds to wait for the coordinator before the first frame "
                             "(default: 20 headless or --local, 0 in a window)")
    play = parser.add_argument_group("play")
    play.add_argument("--headless", action="store_true",
                      help="no window (SDL_VIDEODRIVER=dummy); the scripted pilot plays")
    play.add_argument("--autopilot", action="store_true", help="let the scripted pilot fly in a window (TAB toggles)")
    play.add_argument("--frames", type=int, default=None,
                      help="stop after this many frames (default: 600 headless, unlimited in a window)")
    play.add_argument("--fps", type=float, default=GAME_FPS,
                      help=f"frame pacing, 0 = unpaced (default {GAME_FPS}); frame times exclude the pacing sleep")
    play.add_argument("--seed", type=int, default=1, help="seed of the game's randomness")
    play.add_argument("--screenshot", help="save the last frame to this PNG file")
    play.add_argument("--json", action="store_true", help="end with one JSON line: frames, frame times, per-kind counts, cost")


@dataclass
class GameOptions:
    url: str | None
    headless: bool = False
    autopilot: bool = False
    frames: int = 0  # 0 = until the window is closed
    fps: float = GAME_FPS
    seed: int = 1
    screenshot: str | None = None
    json_output: bool = False
    name: str = "gamer"
    connect_wait_s: float = 0.0
    cafile: str | None = None
