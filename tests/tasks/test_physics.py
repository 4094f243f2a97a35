"""Tests of the ``physics`` task kind: solver behaviour, verify's power and limits, input and output checks."""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks import get_kind
from p2c2r.tasks import physics as phys

# --- helpers ----------------------------------------------------------------------------------------------


def step(raw: dict) -> tuple[phys.Input, phys.Output]:
    inp = phys.parse_input(raw)
    return inp, phys.compute(inp)


def state(out: phys.Output) -> dict[str, np.ndarray]:
    return {field: np.frombuffer(getattr(out, field), dtype="<f8") for field in phys._STATE_FIELDS}


def output_from(columns: dict[str, np.ndarray]) -> phys.Output:
    return phys.Output(**{f: np.asarray(columns[f], dtype="<f8").tobytes() for f in phys._STATE_FIELDS})


def next_input(raw: dict, out: phys.Output) -> dict:
    """The raw input of the following step (the output state fed back, packed columns as they came)."""
    return {**raw, **{f: getattr(out, f) for f in phys._STATE_FIELDS}}


def two_balls(gap: float, speed: float, restitution: float, *, mass: float = 1.0) -> dict:
    """Two equal balls on the x axis approaching head-on, no gravity, no friction, no walls."""
    return {
        "x": [0.0, 1.0 + gap],
        "y": [0.0, 0.0],
        "vx": [speed, -speed],
        "vy": [0.0, 0.0],
        "radius": [0.5, 0.5],
        "mass": [mass, mass],
        "restitution": restitution,
        "friction": 0.0,
        "gravity": [0.0, 0.0],
    }


