"""The game's pure logic, without a display or a network: stale-drop rule, fallback choice, the inputs it
builds (accepted by the kinds' own parsers), applying outputs, the offload manager's bookkeeping, the pilot."""

from __future__ import annotations

import math
import zlib

import numpy as np

from p2c2r.game import config as c
from p2c2r.game import requests as rq
from p2c2r.game.fallbacks import CANNED_LINES, LOCAL, NET, canned_line, choose_source, euler_step
from p2c2r.game.offload import APPLY, LATE, STALE, Offload, default_handlers, judge
from p2c2r.game.pilot import lead, steer
from p2c2r.game.world import Controls, Enemy, Rock, World
from p2c2r.tasks import get_kind


def _world(seed: int = 3) -> World:
    world = World(seed)
    for _ in range(40):  # through the first wave break: enemies on the field
        world.step(Controls())
    assert world.enemies
    return world


# Rules ---------------------------------------------------------------------------------------------------


def test_judge_applies_fresh_results_and_drops_older_or_late_ones():
    assert judge(request_tick=100, now_tick=110, deadline_ticks=20, newest_applied_tick=90) == APPLY
    assert judge(request_tick=100, now_tick=110, deadline_ticks=20, newest_applied_tick=None) == APPLY
    # a result for a tick older than (or the same as) the newest applied one: the game moved past it
    assert judge(request_tick=100, now_tick=110, deadline_ticks=20, newest_applied_tick=103) == STALE
    assert judge(request_tick=100, now_tick=110, deadline_ticks=20, newest_applied_tick=100) == STALE
    # later than the game's deadline: the local approximation already took over
    assert judge(request_tick=100, now_tick=121, deadline_ticks=20, newest_applied_tick=None) == LATE
    assert judge(request_tick=100, now_tick=120, deadline_ticks=20, newest_applied_tick=None) == APPLY


def test_choose_source_uses_offloaded_results_only_while_fresh():
    assert choose_source(None, 50, 10) == LOCAL
    assert choose_source(45, 50, 10) == NET
    assert choose_source(40, 50, 10) == NET
    assert choose_source(39, 50, 10) == LOCAL


def test_plans_turn_deadlines_into_ticks():
    plan = c.PLANS["physics"]
    assert plan.deadline_ticks == math.ceil(plan.deadline_ms * 60 / 1000)
    assert all(p.hold_ticks >= p.every_ticks for p in c.PLANS.values())


def test_euler_step_moves_and_bounces_off_walls():
    rock = Rock(1, "asteroid", 2, x=30.0, y=100.0, vx=-1200.0, vy=60.0, radius=25.0)
    euler_step(rock, 1 / 60)
    assert rock.x == 25.0 and rock.vx > 0  # bounced off the left wall
    assert math.isclose(rock.y, 101.0)


def test_canned_lines_exist_for_every_event_the_game_speaks_about():
    for event, (persona, _mood) in rq.SPEAKERS.items():
        assert canned_line(persona, event, 7) != "..."
    assert canned_line("merchant", "unknown", 1) == "..."


# Inputs the game builds are valid inputs of the kinds ----------------------------------------------------


def test_pathfinding_input_is_accepted_and_frees_start_and_goal_cells():
    world = _world()
    enemy = world.enemies[0]
    rock = world.asteroids[0]
    enemy.x, enemy.y = rock.x + rock.radius + 2, rock.y  # pushed against a rock: its cell is grown-blocked
    task, meta = rq.build_pathfinding(world)
    grid = np.frombuffer(task["grid"], dtype=np.uint8).reshape(c.GRID_H, c.GRID_W)
    cx, cy = rq.cell_of(rock.x, rock.y)
    assert grid[cy, cx] == 1
    kind = get_kind("ai_pathfinding")
    inp = kind.parse_input(task)  # refuses blocked starts or goals
    out = kind.compute(inp)
    assert meta.enemy_ids == tuple(e.id for e in world.enemies)
    raw = {"paths": [{"found": p.found, "cost": p.cost, "path": [list(cell) for cell in p.path]} for p in out.paths]}
    applied, stale = rq.apply_pathfinding(world, meta, raw)
    assert applied == sum(p.found for p in out.paths) and stale == 0
    assert world.enemies[0].path_tick == meta.tick


def test_pathfinding_result_for_an_enemy_shot_down_since_is_dropped():
    world = _world()
    task, meta = rq.build_pathfinding(world)
    gone = world.enemies.pop(0)
    raw = {"paths": [{"found": True, "cost": 0.0, "path": [a["start"]]} for a in task["agents"]]}
    applied, stale = rq.apply_pathfinding(world, meta, raw)
    assert stale == 1 and applied == len(world.enemies)
    assert gone.path == []


def test_enemies_follow_fresh_paths_and_fly_straight_otherwise():
    world = _world()
    enemy = world.enemies[0]
    goal = world.enemy_goal(enemy)
    assert world.enemy_target(enemy) == goal and not enemy.on_path
    enemy.path = [(enemy.x + 12 * i, enemy.y) for i in range(10)]
    enemy.path_tick = world.tick
    target = world.enemy_target(enemy)
    assert enemy.on_path and target == enemy.path[3]
    world.tick += world.path_hold_ticks + 1  # the path is now too old
    assert world.enemy_target(enemy) == world.enemy_goal(enemy) and not enemy.on_path


