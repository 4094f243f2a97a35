"""Task kind ``physics``: one step of a 2-D rigid-body world of circles and convex polygons.

A gamer sends the state of up to 5,000 bodies (position, velocity, angle, angular velocity, radius, mass
with 0 meaning static, restitution, friction, optional constant thrust, and for a polygon its vertices),
gravity, an optional axis-aligned world box and a time step ``dt`` split into ``substeps``; the peer
returns the state after ``dt``. Polygon geometry (validation, mass properties, the narrow phase) lives in
``physics_shapes``; a polygon's ``radius`` is its circumradius, so everything planned by extents (broad
phase, reach, islands, windows) treats both shapes alike, and every tolerance of the solver scales with a
body's *core* size (a circle's radius, a polygon's inradius).

The solver (all of it part of ``VERSION``) is a sequential-impulse solver in the style of Box2D, run once
per sub-step: integrate velocities; build contacts from the current positions; warm start resting
contacts with the previous sub-step's impulses; ``iterations`` Gauss-Seidel passes of Coulomb friction
and non-penetration (speculative contacts, so fast bodies do not tunnel); a restitution pass that gives
back at most e^2 of the energy each contact absorbed; integrate positions; non-linear Gauss-Seidel
*position* correction. A stateless step cannot carry impulses over from the last frame, so a pile would
keep a sinking velocity; the position correction is therefore also applied as a velocity impulse per
contact (as in position-based dynamics), capped so a deep overlap separates at a bounded speed instead of
exploding. Contacts are processed bottom-up along gravity, which carries weight up a pile in one sweep,
and dynamic bodies never leave the world box. A contact has one point (a circle's) or two (a polygon's face
against an edge: Box2D's clipped incident edge), each with its lever arms; the two points of a face take
their normal impulses and their bounce from one 2 x 2 solve, so that neither is favoured by coming first.

Locality is what makes a step cheap to verify. At the start of the step every body gets a *reach*: how
far it may travel during the step (its speed plus what gravity and thrust add; twice the fastest speed of
any body that may strike it; a margin; any depth it starts outside the box). Two bodies interact during
the step only if they are within reach of each other at its start, and no body is ever moved farther
than its reach (Box2D's "maximum translation" idea), so no other pair can touch. Those candidate pairs
split the bodies into *islands* that never influence each other, and every ordering the solver uses is a
total order on the contacts themselves, so re-simulating any set of whole islands alone reproduces the
full result bit for bit. A body's reach and pairs depend only on bodies a few extents away, so verify can
plan a small window of the world exactly instead of the whole of it.

``verify`` runs cheap checks over every body (finite values, static bodies untouched, travel within
reach, inside the box, kinetic energy, with nothing immovable around momentum, and a grid screen for
overlaps deeper than any the output may have; when any of them looks off, the full checks, which
judge overlaps with a broad phase over the bodies' sweeps, decide), then re-simulates whole islands in
random windows exactly; an island too large for its budget gets a local screen with the claimed output as a moving
boundary, and a full re-simulation when the screen disagrees (and, as an audit, now and then anyway).
``docs/tasks/physics.md`` documents the formats, limits and every bound.

Wire format: every per-body column is either a list of numbers or a packed little-endian float64 byte
string (msgpack ``bin``), whichever the client finds cheaper; ``parse_input`` normalises all columns to
packed bytes of length ``8 * n``, and outputs always use packed bytes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgspec
import numpy as np
from numba import njit

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks.base import Verdict, convert_input, convert_output, require_range
from p2c2r.tasks.physics_shapes import (
    MAX_VERTICES,
    collide_polygon_circle,
    collide_polygons,
    pack_vertices,
    polygon_bounds,
    polygon_circle_depth,
    polygon_depth,
    polygon_error,
    polygon_outside,
    polygon_table,
    polygon_wall,
    polygons_deeper_than,
)

NAME = "physics"
VERSION = "2"
TOLERANCE_NOTE = (
    "outputs agree when every position, velocity, angle and angular velocity matches to 1e-9 relative "
    "(plus 1e-12 of the column's largest magnitude); the kernel is deterministic, so honest peers match bit for bit"
)

# --- limits (checked by parse_input; documented in docs/tasks/physics.md) --------------------------------
MAX_BODIES = 5000
MAX_SUBSTEPS = 16
MAX_ITERATIONS = 16
MAX_DT = 0.1
MAX_COORDINATE = 1e6
MAX_SPEED = 1e5
MAX_ANGLE = 1e9
MAX_ANGULAR_SPEED = 1e5
MIN_RADIUS = 1e-4
MAX_RADIUS = 1e4
MIN_DYNAMIC_MASS = 1e-6
MAX_MASS = 1e9
MAX_FRICTION = 10.0
MAX_GRAVITY = 1e4
MAX_THRUST = 1e12
MAX_THRUST_ACCELERATION = 1e6

DEFAULT_DT = 1.0 / 60.0
DEFAULT_SUBSTEPS = 4
DEFAULT_ITERATIONS = 4
DEFAULT_GRAVITY = (0.0, -9.81)
DEFAULT_FRICTION = 0.5

# --- solver constants: changing any of these changes outputs, so bump VERSION ----------------------------
# Lengths are relative to the radii involved so that the solver behaves alike at any scale.
SLOP_FRACTION = 0.01  # penetration left uncorrected, as a fraction of the smaller radius (avoids jitter)
BAUMGARTE = 0.5  # fraction of the remaining penetration removed per position iteration
MAX_CORRECTION_FRACTION = 0.5  # cap on one position correction, as a fraction of the smaller radius
POSITION_ITERATIONS = 4
PUSH_OUT_RATE = 10.0  # velocity a correction may leave behind, in smaller radii per second
SPECULATIVE_FACTOR = 2.0  # a contact opens when its gap could close within this many sub-steps
RESTITUTION_THRESHOLD = 2.0  # no bounce below this many steps' worth of the pair's acceleration
BLOCK_CONDITION = 1e-3  # a face's two points are solved together unless det K < this k00 k11 (nearly one point)
REACH_MARGIN_FRACTION = 0.1  # reach margin, as a fraction of the radius (room for position correction)
REACH_INFLATION = 2.0  # a struck body's reach covers twice the fastest speed in its neighbourhood
BIG_BODY_FACTOR = 4.0  # broad phase: extents above this many times the mean are tested against everyone

# --- verification constants -------------------------------------------------------------------------------
RESIM_WORK_FRACTION = 0.04  # re-simulation budget, as a share of the step's work (bodies x (1 + sub-steps))
MIN_RESIM_WORK = 250.0  # small scenes: always afford a few islands (verify is cheap there anyway)
MAX_SEED_DRAWS = 64  # random bodies tried as window centres
SCREEN_HOPS = 2  # giant islands: dynamic region of a local screen, in candidate-pair hops from the seed
SCREEN_CORE_HOPS = 1  # bodies compared by a screen
SCREEN_POSITION_FRACTION = 0.05  # screen tolerance on position, as a fraction of the radius
SCREEN_VELOCITY_STEPS = 12.0  # screen tolerance on velocity, in steps' worth of the body's acceleration
SCREEN_VELOCITY_FRACTION = 0.5  # ... plus this fraction of its speed
AUDIT_PROBABILITY = 0.02  # chance of re-simulating a giant island in full even when its screen passes
EXACT_RTOL = 1e-9  # re-simulation and agree: relative tolerance (the kernel is bit for bit deterministic)
EXACT_ATOL_FRACTION = 1e-12  # ... plus this fraction of the quantity's natural scale
OVERLAP_FRACTION = 0.25  # penetration allowed in the output, as a fraction of the larger radius
ENERGY_RTOL = 0.05  # slack on the kinetic energy bound (warm starting can add a little)
# The overlap screen's budget, in pair tests per body: similar radii need about 5 (half of a 3 x 3 block
# of cells twice the largest radius wide); more only for bodies piled on one spot or radii spread wide.
OVERLAP_SCREEN_TESTS_PER_BODY = 64

_STATE_FIELDS = ("x", "y", "vx", "vy", "angle", "angular_velocity")

FloatColumn = list[float] | bytes


class World(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An axis-aligned box of four static walls; dynamic bodies stay inside it."""

    min_x: float
    min_y: float
    max_x: float
    max_y: float
    restitution: float = 0.0
    friction: float = DEFAULT_FRICTION