def scattered_scene(rng: random.Random, n: int, *, box: bool = True, gravity: float = -9.81) -> dict:
    """Non-overlapping circles on a jittered grid, moving; a sparse scene of small islands."""
    columns = max(1, int(math.sqrt(n)))
    spacing = 1.6
    xs, ys, radii = [], [], []
    for k in range(n):
        radius = rng.uniform(0.2, 0.45)
        xs.append(1.0 + (k % columns) * spacing + rng.uniform(-0.2, 0.2))
        ys.append(1.0 + (k // columns) * spacing + rng.uniform(-0.2, 0.2))
        radii.append(radius)
    raw = {
        "x": xs,
        "y": ys,
        "vx": [rng.uniform(-4, 4) for _ in range(n)],
        "vy": [rng.uniform(-4, 4) for _ in range(n)],
        "angular_velocity": [rng.uniform(-3, 3) for _ in range(n)],
        "radius": radii,
        "mass": [rng.uniform(0.5, 2.0) for _ in range(n)],
        "restitution": [rng.choice([0.0, 0.5, 1.0]) for _ in range(n)],
        "friction": 0.4,
        "gravity": [0.0, gravity],
        "dt": 1.0 / 60.0,
        "substeps": 4,
    }
    if box:
        raw["world"] = {
            "min_x": 0.0,
            "min_y": 0.0,
            "max_x": columns * spacing + 1.5,
            "max_y": (n // columns + 1) * spacing + 1.5,
        }
    return raw


# --- the solver -------------------------------------------------------------------------------------------


def test_free_fall_matches_v_equals_g_t() -> None:
    raw = {
        "x": [0.0],
        "y": [100.0],
        "vx": [2.0],
        "vy": [1.0],
        "radius": [0.5],
        "mass": [1.0],
        "dt": 1 / 60,
        "substeps": 4,
    }
    inp = phys.parse_input(raw)
    for _ in range(30):  # half a second
        out = phys.compute(inp)
        inp = phys.parse_input(next_input(raw, out))
    s = state(out)
    t, g, h = 0.5, -9.81, 1 / 240
    assert s["vx"][0] == pytest.approx(2.0, abs=1e-12)
    assert s["vy"][0] == pytest.approx(1.0 + g * t, rel=1e-12)
    # semi-implicit Euler: y = y0 + vy0 t + g h^2 k (k + 1) / 2 over k = 120 sub-steps
    assert s["y"][0] == pytest.approx(100.0 + 1.0 * t + g * h * h * 120 * 121 / 2, rel=1e-12)
    assert s["x"][0] == pytest.approx(1.0, rel=1e-12)


def test_head_on_elastic_equal_masses_swap_velocities() -> None:
    _, out = step(two_balls(gap=0.01, speed=1.0, restitution=1.0))
    s = state(out)
    assert s["vx"] == pytest.approx([-1.0, 1.0], abs=1e-9)
    assert s["vy"] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_head_on_with_restitution_zero_stops() -> None:
    _, out = step(two_balls(gap=0.01, speed=1.0, restitution=0.0))
    s = state(out)
    assert s["vx"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert s["x"][1] - s["x"][0] >= 1.0 - 1e-9  # they meet and stay touching, no overlap


def test_fast_bodies_do_not_tunnel() -> None:
    raw = two_balls(gap=0.5, speed=200.0, restitution=0.0)  # would pass through each other in one step
    _, out = step(raw)
    s = state(out)
    assert s["x"][1] - s["x"][0] >= 1.0 - 0.02


def test_body_resting_on_the_floor_does_not_sink() -> None:
    raw = {
        "x": [5.0], "y": [0.5], "radius": [0.5], "mass": [1.0], "restitution": 0.5,
        "world": {"min_x": 0.0, "min_y": 0.0, "max_x": 10.0, "max_y": 10.0},
    }  # fmt: skip
    inp = phys.parse_input(raw)
    for _ in range(300):  # five seconds
        out = phys.compute(inp)
        inp = phys.parse_input(next_input(raw, out))
    s = state(out)
    assert s["y"][0] == pytest.approx(0.5, abs=1e-9)
    assert abs(s["vy"][0]) < 1e-9 and s["x"][0] == pytest.approx(5.0)


def test_stack_settles_without_sinking() -> None:
    n = 6
    raw = {
        "x": [2.0] * n, "y": [0.5 + k for k in range(n)], "radius": [0.5] * n, "mass": [1.0] * n,
        "world": {"min_x": 0.0, "min_y": 0.0, "max_x": 4.0, "max_y": 10.0}, "substeps": 8,
    }  # fmt: skip
    inp = phys.parse_input(raw)
    for _ in range(120):
        out = phys.compute(inp)
        inp = phys.parse_input(next_input(raw, out))
    s = state(out)
    gaps = np.diff(s["y"]) - 1.0
    assert gaps.min() > -0.02  # at most 2% of a radius deep
    assert s["y"][0] == pytest.approx(0.5, abs=1e-9)
    assert np.abs(s["vy"]).max() < 0.5


def test_static_bodies_do_not_move() -> None:
    raw = {
        "x": [0.0, 0.05], "y": [0.0, 1.2], "vy": [0.0, -3.0], "radius": [0.5, 0.5], "mass": [0.0, 1.0],
        "angle": [0.7, 0.0], "restitution": 0.5,
    }  # fmt: skip
    inp = phys.parse_input(raw)
    for _ in range(20):
        out = phys.compute(inp)
        inp = phys.parse_input(next_input(raw, out))
        s = state(out)
        assert (s["x"][0], s["y"][0], s["vx"][0], s["vy"][0], s["angle"][0]) == (0.0, 0.0, 0.0, 0.0, 0.7)
    assert s["y"][1] > 0.9  # the ball bounced off or rests on the peg, never through it


def test_momentum_is_conserved_without_gravity_or_walls() -> None:
    rng = random.Random(5)
    n = 40
    raw = {
        "x": [rng.uniform(0, 6) for _ in range(n)],
        "y": [rng.uniform(0, 6) for _ in range(n)],  # crowded: many collisions and overlaps
        "vx": [rng.uniform(-3, 3) for _ in range(n)],
        "vy": [rng.uniform(-3, 3) for _ in range(n)],
        "radius": [rng.uniform(0.2, 0.5) for _ in range(n)],
        "mass": [rng.uniform(0.5, 3) for _ in range(n)],
        "restitution": 0.7,
        "friction": 0.5,
        "gravity": [0.0, 0.0],
    }
    inp, out = step(raw)
    mass = np.array(raw["mass"])
    s = state(out)
    for axis in ("vx", "vy"):
        before = float(mass @ np.array(raw[axis]))
        after = float(mass @ s[axis])
        assert after == pytest.approx(before, abs=1e-9 * float(mass @ np.abs(np.array(raw[axis]))))


def test_thrust_accelerates() -> None:
    raw = {
        "x": [0.0],
        "y": [0.0],
        "radius": [1.0],
        "mass": [2.0],
        "thrust_x": [4.0],
        "gravity": [0.0, 0.0],
        "dt": 0.1,
    }
    _, out = step(raw)
    assert state(out)["vx"][0] == pytest.approx(0.2, rel=1e-12)  # a = 4 / 2 for 0.1 s


def test_bodies_stay_inside_the_world_box() -> None:
    rng = random.Random(2)
    raw = scattered_scene(rng, 30)
    raw["vx"] = [rng.uniform(-60, 60) for _ in range(30)]  # fast, into the walls
    inp, out = step(raw)
    s, r, w = state(out), np.array(raw["radius"]), raw["world"]
    assert np.all(s["x"] - r >= w["min_x"] - 1e-12) and np.all(s["x"] + r <= w["max_x"] + 1e-12)
    assert np.all(s["y"] - r >= w["min_y"] - 1e-12) and np.all(s["y"] + r <= w["max_y"] + 1e-12)


def test_compute_is_deterministic_and_wire_forms_agree() -> None:
    raw = phys.example(random.Random(3), "small")
    inp = phys.parse_input(raw)
    packed = phys.parse_input(
        {
            k: (np.asarray(v, dtype="<f8").tobytes() if isinstance(v, list) and k not in ("gravity",) else v)
            for k, v in raw.items()
        }
    )
    first, second, third = phys.compute(inp), phys.compute(inp), phys.compute(packed)
    assert first == second == third
    assert phys.agree(first, third)


def test_examples_are_valid_and_sized() -> None:
    small = phys.parse_input(phys.example(random.Random(1), "small"))
    large = phys.parse_input(phys.example(random.Random(1), "large"))
    assert len(small.x) // 8 == 50 and len(large.x) // 8 == 1000
    assert large.dt == pytest.approx(1 / 60)
    msgspec.json.encode(phys.example(random.Random(1)))  # builtins only
    with pytest.raises(ValueError):
        phys.example(random.Random(1), "huge")


def test_registered_as_a_task_kind() -> None:
    kind = get_kind("physics")
    assert kind.name == phys.NAME and kind.tolerance_note


# --- verify: accepts honest work --------------------------------------------------------------------------


@st.composite
def scenes(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 24))
    box = draw(st.booleans())
    width = draw(st.floats(3.0, 12.0))
    coordinate = st.floats(0.0, width)
    radius = st.floats(0.05, 1.0)
    radii = draw(st.lists(radius, min_size=n, max_size=n))
    masses = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.1, 50.0)), min_size=n, max_size=n))
    speed = st.floats(-20.0, 20.0)
    moving = [m > 0 for m in masses]
    raw = {
        "x": draw(st.lists(coordinate, min_size=n, max_size=n)),
        "y": draw(st.lists(coordinate, min_size=n, max_size=n)),
        "vx": [v if mv else 0.0 for v, mv in zip(draw(st.lists(speed, min_size=n, max_size=n)), moving)],
        "vy": [v if mv else 0.0 for v, mv in zip(draw(st.lists(speed, min_size=n, max_size=n)), moving)],
        "angular_velocity": [
            w if mv else 0.0 for w, mv in zip(draw(st.lists(speed, min_size=n, max_size=n)), moving)
        ],
        "radius": [min(r, width / 2.0) for r in radii] if box else radii,
        "mass": masses,
        "restitution": draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)),
        "friction": draw(st.floats(0.0, 2.0)),
        "gravity": [0.0, draw(st.sampled_from([0.0, -9.81, -50.0]))],
        "dt": draw(st.sampled_from([1 / 240, 1 / 60, 1 / 30, 0.1])),
        "substeps": draw(st.integers(1, 16)),
        "iterations": draw(st.integers(1, 8)),
    }
    if box:
        raw["world"] = {
            "min_x": 0.0,
            "min_y": 0.0,
            "max_x": width,
            "max_y": width,
            "restitution": draw(st.floats(0, 1)),
        }
    return raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=scenes(), seed=st.integers(0, 2**32), steps=st.integers(0, 2))
