"""rt_reflections: hand-made scenes, agreement with the scalar reference, verify against cheating, input limits.

Detection limit of verify (why the perturbations below are what they are): it re-traces about 256 pixels and
tolerates 2% of them (5) differing, so an image whose wrong pixels cover a fraction f of the frame passes with
probability P[Binomial(256, f) <= 5]: about 0.6 at f = 2%, 0.01 at 5%, 3e-7 at 10%. The corruptions tried
here touch 25% of the frame or more, where a miss has probability below 1e-24; smaller edits are left to
``agree`` between peers, which compares every pixel.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks import reflections as rt
from p2c2r.tasks.base import TaskKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "tasks" / "rt_reflections.md"


def scene(**overrides: Any) -> dict[str, Any]:
    """A 33x33 view down +z from (0, 0, -5) with nothing in it; the centre pixel looks at the origin."""
    raw: dict[str, Any] = {
        "camera": {
            "position": [0.0, 0.0, -5.0],
            "look_at": [0.0, 0.0, 0.0],
            "up": [0.0, 1.0, 0.0],
            "fov_deg": 40.0,
        },
        "width": 33,
        "height": 33,
        "max_bounces": 1,
        "ambient": [0.0, 0.0, 0.0],
        "background": [0.0, 0.0, 0.0],
    }
    raw.update(overrides)
    return raw


def render(raw: dict[str, Any]) -> np.ndarray:
    return rt.decode_image(rt.compute(rt.parse_input(raw)))


def centre(image: np.ndarray) -> tuple[int, int, int]:
    h, w, _ = image.shape
    r, g, b = (int(c) for c in image[h // 2, w // 2])
    return r, g, b


def wire(out: rt.Output) -> rt.Output:
    """The output as a coordinator receives it: through msgpack and parse_output."""
    return rt.parse_output(msgspec.msgpack.decode(msgspec.msgpack.encode(out)))


def with_pixels(out: rt.Output, pixels: np.ndarray) -> rt.Output:
    return rt.Output(
        width=out.width, height=out.height, rgb_zlib=zlib.compress(pixels.astype(np.uint8).tobytes())
    )


@pytest.fixture(scope="module")
def small_case() -> tuple[rt.Input, rt.Output]:
    inp = rt.parse_input(rt.example(random.Random(7), "small"))
    return inp, rt.compute(inp)


# Contract ----------------------------------------------------------------------------------------------


def test_module_keeps_the_task_kind_contract() -> None:
    kind = TaskKind.from_module(rt)
    assert kind.name == "rt_reflections"
    assert kind.tolerance_note


@pytest.mark.parametrize(
    ("size", "width", "height", "bounces", "objects"), [("small", 80, 45, 1, 5), ("large", 320, 180, 2, 20)]
)
def test_example_sizes_are_plain_json_and_parse(
    size: str, width: int, height: int, bounces: int, objects: int
) -> None:
    raw = rt.example(random.Random(3), size)
    inp = rt.parse_input(json.loads(json.dumps(raw)))
    assert (inp.width, inp.height, inp.max_bounces) == (width, height, bounces)
    assert len(inp.spheres) + len(inp.planes) + len(inp.projectiles) == objects


def test_compute_is_deterministic_and_sized(small_case: tuple[rt.Input, rt.Output]) -> None:
    inp, out = small_case
    assert rt.compute(inp) == out
    assert rt.decode_image(out).shape == (45, 80, 3)


def test_documented_example_parses_and_renders() -> None:
    block = re.search(r"```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block, "docs/tasks/rt_reflections.md lost its JSON example"
    inp = rt.parse_input(json.loads(block.group(1)))
    out = rt.compute(inp)
    assert rt.verify(inp, wire(out), random.Random(0))


# Hand-made scenes --------------------------------------------------------------------------------------


def test_sphere_in_front_of_the_camera_fills_the_centre_with_its_colour() -> None:
    # Ambient 1 and no lights: a lit surface shows exactly its colour.
    image = render(
        scene(
            ambient=[1.0, 1.0, 1.0],
            background=[0.0, 0.0, 1.0],
            spheres=[{"center": [0, 0, 0], "radius": 1.0, "color": [1.0, 0.5, 0.0]}],
        )
    )
    assert centre(image) == (255, 128, 0)
    assert tuple(image[0, 0]) == (0, 0, 255)  # the corner misses it and shows the background


def test_point_behind_an_occluder_is_in_shadow() -> None:
    floor = {"point": [0, 0, 0], "normal": [0, 1, 0], "color": [1.0, 1.0, 1.0]}
    light = {"position": [0.0, 6.0, 0.0], "color": [1.0, 1.0, 1.0], "intensity": 0.8}
    # The camera looks at the floor point (0, 0, 0) from the side, past a ball hanging above that point.
    camera = {"position": [0.0, 1.0, -6.0], "look_at": [0.0, 0.0, 0.0], "fov_deg": 30.0}
    base = scene(camera=camera, ambient=[0.1, 0.1, 0.1], planes=[floor], lights=[light])
    lit = centre(render(base))
    shadowed = centre(
        render({**base, "spheres": [{"center": [0.0, 3.0, 0.0], "radius": 0.5, "color": [1, 0, 0]}]})
    )
    assert lit == (230, 230, 230)  # (ambient 0.1 + n.l 1 * 0.8) * 255, rounded
    assert shadowed == (26, 26, 26)  # ambient only
    assert rt.trace_pixel_reference(rt.parse_input(base), 16, 16) == lit


def test_projectiles_do_not_cast_shadows() -> None:
    floor = {"point": [0, 0, 0], "normal": [0, 1, 0], "color": [1.0, 1.0, 1.0]}
    light = {"position": [0.0, 6.0, 0.0], "intensity": 0.8}
    camera = {"position": [0.0, 1.0, -6.0], "look_at": [0.0, 0.0, 0.0], "fov_deg": 30.0}
    shot = {"center": [0.0, 3.0, 0.0], "radius": 0.5, "emission": [1.0, 1.0, 0.0]}
    image = render(
        scene(camera=camera, ambient=[0.1, 0.1, 0.1], planes=[floor], lights=[light], projectiles=[shot])
    )
    assert centre(image) == (230, 230, 230)


def test_mirror_shows_a_reflection_of_a_sphere_behind_the_camera() -> None:
    mirror = {"point": [0, 0, 5], "normal": [0, 0, -1], "color": [0.0, 0.0, 0.0], "reflectivity": 1.0}
    red_ball = {"center": [0.0, 0.0, -8.0], "radius": 1.0, "color": [1.0, 0.0, 0.0]}
    base = scene(ambient=[1.0, 1.0, 1.0], background=[0.0, 0.0, 1.0], planes=[mirror], spheres=[red_ball])
    assert centre(render(base)) == (255, 0, 0)
    # No bounce: the mirror shows its own (black) colour; a half mirror mixes the two.
    assert centre(render({**base, "max_bounces": 0})) == (0, 0, 0)
    half = {**mirror, "color": [0.0, 1.0, 0.0], "reflectivity": 0.5}
    assert centre(render({**base, "planes": [half]})) == (128, 128, 0)


def test_emissive_projectile_is_bright_without_any_light() -> None:
    image = render(scene(projectiles=[{"center": [0, 0, 0], "radius": 0.3, "emission": [4.0, 0.5, 0.25]}]))
    assert centre(image) == (255, 128, 64)
    assert tuple(image[0, 0]) == (0, 0, 0)


def test_camera_inside_a_sphere_sees_its_inside() -> None:
    image = render(
        scene(
            ambient=[1, 1, 1],
            background=[0, 0, 1],
            spheres=[{"center": [0, 0, -5], "radius": 2.0, "color": [0, 1, 0]}],
        )
    )
    assert centre(image) == (0, 255, 0)


def test_specular_highlight_brightens_the_mirror_direction() -> None:
    # Light just behind the camera: the centre of a shiny ball reflects it straight back.
    ball = {"center": [0, 0, 0], "radius": 1.0, "color": [0.2, 0.2, 0.2], "specular": 1.0, "shininess": 64.0}
    light = {"position": [0.0, 0.0, -6.0], "intensity": 0.5}
    matte = centre(render(scene(spheres=[{**ball, "specular": 0.0}], lights=[light])))
    shiny = centre(render(scene(spheres=[ball], lights=[light])))
    assert matte == (26, 26, 26)
    assert shiny == (153, 153, 153)  # 0.2 * 0.5 + 1.0 * 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_tracer_matches_the_scalar_reference(seed: int) -> None:
    inp = rt.parse_input(rt.example(random.Random(seed), "small"))
    image = rt.decode_image(rt.compute(inp))
    reference = np.array(
        [[rt.trace_pixel_reference(inp, x, y) for x in range(inp.width)] for y in range(inp.height)]
    )
    close = np.abs(image.astype(int) - reference).max(axis=2) <= rt.CHANNEL_TOLERANCE
    assert close.mean() >= 0.999


def test_large_scene_matches_the_scalar_reference_on_a_sample() -> None:
    inp = rt.parse_input(rt.example(random.Random(11), "large"))
    image = rt.decode_image(rt.compute(inp))
    rng = random.Random(0)
    pixels = [(rng.randrange(inp.width), rng.randrange(inp.height)) for _ in range(150)]
    far = [
        p
        for p in pixels
        if np.abs(image[p[1], p[0]].astype(int) - rt.trace_pixel_reference(inp, *p)).max() > 2
    ]
    assert len(far) <= 1, far


# Verify accepts honest work ----------------------------------------------------------------------------

unit = st.floats(0.0, 1.0)
coordinate = st.floats(-8.0, 8.0)
vec3 = st.lists(coordinate, min_size=3, max_size=3)
colour = st.lists(unit, min_size=3, max_size=3)
sphere = st.fixed_dictionaries(
    {
        "center": vec3,
        "radius": st.floats(0.05, 3.0),
        "color": colour,
        "reflectivity": unit,
        "specular": unit,
        "shininess": st.floats(1.0, 128.0),
    }
)
plane = st.fixed_dictionaries({"point": vec3, "normal": vec3, "color": colour, "reflectivity": unit})
projectile = st.fixed_dictionaries(
    {
        "center": vec3,
        "radius": st.floats(0.05, 1.0),
        "emission": st.lists(st.floats(0.0, 4.0), min_size=3, max_size=3),
    }
)
light = st.fixed_dictionaries({"position": vec3, "color": colour, "intensity": st.floats(0.0, 2.0)})
random_scene = st.fixed_dictionaries(
    {
        "camera": st.fixed_dictionaries(
            {"position": vec3, "look_at": vec3, "up": vec3, "fov_deg": st.floats(20.0, 120.0)}
        ),
        "width": st.integers(1, 40),
        "height": st.integers(1, 24),
        "max_bounces": st.integers(0, 3),
        "ambient": st.lists(st.floats(0.0, 0.3), min_size=3, max_size=3),
        "background": colour,
        "lights": st.lists(light, max_size=3),
        "spheres": st.lists(sphere, max_size=5),
        "planes": st.lists(plane, max_size=2),
        "projectiles": st.lists(projectile, max_size=2),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=random_scene, seed=st.integers(0, 2**32 - 1))
def test_verify_accepts_honest_output_of_random_scenes(raw: dict[str, Any], seed: int) -> None:
    try:
        inp = rt.parse_input(raw)
    except TaskInputError:
        reject()  # a degenerate camera or a zero plane normal drawn at random
    out = rt.compute(inp)
    verdict = rt.verify(inp, wire(out), random.Random(seed))
    assert verdict, verdict.reason
    assert rt.agree(out, out)


# Verify rejects cheating -------------------------------------------------------------------------------

CHEATS = [
    "random_bytes",
    "random_pixels",
    "zlib_bomb",
    "one_pixel_short",
    "one_byte_too_many",
    "stale_image_of_another_scene",
    "truncated_stream",
    "half_the_image",
    "trailing_garbage",
    "flat_mean_colour",
    "noise_everywhere",
    "quarter_of_the_frame_brightened",
    "mirrored_left_right",
    "width_and_height_swapped",
]


def cheat(kind: str, inp: rt.Input, out: rt.Output, rng: np.random.Generator) -> rt.Output:
    image = rt.decode_image(out)
    w, h = inp.width, inp.height
    n = w * h * 3
    if kind == "random_bytes":
        return rt.Output(width=w, height=h, rgb_zlib=rng.bytes(len(out.rgb_zlib)))
    if kind == "random_pixels":
        return with_pixels(out, rng.integers(0, 256, size=image.shape))
    if kind == "zlib_bomb":
        return rt.Output(width=w, height=h, rgb_zlib=zlib.compress(bytes(n * 1000), 9))
    if kind == "one_pixel_short":
        return rt.Output(width=w, height=h, rgb_zlib=zlib.compress(image.tobytes()[:-3]))
    if kind == "one_byte_too_many":
        return rt.Output(width=w, height=h, rgb_zlib=zlib.compress(image.tobytes() + b"\x00"))
    if kind == "stale_image_of_another_scene":
        other = rt.parse_input(rt.example(random.Random(int(rng.integers(1000, 2000))), "small"))
        return rt.compute(other)
    if kind == "truncated_stream":
        return rt.Output(width=w, height=h, rgb_zlib=out.rgb_zlib[: len(out.rgb_zlib) // 2])
    if kind == "half_the_image":
        return rt.Output(width=w, height=h, rgb_zlib=zlib.compress(image.tobytes()[: n // 2]))
    if kind == "trailing_garbage":
        return rt.Output(width=w, height=h, rgb_zlib=out.rgb_zlib + b"\x01\x02")
    if kind == "flat_mean_colour":
        return with_pixels(out, np.broadcast_to(image.reshape(-1, 3).mean(axis=0).round(), image.shape))
    if kind == "noise_everywhere":
        # Every channel moved by 3..11 levels, just past the tolerance; reflected back where it would clip.
        noise = rng.integers(3, 12, size=image.shape) * rng.choice([-1, 1], size=image.shape)
        noisy = image.astype(int) + noise
        return with_pixels(out, np.where((noisy < 0) | (noisy > 255), image.astype(int) - noise, noisy))
    if kind == "quarter_of_the_frame_brightened":
        edited = image.astype(int)
        y0, x0 = int(rng.integers(0, h - h // 2 + 1)), int(rng.integers(0, w - w // 2 + 1))
        block = edited[y0 : y0 + h // 2, x0 : x0 + w // 2]
        block[:] = np.where(block > 200, block - 40, block + 40)
        return with_pixels(out, edited)
    if kind == "mirrored_left_right":
        return with_pixels(out, image[:, ::-1])
    if kind == "width_and_height_swapped":
        return rt.Output(width=h, height=w, rgb_zlib=out.rgb_zlib)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", CHEATS)
def test_verify_rejects_every_cheat_tried(kind: str, small_case: tuple[rt.Input, rt.Output]) -> None:
    inp, out = small_case
    for seed in range(8):
        rng = np.random.default_rng(seed)
        try:
            bad = wire(cheat(kind, inp, out, rng))
        except TaskOutputError:
            continue  # refused at parse time already, as good as a rejection
        verdict = rt.verify(inp, bad, random.Random(seed))
        assert not verdict, f"{kind} passed verify with seed {seed}"
        assert verdict.reason
        assert not rt.agree(out, bad)


def test_verify_tolerates_rounding_noise_and_a_few_flipped_edge_pixels(
    small_case: tuple[rt.Input, rt.Output],
) -> None:
    inp, out = small_case
    rng = np.random.default_rng(0)
    image = rt.decode_image(out).astype(int)
    jittered = np.clip(image + rng.integers(-1, 2, size=image.shape), 0, 255)
    flipped = jittered.reshape(-1, 3).copy()
    flipped[rng.choice(len(flipped), size=8, replace=False)] ^= 0xFF  # 8 of 3600 pixels, as edges may flip
    lookalike = with_pixels(out, flipped.reshape(image.shape))
    for seed in range(8):
        verdict = rt.verify(inp, wire(lookalike), random.Random(seed))
        assert verdict, verdict.reason
    assert rt.agree(out, lookalike)


def test_zlib_bomb_is_refused_without_inflating_it(small_case: tuple[rt.Input, rt.Output]) -> None:
    inp, _ = small_case
    n = inp.width * inp.height * 3
    # Small enough on the wire to pass parse_output, ~900 times the image once inflated.
    bomb = {"width": inp.width, "height": inp.height, "rgb_zlib": zlib.compress(bytes(n * 900), 9)}
    started = time.perf_counter()
    verdict = rt.verify(inp, rt.parse_output(bomb), random.Random(0))
    assert not verdict and "more than" in verdict.reason
    assert time.perf_counter() - started < 0.1
    # A bigger one is refused by its compressed size alone.
    with pytest.raises(TaskOutputError):
        rt.parse_output({**bomb, "rgb_zlib": zlib.compress(bytes(n * 2000), 9)})


def test_verify_is_cheap_against_compute() -> None:
    inp = rt.parse_input(rt.example(random.Random(5), "large"))
    out = rt.compute(inp)
    compute_s = min(_timed(lambda: rt.compute(inp)) for _ in range(3))
    verify_s = min(_timed(lambda: rt.verify(inp, out, random.Random(1))) for _ in range(3))
    assert verify_s < 0.25 * compute_s  # 10% on the benchmark; loose here for noisy shared test machines


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_sample_covers_tiny_images_whole_and_large_ones_in_part() -> None:
    assert list(rt.sample_pixels(3, 2, random.Random(0))) == list(range(6))
    big = rt.sample_pixels(320, 180, random.Random(0))
    assert 224 < len(big) <= 256 and len(set(big.tolist())) == len(big)
    assert big.min() >= 0 and big.max() < 320 * 180


# agree -------------------------------------------------------------------------------------------------


def test_agree_tolerates_rounding_and_a_few_edge_pixels(small_case: tuple[rt.Input, rt.Output]) -> None:
    _, out = small_case
    image = rt.decode_image(out).astype(int)
    off_by_two = np.clip(image + 2 * (image < 128) - 2 * (image >= 128), 0, 255)
    assert rt.agree(out, with_pixels(out, off_by_two))
    speckled = image.copy().reshape(-1, 3)
    speckled[::200] = 255 - speckled[::200]  # 0.5% of pixels
    assert rt.agree(out, with_pixels(out, speckled.reshape(image.shape)))
    blotched = image.copy().reshape(-1, 3)
    blotched[::20] = 255 - blotched[::20]  # 5% of pixels
    assert not rt.agree(out, with_pixels(out, blotched.reshape(image.shape)))


def test_agree_refuses_different_sizes_and_garbage(small_case: tuple[rt.Input, rt.Output]) -> None:
    _, out = small_case
    assert not rt.agree(out, rt.Output(width=out.height, height=out.width, rgb_zlib=out.rgb_zlib))
    assert not rt.agree(out, rt.Output(width=out.width, height=out.height, rgb_zlib=b"not zlib"))


# parse_output ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "image",
        {},
        {"width": 80, "height": 45},
        {"width": 0, "height": 45, "rgb_zlib": b"x"},
        {"width": 80, "height": 4500, "rgb_zlib": b"x"},
        {"width": 80, "height": 45, "rgb_zlib": b""},
        {"width": 80, "height": 45, "rgb_zlib": 12},
        {"width": 2, "height": 2, "rgb_zlib": bytes(1000)},  # larger than zlib ever makes 12 bytes
        {"width": 80, "height": 45, "rgb_zlib": b"x", "extra": 1},
    ],
)
def test_parse_output_refuses_garbage(raw: Any) -> None:
    with pytest.raises(TaskOutputError):
        rt.parse_output(raw)


# parse_input -------------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> dict[str, Any]:
    """The small example with one field (dotted path, list indices allowed) replaced by ``value``."""
    raw = rt.example(random.Random(0), "small")
    *parents, last = re.findall(r"[^.\[\]]+", path)
    node: Any = raw
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return raw


BAD_INPUTS = [
    ("width", 10_000, "width"),
    ("width", -5, "width"),
    ("height", 0, "height"),
    ("height", 1e9, "height"),
    ("width", "wide", "width"),
    ("width", True, "width"),
    ("max_bounces", 5, "max_bounces"),
    ("camera.fov_deg", math.nan, "camera.fov_deg"),
    ("camera.fov_deg", 180.0, "camera.fov_deg"),
    ("camera.position", [math.inf, 0.0, 0.0], "camera.position[0]"),
    ("camera.position", [0.0, 3.0], "camera.position"),
    ("camera.look_at", [0.0, 3.0, -12.0], "camera.look_at"),
    ("camera.up", [0.0, 0.0, 0.0], "camera.up"),
    ("camera.up", [0.0, -2.0, 14.0], "camera.up"),  # parallel to the view direction (0, -2, 14)
    ("camera.zoom", 2.0, "camera"),
    ("ambient", [0.1, -0.1, 0.1], "ambient[1]"),
    ("background", [0.1, 0.1, math.nan], "background[2]"),
    ("spheres.0.radius", -1.0, "spheres[0].radius"),
    ("spheres.0.radius", 0.0, "spheres[0].radius"),
    ("spheres.0.reflectivity", 1.5, "spheres[0].reflectivity"),
    ("spheres.0.reflectivity", -math.inf, "spheres[0].reflectivity"),
    ("spheres.0.color", [1.0, 0.0], "spheres[0].color"),
    ("spheres.0.center", "here", "spheres[0].center"),
    ("spheres.0.center", [0.0, 1e6, 0.0], "spheres[0].center[1]"),
    ("spheres.0.shininess", 0.0, "spheres[0].shininess"),
    ("spheres.0", [1, 2, 3], "spheres[0]"),
    ("spheres", [{"center": [0, 0, 0], "radius": 1, "color": [1, 1, 1]}] * 65, "spheres"),
    ("projectiles", [{"center": [0, 0, 0], "radius": 0.1, "emission": [1, 1, 1]}] * 62, "spheres"),
    ("projectiles.0.emission", [-1.0, 0.0, 0.0], "projectiles[0].emission[0]"),
    ("projectiles.0.radius", math.nan, "projectiles[0].radius"),
    ("planes.0.normal", [0.0, 0.0, 0.0], "planes[0].normal"),
    ("planes", [{"point": [0, 0, 0], "normal": [0, 1, 0], "color": [1, 1, 1]}] * 9, "planes"),
    ("lights", [{"position": [0, 5, 0]}] * 9, "lights"),
    ("lights.0.intensity", 1e9, "lights[0].intensity"),
    ("lights.0.color", [2.0, 1.0, 1.0], "lights[0].color[0]"),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), BAD_INPUTS, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD_INPUTS]
)
def test_parse_input_refuses_with_the_field_named(path: str, value: Any, field: str) -> None:
    with pytest.raises(TaskInputError) as caught:
        rt.parse_input(_set(path, value))
    assert caught.value.field == field, caught.value.message


@pytest.mark.parametrize("raw", [None, 42, "scene", [], b"\x00", {"camera": None}, {"width": 10}])
def test_parse_input_refuses_garbage_without_crashing(raw: Any) -> None:
    with pytest.raises(TaskInputError):
        rt.parse_input(raw)


def test_parse_input_names_the_limit() -> None:
    with pytest.raises(TaskInputError) as caught:
        rt.parse_input(_set("spheres.0.reflectivity", 2.0))
    assert "[0.0, 1.0]" in caught.value.problem
    with pytest.raises(TaskInputError) as caught:
        rt.parse_input(_set("width", 641))
    assert "640" in caught.value.problem


# Array module selection --------------------------------------------------------------------------------


def _importer(module: Any = None, error: type[BaseException] | None = None) -> Any:
    def import_module(name: str) -> Any:
        assert name == "cupy"
        if error is not None:
            raise error("no cupy here")
        return module

    return import_module


def _fake_cupy(device_count: Any) -> SimpleNamespace:
    return SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=device_count)))


def test_array_module_falls_back_to_numpy_whatever_goes_wrong() -> None:
    def broken_driver() -> int:
        raise RuntimeError("cudaErrorNoDevice")

    assert rt.select_array_module(_importer(error=ImportError)) is np
    assert rt.select_array_module(_importer(error=OSError)) is np  # libcudart missing
    assert rt.select_array_module(_importer(_fake_cupy(broken_driver))) is np
    assert rt.select_array_module(_importer(_fake_cupy(lambda: 0))) is np
    gpu = _fake_cupy(lambda: 1)
    assert rt.select_array_module(_importer(gpu)) is gpu


def test_default_array_module_works_here_and_forcing_numpy_gives_the_same_image(
    small_case: tuple[rt.Input, rt.Output],
) -> None:
    inp, out = small_case
    try:
        import cupy  # noqa: F401
    except Exception:  # not installed, or installed without a usable CUDA
        assert rt.default_array_module() is np
    assert rt.compute(inp, xp=np) == out
