"""The game against a real network on this machine (coordinator and peers as processes): it applies
offloaded results of every kind, keeps running when the peers or the coordinator go away, and lets the
offloaded results take over again when the coordinator comes back."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pygame
import pytest

from p2c2r.game import config as c
from p2c2r.game.app import GameApp
from p2c2r.game.options import GameOptions
from tests.game.conftest import GameThread
from tests.procs import REPO, scaled, wait_until


def _pixels(path) -> np.ndarray:
    return pygame.surfarray.array3d(pygame.image.load(str(path))).astype(np.int16)


def test_600_headless_frames_apply_results_of_every_kind(shared_network, tmp_path):
    cloud, _peers = shared_network
    app = GameApp(GameOptions(url=cloud.url, headless=True, fps=60, seed=2, name="test_gamer", connect_wait_s=30))
    shots = {}

    def capture(game: GameApp) -> None:
        if game.frames in (300, 600):
            shots[game.frames] = tmp_path / f"frame{game.frames}.png"
            game.screenshot(str(shots[game.frames]))

    app.start()
    try:
        summary = app.run(frames=600, on_frame=capture)
    finally:
        app.close()
    assert summary["frames"] == 600
    for kind in c.KINDS:
        assert summary["applied"][kind] > 0, (kind, summary)
    assert summary["sources"]["peer"] > 0
    assert summary["offloaded_frame_share"]["physics"] > 0.5
    assert summary["cost_usd"] > 0
    # Never waits on the network: frames stay cheap (a loose bound, the machine is shared).
    assert summary["frame_ms"]["p50"] < 16.7, summary["frame_ms"]
    # The screenshots: not blank, and two moments of play differ.
    first, last = _pixels(shots[300]), _pixels(shots[600])
    assert first.std() > 10 and len(np.unique(first.reshape(-1, 3), axis=0)) > 200
    assert np.abs(first - last).mean() > 2.0


def test_without_peers_the_game_runs_on_cloud_fallback_and_local_approximations(procs):
    cloud = procs.cloud()
    peers = [procs.peer(cloud, f"game_peer_{i}") for i in (1, 2)]
    cloud.wait_for_peers(2)
    game = GameThread(cloud.url, seed=3).start()
    try:
        wait_until(lambda: game.source("peer") >= 10 and game.applied("physics") >= 5
                   and game.applied("rt_reflections") >= 2, 45, "results from peers")
        for peer in peers:
            peer.kill()
        frames, cloud_results = game.app.frames, game.source("cloud")
        applied = {k: game.applied(k) for k in ("physics", "rt_reflections")}
        wait_until(lambda: game.source("cloud") >= cloud_results + 10 and game.app.frames >= frames + 120,
                   40, "results from the coordinator's own compute")
        assert all(game.applied(k) > applied[k] for k in applied)
        assert game.app.status == "ONLINE"
    finally:
        game.stop()
    assert game.error is None
    summary = game.app.summary()
    assert summary["frame_ms"]["p50"] < 16.7


def test_coordinator_gone_the_game_runs_locally_and_recovers_when_it_returns(procs):
    cloud = procs.cloud()
    procs.peer(cloud, "game_peer_1")
    cloud.wait_for_peers(1)
    game = GameThread(cloud.url, seed=4).start()
    try:
        wait_until(lambda: all(game.applied(k) >= 3 for k in ("physics", "ai_pathfinding", "rt_reflections")), 45,
                   "offloaded results")
        port, db_path = cloud.port, cloud.db_path
        cloud.kill()
        wait_until(lambda: game.app.status == "RECONNECTING", 15, "the game to notice the coordinator is gone")
        frames = game.app.frames
        local = {k: game.local(k) for k in ("physics", "ai_pathfinding", "rt_reflections")}
        applied = {k: game.applied(k) for k in ("physics", "ai_pathfinding", "rt_reflections")}
        # It keeps playing, on local approximations only.
        wait_until(lambda: game.app.frames >= frames + 90 and all(game.local(k) > local[k] for k in local),
                   20, "frames played on local approximations")
        assert {k: game.applied(k) for k in applied} == applied
        assert game.app.offload.usage_now["physics"] == "local"
        # The coordinator returns on the same port with the same database: offloaded results take over again.
        procs.cloud(port=port, db_path=db_path)
        wait_until(lambda: all(game.applied(k) >= applied[k] + 3 for k in applied), 45,
                   "offloaded results after the coordinator's return")
        wait_until(lambda: game.app.offload.usage_now["physics"] == "net", 10, "physics back on the network")
    finally:
        game.stop()
    assert game.error is None
    # Not one frame stalled on the network while it was away.
    assert max(game.app.frame_ms) < scaled(250), max(game.app.frame_ms)


@pytest.mark.timeout(180)
def test_command_line_local_headless_json_and_screenshot(tmp_path):
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [sys.executable, "game_demo.py", "--local", "--headless", "--frames", "240", "--screenshot", str(shot),
         "--json"], cwd=REPO, capture_output=True, text=True, timeout=scaled(150))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 240
    assert set(summary["frame_ms"]) >= {"p50", "p99"}
    for key in ("applied", "local_fallbacks", "stale_dropped"):
        assert set(summary[key]) == set(c.KINDS)
    assert summary["applied"]["physics"] > 0
    assert "cost_usd" in summary
    assert _pixels(shot).std() > 10