def test_verify_accepts_honest_results(raw: dict, seed: int, steps: int) -> None:
    inp, out = step(raw)
    for _ in range(steps):  # later steps start from the overlaps and speeds the first one produced
        raw = next_input(raw, out)
        inp, out = step(raw)
    verdict = phys.verify(inp, out, random.Random(seed))
    assert verdict, verdict.reason


@pytest.mark.parametrize("seed", range(3))
def test_verify_accepts_honest_results_on_the_examples(seed: int) -> None:
    for size in ("small", "large"):
        inp, out = step(phys.example(random.Random(seed), size))
        assert phys.verify(inp, out, random.Random(seed)), size


# --- verify: rejects corrupted outputs --------------------------------------------------------------------

SCENES = {
    "small example": lambda: phys.example(random.Random(11), "small"),
    "scattered 200": lambda: scattered_scene(random.Random(12), 200),
    "scattered 60, no walls": lambda: scattered_scene(random.Random(13), 60, box=False),
}


@pytest.fixture(params=sorted(SCENES))
def honest(request: pytest.FixtureRequest) -> tuple[phys.Input, phys.Output]:
    return step(SCENES[request.param]())


def assert_rejected(inp: phys.Input, bad: phys.Output, tries: int = 10) -> None:
    for seed in range(tries):
        verdict = phys.verify(inp, bad, random.Random(seed))
        assert not verdict, f"accepted with rng seed {seed}"
        assert verdict.reason


