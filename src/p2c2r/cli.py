"""``p2c2r cloud|peer|gamer|demo|test-network``: one console command; the seed's run_*.py scripts wrap it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from p2c2r import logs
from p2c2r.console import Console
from p2c2r.endpoints import cloud_url
from p2c2r.network_config import DEFAULT_DB_PATH, DEFAULT_HOST, DEFAULT_PORT, GAME_FPS


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default=os.environ.get("P2C2R_LOG_LEVEL", "WARNING"),
                        help="structured log level on stderr (default WARNING)")
    parser.add_argument("--quiet", action="store_true", help="no per-task lines, only connections and totals")


def _add_cloud_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cloud-ip", required=True, help="coordinator host or address, or a ws:// / wss:// URL")
    parser.add_argument("--cloud-port", type=int, default=DEFAULT_PORT, help=f"coordinator port (default {DEFAULT_PORT})")
    parser.add_argument("--tls", action="store_true", help="connect with wss:// (TLS), verifying the certificate")
    parser.add_argument("--cafile", help="CA certificate to verify the coordinator with (default: system store)")
    parser.add_argument("--name", help="a label shown to the coordinator (default: the host name)")
    parser.add_argument("--key", metavar="PATH",
                        help="this client's identity key, made on first use (default: <role>-<name>.key in "
                             "$P2C2R_KEY_DIR or ~/.config/p2c2r)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2c2r", description="Community-shared game compute.")
    sub = parser.add_subparsers(dest="command", required=True)

    cloud = sub.add_parser("cloud", help="run the coordinator")
    cloud.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    cloud.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port for WebSocket and HTTP (default {DEFAULT_PORT})")
    cloud.add_argument("--db", default=DEFAULT_DB_PATH, help=f"SQLite database (default {DEFAULT_DB_PATH})")
    cloud.add_argument("--fallback-workers", type=int, default=1, help="processes for cloud fallback compute")
    cloud.add_argument("--certfile", help="TLS certificate (serves wss:// and https://)")
    cloud.add_argument("--keyfile", help="TLS private key")
    cloud.add_argument("--heartbeat-interval", type=float, default=None, help="seconds between peer heartbeats")
    from p2c2r import admin

    admin.add_cloud_arguments(cloud)
    _add_common(cloud)

    peer = sub.add_parser("peer", help="contribute compute as a peer")
    _add_cloud_target(peer)
    peer.add_argument("--slots", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="tasks run at once, one worker process each")
    peer.add_argument("--cheat", choices=["random", "stale", "lazy", "subtle"],
                      help="DEMONSTRATION AND TEST AID: return bad results, to watch the coordinator catch them")
    _add_common(peer)

    gamer = sub.add_parser("gamer", help="play a scripted game session that offloads work")
    _add_cloud_target(gamer)
    gamer.add_argument("--frames", type=int, default=300, help="frames to play (default 300)")
    gamer.add_argument("--fps", type=float, default=GAME_FPS, help=f"frame rate, 0 = unpaced (default {GAME_FPS})")
    gamer.add_argument("--seed", type=int, default=1, help="seed of the scripted game work")
    gamer.add_argument("--json", action="store_true", help="end with one JSON line of results")
    _add_common(gamer)

    demo = sub.add_parser("demo", help="a coordinator, two peers and a gamer on this machine")
    demo.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
    demo.add_argument("--frames", type=int, default=300)
    demo.add_argument("--db", default=None, help="database (default: a temporary file)")
    _add_common(demo)

    from p2c2r.game.options import add_game_arguments

    game = sub.add_parser("game", help="the space shooter whose enemy AI, reflections, physics and NPC lines run on the network")
    add_game_arguments(game)
    _add_common(game)
    admin.add_admin_parser(sub)

    from p2c2r import netcheck

    check = sub.add_parser("test-network", help="check a running network from this device, or --simulate one here")
    netcheck.add_arguments(check)
    _add_common(check)
    return parser


def _run(coro: Any) -> Any:
    """asyncio.run on uvloop where it is installed (it roughly halves per-message overhead), else asyncio's."""
    _tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _tune_gc() -> None:
    # A long-running service allocates a few objects per message, and with thousands of tasks in flight
    # CPython's default thresholds run a young-generation collection every 700 allocations, each of which
    # walks the survivors: measured as a tenth of the coordinator's time at full load. Everything imported
    # so far lives forever, so it leaves the collector's view, and collections run less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "admin":
        from p2c2r.admin import run_admin

        return run_admin(args)
    logs.configure(args.log_level)
    console = Console(quiet=args.quiet)
    from p2c2r.identity import IdentityError

    try:
        if args.command == "cloud":
            return _cloud(args, console)
        if args.command == "peer":
            return _peer(args, console)
        if args.command == "gamer":
            return _gamer(args, console)
        if args.command == "demo":
            from p2c2r.demo import run_demo

            return run_demo(port=args.port, frames=args.frames, db=args.db, quiet=args.quiet)
        if args.command == "game":
            from p2c2r.game.app import run_game

            return run_game(args)
        if args.command == "test-network":
            from p2c2r.netcheck import run_from_args

            return run_from_args(args)
    except KeyboardInterrupt:
        return 130
    except IdentityError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    return 2


def _cloud(args: argparse.Namespace, console: Console) -> int:
    from p2c2r.cloud.server import ServerSettings, run_coordinator

    settings = ServerSettings(host=args.host, port=args.port, db_path=args.db, fallback_workers=args.fallback_workers,
                              certfile=args.certfile, keyfile=args.keyfile)
    from p2c2r.admin import apply_cloud_arguments

    apply_cloud_arguments(args, settings)
    if args.heartbeat_interval:
        settings.heartbeat_interval_s = args.heartbeat_interval
    try:
        _run(run_coordinator(settings, console=console))
    except OSError as exc:
        print(f"❌ Could not start the coordinator on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _url(args: argparse.Namespace) -> str:
    return cloud_url(args.cloud_ip, args.cloud_port, tls=args.tls)


def _peer(args: argparse.Namespace, console: Console) -> int:
    from p2c2r.errors import HandshakeError
    from p2c2r.peer.agent import PeerAgent, PeerSettings

    tamper = None
    if args.cheat:
        from p2c2r.peer.cheats import make_tamperer

        tamper = make_tamperer(args.cheat)
        console.line(f"⚠️  CHEAT MODE '{args.cheat}': this peer returns bad results on purpose (demonstration)")
    settings = PeerSettings(url=_url(args), name=args.name or f"peer_{socket.gethostname()}", slots=args.slots,
                            cafile=args.cafile, tamper=tamper, key_path=args.key)

    async def run() -> None:
        agent = PeerAgent(settings, console=console)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    try:
        _run(run())
    except HandshakeError:
        return 1
    return 0


def _gamer(args: argparse.Namespace, console: Console) -> int:
    from p2c2r.errors import HandshakeError
    from p2c2r.gamer.session import SessionSettings, run_gamer_session

    settings = SessionSettings(frames=args.frames, fps=args.fps, seed=args.seed, json_output=args.json)
    try:
        summary = _run(run_gamer_session(_url(args), name=args.name or f"gamer_{socket.gethostname()}",
                                                settings=settings, console=console, key_path=args.key,
                                                cafile=args.cafile))
    except (TimeoutError, ConnectionError, HandshakeError) as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    return 0 if summary["failed"] == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