def test_physics_input_is_accepted_and_result_is_applied_forward_except_changed_rocks():
    world = _world()
    task, meta = rq.build_physics(world)
    get_kind("physics").parse_input(task)
    n = len(meta.ids)
    s = 1 / c.PHYS_PX_PER_UNIT
    rocks = world.rock_by_id()
    # An output: every rock moved 1 unit to the right, velocity 0.
    out = {
        "x": np.array([rocks[i].x * s + 1.0 for i in meta.ids]).tobytes(),
        "y": np.array([rocks[i].y * s for i in meta.ids]).tobytes(),
        "vx": np.zeros(n).tobytes(), "vy": np.zeros(n).tobytes(),
        "angle": np.zeros(n).tobytes(), "angular_velocity": np.zeros(n).tobytes(),
    }
    destroyed, hit = meta.ids[0], meta.ids[1]
    world.rocks.remove(rocks[destroyed])
    rocks[hit].version += 1  # the game changed this rock itself after the request
    hit_x = rocks[hit].x
    keep = rocks[meta.ids[2]]
    before = keep.x
    applied, stale = rq.apply_physics(world, meta, out)
    assert (applied, stale) == (n - 2, 2)
    assert rocks[hit].x == hit_x
    expected = min(max(before + c.PHYS_PX_PER_UNIT, keep.radius), world.width - keep.radius)
    assert math.isclose(keep.x, expected)
    assert keep.vx == 0.0


def test_reflection_scene_is_accepted_frames_the_arena_and_is_cut_into_patches():
    world = _world()
    world.shots.clear()
    task, meta = rq.build_reflections(world)
    kind = get_kind("rt_reflections")
    out = kind.compute(kind.parse_input(task))
    image = rq.decode_reflections({"width": out.width, "height": out.height, "rgb_zlib": out.rgb_zlib})
    assert image.shape == (c.RT_H, c.RT_W, 3)
    # The player's bubble is traced where the player is drawn.
    p = world.player
    px, py = int(p.x / c.RT_SCALE), int(p.y / c.RT_SCALE)
    assert image[py - 1:py + 2, px - 1:px + 2].sum() > 0
    assert image[2, 2].sum() == 0  # background stays black: nothing to add
    patches = rq.cut_patches(image, meta)
    keys = {patch.key for patch in patches}
    assert ("player", 0) in keys and all(k in {o.key for o in meta.objects} for k in keys)


def test_reflection_image_of_the_wrong_size_is_refused():
    bad = {"width": 10, "height": 10, "rgb_zlib": zlib.compress(bytes(300))}
    try:
        rq.decode_reflections(bad)
    except ValueError:
        pass
    else:
        raise AssertionError("accepted a wrong-size image")


def test_dialogue_input_is_accepted():
    task, meta = rq.build_dialogue("wave_start", ["wave_start"], seed=5, tick=10)
    get_kind("ai_npc_dialogue").parse_input(task)
    assert meta.persona == "commander"


# The offload manager ---------------------------------------------------------------------------------------


def _offload(gamer) -> tuple[World, Offload]:
    world = _world()
    return world, Offload(gamer, default_handlers(1))


def _tick(world: World, off: Offload, n: int = 1) -> None:
    for _ in range(n):
        world.step(Controls())
        off.update(world)


def test_due_kinds_are_submitted_without_waiting_and_capped_in_flight(fake_gamer):
    world, off = _offload(fake_gamer)
    _tick(world, off, 1)
    kinds = {k for _, k, _ in fake_gamer.sent}
    assert {"physics", "ai_pathfinding", "rt_reflections"} <= kinds
    _tick(world, off, 3 * c.PLANS["physics"].max_in_flight + 3)
    assert off.in_flight_of("physics") == c.PLANS["physics"].max_in_flight


def test_result_in_time_is_applied_then_older_one_is_dropped_as_stale(fake_gamer):
    world, off = _offload(fake_gamer)
    _tick(world, off, 1)
    first = fake_gamer.last("ai_pathfinding")
    _tick(world, off, c.PLANS["ai_pathfinding"].every_ticks)
    second = fake_gamer.last("ai_pathfinding")
    assert first[0] != second[0]
    paths = {"paths": [{"found": False, "cost": 0.0, "path": []} for _ in second[2]["agents"]]}
    fake_gamer.finish(second[0], paths)
    _tick(world, off)
    assert off.stats["ai_pathfinding"].applied == 1
    fake_gamer.finish(first[0], {"paths": [{"found": False, "cost": 0.0, "path": []} for _ in first[2]["agents"]]})
    _tick(world, off)
    st = off.stats["ai_pathfinding"]
    assert (st.applied, st.stale) == (1, 1)
    assert off.sources["peer"] == 2 and off.cost_micro_usd == 4  # dropped results are still paid for