def test_rejects_random_values(honest: tuple[phys.Input, phys.Output]) -> None:
    inp, out = honest
    n = len(out.x) // 8
    rng = np.random.default_rng(1)
    assert_rejected(inp, output_from({f: rng.uniform(-50, 50, n) for f in phys._STATE_FIELDS}))


def test_rejects_the_unchanged_input_state(honest: tuple[phys.Input, phys.Output]) -> None:
    inp, _ = honest
    assert_rejected(
        inp,
        phys.Output(
            x=inp.x, y=inp.y, vx=inp.vx, vy=inp.vy, angle=inp.angle, angular_velocity=inp.angular_velocity
        ),
    )


def test_rejects_fewer_substeps(honest: tuple[phys.Input, phys.Output]) -> None:
    inp, _ = honest
    assert_rejected(inp, phys.compute(msgspec.structs.replace(inp, substeps=1)))


@pytest.mark.parametrize("field", ["x", "vy", "angular_velocity"])
def test_rejects_a_perturbed_subset_of_bodies(honest: tuple[phys.Input, phys.Output], field: str) -> None:
    inp, out = honest
    s = {f: v.copy() for f, v in state(out).items()}
    n = len(s["x"])
    chosen = random.Random(4).sample(range(n), max(1, n // 10))
    s[field][chosen] += 0.05  # a few centimetres or centimetres per second
    assert_rejected(inp, output_from(s))


def test_rejects_a_stale_result_of_another_input(honest: tuple[phys.Input, phys.Output]) -> None:
    inp, out = honest
    moved = msgspec.structs.replace(
        inp, vx=(np.frombuffer(inp.vx) + 0.5).tobytes()
    )  # same scene, other input
    assert_rejected(inp, phys.compute(moved))
    assert_rejected(moved, out)


def test_rejects_a_truncated_output(honest: tuple[phys.Input, phys.Output]) -> None:
    inp, out = honest
    short = phys.Output(**{f: getattr(out, f)[:-8] for f in phys._STATE_FIELDS})
    verdict = phys.verify(inp, short, random.Random(0))
    assert not verdict and "bodies per column" in verdict.reason
    one_short = msgspec.structs.replace(out, vy=out.vy[:-8])
    assert not phys.verify(inp, one_short, random.Random(0))


def test_rejects_nan_in_output(honest: tuple[phys.Input, phys.Output]) -> None:
    inp, out = honest
    s = {f: v.copy() for f, v in state(out).items()}
    s["vx"][len(s["vx"]) // 2] = math.nan
    bad = output_from(s)
    verdict = phys.verify(inp, bad, random.Random(0))
    assert not verdict and "finite" in verdict.reason
    with pytest.raises(TaskOutputError) as caught:
        phys.parse_output(msgspec.to_builtins(bad))
    assert caught.value.field.startswith("vx[")


def test_rejects_a_lazy_peer_on_the_large_ball_pit() -> None:
    inp, out = step(phys.example(random.Random(21), "large"))
    lazy = phys.Output(
        x=inp.x, y=inp.y, vx=inp.vx, vy=inp.vy, angle=inp.angle, angular_velocity=inp.angular_velocity
    )
    assert_rejected(inp, lazy, tries=5)
    assert phys.verify(inp, out, random.Random(0))


def kernel_views(inp: phys.Input, out: phys.Output) -> tuple:
    """The arguments verify's kernels take: bodies and claimed output as tuples of row arrays, and more."""
    bodies = tuple(np.frombuffer(getattr(inp, row)) for row in phys._BODY_ROWS)
    claimed = tuple(np.frombuffer(getattr(out, field)) for field in phys._STATE_FIELDS)
    w = inp.world
    bounds = [w.min_x, w.min_y, w.max_x, w.max_y, w.restitution, w.friction] if w else [0.0] * 6
    world = np.array([*bounds, *inp.gravity])
    shapes = phys._Shapes.of(inp.vertices, len(bodies[0])).arguments()
    return bodies, claimed, world, w is not None, shapes


def suspicious_and_full(inp: phys.Input, out: phys.Output) -> tuple[bool, int]:
    """(what the cheap pass says, the code of the full checks) for one output."""
    bodies, claimed, world, has_world, shapes = kernel_views(inp, out)
    props, speed, slack, own_reach, cap = phys._prepare(bodies, world, has_world, inp.dt, shapes)
    length, _turn = phys._scales(bodies[6], bodies[0], bodies[1], bodies[4])
    suspicious = phys._suspicious(
        bodies, props, slack, own_reach, cap, claimed, world, has_world, inp.dt, length, shapes
    )
    full = phys._global_checks(
        bodies, props, speed, slack, own_reach, cap, claimed, world, has_world, inp.dt, inp.substeps, shapes
    )
    return bool(suspicious), int(full[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=scenes(), seed=st.integers(0, 2**32), kind=st.sampled_from(["honest", "noise", "scale", "shift"]))
def test_the_cheap_pass_never_lets_through_what_the_full_checks_reject(
    raw: dict, seed: int, kind: str
) -> None:
    """verify skips the full checks (and their broad phase) when the cheap pass finds nothing: that must
    never skip a failure of any of them, overlaps included (the cheap pass screens those too)."""
    inp, out = step(raw)
    s = {f: v.copy() for f, v in state(out).items()}
    rng = np.random.default_rng(seed % 2**32)
    n = len(s["x"])
    if kind == "noise":
        for f in phys._STATE_FIELDS:
            s[f] += rng.normal(0.0, 0.05, n)
    elif kind == "scale":
        s["vx"] *= 1.5
        s["angular_velocity"] *= 3.0
    elif kind == "shift":
        s["vy"] += 0.3
    suspicious, code = suspicious_and_full(inp, output_from(s))
    if code != 0:  # overlaps (5) included: the cheap pass screens them on every verify
        assert suspicious, code


def test_the_cheap_pass_flags_an_energy_gain_a_momentum_change_and_a_moved_static_body() -> None:
    inp, out = step(scattered_scene(random.Random(13), 60, box=False, gravity=0.0))
    s = {f: v.copy() for f, v in state(out).items()}
    assert suspicious_and_full(inp, out) == (False, 0)
    faster = {**s, "vx": s["vx"] * 2.0, "vy": s["vy"] * 2.0}
    assert suspicious_and_full(inp, output_from(faster)) == (True, 6)
    drift = {**s, "vx": s["vx"] + 1e-3}  # a thousandth of a metre per second on every body
    assert suspicious_and_full(inp, output_from(drift)) == (True, 7)
    verdict = phys.verify(inp, output_from(drift), random.Random(0))
    assert not verdict and "momentum" in verdict.reason
    raw = {**phys.example(random.Random(11), "small")}
    inp, out = step(raw)
    s = {f: v.copy() for f, v in state(out).items()}
    static = int(np.flatnonzero(np.frombuffer(inp.mass) == 0.0)[0])
    s["angle"][static] += 1e-12
    assert suspicious_and_full(inp, output_from(s)) == (True, 2)
    verdict = phys.verify(inp, output_from(s), random.Random(0))
    assert not verdict and f"static body {static}" in verdict.reason


def test_an_output_overlap_is_still_rejected_where_a_window_or_the_full_checks_look() -> None:
    # Two balls drifting apart in empty space; the output pushes one into the other, within its reach.
    raw = {**two_balls(gap=0.05, speed=-0.1, restitution=0.0), "dt": 0.1}
    inp, out = step(raw)
    s = {f: v.copy() for f, v in state(out).items()}
    s["x"][1] = s["x"][0] + 0.5  # half a diameter deep
    verdict = phys.verify(inp, output_from(s), random.Random(0))
    assert not verdict


def resting_pair_beside_a_scattered_scene(gap: float) -> dict:
    """1,000 bodies in free flight (no walls, no gravity) and, well away from all of them, two balls of
    radius 0.3 at rest ``gap`` apart: an island of their own that a window covers only when a random
    seed lands on one of the two."""
    raw = scattered_scene(random.Random(31), 1000, box=False, gravity=0.0)
    for column, values in (("x", [-20.0, -19.4 + gap]), ("y", [0.0, 0.0]), ("radius", [0.3, 0.3])):
        raw[column] = raw[column] + values
    for column in ("vx", "vy", "angular_velocity"):
        raw[column] = raw[column] + [0.0, 0.0]
    raw["mass"] = raw["mass"] + [1.0, 1.0]
    raw["restitution"] = raw["restitution"] + [0.0, 0.0]
    return raw


def test_an_overlap_far_from_every_window_is_rejected_on_every_verify() -> None:
    # The resting ball is pushed 0.15 into its resting neighbour (0.1 deep, more than the 25 % of 0.3
    # allowed), within its reach and changing no velocity: energy and momentum are untouched, so the
    # overlap is the only fault, and it lies where the windows almost never look. The cheap pass must
    # still find it, on every verify.
    raw = resting_pair_beside_a_scattered_scene(gap=0.05)
    inp, out = step(raw)
    assert suspicious_and_full(inp, out) == (False, 0)
    s = {f: v.copy() for f, v in state(out).items()}
    resting = len(s["x"]) - 2
    assert s["x"][resting] == -20.0 and s["vx"][resting] == 0.0
    s["x"][resting] += 0.15
    bad = output_from(s)
    assert suspicious_and_full(inp, bad) == (True, 5)  # the full checks find nothing else wrong
    for seed in range(20):
        verdict = phys.verify(inp, bad, random.Random(seed))
        assert not verdict, f"accepted with rng seed {seed}"
        assert "overlap" in verdict.reason, verdict.reason
        assert f"bodies {resting} and {resting + 1}" in verdict.reason, verdict.reason


def test_the_overlap_screen_flags_exactly_what_the_full_check_could_reject() -> None:
    # Bodies 0 and 1 dynamic, 2 a static peg, 3 a static boulder (radius 3: above 4 times the mean
    # radius, so tested against everyone), 4 to 13 static pegs in a row far away.
    radius = np.array([0.3, 0.3, 0.3, 3.0] + [0.3] * 10)
    inv_mass = np.array([1.0, 1.0, 0.0, 0.0] + [0.0] * 10)
    y = np.zeros(14)
    pegs = [200.0 + k for k in range(10)]

    circles = phys._Shapes.circles(14).arguments()

    def flagged(x: list[float], inv: np.ndarray = inv_mass) -> bool:
        return bool(phys._overlap_screen(np.array(x + pegs), y, y, radius, radius, inv, circles))

    far = 100.0
    assert not flagged([0.0, 0.6, 5.0, far])  # touching: allowed
    assert not flagged([0.0, 0.6 - 0.0749, 5.0, far])  # 0.0749 deep: within 25 % of 0.3
    assert flagged([0.0, 0.6 - 0.0751, 5.0, far])
    assert flagged([5.0 - 0.45, 0.0, 5.0, far])  # dynamic into static, 0.15 deep
    assert not flagged([far, 0.0, 0.0, 0.1], inv_mass * 0)  # all static: static pairs are never checked
    assert not flagged([0.0, far, -far, 3.3 - 0.75 + 0.01])  # into the boulder, under 25 % of its radius
    assert flagged([0.0, far, -far, 3.3 - 0.75 - 0.01])


def test_a_pile_of_static_bodies_trips_the_screens_budget_not_the_verdict() -> None:
    # 800 static pegs on one spot (allowed) beside 200 free bodies: the screen gives up, the full checks
    # run and decide, and the honest output passes.
    raw = scattered_scene(random.Random(5), 200, box=False)
    raw = {
        **raw,
        **{c: raw[c] + [0.0] * 800 for c in ("vx", "vy", "angular_velocity", "mass")},
        "x": raw["x"] + [-30.0] * 800,
        "y": raw["y"] + [0.0] * 800,
        "radius": raw["radius"] + [0.3] * 800,
        "restitution": raw["restitution"] + [0.0] * 800,
    }
    inp, out = step(raw)
    x, y = np.frombuffer(out.x), np.frombuffer(out.y)
    radius = np.frombuffer(inp.radius)
    circles = phys._Shapes.circles(len(x)).arguments()
    assert phys._overlap_screen(x, y, np.frombuffer(out.angle), radius, radius, np.frombuffer(inp.mass), circles)
    assert phys.verify(inp, out, random.Random(0))


def test_one_perturbed_body_is_caught_by_re_simulation_of_a_small_scene() -> None:
    inp, out = step(SCENES["scattered 60, no walls"]())
    s = {f: v.copy() for f, v in state(out).items()}
    s["vy"][17] += 0.01
    assert_rejected(inp, output_from(s))


def test_verify_is_one_call_into_compiled_code_with_list_columns_too() -> None:
    """Outputs or inputs holding lists (not from parse_*) are packed first and give the same verdict."""
    inp, out = step(phys.example(random.Random(3), "small"))
    as_lists = phys.Output(**{f: np.frombuffer(getattr(out, f)).tolist() for f in phys._STATE_FIELDS})
    assert phys.verify(inp, as_lists, random.Random(1))
    lists_in = msgspec.structs.replace(inp, vx=np.frombuffer(inp.vx).tolist())
    assert phys.verify(lists_in, out, random.Random(1))


# --- agree ------------------------------------------------------------------------------------------------


def test_agree() -> None:
    inp, out = step(phys.example(random.Random(8), "small"))
    assert phys.agree(out, phys.compute(inp))
    s = {f: v.copy() for f, v in state(out).items()}
    s["y"][3] += 1e-6
    assert not phys.agree(out, output_from(s))
    assert not phys.agree(out, phys.Output(**{f: getattr(out, f)[:-8] for f in phys._STATE_FIELDS}))
    s["y"][3] = math.nan
    assert not phys.agree(output_from(s), output_from(s))


# --- parse_input ------------------------------------------------------------------------------------------


def base_input(n: int = 3) -> dict:
    return {"x": [float(i) for i in range(n)], "y": [0.0] * n, "radius": [0.4] * n, "mass": [1.0] * n}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"x": [0.0] * 5001, "y": [0.0] * 5001, "radius": [0.4] * 5001, "mass": [1.0] * 5001}, "x"),
        ({"x": []}, "x"),
        ({"y": [0.0, math.nan, 0.0]}, "y[1]"),
        ({"vx": [0.0, 0.0, math.inf]}, "vx[2]"),
        ({"radius": [0.4, -0.4, 0.4]}, "radius[1]"),
        ({"radius": [0.4, 0.0, 0.4]}, "radius[1]"),
        ({"mass": [1.0, 1.0, -2.0]}, "mass[2]"),
        ({"mass": [1.0, 1e-9, 1.0]}, "mass[1]"),
        ({"mass": [1.0, 1.0]}, "mass"),
        ({"restitution": [0.5, 1.5, 0.5]}, "restitution[1]"),
        ({"friction": -1.0}, "friction[0]"),
        ({"x": [0.0, 1e7, 2.0]}, "x[1]"),
        ({"x": [0.0, "one", 2.0]}, "x[1]"),
        ({"x": {"0": 1.0}}, "x"),
        ({"x": b"\x00" * 12}, "x"),
        ({"vy": b"\x00" * 16}, "vy"),
        ({"dt": 0.0}, "dt"),
        ({"dt": 0.5}, "dt"),
        ({"dt": math.nan}, "dt"),
        ({"substeps": 0}, "substeps"),
        ({"substeps": 17}, "substeps"),
        ({"iterations": 99}, "iterations"),
        ({"gravity": [0.0, math.inf]}, "gravity.y"),
        ({"gravity": [0.0]}, "gravity"),
        ({"mass": [0.0, 1.0, 1.0], "vx": [1.0, 0.0, 0.0]}, "vx[0]"),
        ({"thrust_x": [0.0, 5e6, 0.0]}, "thrust_x[1]"),
        ({"world": {"min_x": 0.0, "min_y": 0.0, "max_x": -1.0, "max_y": 5.0}}, "world"),
        ({"world": {"min_x": 0.5, "min_y": -1.0, "max_x": 5.0, "max_y": 5.0}}, "x[0]"),
        ({"world": {"min_x": -1.0, "min_y": 1.0, "max_x": 3.0, "max_y": -0.5}}, "world"),
        ({"world": {"min_x": -1.0, "min_y": -0.5, "max_x": 3.0, "max_y": 0.2}}, "radius[0]"),
        (
            {"world": {"min_x": -1, "min_y": -1, "max_x": 3, "max_y": 3, "friction": math.nan}},
            "world.friction",
        ),
        ({"colour": "red"}, "input"),
    ],
)
def test_bad_input_is_refused_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(TaskInputError) as caught:
        phys.parse_input({**base_input(), **change})
    assert caught.value.field == field, caught.value
    assert caught.value.problem