class Input(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One step of a world of bodies. After ``parse_input`` every per-body column is packed float64 bytes,
    and ``vertices`` packed too (or None when every body is a circle)."""

    x: FloatColumn
    y: FloatColumn
    radius: FloatColumn
    mass: FloatColumn  # 0 = static (never moves)
    vx: FloatColumn | None = None
    vy: FloatColumn | None = None
    angle: FloatColumn | None = None
    angular_velocity: FloatColumn | None = None
    restitution: float | FloatColumn = 0.0
    friction: float | FloatColumn = DEFAULT_FRICTION
    thrust_x: FloatColumn | None = None
    thrust_y: FloatColumn | None = None
    # Convex polygons: one entry per body, null for a circle or [x0, y0, x1, y1, ...] counter-clockwise
    # about the centroid; parse_input packs them (see physics_shapes.pack_vertices).
    vertices: list[list[float] | None] | bytes | None = None
    gravity: tuple[float, float] = DEFAULT_GRAVITY
    world: World | None = None
    dt: float = DEFAULT_DT
    substeps: int = DEFAULT_SUBSTEPS
    iterations: int = DEFAULT_ITERATIONS


class Output(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """State after the step, one entry per body in input order; columns are packed float64 bytes."""

    x: FloatColumn
    y: FloatColumn
    vx: FloatColumn
    vy: FloatColumn
    angle: FloatColumn
    angular_velocity: FloatColumn


# =========================================================================================================
# Parsing
# =========================================================================================================


def _column(value: float | FloatColumn | None, n: int, default: float = 0.0) -> np.ndarray:
    """A per-body column as a float64 array of length n (a read-only view for packed bytes)."""
    if value is None:
        return np.full(n, default)
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype="<f8").copy()  # writable: one compiled kernel variant, not two
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float64)
    return np.full(n, float(value))


def _pack(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def _column_length(error: type[TaskInputError | TaskOutputError], field: str, value: FloatColumn) -> int:
    if isinstance(value, bytes):
        if len(value) % 8:
            raise error(field, f"packed float64 bytes must be a multiple of 8 long, got {len(value)} bytes")
        return len(value) // 8
    return len(value)


def _check_column(
    error: type[TaskInputError | TaskOutputError], field: str, values: np.ndarray, lo: float, hi: float
) -> None:
    """Every entry finite and within [lo, hi]; the error names the first offending index."""
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise error(f"{field}[{i}]", f"must be a finite number, got {values[i]!r}")
    bad = (values < lo) | (values > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise error(f"{field}[{i}]", f"must be within [{lo:g}, {hi:g}], got {values[i]!r}")


_OPTIONAL_COLUMNS = ("vx", "vy", "angle", "angular_velocity", "thrust_x", "thrust_y")
_COLUMN_LIMITS = MappingProxyType(
    {
        "x": (-MAX_COORDINATE, MAX_COORDINATE),
        "y": (-MAX_COORDINATE, MAX_COORDINATE),
        "radius": (MIN_RADIUS, MAX_RADIUS),
        "mass": (0.0, MAX_MASS),
        "vx": (-MAX_SPEED, MAX_SPEED),
        "vy": (-MAX_SPEED, MAX_SPEED),
        "angle": (-MAX_ANGLE, MAX_ANGLE),
        "angular_velocity": (-MAX_ANGULAR_SPEED, MAX_ANGULAR_SPEED),
        "thrust_x": (-MAX_THRUST, MAX_THRUST),
        "thrust_y": (-MAX_THRUST, MAX_THRUST),
        "restitution": (0.0, 1.0),
        "friction": (0.0, MAX_FRICTION),
    }
)


def parse_input(raw: Any) -> Input:
    inp: Input = convert_input(raw, Input)
    n = _column_length(TaskInputError, "x", inp.x)
    if n < 1:
        raise TaskInputError("x", "must hold at least 1 body")
    if n > MAX_BODIES:
        raise TaskInputError("x", f"at most {MAX_BODIES} bodies, got {n}")
    for field in ("y", "radius", "mass", *_OPTIONAL_COLUMNS, "restitution", "friction"):
        value = getattr(inp, field)
        if value is None or isinstance(value, float):
            continue
        length = _column_length(TaskInputError, field, value)
        if length != n:
            raise TaskInputError(field, f"must have one entry per body ({n}, the length of x), got {length}")

    require_range("dt", inp.dt, 0.0, MAX_DT)
    if inp.dt <= 0.0:
        raise TaskInputError("dt", f"must be > 0 and <= {MAX_DT}, got {inp.dt!r}")
    if not 1 <= inp.substeps <= MAX_SUBSTEPS:
        raise TaskInputError("substeps", f"must be within [1, {MAX_SUBSTEPS}], got {inp.substeps}")
    if not 1 <= inp.iterations <= MAX_ITERATIONS:
        raise TaskInputError("iterations", f"must be within [1, {MAX_ITERATIONS}], got {inp.iterations}")
    for axis, g in zip("xy", inp.gravity):
        require_range(f"gravity.{axis}", g, -MAX_GRAVITY, MAX_GRAVITY)

    columns = {f: _column(getattr(inp, f), n) for f in ("x", "y", "radius", "mass", *_OPTIONAL_COLUMNS)}
    columns["restitution"] = _column(inp.restitution, n)
    columns["friction"] = _column(inp.friction, n, DEFAULT_FRICTION)
    vertices = None if inp.vertices is None else pack_vertices(inp.vertices, n)
    if vertices is not None:
        _apply_polygon_extents(columns, _Shapes.of(vertices, n))
    for field, (lo, hi) in _COLUMN_LIMITS.items():
        _check_column(TaskInputError, field, columns[field], lo, hi)

    mass = columns["mass"]
    static = mass == 0.0
    light = ~static & (mass < MIN_DYNAMIC_MASS)
    if light.any():
        i = int(np.argmax(light))
        raise TaskInputError(f"mass[{i}]", f"must be 0 (static) or >= {MIN_DYNAMIC_MASS:g}, got {mass[i]!r}")
    for field in ("vx", "vy", "angular_velocity", "thrust_x", "thrust_y"):
        moving = static & (columns[field] != 0.0)
        if moving.any():
            i = int(np.argmax(moving))
            raise TaskInputError(f"{field}[{i}]", "must be 0 for a static body (mass 0)")
    safe_mass = np.where(static, 1.0, mass)
    for axis in "xy":
        too_strong = np.abs(columns[f"thrust_{axis}"]) > MAX_THRUST_ACCELERATION * safe_mass
        if too_strong.any():
            i = int(np.argmax(too_strong))
            raise TaskInputError(
                f"thrust_{axis}[{i}]",
                f"thrust / mass must be at most {MAX_THRUST_ACCELERATION:g} in magnitude",
            )
    if inp.world is not None:
        _check_world(inp.world, columns, static)

    packed: dict[str, Any] = {field: _pack(values) for field, values in columns.items()}
    packed["vertices"] = vertices
    return msgspec.structs.replace(inp, **packed)


@dataclass(frozen=True, slots=True)
class _Shapes:
    """The polygons of a scene as the kernels take them (see physics_shapes.polygon_table); all empty for circles only."""

    shape_of: np.ndarray
    poly: np.ndarray
    sides: np.ndarray
    poly_props: np.ndarray
    circumradius: np.ndarray

    @classmethod
    def of(cls, vertices: bytes | None, n: int) -> _Shapes:
        if vertices is None:
            return cls.circles(n)
        shape_of, poly, sides, poly_props, circumradius, bad = polygon_table(vertices, n)
        if bad >= 0:
            raise polygon_error(vertices, n, bad)
        return cls(shape_of, poly, sides, poly_props, circumradius)

    @classmethod
    def circles(cls, n: int) -> _Shapes:
        return cls(
            shape_of=np.full(n, -1, dtype=np.int64),
            poly=np.zeros((0, 4, MAX_VERTICES)),
            sides=np.zeros(0, dtype=np.int64),
            poly_props=np.zeros((2, 0)),
            circumradius=np.zeros(n),
        )

    def arguments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.shape_of, self.poly, self.sides, self.poly_props)


def _apply_polygon_extents(columns: dict[str, np.ndarray], shapes: _Shapes) -> None:
    """A polygon body's radius is its circumradius (what the broad phase and reach work with): the input
    gives 0 there, or that value (as parse_input writes it)."""
    polygon = shapes.shape_of >= 0
    radius = columns["radius"]
    given = radius[polygon]
    wrong = (given != 0.0) & (given != shapes.circumradius[polygon])
    if wrong.any():
        i = int(np.flatnonzero(polygon)[np.argmax(wrong)])
        raise TaskInputError(
            f"radius[{i}]", "must be 0 for a polygon body (its extent comes from its vertices)"
        )
    radius[polygon] = shapes.circumradius[polygon]


def _check_world(world: World, columns: dict[str, np.ndarray], static: np.ndarray) -> None:
    for field in ("min_x", "min_y", "max_x", "max_y"):
        require_range(f"world.{field}", getattr(world, field), -MAX_COORDINATE, MAX_COORDINATE)
    require_range("world.restitution", world.restitution, 0.0, 1.0)
    require_range("world.friction", world.friction, 0.0, MAX_FRICTION)
    if not (world.min_x < world.max_x and world.min_y < world.max_y):
        raise TaskInputError("world", "min_x < max_x and min_y < max_y are required")
    dynamic = ~static
    diameter = 2.0 * columns["radius"]
    too_big = dynamic & ((diameter > world.max_x - world.min_x) | (diameter > world.max_y - world.min_y))
    if too_big.any():
        i = int(np.argmax(too_big))
        raise TaskInputError(f"radius[{i}]", "a dynamic body must fit inside the world box")
    for field, lo, hi in (("x", world.min_x, world.max_x), ("y", world.min_y, world.max_y)):
        outside = dynamic & ((columns[field] < lo) | (columns[field] > hi))
        if outside.any():
            i = int(np.argmax(outside))
            raise TaskInputError(
                f"{field}[{i}]", f"a dynamic body's centre must lie inside the world box [{lo:g}, {hi:g}]"
            )


def parse_output(raw: Any) -> Output:
    out: Output = convert_output(raw, Output)
    n = _column_length(TaskOutputError, "x", out.x)
    if n > MAX_BODIES:
        raise TaskOutputError("x", f"at most {MAX_BODIES} bodies, got {n}")
    packed = {}
    for field in _STATE_FIELDS:
        value = getattr(out, field)
        length = _column_length(TaskOutputError, field, value)
        if length != n:
            raise TaskOutputError(field, f"must have one entry per body ({n}, the length of x), got {length}")
        values = _column(value, n)
        _check_column(TaskOutputError, field, values, -math.inf, math.inf)
        packed[field] = value if isinstance(value, bytes) else _pack(values)
    return Output(**packed)


# =========================================================================================================
# compute / verify / agree
# =========================================================================================================


_BODY_ROWS = ("x", "y", "vx", "vy", "angle", "angular_velocity", "radius", "mass", "restitution", "friction",
              "thrust_x", "thrust_y")  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Scene:
    """The input as the kernels take it: one 12 x n float64 block (rows as in _BODY_ROWS) plus scalars."""

    bodies: np.ndarray
    shapes: _Shapes
    world: np.ndarray  # min_x min_y max_x max_y restitution friction gravity_x gravity_y
    has_world: bool
    dt: float
    substeps: int
    iterations: int

    @classmethod
    def from_input(cls, inp: Input) -> _Scene:
        n = _column_length(TaskInputError, "x", inp.x)
        values = [getattr(inp, row) for row in _BODY_ROWS]
        if all(isinstance(v, bytes) for v in values):  # the normal case, after parse_input: one copy
            bodies = np.frombuffer(b"".join(values), dtype="<f8").reshape(len(_BODY_ROWS), n).copy()
        else:
            defaults = {"friction": DEFAULT_FRICTION}
            bodies = np.stack([_column(v, n, defaults.get(row, 0.0)) for row, v in zip(_BODY_ROWS, values)])
        w = inp.world
        bounds = [w.min_x, w.min_y, w.max_x, w.max_y, w.restitution, w.friction] if w else [0.0] * 6
        return cls(
            bodies=bodies,
            shapes=_Shapes.of(_packed_vertices(inp, n), n),
            world=np.array([*bounds, *inp.gravity], dtype=np.float64),
            has_world=w is not None,
            dt=float(inp.dt),
            substeps=int(inp.substeps),
            iterations=int(inp.iterations),
        )

    def solver(self) -> tuple[Any, ...]:
        """The trailing arguments of _simulate."""
        return (self.shapes.arguments(), self.world, self.has_world, self.dt, self.substeps, self.iterations)


def _packed_vertices(inp: Input, n: int) -> bytes | None:
    """The input's polygons packed (as parse_input leaves them; packed here for an Input built directly)."""
    if inp.vertices is None or isinstance(inp.vertices, bytes):
        return inp.vertices
    return pack_vertices(inp.vertices, n)


def _output_arrays(out: Output) -> tuple[np.ndarray, ...]:
    n = _column_length(TaskOutputError, "x", out.x)
    return tuple(_column(getattr(out, field), n) for field in _STATE_FIELDS)


def compute(inp: Input) -> Output:
    scene = _Scene.from_input(inp)
    props, leash, pair_a, pair_b, wall_body, wall_side, _island = _plan_scene(
        scene.bodies, scene.world, scene.has_world, scene.dt, scene.shapes.arguments()
    )
    state = _simulate(scene.bodies[:6], props, leash, pair_a, pair_b, wall_body, wall_side, *scene.solver())
    return Output(**{field: row.tobytes() for field, row in zip(_STATE_FIELDS, state)})


# Verdict codes of the verify kernels, with what they mean.
_ACCEPT = 0
_REASONS = MappingProxyType(
    {
        1: "{field} of body {body} is not a finite number",
        2: "static body {body} changed its {field}",
        3: "body {body} moved {value:.6g}, farther than its reach allows",
        4: "body {body} lies {value:.6g} outside the world box",
        5: "bodies {body} and {other} overlap by {value:.6g}, more than the input explains",
        6: "kinetic energy rose to {value:.6g}, beyond what gravity and thrust can add",
        7: "total momentum ({field}) changed by {value:.6g} more than gravity and thrust explain",
        9: "re-simulation disagrees on the {field} of body {body} by {value:.6g}",
    }
)


def verify(inp: Input, out: Output, rng: random.Random) -> Verdict:
    # One call into one compiled kernel that returns four scalars. The former version built a 12 x n and a
    # 6 x n block in Python (joins and copies of ~150 kB), crossed into numba three or four times and
    # boxed a dozen arrays on the way back: ~20 us of overhead before any checking, more than a light
    # scene's whole step costs. The packed columns now go in as they are (numba reads bytes in place).
    rows = (inp.x, inp.y, inp.vx, inp.vy, inp.angle, inp.angular_velocity, inp.radius, inp.mass,
            inp.restitution, inp.friction, inp.thrust_x, inp.thrust_y)  # fmt: skip
    columns = (out.x, out.y, out.vx, out.vy, out.angle, out.angular_velocity)
    # The usual case (both sides parsed): every column packed bytes of one length. Checked without the
    # generic helpers below (their getattr loops and generators cost ~4 us a call, 5 % of a verify).
    size = len(inp.x)
    packed = type(inp.x) is bytes and size % 8 == 0
    for c in rows + columns:
        packed = packed and type(c) is bytes and len(c) == size
    if packed:
        return _verify_packed(inp, rows, columns, rng)
    n = _column_length(TaskInputError, "x", inp.x)
    lengths = [_column_length(TaskOutputError, field, c) for field, c in zip(_STATE_FIELDS, columns)]
    if any(length != n for length in lengths):
        found = ", ".join(f"{field} has {length}" for field, length in zip(_STATE_FIELDS, lengths))
        return Verdict.reject(f"output must have {n} bodies per column; {found}")
    if not all(isinstance(c, bytes) for c in columns):
        columns = tuple(
            c if isinstance(c, bytes) else _pack(np.asarray(c, dtype=np.float64)) for c in columns
        )
    rows = tuple(getattr(inp, row) for row in _BODY_ROWS)
    if not all(isinstance(v, bytes) for v in rows):  # not from parse_input: normalise as _Scene does
        defaults = {"friction": DEFAULT_FRICTION}
        rows = tuple(_pack(_column(v, n, defaults.get(row, 0.0))) for row, v in zip(_BODY_ROWS, rows))
    return _verify_packed(inp, rows, columns, rng)


def _verify_packed(
    inp: Input, rows: tuple[bytes, ...], columns: tuple[bytes, ...], rng: random.Random
) -> Verdict:
    """verify on packed columns of equal length (rows in _BODY_ROWS order, columns in _STATE_FIELDS')."""
    w = inp.world
    world = (
        (w.min_x, w.min_y, w.max_x, w.max_y, w.restitution, w.friction)
        if w
        else (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    )
    gx, gy = inp.gravity
    n = len(rows[0]) // 8
    shapes = _Shapes.circles(n) if inp.vertices is None else _Shapes.of(_packed_vertices(inp, n), n)
    code, body, other, value = _verify_kernel(
        rows, columns, (*map(float, world), float(gx), float(gy)), w is not None, float(inp.dt),
        int(inp.substeps), int(inp.iterations), rng.getrandbits(63), shapes.arguments(),
    )  # fmt: skip
    if code != _ACCEPT:
        return _rejection(code, body, other, value)
    return Verdict.accept()


def _rejection(code: int, body: int, other: int, value: float) -> Verdict:
    field = _STATE_FIELDS[other] if code in (1, 2, 9) else "xy"[other] if code == 7 else ""
    return Verdict.reject(_REASONS[code].format(body=body, other=other, field=field, value=value))


def agree(a: Output, b: Output) -> bool:
    try:
        left = _output_arrays(a)
        right = _output_arrays(b)
    except TaskOutputError:
        return False
    if any(u.shape != v.shape for u, v in zip(left, right)):
        return False
    for u, v in zip(left, right):
        scale = float(np.max(np.abs(u), initial=0.0))
        tolerance = EXACT_RTOL * np.maximum(np.abs(u), np.abs(v)) + EXACT_ATOL_FRACTION * scale
        if not np.all(np.abs(u - v) <= tolerance):  # NaN never agrees
            return False
    return True


# =========================================================================================================
# Examples
# =========================================================================================================


def example(rng: random.Random, size: str = "small") -> dict[str, Any]:
    """A scene a game could send: circles in a box under gravity, tossed about.

    small: 50 circles (three of them static pegs) scattered in a 12 x 8 box, 4 sub-steps of 1/60 s.
    large: a ball pit, 1,000 circles in loose rows filling the bottom of a 30 x 30 box, stirred with
    random velocities; one 1/60 s step in 4 sub-steps. Most circles touch or nearly touch their
    neighbours, so the step is contact-heavy, like a real pile.
    polygons: 300 crates, triangles, hexagons and balls in loose rows in a 24 x 24 box, turned and
    tossed about (see _polygon_example).
    """
    if size == "polygons":
        return _polygon_example(rng)
    if size == "small":
        columns, rows, spacing = 10, 5, 1.0
    elif size == "large":
        columns, rows, spacing = 40, 25, 0.7
    else:
        raise ValueError(f"size must be 'small' or 'large', got {size!r}")
    n = columns * rows
    width = columns * spacing + 2.0
    height = max(rows * spacing + 3.0, width) if size == "large" else rows * spacing + 3.0
    xs: list[float] = []
    ys: list[float] = []
    radii: list[float] = []
    for k in range(n):
        col, row = k % columns, k // columns
        radius = rng.uniform(0.25, 0.34) if size == "large" else rng.uniform(0.2, 0.4)
        jitter = (spacing - 2.0 * radius) / 2.0
        shift = spacing / 2.0 if (size == "large" and row % 2) else 0.0
        xs.append(1.0 + (col + 0.25) * spacing + shift + rng.uniform(-jitter, jitter))
        ys.append(1.0 + (row + 0.5) * spacing + rng.uniform(-jitter, jitter))
        radii.append(radius)
    masses = [math.pi * r * r for r in radii]
    speed = 1.5 if size == "large" else 3.0
    vxs = [rng.uniform(-speed, speed) for _ in range(n)]
    vys = [rng.uniform(-speed, speed) for _ in range(n)]
    angular = [rng.uniform(-2.0, 2.0) for _ in range(n)]
    if size == "small":
        for k in (12, 15, 18):  # static pegs: a static body keeps zero velocity
            masses[k] = 0.0
            vxs[k] = vys[k] = angular[k] = 0.0
    return {
        "x": xs,
        "y": ys,
        "vx": vxs,
        "vy": vys,
        "angle": [0.0] * n,
        "angular_velocity": angular,
        "radius": radii,
        "mass": masses,
        "restitution": [round(rng.uniform(0.0, 0.6), 3) for _ in range(n)],
        "friction": 0.4,
        "gravity": [0.0, -9.81],
        "world": {
            "min_x": 0.0,
            "min_y": 0.0,
            "max_x": width,
            "max_y": height,
            "restitution": 0.3,
            "friction": 0.5,
        },
        "dt": 1.0 / 60.0,
        "substeps": 4,
        "iterations": 4,
    }


def _regular_polygon(sides: int, radius: float, turn: float = 0.0) -> list[float]:
    """A regular polygon's vertices about its centre, counter-clockwise, as the flat list ``vertices`` takes."""
    flat: list[float] = []
    for k in range(sides):
        a = turn + 2.0 * math.pi * k / sides
        flat += [radius * math.cos(a), radius * math.sin(a)]
    return flat


def _polygon_example(rng: random.Random) -> dict[str, Any]:
    """300 bodies in loose rows in a 24 x 24 box: crates (boxes of random proportions), triangles,
    hexagons and balls, turned at random and tossed about; one 1/60 s step in 4 sub-steps."""
    columns, rows, spacing = 20, 15, 1.1
    n = columns * rows
    xs, ys, radii, masses, vertices = [], [], [], [], []
    for k in range(n):
        col, row = k % columns, k // columns
        xs.append(1.2 + col * spacing + rng.uniform(-0.05, 0.05))
        ys.append(1.0 + row * spacing + rng.uniform(-0.05, 0.05))
        shape = k % 4
        if shape == 0:
            w, h = rng.uniform(0.25, 0.45), rng.uniform(0.2, 0.4)
            vertices.append([-w, -h, w, -h, w, h, -w, h])
            masses.append(4.0 * w * h)
        elif shape == 3:
            vertices.append(None)
            r = rng.uniform(0.25, 0.4)
            masses.append(math.pi * r * r)
        else:
            sides = 3 if shape == 1 else 6
            r = rng.uniform(0.3, 0.45)
            vertices.append(_regular_polygon(sides, r, rng.uniform(0.0, math.pi)))
            masses.append(0.5 * sides * r * r * math.sin(2.0 * math.pi / sides))
        radii.append(0.0 if vertices[-1] is not None else r)
    return {
        "x": xs,
        "y": ys,
        "vx": [rng.uniform(-1.5, 1.5) for _ in range(n)],
        "vy": [rng.uniform(-1.5, 1.5) for _ in range(n)],
        "angle": [0.0] * n,
        "angular_velocity": [rng.uniform(-2.0, 2.0) for _ in range(n)],
        "radius": radii,
        "mass": masses,
        "vertices": vertices,
        "restitution": 0.2,
        "friction": 0.5,
        "gravity": [0.0, -9.81],
        "world": {
            "min_x": 0.0,
            "min_y": 0.0,
            "max_x": 24.0,
            "max_y": 24.0,
            "restitution": 0.2,
            "friction": 0.6,
        },
        "dt": 1.0 / 60.0,
        "substeps": 4,
        "iterations": 4,
    }


# =========================================================================================================
# Kernels (numba, one core). Fixed iteration order everywhere; no parallel loops or reductions.
# =========================================================================================================


@njit(cache=True, error_model="numpy")
def _wall_gap(x, y, r, side, world):  # pragma: no cover - compiled
    """Gap between a circle and one wall of the box (0 min_x, 1 max_x, 2 min_y, 3 max_y); < 0 = overlap."""
    if side == 0:
        return x - r - world[0]
    if side == 1:
        return world[2] - x - r
    if side == 2:
        return y - r - world[1]
    return world[3] - y - r


@njit(cache=True, error_model="numpy")
def _wall_normal(side):  # pragma: no cover - compiled
    """Unit normal from a body towards the wall."""
    if side == 0:
        return -1.0, 0.0
    if side == 1:
        return 1.0, 0.0
    if side == 2:
        return 0.0, -1.0
    return 0.0, 1.0


@njit(cache=True, error_model="numpy")
def _outside_depth(x, y, r, world):  # pragma: no cover - compiled
    """Distance from a centre to the region where the whole circle is inside the box (0 when inside)."""
    dx = max(0.0, world[0] + r - x, x - (world[2] - r))
    dy = max(0.0, world[1] + r - y, y - (world[3] - r))
    if dx == 0.0 and dy == 0.0:  # inside (the usual case): skip the square root, same result
        return 0.0
    return math.sqrt(dx * dx + dy * dy)


@njit(cache=True, error_model="numpy")
def _grid(px, py, ordinary, cell, dense, columns, rows, min_x, min_y, slots):  # pragma: no cover - compiled
    """Bucket the ordinary bodies by cell: (cell_x, cell_y, slot per body, slot starts, bodies by slot).

    Dense grids number cells row by row from the bounding box corner; otherwise cells are hashed into
    ``slots`` buckets. Bodies keep ascending index order within a slot.
    """
    n = px.shape[0]
    cell_x = np.zeros(n, dtype=np.int64)
    cell_y = np.zeros(n, dtype=np.int64)
    slot = np.full(n, -1, dtype=np.int64)
    start = np.zeros(slots + 1, dtype=np.int64)
    for i in range(n):
        if ordinary[i]:
            if dense:
                cell_x[i] = min(np.int64((px[i] - min_x) / cell), columns - 1)
                cell_y[i] = min(np.int64((py[i] - min_y) / cell), rows - 1)
                slot[i] = cell_y[i] * columns + cell_x[i]
            else:
                cell_x[i] = np.int64(math.floor(px[i] / cell))
                cell_y[i] = np.int64(math.floor(py[i] / cell))
                slot[i] = ((cell_x[i] * 73856093) ^ (cell_y[i] * 19349663)) & (slots - 1)
            start[slot[i] + 1] += 1
    for k in range(slots):
        start[k + 1] += start[k]
    fill = start[:slots].copy()
    items = np.empty(n, dtype=np.int64)
    for i in range(n):
        if slot[i] >= 0:
            items[fill[slot[i]]] = i
            fill[slot[i]] += 1
    return cell_x, cell_y, slot, start, items


@njit(cache=True, error_model="numpy")
def _scan_dense(
    px, py, extent, inv_mass, slot, cell_x, cell_y, start, items, columns, rows, capacity
):  # pragma: no cover
    """Pairs among bodies of a dense grid: own cell (higher indices), the next cell, the three above."""
    n = px.shape[0]
    pair_a = np.empty(capacity, dtype=np.int64)
    pair_b = np.empty(capacity, dtype=np.int64)
    count = 0
    for i in range(n):
        s = slot[i]
        if s < 0:
            continue
        right = 1 if cell_x[i] + 1 < columns else 0
        for k in range(start[s], start[s + right + 1]):  # this row: contiguous in ``items``
            j = items[k]
            if slot[j] == s and j <= i:
                continue
            if inv_mass[i] == 0.0 and inv_mass[j] == 0.0:
                continue
            dx = px[j] - px[i]
            dy = py[j] - py[i]
            reach = extent[i] + extent[j]
            if dx * dx + dy * dy <= reach * reach:
                if count < capacity:
                    pair_a[count] = min(i, j)
                    pair_b[count] = max(i, j)
                count += 1
        if cell_y[i] + 1 < rows:  # the row above: also contiguous
            left = 1 if cell_x[i] > 0 else 0
            for k in range(start[s + columns - left], start[s + columns + right + 1]):
                j = items[k]
                if inv_mass[i] == 0.0 and inv_mass[j] == 0.0:
                    continue
                dx = px[j] - px[i]
                dy = py[j] - py[i]
                reach = extent[i] + extent[j]
                if dx * dx + dy * dy <= reach * reach:
                    if count < capacity:
                        pair_a[count] = min(i, j)
                        pair_b[count] = max(i, j)
                    count += 1
    return pair_a, pair_b, count


@njit(cache=True, error_model="numpy")
def _scan_hashed(
    px, py, extent, inv_mass, slot, cell_x, cell_y, start, items, slots, capacity
):  # pragma: no cover
    """Pairs among bodies of a hashed grid: own cell (higher indices) and four forward neighbours."""
    n = px.shape[0]
    pair_a = np.empty(capacity, dtype=np.int64)
    pair_b = np.empty(capacity, dtype=np.int64)
    count = 0
    for i in range(n):
        if slot[i] < 0:
            continue
        for offset in range(5):  # (0, 0), (1, -1), (1, 0), (1, 1), (0, 1)
            ncx = cell_x[i] + (0 if offset == 0 or offset == 4 else 1)
            ncy = cell_y[i] + (0 if offset == 0 else (1 if offset == 4 else offset - 2))
            s = ((ncx * 73856093) ^ (ncy * 19349663)) & (slots - 1)
            for k in range(start[s], start[s + 1]):
                j = items[k]
                if cell_x[j] != ncx or cell_y[j] != ncy or (offset == 0 and j <= i):
                    continue
                if inv_mass[i] == 0.0 and inv_mass[j] == 0.0:
                    continue
                dx = px[j] - px[i]
                dy = py[j] - py[i]
                reach = extent[i] + extent[j]
                if dx * dx + dy * dy <= reach * reach:
                    if count < capacity:
                        pair_a[count] = min(i, j)
                        pair_b[count] = max(i, j)
                    count += 1
    return pair_a, pair_b, count


@njit(cache=True, error_model="numpy")
def _candidate_pairs(px, py, extent, inv_mass):  # pragma: no cover - compiled
    """All pairs (a < b, not both static) whose discs of radius ``extent`` touch, sorted by (a, b).

    Ordinary bodies go in a uniform grid whose cell is twice the largest ordinary extent, so partners
    sit in adjacent cells and each pair is seen once from its lower cell. The grid is dense when the
    bounding box is small enough, hashed otherwise. Bodies whose extent is far above the mean (huge
    obstacles, very fast bodies) would blow the cell up, so they are tested against everyone instead.
    """
    n = px.shape[0]
    big_limit = BIG_BODY_FACTOR * np.mean(extent)
    ordinary = extent <= big_limit
    n_ordinary = 0
    cell = 0.0
    min_x = np.inf
    min_y = np.inf
    max_x = -np.inf
    max_y = -np.inf
    for i in range(n):
        if ordinary[i]:
            n_ordinary += 1
            cell = max(cell, 2.0 * extent[i])
            min_x = min(min_x, px[i])
            min_y = min(min_y, py[i])
            max_x = max(max_x, px[i])
            max_y = max(max_y, py[i])
    width = (max_x - min_x) / cell + 1.0
    height = (max_y - min_y) / cell + 1.0
    dense = n_ordinary > 0 and width * height <= 4.0 * n_ordinary + 64.0
    columns = np.int64(width) if dense else np.int64(0)
    rows = np.int64(height) if dense else np.int64(0)
    slots = columns * rows if dense else np.int64(16)
    while not dense and slots < 2 * n_ordinary:
        slots *= 2
    cell_x, cell_y, slot, start, items = _grid(
        px, py, ordinary, cell, dense, columns, rows, min_x, min_y, slots
    )

    capacity = 4 * n + 16
    for _attempt in range(2):  # the second attempt has room for every pair counted by the first
        if dense:
            pair_a, pair_b, count = _scan_dense(
                px, py, extent, inv_mass, slot, cell_x, cell_y, start, items, columns, rows, capacity
            )
        else:
            pair_a, pair_b, count = _scan_hashed(
                px, py, extent, inv_mass, slot, cell_x, cell_y, start, items, slots, capacity
            )
        for i in range(n):
            if ordinary[i]:
                continue
            for j in range(n):
                if j == i or (not ordinary[j] and j < i) or (inv_mass[i] == 0.0 and inv_mass[j] == 0.0):
                    continue  # big-big pairs once, from the lower index
                dx = px[j] - px[i]
                dy = py[j] - py[i]
                reach = extent[i] + extent[j]
                if dx * dx + dy * dy <= reach * reach:
                    if count < capacity:
                        pair_a[count] = min(i, j)
                        pair_b[count] = max(i, j)
                    count += 1
        if count <= capacity:
            break
        capacity = count
    return _sort_pairs(n, pair_a[:count], pair_b[:count])


@njit(cache=True, error_model="numpy")
def _sort_pairs(n, pair_a, pair_b):  # pragma: no cover - compiled
    """Pairs in (a, b) order: counting sort on a, then insertion sort of each (short) run on b."""
    start = np.zeros(n + 1, dtype=np.int64)
    for k in range(pair_a.shape[0]):
        start[pair_a[k] + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    fill = start[:n].copy()
    sorted_a = np.empty_like(pair_a)
    sorted_b = np.empty_like(pair_b)
    for k in range(pair_a.shape[0]):
        slot = fill[pair_a[k]]
        fill[pair_a[k]] += 1
        sorted_a[slot] = pair_a[k]
        sorted_b[slot] = pair_b[k]
    for i in range(n):
        for k in range(start[i] + 1, start[i + 1]):
            b = sorted_b[k]
            j = k - 1
            while j >= start[i] and sorted_b[j] > b:
                sorted_b[j + 1] = sorted_b[j]
                j -= 1
            sorted_b[j + 1] = b
    return sorted_a, sorted_b


@njit(cache=True, error_model="numpy")
def _find(parent, i):  # pragma: no cover - compiled
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, error_model="numpy")
def _island_labels(n, pair_a, pair_b, inv_mass):  # pragma: no cover - compiled
    """Components of dynamic bodies over the pairs; each labelled by its smallest body index, static -1."""
    parent = np.arange(n)
    for k in range(pair_a.shape[0]):
        a = pair_a[k]
        b = pair_b[k]
        if inv_mass[a] > 0.0 and inv_mass[b] > 0.0:
            ra = _find(parent, a)
            rb = _find(parent, b)
            if ra < rb:
                parent[rb] = ra
            elif rb < ra:
                parent[ra] = rb
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        labels[i] = _find(parent, i) if inv_mass[i] > 0.0 else -1
    return labels


@njit(cache=True, error_model="numpy")
def _prepare(bodies, world, has_world, dt, shapes):  # pragma: no cover - compiled
    """Per-body solver properties and what every body's reach is built from.

    props rows: radius (a polygon's circumradius), inverse mass, inverse inertia (solid disc, I = m r^2 / 2;
    a polygon's from its vertices), acceleration x, y and magnitude (gravity + thrust / m), restitution,
    friction, inertia, and the *core* size that the solver's tolerances scale with (a circle's radius, a
    polygon's inradius); all mass terms 0 for static bodies.
    speed = |v| + |a| dt bounds a body's speed during the step when nothing strikes it; slack is the
    reach margin plus the depth its centre starts outside the allowed box region (the box pushes it back
    in); own_reach = dt * speed + slack. The speed cap is the fastest ordinary body (extent below
    BIG_BODY_FACTOR times the mean), so one exceptionally fast body cannot inflate everyone's reach.
    """
    px, py, vx, vy, radius, mass = bodies[0], bodies[1], bodies[2], bodies[3], bodies[6], bodies[7]
    restitution, friction, thrust_x, thrust_y = bodies[8], bodies[9], bodies[10], bodies[11]
    n = px.shape[0]
    # verify runs this over every body, so the per-body loops are branch-free (selects, not ifs: LLVM
    # vectorises them, which halves the cost) and every output is written once (np.empty: no zeroing
    # pass). The general expressions give the same bits as the former shortcuts did: a zero thrust
    # divides to a zero of its own sign, so the acceleration is gravity's and its length gravity's; a
    # centre inside the box gives dx = dy = 0 and sqrt(0) = 0; without a world the box bounds are
    # infinite, which also gives 0; a static body's terms (1 / 0 and the like) are computed and thrown
    # away by the select. compute's outputs, and so VERSION, are unchanged.
    props = np.empty((10, n))
    speed = np.empty(n)
    slack = np.empty(n)
    own_reach = np.empty(n)
    row_radius, row_inv_mass, row_inv_inertia, row_ax = props[0], props[1], props[2], props[3]
    row_ay, row_accel, row_restitution, row_friction = props[4], props[5], props[6], props[7]
    gx = world[6]
    gy = world[7]
    lo_x = world[0] if has_world else -np.inf
    lo_y = world[1] if has_world else -np.inf
    hi_x = world[2] if has_world else np.inf
    hi_y = world[3] if has_world else np.inf
    for i in range(n):  # (explicit loops: numba compiles slice assignments slowly)
        row_radius[i] = radius[i]
        row_restitution[i] = restitution[i]
        row_friction[i] = friction[i]
    for i in range(n):
        m = mass[i]
        r = radius[i]
        dynamic = m > 0.0
        ax = gx + thrust_x[i] / m
        ay = gy + thrust_y[i] / m
        row_inv_mass[i] = 1.0 / m if dynamic else 0.0
        row_inv_inertia[i] = 2.0 / (m * r * r) if dynamic else 0.0
        row_ax[i] = ax if dynamic else 0.0
        row_ay[i] = ay if dynamic else 0.0
        row_accel[i] = math.sqrt(ax * ax + ay * ay) if dynamic else 0.0
    row_inertia, row_core = props[8], props[9]
    for i in range(n):
        m = mass[i]
        r = radius[i]
        row_inertia[i] = 0.5 * m * r * r if m > 0.0 else 0.0
        row_core[i] = r
    shape_of, _poly, _sides, poly_props = shapes
    if poly_props.shape[1] > 0:
        for i in range(n):
            p = shape_of[i]
            if p >= 0:
                row_core[i] = poly_props[0, p]
                if mass[i] > 0.0:
                    row_inertia[i] = mass[i] * poly_props[1, p]
                    row_inv_inertia[i] = 1.0 / row_inertia[i]
    for i in range(n):  # (a loop of its own: fewer arrays per loop keeps LLVM's aliasing checks cheap)
        r = radius[i]
        x = px[i]
        y = py[i]
        dynamic = mass[i] > 0.0
        body_speed = math.sqrt(vx[i] * vx[i] + vy[i] * vy[i]) + row_accel[i] * dt
        dx = max(0.0, lo_x + r - x, x - (hi_x - r))  # as _outside_depth
        dy = max(0.0, lo_y + r - y, y - (hi_y - r))
        body_slack = REACH_MARGIN_FRACTION * r + math.sqrt(dx * dx + dy * dy)
        speed[i] = body_speed if dynamic else 0.0
        slack[i] = body_slack if dynamic else 0.0
        own_reach[i] = dt * body_speed + body_slack if dynamic else 0.0
    total_extent = 0.0
    for i in range(n):
        total_extent += radius[i] + own_reach[i]
    big_limit = BIG_BODY_FACTOR * total_extent / n
    speed_cap = 0.0
    for i in range(n):
        if mass[i] > 0.0 and radius[i] + own_reach[i] <= big_limit:
            speed_cap = max(speed_cap, speed[i])
    return props, speed, slack, own_reach, speed_cap


@njit(cache=True, error_model="numpy")
def _plan_step(
    px, py, radius, inv_mass, speed, slack, own_reach, speed_cap, world, has_world, dt
):  # pragma: no cover
    """Reach and leash per body, candidate pairs, wall candidates and islands (see module docstring).

    Pass 1 links bodies within their own reach; a body with a dynamic pass-1 neighbour may be struck,
    so its reach grows to cover twice the fastest speed among itself and those neighbours (at most the
    speed cap); pass 2 links with the grown reach. Every quantity of a body depends only on bodies
    within a few extents of it, which lets verify plan a small window exactly.
    """
    n = px.shape[0]
    upper = radius.copy()  # bounds the final extent, so one broad phase serves both passes
    for i in range(n):
        if inv_mass[i] > 0.0:
            upper[i] += max(own_reach[i], dt * REACH_INFLATION * speed_cap + slack[i])
    near_a, near_b = _candidate_pairs(px, py, upper, inv_mass)

    m = near_a.shape[0]
    dist2 = np.empty(m)
    fastest = np.full(n, -1.0)  # -1: no dynamic pass-1 neighbour
    for k in range(m):
        a = near_a[k]
        b = near_b[k]
        dist2[k] = (px[b] - px[a]) ** 2 + (py[b] - py[a]) ** 2
        struck = inv_mass[a] > 0.0 and inv_mass[b] > 0.0
        if struck and dist2[k] <= (radius[a] + own_reach[a] + radius[b] + own_reach[b]) ** 2:
            fastest[a] = max(fastest[a], speed[a], speed[b])
            fastest[b] = max(fastest[b], speed[a], speed[b])
    reach = own_reach.copy()
    for i in range(n):
        if fastest[i] >= 0.0:
            reach[i] = max(own_reach[i], dt * REACH_INFLATION * min(fastest[i], speed_cap) + slack[i])
    count = 0
    linked = np.empty(m, dtype=np.bool_)
    for k in range(m):
        a = near_a[k]
        b = near_b[k]
        linked[k] = dist2[k] <= (radius[a] + reach[a] + radius[b] + reach[b]) ** 2
        count += linked[k]
    pair_a = np.empty(count, dtype=np.int64)
    pair_b = np.empty(count, dtype=np.int64)
    count = 0
    for k in range(m):
        if linked[k]:
            pair_a[count] = near_a[k]
            pair_b[count] = near_b[k]
            count += 1
    island = _island_labels(n, pair_a, pair_b, inv_mass)

    # The leash bounds a body's own travel; pushing it back into the box may add the depth it started
    # outside, which the slack (and so the reach) already counts.
    leash = np.zeros(n)
    for i in range(n):
        if inv_mass[i] > 0.0:
            leash[i] = reach[i] - (_outside_depth(px[i], py[i], radius[i], world) if has_world else 0.0)
    wall_body = np.empty(4 * n if has_world else 0, dtype=np.int64)
    wall_side = np.empty(4 * n if has_world else 0, dtype=np.int64)
    walls = 0
    if has_world:
        for i in range(n):
            if inv_mass[i] > 0.0:
                for side in range(4):
                    if _wall_gap(px[i], py[i], radius[i], side, world) <= reach[i]:
                        wall_body[walls] = i
                        wall_side[walls] = side
                        walls += 1
    return reach, leash, pair_a, pair_b, wall_body[:walls], wall_side[:walls], island


@njit(cache=True, error_model="numpy")
def _apply_impulse(
    a, b, q, nx, ny, normal, tangent, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel
):  # pragma: no cover
    """Apply P = normal * n + tangent * t (t = n turned +90 degrees) at point q: -P to body a, +P to b.

    The arms are point q's lever arms projected: arm_na = r_a x n, arm_ta = r_a . n (= r_a x t), and the
    same for b, so the torque of P about a's centre is normal * arm_na + tangent * arm_ta.
    """
    impulse_x = normal * nx - tangent * ny
    impulse_y = normal * ny + tangent * nx
    vx[a] -= inv_mass[a] * impulse_x
    vy[a] -= inv_mass[a] * impulse_y
    angvel[a] -= inv_inertia[a] * (normal * arm_na[q] + tangent * arm_ta[q])
    vx[b] += inv_mass[b] * impulse_x
    vy[b] += inv_mass[b] * impulse_y
    angvel[b] += inv_inertia[b] * (normal * arm_nb[q] + tangent * arm_tb[q])


@njit(cache=True, error_model="numpy")
def _normal_speed(a, b, q, nx, ny, arm_na, arm_nb, vx, vy, angvel):  # pragma: no cover - compiled
    """Relative velocity of b's point q with respect to a's, along the normal (> 0: separating)."""
    return (vx[b] - vx[a]) * nx + (vy[b] - vy[a]) * ny + angvel[b] * arm_nb[q] - angvel[a] * arm_na[q]


@njit(cache=True, error_model="numpy")
def _bottom_up_order(heights):  # pragma: no cover - compiled
    """Indices that sort ``heights`` at single precision, equal ones kept in index order.

    The solver only needs contacts roughly bottom-up, but the order must be a fixed function of each
    contact's own height (so a subset keeps its relative order): a least-significant-digit radix sort
    of the float32 bits made order-preserving (flip every bit of a negative number, the sign bit of a
    positive one) is exactly that, stable by construction, and fast to run and to compile.
    """
    n = heights.shape[0]
    bits = heights.astype(np.float32).view(np.int32)
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        keys[i] = (~np.int64(bits[i])) & 0xFFFFFFFF if bits[i] < 0 else np.int64(bits[i]) | 0x80000000
    order = np.arange(n)
    buffer = np.empty(n, dtype=np.int64)
    count = np.empty(257, dtype=np.int64)
    for shift in range(0, 32, 8):
        for d in range(257):
            count[d] = 0
        for i in range(n):
            count[((keys[i] >> shift) & 255) + 1] += 1
        if n == 0 or count[((keys[0] >> shift) & 255) + 1] == n:
            continue  # every key has the same digit here
        for d in range(256):
            count[d + 1] += count[d]
        for k in range(n):
            i = order[k]
            d = (keys[i] >> shift) & 255
            buffer[count[d]] = i
            count[d] += 1
        order, buffer = buffer, order
    return order


@njit(cache=True, error_model="numpy")
def _room_along(dx, dy, ux, uy, limit, inv_mass):  # pragma: no cover - compiled
    """Largest impulse J >= 0 keeping |(dx, dy) + inv_mass J (ux, uy)| <= limit (no bound when static)."""
    if inv_mass == 0.0:
        return np.inf
    along = dx * ux + dy * uy
    discriminant = along * along - (dx * dx + dy * dy - limit * limit)
    if discriminant <= 0.0:
        return 0.0
    return max(math.sqrt(discriminant) - along, 0.0) / inv_mass


@njit(cache=True, error_model="numpy")
def _solve_face(
    a, b, q, nx, ny, friction, inv_h, gap0, normal_mass, tangent_mass, normal_impulse, tangent_impulse,
    max_normal_impulse, absorbed, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel,
):  # pragma: no cover  # fmt: skip
    """One velocity iteration of a two-point contact (points q and q + 1): Coulomb friction point by
    point, then both normal impulses from one 2 x 2 linear complementarity problem (Box2D's block
    solver: both pushing, either one alone, or neither). Falls back to point by point when the two
    points act almost alike (K nearly singular)."""
    r = q + 1
    for p in (q, r):
        vt = (vx[b] - vx[a]) * -ny + (vy[b] - vy[a]) * nx + angvel[b] * arm_tb[p] - angvel[a] * arm_ta[p]
        limit = friction * normal_impulse[p]
        new_tangent = min(max(tangent_impulse[p] - tangent_mass[p] * vt, -limit), limit)
        delta_t = new_tangent - tangent_impulse[p]
        tangent_impulse[p] = new_tangent
        _apply_impulse(
            a, b, p, nx, ny, 0.0, delta_t, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel
        )  # fmt: skip
    vn0 = _normal_speed(a, b, q, nx, ny, arm_na, arm_nb, vx, vy, angvel)
    vn1 = _normal_speed(a, b, r, nx, ny, arm_na, arm_nb, vx, vy, angvel)
    k00 = 1.0 / normal_mass[q]
    k11 = 1.0 / normal_mass[r]
    k01 = inv_mass[a] + inv_mass[b] + inv_inertia[a] * arm_na[q] * arm_na[r] + inv_inertia[b] * arm_nb[q] * arm_nb[r]
    det = k00 * k11 - k01 * k01
    old0 = normal_impulse[q]
    old1 = normal_impulse[r]
    # Speculative contacts: an open gap may close during this sub-step, but no more.
    w0 = vn0 + (gap0[q] * inv_h if gap0[q] > 0.0 else 0.0) - (k00 * old0 + k01 * old1)
    w1 = vn1 + (gap0[r] * inv_h if gap0[r] > 0.0 else 0.0) - (k01 * old0 + k11 * old1)
    if not det > BLOCK_CONDITION * k00 * k11:
        x0 = max(old0 - normal_mass[q] * (w0 + k00 * old0 + k01 * old1), 0.0)
        x1 = max(old1 - normal_mass[r] * (w1 + k01 * x0 + k11 * old1), 0.0)
    else:
        x0 = -(k11 * w0 - k01 * w1) / det
        x1 = -(k00 * w1 - k01 * w0) / det
        if not (x0 >= 0.0 and x1 >= 0.0):
            x0 = -w0 / k00
            x1 = 0.0
            if not (x0 >= 0.0 and k01 * x0 + w1 >= 0.0):
                x0 = 0.0
                x1 = -w1 / k11
                if not (x1 >= 0.0 and k01 * x1 + w0 >= 0.0):
                    x0 = 0.0
                    x1 = 0.0
                    if not (w0 >= 0.0 and w1 >= 0.0):
                        return  # no consistent case (rounding): leave this iteration's normals as they are
    d0 = x0 - old0
    d1 = x1 - old1
    # Each point's share of the kinetic energy the change takes out: d_p (vn_p + (K d)_p / 2), summing to
    # the exact d.vn + d.K d / 2; restitution may give back at most e^2 of it.
    absorbed[q] -= d0 * (vn0 + 0.5 * (k00 * d0 + k01 * d1))
    absorbed[r] -= d1 * (vn1 + 0.5 * (k01 * d0 + k11 * d1))
    normal_impulse[q] = x0
    normal_impulse[r] = x1
    max_normal_impulse[q] = max(max_normal_impulse[q], x0)
    max_normal_impulse[r] = max(max_normal_impulse[r], x1)
    _apply_impulse(a, b, q, nx, ny, d0, 0.0, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel)
    _apply_impulse(a, b, r, nx, ny, d1, 0.0, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel)


@njit(cache=True, error_model="numpy")
def _bounces(q, c, approach0, threshold, max_normal_impulse, absorbed):  # pragma: no cover - compiled
    """Whether point q (of contact c) bounces: it approached fast, pushed, and absorbed energy."""
    return approach0[q] <= -threshold[c] and max_normal_impulse[q] != 0.0 and absorbed[q] > 0.0


@njit(cache=True, error_model="numpy")
def _bounce_point(
    a, b, q, nx, ny, restitution, approach0, absorbed, normal_impulse, normal_mass, arm_na, arm_ta, arm_nb,
    arm_tb, inv_mass, inv_inertia, vx, vy, angvel,
):  # pragma: no cover  # fmt: skip
    """Point q bounces at -e times its approach speed, giving back at most e^2 of what it absorbed."""
    vn = _normal_speed(a, b, q, nx, ny, arm_na, arm_nb, vx, vy, angvel)
    target = -restitution * approach0[q]
    k_normal = 1.0 / normal_mass[q]
    energy = restitution * restitution * absorbed[q]
    most = (math.sqrt(vn * vn + 2.0 * k_normal * energy) - vn) / k_normal
    delta_n = max(normal_impulse[q] + min(-normal_mass[q] * (vn - target), most), 0.0) - normal_impulse[q]
    _apply_impulse(
        a, b, q, nx, ny, delta_n, 0.0, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel
    )


@njit(cache=True, error_model="numpy")
def _bounce_pair(
    a, b, q, nx, ny, restitution, approach0, absorbed, normal_impulse, arm_na, arm_ta, arm_nb, arm_tb,
    inv_mass, inv_inertia, vx, vy, angvel,
):  # pragma: no cover  # fmt: skip
    """Points q and q + 1 bounce together: the impulses (x0, x1) that give both their target speeds at
    once (K x = target - vn), scaled down so that the kinetic energy they add, s x.vn + s^2 x.K x / 2,
    stays within e^2 of what the two absorbed. False (nothing applied) when the 2 x 2 system is
    ill-conditioned or a total impulse would turn negative: then the points bounce one by one."""
    r = q + 1
    k_linear = inv_mass[a] + inv_mass[b]
    k00 = k_linear + inv_inertia[a] * arm_na[q] * arm_na[q] + inv_inertia[b] * arm_nb[q] * arm_nb[q]
    k11 = k_linear + inv_inertia[a] * arm_na[r] * arm_na[r] + inv_inertia[b] * arm_nb[r] * arm_nb[r]
    k01 = k_linear + inv_inertia[a] * arm_na[q] * arm_na[r] + inv_inertia[b] * arm_nb[q] * arm_nb[r]
    det = k00 * k11 - k01 * k01
    if not det > BLOCK_CONDITION * k00 * k11:
        return False
    vn0 = _normal_speed(a, b, q, nx, ny, arm_na, arm_nb, vx, vy, angvel)
    vn1 = _normal_speed(a, b, r, nx, ny, arm_na, arm_nb, vx, vy, angvel)
    b0 = -restitution * approach0[q] - vn0
    b1 = -restitution * approach0[r] - vn1
    x0 = (k11 * b0 - k01 * b1) / det
    x1 = (k00 * b1 - k01 * b0) / det
    if x0 < -normal_impulse[q] or x1 < -normal_impulse[r]:
        return False
    energy = restitution * restitution * (absorbed[q] + absorbed[r])
    quadratic = 0.5 * (x0 * b0 + x1 * b1)  # x.K x / 2 (K x = b)
    linear = x0 * vn0 + x1 * vn1
    scale = 1.0
    if quadratic > 0.0 and linear + quadratic > energy:
        scale = min(1.0, (math.sqrt(linear * linear + 4.0 * quadratic * energy) - linear) / (2.0 * quadratic))
    _apply_impulse(
        a, b, q, nx, ny, scale * x0, 0.0, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel
    )  # fmt: skip
    _apply_impulse(
        a, b, r, nx, ny, scale * x1, 0.0, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel
    )  # fmt: skip
    return True


@njit(cache=True, error_model="numpy")
def _shape_contact(
    a, b, side, round_a, round_b, px, py, angle, rad, poly, sides, shape, world, margin
):  # pragma: no cover
    """Contact points of a pair or wall contact that involves a polygon: (count, nx, ny, p0x, p0y, sep0,
    p1x, p1y, sep1), normal from a towards b (or the wall)."""
    if side < 0 and not round_a and not round_b:
        return collide_polygons(
            poly, sides, shape[a], px[a], py[a], angle[a], shape[b], px[b], py[b], angle[b], margin
        )
    if side < 0 and not round_a:
        count, nx, ny, qx, qy, sep = collide_polygon_circle(
            poly, sides, shape[a], px[a], py[a], angle[a], px[b], py[b], rad[b], margin
        )
        return count, nx, ny, qx, qy, sep, 0.0, 0.0, 0.0
    if side < 0:
        count, nx, ny, qx, qy, sep = collide_polygon_circle(
            poly, sides, shape[b], px[b], py[b], angle[b], px[a], py[a], rad[a], margin
        )
        return count, -nx, -ny, qx, qy, sep, 0.0, 0.0, 0.0
    nx, ny = _wall_normal(side)
    count, p0x, p0y, s0, p1x, p1y, s1 = polygon_wall(
        poly, sides, shape[a], px[a], py[a], angle[a], side, world, margin
    )
    return count, nx, ny, p0x, p0y, s0, p1x, p1y, s1


@njit(cache=True, error_model="numpy")
def _simulate(
    state,
    props,
    leash,
    pair_a,
    pair_b,
    wall_body,
    wall_side,
    shapes,
    world,
    has_world,
    dt,
    substeps,
    iterations,
):  # pragma: no cover
    """Advance the bodies by ``dt`` in ``substeps`` sub-steps; returns the new state rows.

    state rows: x, y, vx, vy, angle, angular velocity; props rows as in _prepare; shapes = (shape_of,
    poly, sides, poly_props) as physics_shapes.polygon_table gives them. Only the given pairs and wall contacts are
    considered. Bodies with inverse mass 0 move with their constant velocity (0 for static bodies; verify
    also uses moving ones as a prescribed boundary). The walls are appended as static bodies n..n+3 so
    that wall contacts share the pair code.

    Every contact has up to two points (a circle touches at one, two polygons' faces at two), each with
    its lever arms from the two centres; a circle's lever arm is along the normal to its surface, so
    normal impulses do not turn it and friction turns it by its radius.
    """
    n = state.shape[1]
    total = n + 4
    shape_of, poly, sides, _poly_props = shapes
    px = np.zeros(total)
    py = np.zeros(total)
    vx = np.zeros(total)
    vy = np.zeros(total)
    angle = np.zeros(total)
    angvel = np.zeros(total)
    rad = np.zeros(total)
    core = np.zeros(total)
    shape = np.full(total, -1, dtype=np.int64)
    inv_mass = np.zeros(total)
    inv_inertia = np.zeros(total)
    acc = np.zeros(total)
    rest = np.full(total, world[4])
    fric = np.full(total, world[5])
    for i in range(n):
        px[i] = state[0, i]
        py[i] = state[1, i]
        vx[i] = state[2, i]
        vy[i] = state[3, i]
        angle[i] = state[4, i]
        angvel[i] = state[5, i]
        rad[i] = props[0, i]
        inv_mass[i] = props[1, i]
        inv_inertia[i] = props[2, i]
        acc[i] = props[5, i]
        rest[i] = props[6, i]
        fric[i] = props[7, i]
        core[i] = props[9, i]
        shape[i] = shape_of[i]
    accel_x = props[3]
    accel_y = props[4]
    px0 = state[0]
    py0 = state[1]

    # Contacts: body pairs then walls, re-ordered bottom-up along gravity by the height of the contact
    # point at the start of the step (ties keep that order), so one sweep carries weight up a pile.
    n_pairs = pair_a.shape[0]
    m = n_pairs + wall_body.shape[0]
    unsorted_a = np.empty(m, dtype=np.int64)
    unsorted_b = np.empty(m, dtype=np.int64)
    unsorted_kind = np.empty(m, dtype=np.int64)  # -1 body pair, else wall side
    g_len = math.sqrt(world[6] * world[6] + world[7] * world[7])
    up_x = -world[6] / g_len if g_len > 0.0 else 0.0
    up_y = -world[7] / g_len if g_len > 0.0 else 0.0
    height = np.empty(m)
    for c in range(m):
        if c < n_pairs:
            a = pair_a[c]
            b = pair_b[c]
            unsorted_kind[c] = -1
            dx = px[b] - px[a]
            dy = py[b] - py[a]
            dist = math.sqrt(dx * dx + dy * dy)
            if dist > 0.0:
                dx /= dist
                dy /= dist
        else:
            a = wall_body[c - n_pairs]
            b = n + wall_side[c - n_pairs]
            unsorted_kind[c] = wall_side[c - n_pairs]
            dx, dy = _wall_normal(wall_side[c - n_pairs])
        unsorted_a[c] = a
        unsorted_b[c] = b
        height[c] = (px[a] + dx * rad[a]) * up_x + (py[a] + dy * rad[a]) * up_y
    order = _bottom_up_order(height)
    body_a = unsorted_a[order]
    body_b = unsorted_b[order]
    kind = unsorted_kind[order]

    h = dt / substeps
    inv_h = 1.0 / h
    # Per contact.
    normal_x = np.empty(m)
    normal_y = np.empty(m)
    points = np.zeros(m, dtype=np.int64)  # points this sub-step (position correction uses them all)
    active = np.empty(m, dtype=np.bool_)  # ... and the velocity solver those of active contacts
    position_impulse = np.empty(m)
    mix_friction = np.empty(m)
    mix_restitution = np.empty(m)
    threshold = np.empty(m)
    slop = np.empty(m)
    max_correction = np.empty(m)
    push_limit = np.empty(m)
    # Per point: contact c's points are 2 c and 2 c + 1. Every entry is written before it is read (the
    # impulses when their contact first becomes active), so nothing needs zeroing.
    arm_na = np.empty(2 * m)  # lever arms from each centre to the point, projected (see _apply_impulse)
    arm_ta = np.empty(2 * m)
    arm_nb = np.empty(2 * m)
    arm_tb = np.empty(2 * m)
    gap0 = np.empty(2 * m)
    normal_mass = np.empty(2 * m)
    tangent_mass = np.empty(2 * m)
    normal_impulse = np.empty(2 * m)
    tangent_impulse = np.empty(2 * m)
    max_normal_impulse = np.empty(2 * m)
    absorbed = np.empty(2 * m)
    approach0 = np.empty(2 * m)
    # The points in use this sub-step (movable pairs only), and those of active contacts: flat lists, so
    # that the hot loops below run over points without skipping contacts or looping per contact.
    in_use = np.empty(2 * m, dtype=np.int64)
    in_contact = np.empty(2 * m, dtype=np.int64)
    has_polygons = poly.shape[0] > 0
    for c in range(m):
        a = body_a[c]
        b = body_b[c]
        mix_friction[c] = math.sqrt(fric[a] * fric[b])
        mix_restitution[c] = max(rest[a], rest[b])
        threshold[c] = RESTITUTION_THRESHOLD * dt * (acc[a] + acc[b])
        smaller = min(core[a], core[b]) if kind[c] < 0 else core[a]
        slop[c] = SLOP_FRACTION * smaller
        max_correction[c] = MAX_CORRECTION_FRACTION * smaller
        push_limit[c] = PUSH_OUT_RATE * smaller

    start_x = np.empty(total)
    start_y = np.empty(total)
    start_angle = np.empty(total)
    pushed_x = np.zeros(total)  # velocity each body has gained from position correction this step
    pushed_y = np.zeros(total)
    for _ in range(substeps):
        for i in range(n):
            if inv_mass[i] > 0.0:
                vx[i] += accel_x[i] * h
                vy[i] += accel_y[i] * h
        for i in range(total):
            start_x[i] = px[i]
            start_y[i] = py[i]
            start_angle[i] = angle[i]

        # Contact geometry from the positions at the start of the sub-step.
        n_use = 0
        n_contact = 0
        for c in range(m):
            a = body_a[c]
            b = body_b[c]
            k_normal = inv_mass[a] + inv_mass[b]
            closing = math.sqrt(vx[a] * vx[a] + vy[a] * vy[a]) + math.sqrt(vx[b] * vx[b] + vy[b] * vy[b])
            margin = SPECULATIVE_FACTOR * h * closing + slop[c]
            previous = points[c]
            count = 0
            nx = 0.0
            ny = 0.0
            p0x = p0y = p1x = p1y = 0.0
            s0 = s1 = 0.0
            round_a = shape[a] < 0
            round_b = shape[b] < 0 or kind[c] >= 0
            if kind[c] < 0 and round_a and round_b:
                dx = px[b] - px[a]
                dy = py[b] - py[a]
                dist = math.sqrt(dx * dx + dy * dy)
                if dist > 0.0:
                    nx = dx / dist
                    ny = dy / dist
                else:  # coincident centres: any fixed direction separates them
                    nx = 1.0
                    ny = 0.0
                s0 = dist - rad[a] - rad[b]
                count = 1
            elif round_a and kind[c] >= 0:  # a circle and a wall
                nx, ny = _wall_normal(kind[c])
                s0 = _wall_gap(px[a], py[a], rad[a], kind[c], world)
                count = 1
            else:
                count, nx, ny, p0x, p0y, s0, p1x, p1y, s1 = _shape_contact(
                    a, b, kind[c], round_a, round_b, px, py, angle, rad, poly, sides, shape, world, margin
                )
            normal_x[c] = nx
            normal_y[c] = ny
            points[c] = count
            position_impulse[c] = 0.0
            active[c] = k_normal > 0.0 and count > 0 and s0 < margin
            round_pair = round_a and round_b
            for j in range(count):
                q = 2 * c + j
                gap0[q] = s0 if j == 0 else s1
                if k_normal > 0.0:
                    in_use[n_use] = q
                    n_use += 1
                if active[c] or not round_pair:  # lever arms: the solver's, and a polygon's turn's
                    if round_a:  # a circle's contact point is on its surface towards the other body
                        arm_na[q] = 0.0
                        arm_ta[q] = rad[a]
                    else:
                        rx = (p0x if j == 0 else p1x) - px[a]
                        ry = (p0y if j == 0 else p1y) - py[a]
                        arm_na[q] = rx * ny - ry * nx
                        arm_ta[q] = rx * nx + ry * ny
                    if kind[c] >= 0:  # a wall: static, no lever arm
                        arm_nb[q] = 0.0
                        arm_tb[q] = 0.0
                    elif round_b:
                        arm_nb[q] = 0.0
                        arm_tb[q] = -rad[b]
                    else:
                        rx = (p0x if j == 0 else p1x) - px[b]
                        ry = (p0y if j == 0 else p1y) - py[b]
                        arm_nb[q] = rx * ny - ry * nx
                        arm_tb[q] = rx * nx + ry * ny
            if active[c]:
                for j in range(count):
                    q = 2 * c + j
                    in_contact[n_contact] = q
                    n_contact += 1
                    max_normal_impulse[q] = 0.0
                    rn_a = arm_na[q]
                    rn_b = arm_nb[q]
                    rt_a = arm_ta[q]
                    rt_b = arm_tb[q]
                    normal_mass[q] = 1.0 / (
                        k_normal + inv_inertia[a] * rn_a * rn_a + inv_inertia[b] * rn_b * rn_b
                    )
                    tangent_mass[q] = 1.0 / (
                        k_normal + inv_inertia[a] * rt_a * rt_a + inv_inertia[b] * rt_b * rt_b
                    )
                    approach0[q] = _normal_speed(a, b, q, nx, ny, arm_na, arm_nb, vx, vy, angvel)
                    if abs(approach0[q]) > threshold[c] or count != previous:
                        # An impact or a parting, not a resting contact (or the points changed): last
                        # sub-step's impulse is stale, and replaying it into a crowd injects energy that
                        # neighbours then bounce back.
                        normal_impulse[q] = 0.0
                        tangent_impulse[q] = 0.0
            else:
                for j in range(2):
                    normal_impulse[2 * c + j] = 0.0
                    tangent_impulse[2 * c + j] = 0.0

        # Warm start with the previous sub-step's impulses (the contact set is fixed within the step).
        # Every normal impulse's change of kinetic energy, dλ (vn_before + vn_after) / 2, is booked
        # per point: restitution may give back at most e^2 of what the point took.
        for k in range(n_contact):
            q = in_contact[k]
            c = q >> 1
            vn = _normal_speed(
                body_a[c], body_b[c], q, normal_x[c], normal_y[c], arm_na, arm_nb, vx, vy, angvel
            )
            absorbed[q] = -normal_impulse[q] * (vn + 0.5 * normal_impulse[q] / normal_mass[q])
            _apply_impulse(
                body_a[c], body_b[c], q, normal_x[c], normal_y[c], normal_impulse[q], tangent_impulse[q],
                arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel,
            )  # fmt: skip

        for _it in range(iterations):
            face = False  # this point was solved with the one before it (a face contact)
            for k in range(n_contact):
                q = in_contact[k]
                c = q >> 1
                if face:
                    face = False
                    continue
                a = body_a[c]
                b = body_b[c]
                nx = normal_x[c]
                ny = normal_y[c]
                if q & 1 == 0 and points[c] == 2:
                    # Both points of a face at once, so that neither is favoured by coming first: one after
                    # the other, a stack of crates leans and creeps sideways, and a tall one topples.
                    _solve_face(
                        a, b, q, nx, ny, mix_friction[c], inv_h, gap0, normal_mass, tangent_mass,
                        normal_impulse, tangent_impulse, max_normal_impulse, absorbed, arm_na, arm_ta, arm_nb,
                        arm_tb, inv_mass, inv_inertia, vx, vy, angvel,
                    )  # fmt: skip
                    face = True
                    continue
                # Coulomb friction (bounded by the current normal impulse) and non-penetration, from the
                # same relative velocity and applied together.
                dvx = vx[b] - vx[a]
                dvy = vy[b] - vy[a]
                vt = dvx * -ny + dvy * nx + angvel[b] * arm_tb[q] - angvel[a] * arm_ta[q]
                limit = mix_friction[c] * normal_impulse[q]
                new_tangent = min(max(tangent_impulse[q] - tangent_mass[q] * vt, -limit), limit)
                delta_t = new_tangent - tangent_impulse[q]
                tangent_impulse[q] = new_tangent
                vn = dvx * nx + dvy * ny + angvel[b] * arm_nb[q] - angvel[a] * arm_na[q]
                # Speculative contact: an open gap may close during this sub-step, but no more.
                bias = gap0[q] * inv_h if gap0[q] > 0.0 else 0.0
                new_normal = max(normal_impulse[q] - normal_mass[q] * (vn + bias), 0.0)
                delta_n = new_normal - normal_impulse[q]
                normal_impulse[q] = new_normal
                max_normal_impulse[q] = max(max_normal_impulse[q], new_normal)
                absorbed[q] -= delta_n * (vn + 0.5 * delta_n / normal_mass[q])
                _apply_impulse(
                    a, b, q, nx, ny, delta_n, delta_t, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia,
                    vx, vy, angvel,
                )  # fmt: skip

        # Restitution: points that pushed and were approaching fast bounce at -e times that speed,
        # returning at most e^2 of the kinetic energy they absorbed (so a crowd cannot pump energy).
        # Not added to the stored impulses: warm-starting the next sub-step with a bounce would bounce
        # again. The two points of a face contact bounce together (one 2 x 2 solve): one after the other,
        # the first would turn the body before the second is seen, and a box landing flat would spin.
        paired = False  # this point's bounce was already solved with the one before it
        for k in range(n_contact):
            q = in_contact[k]
            c = q >> 1
            if paired or mix_restitution[c] == 0.0:
                paired = False
                continue
            bounces = _bounces(q, c, approach0, threshold, max_normal_impulse, absorbed)
            if (
                q & 1 == 0
                and points[c] == 2
                and bounces
                and _bounces(q + 1, c, approach0, threshold, max_normal_impulse, absorbed)
            ):
                paired = _bounce_pair(
                    body_a[c], body_b[c], q, normal_x[c], normal_y[c], mix_restitution[c], approach0, absorbed,
                    normal_impulse, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy, angvel,
                )  # fmt: skip
                if paired:
                    continue
            if bounces:
                _bounce_point(
                    body_a[c], body_b[c], q, normal_x[c], normal_y[c], mix_restitution[c], approach0, absorbed,
                    normal_impulse, normal_mass, arm_na, arm_ta, arm_nb, arm_tb, inv_mass, inv_inertia, vx, vy,
                    angvel,
                )  # fmt: skip

        for i in range(n):
            px[i] += vx[i] * h
            py[i] += vy[i] * h
            angle[i] += angvel[i] * h

        # A polygon's turn moves its contact points: what that did to each gap, from the lever arms
        # (turning r by θ moves it along n by (cos θ - 1) r.n + sin θ r x n).
        for k in range(n_use if has_polygons else 0):
            q = in_use[k]
            c = q >> 1
            a = body_a[c]
            b = body_b[c]
            if shape[a] >= 0:
                turn = angle[a] - start_angle[a]
                gap0[q] -= (math.cos(turn) - 1.0) * arm_ta[q] + math.sin(turn) * arm_na[q]
            if shape[b] >= 0 and kind[c] < 0:
                turn = angle[b] - start_angle[b]
                gap0[q] += (math.cos(turn) - 1.0) * arm_tb[q] + math.sin(turn) * arm_nb[q]

        # Position correction (non-linear Gauss-Seidel on the gaps, normals frozen for the sub-step).
        for _it in range(POSITION_ITERATIONS):
            for k in range(n_use):
                q = in_use[k]
                c = q >> 1
                a = body_a[c]
                b = body_b[c]
                k_normal = inv_mass[a] + inv_mass[b]
                nx = normal_x[c]
                ny = normal_y[c]
                gap = (
                    gap0[q]
                    + ((px[b] - start_x[b]) - (px[a] - start_x[a])) * nx
                    + ((py[b] - start_y[b]) - (py[a] - start_y[a])) * ny
                )
                correction = BAUMGARTE * (gap + slop[c])
                if correction >= 0.0:
                    continue
                push = -max(correction, -max_correction[c]) / k_normal
                position_impulse[c] += push
                px[a] -= inv_mass[a] * push * nx
                py[a] -= inv_mass[a] * push * ny
                px[b] += inv_mass[b] * push * nx
                py[b] += inv_mass[b] * push * ny

        # The correction also becomes velocity, per contact (so momentum is kept): a pile's sinking
        # velocity is cancelled instead of piling up step after step. It never makes a pair separate
        # faster than the push-out speed, so a deep overlap comes apart smoothly instead of exploding.
        # Over the whole step, the velocity a body gains this way stays within the push-out speed
        # (as a vector: the ups and downs inside a pile cancel), so a crowd of overlapping bodies
        # cannot add up a large speed, and kinetic energy stays bounded. Applied at the centres, as
        # the correction was: it turns nothing.
        for c in range(m):
            if position_impulse[c] > 0.0:
                a = body_a[c]
                b = body_b[c]
                nx = normal_x[c]
                ny = normal_y[c]
                vn = (vx[b] - vx[a]) * nx + (vy[b] - vy[a]) * ny
                impulse = min(position_impulse[c] * inv_h, (push_limit[c] - vn) / (inv_mass[a] + inv_mass[b]))
                impulse = min(
                    impulse,
                    _room_along(pushed_x[a], pushed_y[a], -nx, -ny, PUSH_OUT_RATE * core[a], inv_mass[a]),
                )
                impulse = min(
                    impulse,
                    _room_along(pushed_x[b], pushed_y[b], nx, ny, PUSH_OUT_RATE * core[b], inv_mass[b]),
                )
                if impulse > 0.0:
                    pushed_x[a] -= inv_mass[a] * impulse * nx
                    pushed_y[a] -= inv_mass[a] * impulse * ny
                    pushed_x[b] += inv_mass[b] * impulse * nx
                    pushed_y[b] += inv_mass[b] * impulse * ny
                    vx[a] -= inv_mass[a] * impulse * nx
                    vy[a] -= inv_mass[a] * impulse * ny
                    vx[b] += inv_mass[b] * impulse * nx
                    vy[b] += inv_mass[b] * impulse * ny

        for i in range(n):
            if inv_mass[i] == 0.0:
                continue
            # Never farther than the leash: keeps every contact among the candidate pairs.
            dx = px[i] - px0[i]
            dy = py[i] - py0[i]
            dist2 = dx * dx + dy * dy
            if dist2 > leash[i] * leash[i]:
                scale = leash[i] / math.sqrt(dist2)
                px[i] = px0[i] + dx * scale
                py[i] = py0[i] + dy * scale
            # Never outside the box: a wall is rigid, whatever the pile behind the body does.
            if has_world and shape[i] < 0:
                if px[i] < world[0] + rad[i]:
                    px[i] = world[0] + rad[i]
                    vx[i] = max(vx[i], 0.0)
                elif px[i] > world[2] - rad[i]:
                    px[i] = world[2] - rad[i]
                    vx[i] = min(vx[i], 0.0)
                if py[i] < world[1] + rad[i]:
                    py[i] = world[1] + rad[i]
                    vy[i] = max(vy[i], 0.0)
                elif py[i] > world[3] - rad[i]:
                    py[i] = world[3] - rad[i]
                    vy[i] = min(vy[i], 0.0)
            elif has_world:
                lo_x, lo_y, hi_x, hi_y = polygon_bounds(poly, sides, shape[i], px[i], py[i], angle[i])
                if lo_x < world[0]:
                    px[i] += world[0] - lo_x
                    vx[i] = max(vx[i], 0.0)
                elif hi_x > world[2]:
                    px[i] -= hi_x - world[2]
                    vx[i] = min(vx[i], 0.0)
                if lo_y < world[1]:
                    py[i] += world[1] - lo_y
                    vy[i] = max(vy[i], 0.0)
                elif hi_y > world[3]:
                    py[i] -= hi_y - world[3]
                    vy[i] = min(vy[i], 0.0)

    out = np.empty((6, n))
    for i in range(n):
        out[0, i] = px[i]
        out[1, i] = py[i]
        out[2, i] = vx[i]
        out[3, i] = vy[i]
        out[4, i] = angle[i]
        out[5, i] = angvel[i]
    return out


@njit(cache=True, error_model="numpy")
def _plan_scene(bodies, world, has_world, dt, shapes):  # pragma: no cover - compiled
    """compute's first half: properties and plan of the whole scene (the simulation is the second)."""
    props, speed, slack, own_reach, speed_cap = _prepare(bodies, world, has_world, dt, shapes)
    reach, leash, pair_a, pair_b, wall_body, wall_side, island = _plan_step(
        bodies[0], bodies[1], props[0], props[1], speed, slack, own_reach, speed_cap, world, has_world, dt
    )
    return props, leash, pair_a, pair_b, wall_body, wall_side, island


# --- verification kernels ---------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)

# What the re-simulation compares for a body of the sub-problem.
_ROLE_NONE = 0  # static or kinematic boundary
_ROLE_EXACT = 1  # member of a whole island: must match to rounding
_ROLE_SCREEN = 2  # core of a local screen: must match within the screen tolerance


@njit(cache=True, error_model="numpy")
def _next_uniform(state):  # pragma: no cover - compiled
    """splitmix64: returns the new state and a float in [0, 1). Seeded from the caller's rng."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    z = z ^ (z >> np.uint64(31))
    return state, float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, error_model="numpy")
def _close(claimed, expected, scale):  # pragma: no cover - compiled
    """Equal up to rounding: 1e-9 relative plus 1e-12 of the quantity's natural scale."""
    return (
        abs(claimed - expected) <= EXACT_RTOL * max(abs(claimed), abs(expected)) + EXACT_ATOL_FRACTION * scale
    )


@njit(cache=True, error_model="numpy")
def _hops(seed, n, pair_a, pair_b, inv_mass, max_hops):  # pragma: no cover - compiled
    """Hop count from ``seed`` over pairs of dynamic bodies, up to ``max_hops`` (-1 = farther)."""
    hops = np.full(n, -1, dtype=np.int64)
    hops[seed] = 0
    for depth in range(max_hops):
        grew = False
        for k in range(pair_a.shape[0]):
            a = pair_a[k]
            b = pair_b[k]
            if inv_mass[a] == 0.0 or inv_mass[b] == 0.0:
                continue
            if hops[a] == depth and hops[b] < 0:
                hops[b] = depth + 1
                grew = True
            elif hops[b] == depth and hops[a] < 0:
                hops[a] = depth + 1
                grew = True
        if not grew:
            break
    return hops


@njit(cache=True, error_model="numpy")
def _append(values, count, value):  # pragma: no cover - compiled
    """Append to a growable int64 buffer; returns the (possibly new) buffer."""
    if count == values.shape[0]:
        bigger = np.empty(2 * values.shape[0] + 16, dtype=np.int64)
        bigger[:count] = values[:count]
        values = bigger
    values[count] = value
    return values


@njit(cache=True, error_model="numpy")
def _sub_shapes(shapes, index):  # pragma: no cover - compiled
    """The shapes argument of _simulate for the bodies ``index`` (the polygon table is shared)."""
    shape_of, poly, sides, poly_props = shapes
    return shape_of[index], poly, sides, poly_props


@njit(cache=True, error_model="numpy", inline="always")  # called per pair: no call overhead
def _pair_depth(a, b, xs, ys, angles, radius, shapes):  # pragma: no cover - compiled
    """How deep bodies a and b overlap at the given positions and angles (< 0: apart)."""
    shape_of, poly, sides, _poly_props = shapes
    sa = shape_of[a]
    sb = shape_of[b]
    if sa < 0 and sb < 0:
        return radius[a] + radius[b] - math.sqrt((xs[b] - xs[a]) ** 2 + (ys[b] - ys[a]) ** 2)
    if sa >= 0 and sb >= 0:
        return polygon_depth(poly, sides, sa, xs[a], ys[a], angles[a], sb, xs[b], ys[b], angles[b])
    if sa >= 0:
        return polygon_circle_depth(poly, sides, sa, xs[a], ys[a], angles[a], xs[b], ys[b], radius[b])
    return polygon_circle_depth(poly, sides, sb, xs[b], ys[b], angles[b], xs[a], ys[a], radius[a])


@njit(cache=True, error_model="numpy", inline="always")  # called per pair: no call overhead
def _body_outside(i, x, y, angle, radius, world, shapes):  # pragma: no cover - compiled
    """How far body i pokes out of the world box (a circle: its centre from the allowed region)."""
    shape_of, poly, sides, _poly_props = shapes
    if shape_of[i] < 0:
        return _outside_depth(x, y, radius, world)
    return polygon_outside(poly, sides, shape_of[i], x, y, angle, world)


@njit(cache=True, error_model="numpy")
def _subproblem(
    bodies, props, claimed, dt, role, kinematic, leash, pair_a, pair_b, wall_body, wall_side
):  # pragma: no cover
    """The simulation input for the bodies with a role (and kinematic boundary bodies), in global order.

    Pairs and wall contacts are given in global indices, already restricted to those the chosen bodies
    take part in and in the order the full step uses within each island. Static partners are added;
    kinematic bodies move in a straight line to their claimed output with infinite mass.
    """
    n = bodies[0].shape[0]
    keep = (role != _ROLE_NONE) | kinematic
    for k in range(pair_a.shape[0]):
        keep[pair_a[k]] = True
        keep[pair_b[k]] = True
    index = np.flatnonzero(keep)
    local = np.full(n, -1, dtype=np.int64)
    for k in range(index.shape[0]):
        local[index[k]] = k
    state = np.empty((6, index.shape[0]))
    sub_props = np.empty((props.shape[0], index.shape[0]))
    for f in range(6):
        row = bodies[f]
        for k in range(index.shape[0]):
            state[f, k] = row[index[k]]
    for f in range(props.shape[0]):
        for k in range(index.shape[0]):
            sub_props[f, k] = props[f, index[k]]
    sub_leash = leash[index]
    for k in range(index.shape[0]):
        i = index[k]
        if kinematic[i]:
            state[2, k] = (claimed[0][i] - bodies[0][i]) / dt
            state[3, k] = (claimed[1][i] - bodies[1][i]) / dt
            state[5, k] = (claimed[4][i] - bodies[4][i]) / dt
            sub_props[1, k] = 0.0
            sub_props[2, k] = 0.0
            sub_props[5, k] = 0.0
    return (
        index, role[index], state, sub_props, sub_leash, local[pair_a], local[pair_b], local[wall_body], wall_side,
    )  # fmt: skip


@njit(cache=True, error_model="numpy")
def _global_checks(
    bodies, props, speed, slack, own_reach, speed_cap, claimed, world, has_world, dt, substeps, shapes
):  # pragma: no cover
    """The checks over every body: (code, body, other, value) with code 0 = nothing wrong (see _REASONS)."""
    px, py, vx, vy, angle = bodies[0], bodies[1], bodies[2], bodies[3], bodies[4]
    angvel, radius, mass = bodies[5], bodies[6], bodies[7]
    out_x, out_y, out_vx, out_vy = claimed[0], claimed[1], claimed[2], claimed[3]
    out_angle, out_angvel = claimed[4], claimed[5]
    inertia, core = props[8], props[9]
    circles_only = shapes[1].shape[0] == 0  # (the circle depth written out: the hot loops stay lean)
    n = px.shape[0]
    length = np.max(radius) + np.max(np.abs(px)) + np.max(np.abs(py))
    for f in range(6):
        column = claimed[f]
        for i in range(n):
            if not math.isfinite(column[i]):
                return 1, i, f, 0.0
    inv_mass = props[1]
    accel = props[5]
    any_static = False
    for i in range(n):
        if inv_mass[i] == 0.0:
            any_static = True
            for f in range(6):
                if claimed[f][i] != bodies[f][i]:
                    return 2, i, f, 0.0

    # Travel: no body goes farther than the largest reach the plan could give it; and the box holds.
    for i in range(n):
        if inv_mass[i] > 0.0:
            reach_bound = max(own_reach[i], dt * REACH_INFLATION * speed_cap + slack[i])
            travel = math.sqrt((out_x[i] - px[i]) ** 2 + (out_y[i] - py[i]) ** 2)
            if travel > reach_bound * (1.0 + EXACT_RTOL) + EXACT_ATOL_FRACTION * length:
                return 3, i, 0, travel
            if has_world:
                if circles_only:
                    depth = _outside_depth(out_x[i], out_y[i], radius[i], world)
                else:
                    depth = _body_outside(i, out_x[i], out_y[i], out_angle[i], radius[i], world, shapes)
                if depth > EXACT_RTOL * length:
                    return 4, i, 0, depth

    # Overlaps, by a broad phase over each body's sweep from input to output position. Where the input
    # overlaps nothing within two pairs, a pair may end at most OVERLAP_FRACTION deep, plus one
    # sub-step of its relative speed. (Depths are exact for polygons; their sizes are their inradii.)
    sweep = radius + 0.5 * np.sqrt((out_x - px) ** 2 + (out_y - py) ** 2)
    pair_a, pair_b = _candidate_pairs(0.5 * (px + out_x), 0.5 * (py + out_y), sweep, inv_mass)
    deepest = np.zeros(n)
    for k in range(pair_a.shape[0]):
        a = pair_a[k]
        b = pair_b[k]
        if circles_only:
            depth = radius[a] + radius[b] - math.sqrt((px[b] - px[a]) ** 2 + (py[b] - py[a]) ** 2)
        else:
            depth = _pair_depth(a, b, px, py, angle, radius, shapes)
        deepest[a] = max(deepest[a], depth)
        deepest[b] = max(deepest[b], depth)
    if has_world:
        for i in range(n):
            if inv_mass[i] > 0.0:
                if circles_only:
                    outside = _outside_depth(px[i], py[i], radius[i], world)
                else:
                    outside = _body_outside(i, px[i], py[i], angle[i], radius[i], world, shapes)
                deepest[i] = max(deepest[i], outside)
    nearby = deepest.copy()
    for k in range(pair_a.shape[0]):
        nearby[pair_a[k]] = max(nearby[pair_a[k]], deepest[pair_b[k]])
        nearby[pair_b[k]] = max(nearby[pair_b[k]], deepest[pair_a[k]])
    for k in range(pair_a.shape[0]):
        a = pair_a[k]
        b = pair_b[k]
        if max(nearby[a] / core[a], nearby[b] / core[b]) > SLOP_FRACTION:
            continue  # pushing apart an input overlap may squeeze anything nearby
        if circles_only:
            depth = radius[a] + radius[b] - math.sqrt((out_x[b] - out_x[a]) ** 2 + (out_y[b] - out_y[a]) ** 2)
        else:
            depth = _pair_depth(a, b, out_x, out_y, out_angle, radius, shapes)
        # A pair may close in one sub-step at its relative speed before the solver sees it (a body
        # struck hard mid-sub-step); a speck may sink into a boulder by a fraction of the boulder.
        closing = math.sqrt((vx[b] - vx[a]) ** 2 + (vy[b] - vy[a]) ** 2)
        closing += math.sqrt((out_vx[b] - out_vx[a]) ** 2 + (out_vy[b] - out_vy[a]) ** 2)
        if depth > OVERLAP_FRACTION * max(core[a], core[b]) + closing * dt / substeps:
            return 5, a, b, depth

    # Energy: contacts add no kinetic energy, so sqrt(2 K) grows by at most dt * ||accel||_M (triangle
    # inequality in the mass-weighted norm, sub-step by sub-step); position correction may add up to
    # the push-out speed to bodies near an input overlap.
    k_in = 0.0
    k_out = 0.0
    drive = 0.0
    push = 0.0
    for i in range(n):
        if inv_mass[i] > 0.0:
            k_in += 0.5 * mass[i] * (vx[i] ** 2 + vy[i] ** 2) + 0.5 * inertia[i] * angvel[i] ** 2
            k_out += 0.5 * mass[i] * (out_vx[i] ** 2 + out_vy[i] ** 2) + 0.5 * inertia[i] * out_angvel[i] ** 2
            drive += mass[i] * accel[i] ** 2
            if nearby[i] > SLOP_FRACTION * core[i]:  # the solver caps what correction may add
                push += mass[i] * (PUSH_OUT_RATE * core[i]) ** 2
    bound = (1.0 + ENERGY_RTOL) * (math.sqrt(2.0 * k_in) + dt * math.sqrt(drive)) + math.sqrt(push)
    if math.sqrt(2.0 * k_out) > bound * (1.0 + EXACT_RTOL):
        return 6, -1, 0, k_out

    # Momentum, when nothing immovable is around: changes by exactly dt * (gravity + thrust).
    if not has_world and not any_static:
        for axis in range(2):
            expected = 0.0
            got = 0.0
            scale = 0.0
            for i in range(n):
                v_in = vx[i] if axis == 0 else vy[i]
                v_out = out_vx[i] if axis == 0 else out_vy[i]
                expected += mass[i] * (v_in + dt * props[3 + axis, i])
                got += mass[i] * v_out
                scale += mass[i] * (abs(v_in) + abs(v_out) + dt * accel[i] + PUSH_OUT_RATE * radius[i])
            if abs(got - expected) > EXACT_RTOL * scale:
                return 7, -1, axis, abs(got - expected)

    return 0, 0, 0, 0.0


@njit(cache=True, error_model="numpy")
def _f64(packed):  # pragma: no cover - compiled
    """A packed little-endian float64 column (bytes), read in place: no copy."""
    return np.frombuffer(packed, dtype=np.float64)


@njit(cache=True, error_model="numpy")
def _scales(radius, px, py, angle):  # pragma: no cover - compiled
    """(length, turn): np.max(radius) + np.max(np.abs(px)) + np.max(np.abs(py)) and 1 + np.max(np.abs(angle)).

    One pass instead of four (and no temporary arrays). A maximum is exact, so only NaN needs care:
    np.max returns NaN when there is one, and so does this (a NaN is never "greater", so it is flagged
    on the side).
    """
    max_radius = radius[0]
    max_x = abs(px[0])
    max_y = abs(py[0])
    max_angle = abs(angle[0])
    nan_length = False
    nan_angle = False
    for i in range(radius.shape[0]):
        r = radius[i]
        x = abs(px[i])
        y = abs(py[i])
        a = abs(angle[i])
        max_radius = r if r > max_radius else max_radius
        max_x = x if x > max_x else max_x
        max_y = y if y > max_y else max_y
        max_angle = a if a > max_angle else max_angle
        nan_length |= (r != r) | (x != x) | (y != y)
        nan_angle |= a != a
    length = np.nan if nan_length else max_radius + max_x + max_y
    return length, (np.nan if nan_angle else 1.0 + max_angle)


@njit(cache=True, error_model="numpy")
def _verify_kernel(
    rows, columns, world_values, has_world, dt, substeps, iterations, seed, shapes
):  # pragma: no cover
    """All of verify after the shape check, in one compiled call: (code, body, other, value), 0 = accept.

    ``rows`` are the input's packed columns in _BODY_ROWS order, ``columns`` the output's in _STATE_FIELDS
    order, ``world_values`` the 8 numbers of _Scene.world. Bodies and the claimed output are tuples of
    read-only views of those bytes (indexed ``[row][body]``), so nothing is copied or boxed on the way.
    """
    bodies = (
        _f64(rows[0]), _f64(rows[1]), _f64(rows[2]), _f64(rows[3]), _f64(rows[4]), _f64(rows[5]),
        _f64(rows[6]), _f64(rows[7]), _f64(rows[8]), _f64(rows[9]), _f64(rows[10]), _f64(rows[11]),
    )  # fmt: skip
    claimed = (
        _f64(columns[0]), _f64(columns[1]), _f64(columns[2]), _f64(columns[3]), _f64(columns[4]),
        _f64(columns[5]),
    )  # fmt: skip
    world = np.empty(8)
    for k in range(8):
        world[k] = world_values[k]
    props, speed, slack, own_reach, speed_cap = _prepare(bodies, world, has_world, dt, shapes)
    length, turn = _scales(bodies[6], bodies[0], bodies[1], bodies[4])
    if _suspicious(bodies, props, slack, own_reach, speed_cap, claimed, world, has_world, dt, length, shapes):
        # Something may be wrong (or the energy needs the push-out allowance): the full checks decide,
        # with their broad phase, and name the problem exactly as they always have.
        code, body, other, value = _global_checks(
            bodies, props, speed, slack, own_reach, speed_cap, claimed, world, has_world, dt, substeps, shapes
        )
        if code != _ACCEPT:
            return code, body, other, value

    scales = np.array([length, length, length / dt, length / dt, turn, turn / dt])
    role, kinematic, leash, pair_a, pair_b, wall_body, wall_side, tolerance, audit = _choose_windows(
        bodies,
        props,
        claimed,
        world,
        has_world,
        dt,
        substeps,
        speed,
        slack,
        own_reach,
        speed_cap,
        seed,
        shapes[0],
    )
    sub = _subproblem(
        bodies, props, claimed, dt, role, kinematic, leash, pair_a, pair_b, wall_body, wall_side
    )
    index, sub_role, state, sub_props, sub_leash, sub_a, sub_b, sub_wall_body, sub_wall_side = sub
    if index.shape[0] > 0:
        simulated = _simulate(
            state, sub_props, sub_leash, sub_a, sub_b, sub_wall_body, sub_wall_side, _sub_shapes(shapes, index),
            world, has_world, dt, substeps, iterations,
        )  # fmt: skip
        code, body, other, value, suspect = _compare(simulated, claimed, index, sub_role, tolerance, scales)
        if code != _ACCEPT:
            return code, body, other, value
        if suspect >= 0:
            audit = suspect
    if audit >= 0:  # a screen disagreed, or an audit: re-simulate the whole island, planned in full
        return _whole_island(
            bodies, props, speed, slack, own_reach, speed_cap, claimed, world, has_world, dt, substeps,
            iterations, audit, tolerance, scales, shapes,
        )  # fmt: skip
    return _ACCEPT, 0, 0, 0.0


@njit(cache=True, error_model="numpy")
def _whole_island(
    bodies, props, speed, slack, own_reach, speed_cap, claimed, world, has_world, dt, substeps, iterations,
    body, tolerance, scales, shapes,
):  # pragma: no cover  # fmt: skip
    """Re-simulate the island of ``body`` in full, from a plan of the whole scene: (code, body, other, value)."""
    _reach, leash, pair_a, pair_b, wall_body, wall_side, island = _plan_step(
        bodies[0], bodies[1], props[0], props[1], speed, slack, own_reach, speed_cap, world, has_world, dt
    )
    n = island.shape[0]
    members = island == island[body]
    role = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if members[i]:
            role[i] = _ROLE_EXACT
    involved = np.zeros(pair_a.shape[0], dtype=np.bool_)
    for k in range(pair_a.shape[0]):
        involved[k] = members[pair_a[k]] or members[pair_b[k]]
    walls = np.zeros(wall_body.shape[0], dtype=np.bool_)
    for k in range(wall_body.shape[0]):
        walls[k] = members[wall_body[k]]
    sub = _subproblem(
        bodies, props, claimed, dt, role, np.zeros(n, dtype=np.bool_), leash, pair_a[involved],
        pair_b[involved], wall_body[walls], wall_side[walls],
    )  # fmt: skip
    index, sub_role, state, sub_props, sub_leash, sub_a, sub_b, sub_wall_body, sub_wall_side = sub
    simulated = _simulate(
        state, sub_props, sub_leash, sub_a, sub_b, sub_wall_body, sub_wall_side, _sub_shapes(shapes, index),
        world, has_world, dt, substeps, iterations,
    )  # fmt: skip
    code, body, other, value, _suspect = _compare(simulated, claimed, index, sub_role, tolerance, scales)
    return code, body, other, value


@njit(cache=True, error_model="numpy")
def _suspicious(
    bodies, props, slack, own_reach, speed_cap, claimed, world, has_world, dt, length, shapes
):  # pragma: no cover
    """One cheap pass over every body, then the overlap screen: False guarantees that _global_checks
    finds nothing wrong, so it (and its broad phase) can be skipped; True means run it.

    Same expressions and summation order as _global_checks for finiteness, static bodies, travel, the box
    and momentum; the energy bound leaves out the push-out allowance (which needs the broad phase to
    find input overlaps), so it is at most _global_checks' bound: an honest pile pushing out of overlaps
    may come back True and pay for the broad phase, a wrong output never gets through here that the full
    energy check would have rejected. ``length`` is _global_checks' length scale (see _scales).
    """
    px, py, vx, vy, angle, angvel = bodies[0], bodies[1], bodies[2], bodies[3], bodies[4], bodies[5]
    radius, mass = bodies[6], bodies[7]
    inertia, core = props[8], props[9]
    shape_of, poly, sides, _poly_props = shapes
    out_x, out_y, out_vx, out_vy, out_angle, out_angvel = (
        claimed[0], claimed[1], claimed[2], claimed[3], claimed[4], claimed[5]
    )  # fmt: skip
    inv_mass = props[1]
    accel = props[5]
    n = px.shape[0]
    finite = True  # branch-free, so the loop vectorises
    for i in range(n):
        finite &= (abs(out_x[i]) < np.inf) & (abs(out_y[i]) < np.inf) & (abs(out_vx[i]) < np.inf)
        finite &= (abs(out_vy[i]) < np.inf) & (abs(out_angle[i]) < np.inf) & (abs(out_angvel[i]) < np.inf)
    if not finite:
        return True
    # The per-body checks first, in a loop without sums or early exits, so that it vectorises (square
    # roots and all): it only ORs flags, which is the same answer as returning at the first one.
    inflated = dt * REACH_INFLATION * speed_cap
    travel_slack = EXACT_ATOL_FRACTION * length
    box_slack = EXACT_RTOL * length
    lo_x = world[0] if has_world else -np.inf  # no world: infinite bounds, never outside (depth 0)
    lo_y = world[1] if has_world else -np.inf
    hi_x = world[2] if has_world else np.inf
    hi_y = world[3] if has_world else np.inf
    flagged = False
    any_static = False
    for i in range(n):
        static = inv_mass[i] == 0.0
        changed = (out_x[i] != px[i]) | (out_y[i] != py[i]) | (out_vx[i] != vx[i]) | (out_vy[i] != vy[i])
        changed |= (out_angle[i] != angle[i]) | (out_angvel[i] != angvel[i])
        reach_bound = max(own_reach[i], inflated + slack[i])
        travel = math.sqrt((out_x[i] - px[i]) ** 2 + (out_y[i] - py[i]) ** 2)
        r = radius[i]
        dx = max(0.0, lo_x + r - out_x[i], out_x[i] - (hi_x - r))  # as _outside_depth
        dy = max(0.0, lo_y + r - out_y[i], out_y[i] - (hi_y - r))
        outside = (math.sqrt(dx * dx + dy * dy) > box_slack) & (shape_of[i] < 0)  # polygons: below
        far = (travel > reach_bound * (1.0 + EXACT_RTOL) + travel_slack) | outside
        flagged |= (changed & static) | (far & (not static))
        any_static |= static
    if has_world and poly.shape[0] > 0:
        for i in range(n):
            p = shape_of[i]
            if p >= 0 and inv_mass[i] != 0.0:
                flagged |= (
                    polygon_outside(poly, sides, p, out_x[i], out_y[i], out_angle[i], world) > box_slack
                )
    if flagged:
        return True
    # The sums, in the former order (adding 0.0 for a static body leaves a sum's bits as they are).
    k_in = 0.0
    k_out = 0.0
    drive = 0.0
    expected_x = 0.0
    got_x = 0.0
    scale_x = 0.0
    expected_y = 0.0
    got_y = 0.0
    scale_y = 0.0
    for i in range(n):
        dynamic = inv_mass[i] != 0.0
        energy_in = 0.5 * mass[i] * (vx[i] ** 2 + vy[i] ** 2) + 0.5 * inertia[i] * angvel[i] ** 2
        energy_out = 0.5 * mass[i] * (out_vx[i] ** 2 + out_vy[i] ** 2) + 0.5 * inertia[i] * out_angvel[i] ** 2
        k_in += energy_in if dynamic else 0.0
        k_out += energy_out if dynamic else 0.0
        drive += mass[i] * accel[i] ** 2 if dynamic else 0.0
        expected_x += mass[i] * (vx[i] + dt * props[3, i])
        got_x += mass[i] * out_vx[i]
        scale_x += mass[i] * (abs(vx[i]) + abs(out_vx[i]) + dt * accel[i] + PUSH_OUT_RATE * radius[i])
        expected_y += mass[i] * (vy[i] + dt * props[4, i])
        got_y += mass[i] * out_vy[i]
        scale_y += mass[i] * (abs(vy[i]) + abs(out_vy[i]) + dt * accel[i] + PUSH_OUT_RATE * radius[i])
    bound = (1.0 + ENERGY_RTOL) * (math.sqrt(2.0 * k_in) + dt * math.sqrt(drive))
    if math.sqrt(2.0 * k_out) > bound * (1.0 + EXACT_RTOL):
        return True
    momentum_holds = (
        has_world
        or any_static
        or (
            abs(got_x - expected_x) <= EXACT_RTOL * scale_x
            and abs(got_y - expected_y) <= EXACT_RTOL * scale_y
        )
    )  # (<= is not > here only for NaN, and every value is finite by now)
    if not momentum_holds:
        return True
    # Last, as it costs the most: overlaps. Without it a clean pass would leave the output's overlaps
    # unchecked everywhere outside the re-simulated windows.
    return _overlap_screen(out_x, out_y, out_angle, radius, core, inv_mass, shapes)


@njit(cache=True, error_model="numpy")
def _overlap_screen(out_x, out_y, out_angle, radius, core, inv_mass, shapes):  # pragma: no cover - compiled
    """True when some pair (not both static) overlaps in the output by more than OVERLAP_FRACTION of the
    larger radius, the least that the overlap check of _global_checks ever allows, or when the screen
    runs over its budget; False guarantees that _global_checks finds no overlap to reject.

    It runs on every verify whose cheap pass is otherwise clean, so that an overlap far from every
    re-simulated window is still caught. _candidate_pairs (a sorted list of pairs over each body's sweep)
    costs 20 to 30 us for 1,000 bodies, a third of a whole verify; this needs no list, only "is there
    one". So: a dense uniform grid of the output centres, cells (2 - OVERLAP_FRACTION) largest ordinary
    radii wide (a pair over the limit lies in the same or adjacent cells), filled by a counting sort into
    contiguous copies of x, y and r so that the scans are cache-friendly; row-major, so "the rest of this
    cell and the next" and "the three cells above" are two contiguous ranges, and each pair is tested
    once. The first pair over the limit ends it. Sparse scenes get wider cells, at most about 4 per body
    (the counting sort walks every cell). Sort-and-sweep on x was the other candidate, but in a pile a
    whole column of bodies shares each x-interval: ten times the tests. Exceptionally big bodies (radius
    above BIG_BODY_FACTOR times the mean) would blow up the cells; they are tested against every body.

    Polygons: their radius is their circumradius, so the same cells find every pair whose bounding circles
    overlap by more than the limit, and the exact depth of such a pair decides (the limit scales with the
    core sizes, which for a polygon is its inradius: cells 2 radii wide then).

    The depth is the full check's expression on the same values, and the full check only ever allows
    more (a sub-step of closing speed; anything near an input overlap), so whatever it would reject is
    flagged here; a flag costs the full checks, which decide. Past OVERLAP_SCREEN_TESTS_PER_BODY tests
    per body (bodies piled on one spot, as static ones may be, or radii spread wide) the screen flags
    too: it stays O(n) whatever the input, and the verdict is the full checks' either way.
    """
    n = out_x.shape[0]
    if n < 2:
        return False
    budget = OVERLAP_SCREEN_TESTS_PER_BODY * n + 1024
    total_radius = 0.0
    for i in range(n):
        total_radius += radius[i]
    big_limit = BIG_BODY_FACTOR * total_radius / n
    largest = 0.0
    min_x = np.inf
    min_y = np.inf
    max_x = -np.inf
    max_y = -np.inf
    n_big = 0
    for i in range(n):
        if radius[i] > big_limit:
            n_big += 1
        else:
            largest = max(largest, radius[i])
            min_x = min(min_x, out_x[i])
            min_y = min(min_y, out_y[i])
            max_x = max(max_x, out_x[i])
            max_y = max(max_y, out_y[i])

    if n_big > 0:  # big bodies against everyone, big pairs once
        if n_big * n > budget:
            return True
        budget -= n_big * n
        for i in range(n):
            if radius[i] <= big_limit:
                continue
            for j in range(n):
                if j == i or (radius[j] > big_limit and j < i):
                    continue
                if _overlaps_too_much(out_x, out_y, out_angle, radius, core, inv_mass, shapes, i, j):
                    return True
    m = n - n_big
    if m < 2:
        return False

    # A pair over the limit is closer than r_a + r_b - OVERLAP_FRACTION max(r_a, r_b), at most
    # (2 - OVERLAP_FRACTION) times the largest radius, so cells that wide (and a little) put it in the
    # same or adjacent cells; narrower cells than 2 radii mean fewer tests.
    cell = (2.0 - (OVERLAP_FRACTION if shapes[1].shape[0] == 0 else 0.0)) * largest * 1.001
    width = (max_x - min_x) / cell + 1.0
    height = (max_y - min_y) / cell + 1.0
    most = 4.0 * m + 16.0
    while width * height > most:
        cell *= max(1.5, math.sqrt(width * height / most))
        width = (max_x - min_x) / cell + 1.0
        height = (max_y - min_y) / cell + 1.0
    per_cell = 1.0 / cell
    columns = np.int64(width)
    rows = np.int64(height)
    cells = columns * rows
    slot = np.empty(n, dtype=np.int64)
    start = np.zeros(cells + 2, dtype=np.int64)
    for i in range(n):
        if radius[i] <= big_limit:
            cx = min(np.int64((out_x[i] - min_x) * per_cell), columns - 1)
            cy = min(np.int64((out_y[i] - min_y) * per_cell), rows - 1)
            slot[i] = cy * columns + cx
            start[slot[i] + 2] += 1
    for k in range(2, cells + 2):
        start[k] += start[k - 1]
    # start[s + 1] is where cell s begins; filling moves it to where cell s ends, so that afterwards
    # cell s is start[s] .. start[s + 1].
    sx = np.empty(m)
    sy = np.empty(m)
    sr = np.empty(m)
    sc = np.empty(m)
    sb = np.empty(m, dtype=np.int64)  # the body
    ss = np.empty(m, dtype=np.int64)  # its cell
    for i in range(n):
        if radius[i] <= big_limit:
            q = start[slot[i] + 1]
            start[slot[i] + 1] = q + 1
            sx[q] = out_x[i]
            sy[q] = out_y[i]
            sr[q] = radius[i]
            sc[q] = core[i]
            sb[q] = i
            ss[q] = slot[i]
    tests = 0
    cx = 0
    row_end = columns
    for p in range(m):
        s = ss[p]
        while s >= row_end:  # (cells come in order: no division for the column)
            row_end += columns
        cx = s - (row_end - columns)
        # the rest of this cell and the next one, then the three cells above: two contiguous ranges
        right = 1 if cx + 1 < columns else 0
        left = 1 if cx > 0 else 0
        xi = sx[p]
        yi = sy[p]
        ri = sr[p]
        ci = sc[p]
        i = sb[p]
        for part in range(2):
            if part == 0:
                lo = p + 1
                hi = start[s + 1 + right]
            elif row_end < cells:
                lo = start[s + columns - left]
                hi = start[s + columns + 1 + right]
            else:  # top row: nothing above
                break
            tests += hi - lo
            for q in range(lo, hi):
                # Only a pair closer than r_a + r_b - OVERLAP_FRACTION max(r_a, r_b) (squared, with 1e-9 to
                # spare for rounding) can fail, so most pairs cost one comparison and no square root.
                rq = sr[q]
                limit = ri + rq - OVERLAP_FRACTION * max(ci, sc[q])
                # The exact test, on the same values in the same (a < b) order as the full check.
                close = (sx[q] - xi) ** 2 + (sy[q] - yi) ** 2 < limit * limit * (1.0 + 1e-9)
                if close and _overlaps_too_much(
                    out_x, out_y, out_angle, radius, core, inv_mass, shapes, i, sb[q]
                ):
                    return True
        if tests > budget:
            return True
    return False


@njit(cache=True, error_model="numpy")
def _overlaps_too_much(out_x, out_y, out_angle, radius, core, inv_mass, shapes, i, j):  # pragma: no cover
    """The overlap screen's exact test of one pair: the full check's depth, in its (a < b) order."""
    if inv_mass[i] == 0.0 and inv_mass[j] == 0.0:
        return False
    a = min(i, j)
    b = max(i, j)
    limit = OVERLAP_FRACTION * max(core[a], core[b])
    shape_of, poly, sides, _poly_props = shapes
    if shape_of[a] >= 0 and shape_of[b] >= 0:  # the same verdict, without finishing every axis
        return polygons_deeper_than(
            poly, sides, shape_of[a], out_x[a], out_y[a], out_angle[a], shape_of[b], out_x[b], out_y[b],
            out_angle[b], limit,
        )  # fmt: skip
    return _pair_depth(a, b, out_x, out_y, out_angle, radius, shapes) > limit


@njit(cache=True, error_model="numpy")
def _choose_windows(
    bodies, props, claimed, world, has_world, dt, substeps, speed, slack, own_reach, speed_cap, seed, shape_of
):  # pragma: no cover
    """Pick what to re-simulate, in random windows: whole islands exactly, giant islands by a screen.

    A window is every ordinary body within (2 SCREEN_HOPS + 4) E of a random seed body, plus every big
    body, where E is the largest ordinary extent. A body's pairs and reach depend only on bodies within
    4 E of it, so bodies within 2 SCREEN_HOPS E of the seed are planned exactly ("safe"), and an island
    made only of safe bodies can be re-simulated exactly. An island reaching beyond is giant: the seed's
    neighbourhood is screened against the claimed output instead.
    """
    px = bodies[0]
    py = bodies[1]
    radius = props[0]
    inv_mass = props[1]
    n = px.shape[0]
    role = np.zeros(n, dtype=np.int64)
    kinematic = np.zeros(n, dtype=np.bool_)
    tolerance = np.zeros((4, n))  # position, velocity, angle, angular velocity
    leash = np.zeros(n)
    pair_a = np.zeros(16, dtype=np.int64)
    pair_b = np.zeros(16, dtype=np.int64)
    wall_body = np.zeros(16, dtype=np.int64)
    wall_side = np.zeros(16, dtype=np.int64)
    n_pairs = 0
    n_walls = 0
    audit = -1
    dynamic_bodies = np.flatnonzero(inv_mass > 0.0)
    upper = radius.copy()  # the largest extent the plan could give each body
    for i in range(n):
        if inv_mass[i] > 0.0:
            upper[i] += max(own_reach[i], dt * REACH_INFLATION * speed_cap + slack[i])
    big_limit = BIG_BODY_FACTOR * np.mean(upper)
    extent = 0.0
    for i in range(n):
        if upper[i] <= big_limit:
            extent = max(extent, upper[i])
    window = (2.0 * SCREEN_HOPS + 4.0) * extent
    safe_radius = window - 4.0 * extent
    budget = max(RESIM_WORK_FRACTION * dynamic_bodies.shape[0] * (1.0 + substeps), MIN_RESIM_WORK)
    spent = 0.0
    screened = False
    state = np.uint64(seed)
    inside = np.empty(n, dtype=np.bool_)  # one buffer for every draw
    g_px = np.empty(n)
    g_py = np.empty(n)
    g_radius = np.empty(n)
    g_inv_mass = np.empty(n)
    g_speed = np.empty(n)
    g_slack = np.empty(n)
    g_own_reach = np.empty(n)
    for _draw in range(MAX_SEED_DRAWS if dynamic_bodies.shape[0] > 0 else 0):
        if spent >= budget:
            break
        state, u = _next_uniform(state)
        seed_body = dynamic_bodies[min(int(u * dynamic_bodies.shape[0]), dynamic_bodies.shape[0] - 1)]
        if role[seed_body] != _ROLE_NONE or kinematic[seed_body]:
            continue
        cx = px[seed_body]
        cy = py[seed_body]
        for i in range(n):  # branch-free (| not or), so that it vectorises; every entry is written
            inside[i] = (upper[i] > big_limit) | ((px[i] - cx) ** 2 + (py[i] - cy) ** 2 <= window * window)
        index = np.flatnonzero(inside)
        m = index.shape[0]
        # The window's columns, gathered by one explicit loop into buffers reused by every draw: seven
        # fancy-indexed copies (px[index] ...) cost a general indexing routine and an allocation each.
        for k in range(m):
            i = index[k]
            g_px[k] = px[i]
            g_py[k] = py[i]
            g_radius[k] = radius[i]
            g_inv_mass[k] = inv_mass[i]
            g_speed[k] = speed[i]
            g_slack[k] = slack[i]
            g_own_reach[k] = own_reach[i]
        w_inv_mass = g_inv_mass[:m]
        w_reach, w_leash, w_a, w_b, w_wall_body, w_wall_side, island = _plan_step(
            g_px[:m], g_py[:m], g_radius[:m], w_inv_mass, g_speed[:m], g_slack[:m], g_own_reach[:m],
            speed_cap, world, has_world, dt,
        )  # fmt: skip
        spent += m
        safe = np.zeros(m, dtype=np.bool_)
        for k in range(m):
            i = index[k]
            near = (px[i] - cx) ** 2 + (py[i] - cy) ** 2 <= safe_radius * safe_radius
            safe[k] = inv_mass[i] > 0.0 and upper[i] <= big_limit and near
        # A big moving body's reach depends on bodies anywhere, so whoever it might pair with is unsafe.
        for q in range(m):
            big = index[q]
            if inv_mass[big] > 0.0 and upper[big] > big_limit:
                for k in range(m):
                    i = index[k]
                    if (px[i] - px[big]) ** 2 + (py[i] - py[big]) ** 2 <= (upper[i] + upper[big]) ** 2:
                        safe[k] = False
        whole = np.ones(m, dtype=np.bool_)  # per island label: every member safe and not yet used
        for k in range(m):
            used = role[index[k]] != _ROLE_NONE or kinematic[index[k]]
            if w_inv_mass[k] > 0.0 and (used or not safe[k]):
                whole[island[k]] = False
        local_seed = np.searchsorted(index, seed_body)
        chosen = np.zeros(m, dtype=np.bool_)
        if whole[island[local_seed]]:
            for k in range(m):
                chosen[k] = w_inv_mass[k] > 0.0 and whole[island[k]]
                if chosen[k]:
                    role[index[k]] = _ROLE_EXACT
                    spent += substeps
        elif screened:
            break  # a second window into giant islands would only repeat the screen; stop here
        else:
            hops = _hops(local_seed, m, w_a, w_b, w_inv_mass, SCREEN_HOPS + 1)
            usable = True
            for k in range(m):
                usable = usable and (safe[k] or not 0 <= hops[k] <= SCREEN_HOPS)
                usable = usable and not (hops[k] >= 0 and role[index[k]] != _ROLE_NONE)
            if not usable:
                continue
            screened = True
            for k in range(m):
                i = index[k]
                if 0 <= hops[k] <= SCREEN_HOPS:
                    chosen[k] = True
                    spent += substeps
                    if hops[k] <= SCREEN_CORE_HOPS:
                        role[i] = _ROLE_SCREEN
                        tolerance[0, i] = SCREEN_POSITION_FRACTION * radius[i]
                        tolerance[1, i] = (
                            SCREEN_VELOCITY_STEPS * props[5, i] * dt + SCREEN_VELOCITY_FRACTION * speed[i]
                        )
                        # A polygon's angle places its corners: the same tolerances at its rim. A circle's
                        # turn moves nothing, so its angle is left to the exact checks.
                        polygon = shape_of[i] >= 0
                        tolerance[2, i] = SCREEN_POSITION_FRACTION if polygon else np.inf
                        tolerance[3, i] = tolerance[1, i] / radius[i] if polygon else np.inf
                    else:
                        role[i] = -1  # simulated, not compared
                elif hops[k] == SCREEN_HOPS + 1:
                    kinematic[i] = True
                    spent += substeps
            state, u = _next_uniform(state)
            if u < AUDIT_PROBABILITY:
                audit = seed_body
        # Record what the chosen bodies take part in, in global indices and in plan order.
        for k in range(m):
            if chosen[k]:
                leash[index[k]] = w_leash[k]
        for k in range(w_a.shape[0]):
            if chosen[w_a[k]] or chosen[w_b[k]]:
                pair_a = _append(pair_a, n_pairs, index[w_a[k]])
                pair_b = _append(pair_b, n_pairs, index[w_b[k]])
                n_pairs += 1
        for k in range(w_wall_body.shape[0]):
            if chosen[w_wall_body[k]]:
                wall_body = _append(wall_body, n_walls, index[w_wall_body[k]])
                wall_side = _append(wall_side, n_walls, w_wall_side[k])
                n_walls += 1

    for i in range(n):  # "simulated, not compared" was a marker only
        if role[i] < 0:
            role[i] = _ROLE_NONE
    return (role, kinematic, leash, pair_a[:n_pairs], pair_b[:n_pairs], wall_body[:n_walls],
            wall_side[:n_walls], tolerance, audit)  # fmt: skip


@njit(cache=True, error_model="numpy")
def _compare(simulated, claimed, index, role, tolerance, scales):  # pragma: no cover - compiled
    """(code, body, field, difference, suspect): code 9 on an exact mismatch; suspect = a screened body
    outside its tolerance (-1 if none), which calls for re-simulating its whole island."""
    suspect = -1
    for q in range(index.shape[0]):
        i = index[q]
        if role[q] == _ROLE_EXACT:
            for f in range(6):
                if not _close(claimed[f][i], simulated[f, q], scales[f]):
                    return 9, i, f, abs(claimed[f][i] - simulated[f, q]), -1
        elif role[q] == _ROLE_SCREEN and suspect < 0:
            position_error = math.sqrt(
                (simulated[0, q] - claimed[0][i]) ** 2 + (simulated[1, q] - claimed[1][i]) ** 2
            )
            velocity_error = math.sqrt(
                (simulated[2, q] - claimed[2][i]) ** 2 + (simulated[3, q] - claimed[3][i]) ** 2
            )
            angle_error = abs(simulated[4, q] - claimed[4][i])
            spin_error = abs(simulated[5, q] - claimed[5][i])
            if (
                position_error > tolerance[0, i]
                or velocity_error > tolerance[1, i]
                or angle_error > tolerance[2, i]
                or spin_error > tolerance[3, i]
            ):
                suspect = i
    return 0, 0, 0, 0.0, suspect