def test_missed_deadline_counts_a_local_fallback_and_the_late_result_is_dropped(fake_gamer):
    world, off = _offload(fake_gamer)
    _tick(world, off, 1)
    task_id, _, task = fake_gamer.last("rt_reflections")
    _tick(world, off, c.PLANS["rt_reflections"].deadline_ticks + 1)
    st = off.stats["rt_reflections"]
    assert st.local >= 1
    kind = get_kind("rt_reflections")
    out = kind.compute(kind.parse_input(task))
    fake_gamer.finish(task_id, {"width": out.width, "height": out.height, "rgb_zlib": out.rgb_zlib})
    _tick(world, off)
    assert st.late == 1 and st.applied == 0
    assert off.summary(world.tick)["stale_dropped"]["rt_reflections"] >= 1


def test_late_dialogue_shows_a_canned_line_marked_local_and_the_late_line_is_not_shown(fake_gamer):
    world, off = _offload(fake_gamer)
    world.events = ["player_hit"]
    off.update(world)
    task_id, kind, _ = fake_gamer.last("ai_npc_dialogue")
    _tick(world, off, c.PLANS["ai_npc_dialogue"].deadline_ticks + 1)
    sub = off.dialogue.subtitle
    assert sub is not None and sub.source == LOCAL
    assert any(sub.text in lines for lines in CANNED_LINES.values())
    fake_gamer.finish(task_id, {"line": "Too late to matter.", "persona": "commander", "model": "ngram-v1", "words": 4})
    _tick(world, off)
    assert off.dialogue.subtitle.text != "Too late to matter."
    assert off.stats["ai_npc_dialogue"].late == 1


def test_without_a_connection_nothing_is_sent_and_every_kind_runs_locally(fake_gamer):
    fake_gamer.connected = False
    world, off = _offload(fake_gamer)
    _tick(world, off, 120)
    assert fake_gamer.sent == []
    summary = off.summary(world.tick)
    assert summary["local_fallbacks"]["physics"] >= 120 // c.PLANS["physics"].every_ticks - 1
    assert summary["local_fallbacks"]["rt_reflections"] >= 1
    assert summary["offloaded_frame_share"]["physics"] == 0.0
    # the connection comes back: offloaded results take over again
    fake_gamer.connected = True
    _tick(world, off, 1)
    task_id, _, task = fake_gamer.last("physics")
    n = len(np.frombuffer(task["x"], dtype="<f8"))
    fake_gamer.finish(task_id, {k: task[k] if k in task else np.zeros(n).tobytes()
                                for k in ("x", "y", "vx", "vy", "angle", "angular_velocity")})
    _tick(world, off, 1)
    assert off.stats["physics"].applied == 1 and off.usage_now["physics"] == NET


def test_a_failed_task_falls_back_locally(fake_gamer):
    from p2c2r.errors import TaskFailed
    from p2c2r.gamer.threaded import Completion

    world, off = _offload(fake_gamer)
    _tick(world, off, 1)
    task_id, kind, _ = fake_gamer.last("physics")
    fake_gamer._open.pop(task_id)
    fake_gamer._done.append(Completion(task_id, kind, None, TaskFailed(task_id, "disconnected", "gone")))
    _tick(world, off, 1)
    assert off.stats["physics"].failed == 1 and off.stats["physics"].local == 1


def test_savings_compare_with_a_local_gpu_by_play_time(fake_gamer):
    from p2c2r.network_config import local_gpu_cost_usd_per_hour

    world, off = _offload(fake_gamer)
    off.cost_micro_usd = 100
    assert math.isclose(off.savings_usd(3600 * 60), local_gpu_cost_usd_per_hour() - 0.0001)


# The pilot -----------------------------------------------------------------------------------------------


def test_pilot_turns_towards_and_fires_at_a_lined_up_enemy():
    world = World(1)
    world.rocks.clear()
    p = world.player
    p.angle = 0.0
    world.enemies = [Enemy(99, "grunt", p.x + 300, p.y)]
    ctl = steer(world)
    assert ctl.fire and abs(ctl.turn) < 0.2
    world.enemies = [Enemy(99, "grunt", p.x, p.y - 300)]  # straight up the screen: a left turn
    ctl = steer(world)
    assert ctl.turn < 0 and not ctl.fire


def test_pilot_steers_away_from_a_rock_ahead():
    world = World(1)
    world.rocks.clear()
    p = world.player
    p.angle = 0.0
    world.rocks.append(Rock(5, "asteroid", 3, p.x + 60, p.y + 5, 0.0, 0.0, 38.0))
    world.enemies = [Enemy(99, "grunt", p.x + 400, p.y)]
    ctl = steer(world)
    assert abs(ctl.turn) > 0.5


def test_lead_aims_ahead_of_a_moving_target():
    ax, ay = lead(0.0, 0.0, 300.0, 0.0, 0.0, 100.0)
    assert ax == 300.0 and ay > 30.0


def test_pilot_plays_a_deterministic_game_that_scores():
    def play(seed: int) -> tuple[int, int, int]:
        world = World(seed)
        for _ in range(1800):
            world.step(steer(world))
        return world.score, world.kills, world.tick

    first = play(4)
    assert first == play(4)
    assert first[0] > 0 and first[1] >= 1