@pytest.mark.parametrize("raw", [None, 3, "physics", [], {"x": None}, {"x": [1.0]}])
def test_garbage_input_is_refused(raw: object) -> None:
    with pytest.raises(TaskInputError):
        phys.parse_input(raw)


def test_input_forms_are_normalised_to_packed_columns() -> None:
    inp = phys.parse_input({**base_input(), "restitution": 0.3, "vx": (np.arange(3.0)).tobytes()})
    assert np.frombuffer(inp.restitution).tolist() == [0.3] * 3
    assert np.frombuffer(inp.vx).tolist() == [0.0, 1.0, 2.0]
    assert np.frombuffer(inp.friction).tolist() == [phys.DEFAULT_FRICTION] * 3
    assert all(isinstance(getattr(inp, f), bytes) for f in phys._BODY_ROWS)


# --- parse_output -----------------------------------------------------------------------------------------


def test_parse_output_round_trip() -> None:
    _, out = step(base_input())
    assert phys.parse_output(msgspec.msgpack.decode(msgspec.msgpack.encode(out))) == out
    as_lists = {f: np.frombuffer(getattr(out, f)).tolist() for f in phys._STATE_FIELDS}
    assert phys.parse_output(as_lists) == out


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"x": b"\x00" * 8}, "input"),
        ({f: b"\x00" * 8 for f in phys._STATE_FIELDS} | {"vy": b"\x00" * 9}, "vy"),
        ({f: b"\x00" * 8 for f in phys._STATE_FIELDS} | {"vy": b"\x00" * 16}, "vy"),
        ({f: [0.0] for f in phys._STATE_FIELDS} | {"angle": [math.inf]}, "angle[0]"),
        ({f: [0.0] for f in phys._STATE_FIELDS} | {"x": ["a"]}, "x[0]"),
        ({f: [0.0] * 5001 for f in phys._STATE_FIELDS}, "x"),
        ({f: [0.0] for f in phys._STATE_FIELDS} | {"extra": 1}, "input"),
    ],
)
def test_bad_output_is_refused_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(TaskOutputError) as caught:
        phys.parse_output(raw)
    assert caught.value.field == field, caught.value


def test_scales_match_the_numpy_expressions() -> None:
    """_scales is one pass for what verify used to compute with np.max (NaN propagates, as there)."""
    rng = np.random.default_rng(7)
    for trial in range(50):
        n = int(rng.integers(1, 40))
        radius, px, py, angle = (rng.normal(size=n) * 10.0 ** rng.integers(-3, 4) for _ in range(4))
        if trial % 5 == 0:
            [radius, px, py, angle][trial % 4][int(rng.integers(n))] = np.nan
        length, turn = phys._scales(radius, px, py, angle)
        expected_length = np.max(radius) + np.max(np.abs(px)) + np.max(np.abs(py))
        expected_turn = 1.0 + np.max(np.abs(angle))
        np.testing.assert_array_equal([length, turn], [expected_length, expected_turn])
