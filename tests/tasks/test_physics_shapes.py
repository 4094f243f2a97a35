"""Tests of the convex polygon geometry of the ``physics`` kind: validation, mass properties, narrow phase.

pymunk (Chipmunk2D: GJK/EPA, then its own clipping) is the independent reference for random pairs.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pymunk
import pytest
from scipy.spatial import ConvexHull

from p2c2r.errors import TaskInputError
from p2c2r.tasks import physics as phys
from p2c2r.tasks import physics_shapes as ps

SQUARE = [-0.5, -0.5, 0.5, -0.5, 0.5, 0.5, -0.5, 0.5]  # unit square, vertex 0 bottom left

# --- helpers ----------------------------------------------------------------------------------------------


def table(*flats: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(poly, sides) of the given polygons (flat lists or k x 2 arrays), as the kernels take them."""
    packed = ps.pack_vertices([np.ravel(flat).tolist() for flat in flats], len(flats))
    _shape_of, poly, sides, _props, _circumradius, bad = ps.polygon_table(packed, len(flats))
    assert bad == -1
    return poly, sides


def random_polygon(rng: random.Random) -> np.ndarray:
    """A random valid convex polygon of 3-8 vertices: the hull of random points, recentred on its centroid."""
    while True:
        points = np.array([[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(rng.randint(3, 8))])
        hull = points[ConvexHull(points).vertices] * rng.uniform(0.3, 2.0)  # counter-clockwise in 2-D
        a, b = hull, np.roll(hull, -1, axis=0)
        tri = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        centroid = np.array([np.sum((a[:, 0] + b[:, 0]) * tri), np.sum((a[:, 1] + b[:, 1]) * tri)])
        centroid /= 3.0 * np.sum(tri)
        try:
            return ps.check_polygon("p", (hull - centroid).ravel().tolist()).vertices
        except TaskInputError:  # too thin: draw again
            continue


def world_vertices(vertices: np.ndarray, x: float, y: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return vertices @ np.array([[c, s], [-s, c]]) + np.array([x, y])


def max_separation(va: np.ndarray, vb: np.ndarray) -> float:
    """Largest separation of world polygon vb along the outward edge normals of va (plain numpy SAT)."""
    edges = np.roll(va, -1, axis=0) - va
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.hypot(edges[:, 0], edges[:, 1])[:, None]
    gaps = np.einsum("ik,ijk->ij", normals, vb[None, :, :] - va[:, None, :])  # [edge of a, vertex of b]
    return float(np.max(np.min(gaps, axis=1)))


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    t = min(1.0, max(0.0, float(np.dot(p - a, b - a) / np.dot(b - a, b - a))))
    return float(np.hypot(*(a + t * (b - a) - p)))


def polygon_distance(va: np.ndarray, vb: np.ndarray) -> float:
    """Distance between two disjoint convex polygons: the nearest vertex-edge pair either way round."""
    best = math.inf
    for v, w in ((va, vb), (vb, va)):
        for p in v:
            for k in range(len(w)):
                best = min(best, segment_distance(p, w[k], w[(k + 1) % len(w)]))
    return best


def pymunk_poly(vertices: np.ndarray, x: float, y: float, angle: float) -> pymunk.Poly:
    body = pymunk.Body(1.0, 1.0)
    body.position = (x, y)
    body.angle = angle
    shape = pymunk.Poly(body, [tuple(v) for v in vertices], radius=0)
    shape.cache_bb()  # shapes_collide outside a space needs the bounding box brought up to date
    return shape


def pymunk_circle(x: float, y: float, radius: float) -> pymunk.Circle:
    body = pymunk.Body(1.0, 1.0)
    body.position = (x, y)
    shape = pymunk.Circle(body, radius)
    shape.cache_bb()
    return shape


def points(m: tuple) -> list[tuple[float, float, float]]:
    """The manifold's (x, y, separation) points."""
    return [(m[3 + 3 * i], m[4 + 3 * i], m[5 + 3 * i]) for i in range(m[0])]


# --- check_polygon and polygon_table ---------------------------------------------------------------------


def test_square_properties() -> None:
    square = ps.check_polygon("shape", [-1, -1, 1, -1, 1, 1, -1, 1])
    assert square.vertices.shape == (4, 2) and square.vertices.dtype == np.float64
    assert square.circumradius == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert square.inradius == pytest.approx(1.0, rel=1e-15)
    assert square.area == pytest.approx(4.0, rel=1e-15)
    assert square.inertia_per_mass == pytest.approx(2.0 / 3.0, rel=1e-14)  # (w^2 + h^2) / 12


def test_triangle_properties() -> None:
    # (0, 0), (3, 0), (0, 3) moved by its centroid (1, 1). Sides 3, 3, 3 sqrt 2: I/m = (9 + 9 + 18) / 36 = 1.
    triangle = ps.check_polygon("shape", [-1, -1, 2, -1, -1, 2])
    assert triangle.area == pytest.approx(4.5, rel=1e-15)
    assert triangle.inertia_per_mass == pytest.approx(1.0, rel=1e-14)
    assert triangle.circumradius == pytest.approx(math.sqrt(5.0), rel=1e-15)
    assert triangle.inradius == pytest.approx(1.0 / math.sqrt(2.0), rel=1e-14)  # to the line x + y = 1
    with pytest.raises(TaskInputError, match=r"centroid is at \(1, 1\)"):
        ps.check_polygon("shape", [0, 0, 3, 0, 0, 3])


@pytest.mark.parametrize("n", range(3, 9))
def test_regular_polygon_properties(n: int) -> None:
    radius = 1.7
    polygon = ps.check_polygon("shape", phys._regular_polygon(n, radius, turn=0.3))
    half = math.pi / n
    assert polygon.area == pytest.approx(0.5 * n * radius**2 * math.sin(2 * half), rel=1e-13)
    assert polygon.inradius == pytest.approx(radius * math.cos(half), rel=1e-13)
    assert polygon.circumradius == pytest.approx(radius, rel=1e-14)
    assert polygon.inertia_per_mass == pytest.approx(
        radius**2 / 6.0 * (1 + 2 * math.cos(half) ** 2), rel=1e-13
    )


PENTAGRAM = [
    c for k in (0, 2, 4, 1, 3) for c in phys._regular_polygon(5, 1.0)[2 * k : 2 * k + 2]
]  # every other corner


@pytest.mark.parametrize(
    ("flat", "field", "problem"),
    [
        ("0 0 1 0 0 1", "shape", "list of vertex coordinates"),
        (7.0, "shape", "list of vertex coordinates"),
        ([0.0, 0.0, 1.0, 0.0, 0.0], "shape", "even number of coordinates"),
        ([-1, 0, 1, 0], "shape", "3 to 8 vertices, got 2"),
        (phys._regular_polygon(9, 1.0), "shape", "3 to 8 vertices, got 9"),
        ([-1, -1, 1, "x", 1, 1, -1, 1], "shape[3]", "must be a number"),
        ([-1, -1, 1, -1, 1, math.nan, -1, 1], "shape[5]", "finite"),
        ([-1, -1, 1, -1, math.inf, 1, -1, 1], "shape[4]", "finite"),
        ([-2e4, -2e4, 2e4, -2e4, 2e4, 2e4, -2e4, 2e4], "shape[0]", "within"),
        ([-1, -1, -1, 1, 1, 1, 1, -1], "shape", "counter-clockwise"),  # clockwise
        ([-1, -1, 1, -1, 1, -1, 1, 1, -1, 1], "shape", "strictly convex"),  # repeated point
        ([-1, -1, 0, -1, 1, -1, 1, 1, -1, 1], "shape", "strictly convex"),  # collinear point
        ([-1, -1, 1, -1, 0.2, 0, 1, 1, -1, 1], "shape", "strictly convex"),  # dent
        (PENTAGRAM, "shape", "strictly convex"),  # turns left everywhere, but twice round
        ([0, -1, 2, -1, 2, 1, 0, 1], "shape", "relative to the centroid"),
        ([-1e-5, -1e-5, 1e-5, -1e-5, 1e-5, 1e-5, -1e-5, 1e-5], "shape", "circumradius"),
        ([-9e3, -9e3, 9e3, -9e3, 9e3, 9e3, -9e3, 9e3], "shape", "circumradius"),
        ([-1, -0.01, 1, -0.01, 1, 0.01, -1, 0.01], "shape", "too thin"),
    ],
)
def test_check_polygon_refusals(flat: object, field: str, problem: str) -> None:
    with pytest.raises(TaskInputError) as caught:
        ps.check_polygon("shape", flat)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_polygon_table() -> None:
    assert ps.pack_vertices([None, None], 2) is None  # circles only: no table at all
    triangle = [-1.0, -1.0, 2.0, -1.0, -1.0, 2.0]
    octagon = phys._regular_polygon(8, 1.0, turn=0.1)
    packed = ps.pack_vertices([triangle, None, octagon], 3)
    shape_of, poly, sides, props, circumradius, bad = ps.polygon_table(packed, 3)
    assert bad == -1 and shape_of.tolist() == [0, -1, 1] and sides.tolist() == [3, 8]
    assert poly.shape == (2, 4, ps.MAX_VERTICES) and np.all(poly[0, :, 3:] == 0.0)
    for p, flat in enumerate((triangle, octagon)):
        checked = ps.check_polygon("p", flat)
        k = len(flat) // 2
        assert np.array_equal(poly[p, :2, :k].T, checked.vertices)
        normals = poly[p, 2:, :k].T
        edges = np.roll(checked.vertices, -1, axis=0) - checked.vertices
        assert np.allclose(np.hypot(normals[:, 0], normals[:, 1]), 1.0, rtol=0, atol=1e-15)
        assert np.allclose(np.sum(normals * edges, axis=1), 0.0, atol=1e-12)  # perpendicular
        assert np.all(normals[:, 0] * edges[:, 1] - normals[:, 1] * edges[:, 0] > 0)  # outward (CCW)
        assert props[0, p] == pytest.approx(checked.inradius, rel=1e-12)
        assert props[1, p] == pytest.approx(checked.inertia_per_mass, rel=1e-12)
        assert circumradius[shape_of.tolist().index(p)] == pytest.approx(checked.circumradius, rel=1e-15)
    assert circumradius[1] == 0.0
    # The compiled checks refuse what check_polygon refuses, a star (all left turns, twice round) included.
    assert ps.polygon_table(ps.pack_vertices([None, PENTAGRAM], 2), 2)[-1] == 1


def test_squares_side_by_side() -> None:
    poly, sides = table(SQUARE)
    assert ps.polygon_depth(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.9, 0.0, 0.0) == pytest.approx(0.1, rel=1e-12)
    m = ps.collide_polygons(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.9, 0.0, 0.0, 0.0)
    assert m[:3] == (2, 1.0, 0.0)
    assert np.allclose(points(m), [(0.45, 0.5, -0.1), (0.45, -0.5, -0.1)], rtol=0, atol=1e-12)
    m = ps.collide_polygons(poly, sides, 0, 0.9, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0)  # the other way round
    assert m[:3] == (2, -1.0, 0.0)
    assert np.allclose(sorted(points(m)), [(0.45, -0.5, -0.1), (0.45, 0.5, -0.1)], rtol=0, atol=1e-12)


def test_margin_keeps_speculative_points() -> None:
    poly, sides = table(SQUARE)
    m = ps.collide_polygons(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.0, 1.05, 0.0, 0.1)
    assert m[0] == 2 and m[1:3] == pytest.approx((0.0, 1.0), abs=1e-15)
    assert [p[2] for p in points(m)] == pytest.approx([0.05, 0.05], rel=1e-12)
    assert [p[1] for p in points(m)] == pytest.approx([0.525, 0.525], rel=1e-12)  # midway across the gap
    assert ps.collide_polygons(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.0, 1.05, 0.0, 0.01) == (0,) + (0.0,) * 8
    assert ps.polygon_depth(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.0, 1.05, 0.0) == pytest.approx(
        -0.05, rel=1e-12
    )


def test_corner_into_face_gives_one_point() -> None:
    # A diamond (the square turned by 45 degrees) poking 0.1 into the square's top face: its two lower edges
    # tie as incident edge; either way the far end clips at the face's side, 0.4 above it, and is dropped.
    poly, sides = table(SQUARE)
    y = 0.4 + math.sqrt(0.5)
    m = ps.collide_polygons(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.0, y, math.pi / 4, 0.0)
    assert m[0] == 1 and m[1:3] == pytest.approx((0.0, 1.0), abs=1e-15)
    assert points(m)[0] == pytest.approx((0.0, 0.45, -0.1), abs=1e-12)
    # The margin brings back the clipped end: 0.4 above the face, at the face's corner.
    m = ps.collide_polygons(poly, sides, 0, 0.0, 0.0, 0.0, 0, 0.0, y, math.pi / 4, 0.5)
    assert m[0] == 2 and points(m)[1][2] == pytest.approx(0.4, rel=1e-12)
    assert abs(points(m)[1][0]) == pytest.approx(0.5, rel=1e-12)


def test_random_pairs_against_pymunk() -> None:
    rng = random.Random(20240611)
    compared = ambiguous = 0
    for _ in range(600):
        va, vb = random_polygon(rng), random_polygon(rng)
        poly, sides = table(va, vb)
        ra, rb = (float(np.max(np.hypot(v[:, 0], v[:, 1]))) for v in (va, vb))
        xa, ya, aa, ab = rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-4, 4), rng.uniform(-4, 4)
        heading, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 1.1) * (ra + rb)
        xb, yb = xa + reach * math.cos(heading), ya + reach * math.sin(heading)
        wa, wb = world_vertices(va, xa, ya, aa), world_vertices(vb, xb, yb, ab)
        sep_a, sep_b = max_separation(wa, wb), max_separation(wb, wa)

        depth = ps.polygon_depth(poly, sides, 0, xa, ya, aa, 1, xb, yb, ab)
        assert depth == pytest.approx(-max(sep_a, sep_b), rel=1e-12, abs=1e-14)
        if depth < 0.0:  # apart: -depth is a lower bound of the distance
            assert -depth <= polygon_distance(wa, wb) * (1 + 1e-12) + 1e-14
            continue
        if depth < 1e-6:  # grazing: Chipmunk may find no point at all
            continue
        m = ps.collide_polygons(poly, sides, 0, xa, ya, aa, 1, xb, yb, ab, 0.0)
        ref = pymunk_poly(va, xa, ya, aa).shapes_collide(pymunk_poly(vb, xb, yb, ab))
        # pymunk's normal points from A to B (hand case: test_pymunk_conventions); distances < 0 overlap.
        assert depth == pytest.approx(-min(p.distance for p in ref.points), rel=1e-9, abs=1e-12)
        if abs(sep_a - sep_b) <= ps.FACE_TOLERANCE * min(ra, rb):
            ambiguous += 1  # Chipmunk takes the strictly best face; we may keep A's (anti flip-flop)
            continue
        compared += 1
        assert m[1:3] == pytest.approx(tuple(ref.normal), abs=1e-9)
        ours = [p for p in points(m) if p[2] < 0.0]
        assert len(ours) == len(ref.points)
        for p in ref.points:
            mid = (p.point_a + p.point_b) / 2
            x, y, sep = min(ours, key=lambda q: math.hypot(q[0] - mid.x, q[1] - mid.y))
            assert math.hypot(x - mid.x, y - mid.y) <= 1e-9
            assert sep == pytest.approx(p.distance, rel=1e-9, abs=1e-12)
    assert compared >= 200 and ambiguous <= compared // 20


def test_pymunk_conventions() -> None:
    """The hand case behind the comparisons: pymunk's normal and distances, and its polygon/circle quirk."""
    square = ps.check_polygon("p", SQUARE).vertices
    ref = pymunk_poly(square, 0.0, 0.0, 0.0).shapes_collide(pymunk_poly(square, 0.9, 0.0, 0.0))
    assert tuple(ref.normal) == pytest.approx((1.0, 0.0))  # from A (first shape) to B
    assert [p.distance for p in ref.points] == pytest.approx([-0.1, -0.1])  # negative = penetrating
    # Polygon first, circle second: Chipmunk swaps the pair (circles sort first) and flips the normal but
    # not the sign of ``distance``, so an overlap reads +0.1. The points are right: b - a along the normal
    # gives -0.1, which is what the random comparison uses.
    ref = pymunk_poly(square, 0.0, 0.0, 0.0).shapes_collide(pymunk_circle(0.9, 0.0, 0.5))
    assert tuple(ref.normal) == pytest.approx((1.0, 0.0))
    (p,) = ref.points
    assert p.distance == pytest.approx(0.1)
    assert (p.point_b - p.point_a).dot(ref.normal) == pytest.approx(-0.1)


# --- polygon against circle --------------------------------------------------------------------------------


def test_polygon_circle_regions() -> None:
    poly, sides = table(SQUARE)
    # Face region: the circle's centre 0.4 right of the right face, radius 0.5.
    assert ps.collide_polygon_circle(poly, sides, 0, 0.0, 0.0, 0.0, 0.9, 0.1, 0.5, 0.0) == pytest.approx(
        (1, 1.0, 0.0, 0.45, 0.1, -0.1), abs=1e-12
    )
    # Vertex region: the centre (0.3, 0.4) from the top right corner, 0.5 away, radius 0.6.
    m = ps.collide_polygon_circle(poly, sides, 0, 0.0, 0.0, 0.0, 0.8, 0.9, 0.6, 0.0)
    assert m == pytest.approx((1, 0.6, 0.8, 0.8 - 0.55 * 0.6, 0.9 - 0.55 * 0.8, -0.1), abs=1e-12)
    assert ps.polygon_circle_depth(poly, sides, 0, 0.0, 0.0, 0.0, 0.8, 0.9, 0.6) == pytest.approx(0.1)
    # Centre inside, nearest the right face (0.2 away): the normal is that face's.
    m = ps.collide_polygon_circle(poly, sides, 0, 0.0, 0.0, 0.0, 0.3, 0.1, 0.1, 0.0)
    assert m == pytest.approx((1, 1.0, 0.0, 0.35, 0.1, -0.3), abs=1e-12)  # surfaces at x 0.5 and 0.2
    assert ps.polygon_circle_depth(poly, sides, 0, 0.0, 0.0, 0.0, 0.3, 0.1, 0.1) == pytest.approx(0.3)
    # Centre exactly at the polygon's centre: the first face of least penetration (vertex 0 to 1, bottom).
    m = ps.collide_polygon_circle(poly, sides, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0)
    assert m[:3] == (1, 0.0, -1.0) and m[5] == pytest.approx(-0.6)
    # Turned square (a diamond): the circle above its top corner is in that vertex's region.
    m = ps.collide_polygon_circle(
        poly, sides, 0, 1.0, 2.0, math.pi / 4, 1.0, 2.0 + math.sqrt(0.5) + 0.3, 0.5, 0.0
    )
    assert m == pytest.approx(
        (1, 0.0, 1.0, 1.0, 2.0 + math.sqrt(0.5) - 0.1, -0.2), abs=1e-12
    )  # surfaces at top, top - 0.2
    # A gap of 0.05: kept under a margin of 0.1, not 0.01.
    m = ps.collide_polygon_circle(poly, sides, 0, 0.0, 0.0, 0.0, 0.0, -1.05, 0.5, 0.1)
    assert m == pytest.approx((1, 0.0, -1.0, 0.0, -0.525, 0.05), abs=1e-12)
    assert (
        ps.collide_polygon_circle(poly, sides, 0, 0.0, 0.0, 0.0, 0.0, -1.05, 0.5, 0.01) == (0,) + (0.0,) * 5
    )


def test_random_circles_against_pymunk() -> None:
    rng = random.Random(7)
    compared = 0
    for _ in range(400):
        vertices = random_polygon(rng)
        poly, sides = table(vertices)
        extent = float(np.max(np.hypot(vertices[:, 0], vertices[:, 1])))
        x, y, angle, radius = (
            rng.uniform(-5, 5),
            rng.uniform(-5, 5),
            rng.uniform(-4, 4),
            rng.uniform(0.1, 1.5),
        )
        heading, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 1.1) * (extent + radius)
        cx, cy = x + reach * math.cos(heading), y + reach * math.sin(heading)
        depth = ps.polygon_circle_depth(poly, sides, 0, x, y, angle, cx, cy, radius)
        m = ps.collide_polygon_circle(poly, sides, 0, x, y, angle, cx, cy, radius, 0.0)
        assert m[0] == (1 if depth >= 0.0 else 0)
        if depth < 1e-6:
            continue
        ref = pymunk_poly(vertices, x, y, angle).shapes_collide(pymunk_circle(cx, cy, radius))
        (p,) = ref.points
        mid = (p.point_a + p.point_b) / 2
        compared += 1
        assert m[1:3] == pytest.approx(tuple(ref.normal), abs=1e-9)
        assert m[3:5] == pytest.approx((mid.x, mid.y), abs=1e-9)
        assert m[5] == pytest.approx((p.point_b - p.point_a).dot(ref.normal), rel=1e-9, abs=1e-12)
        assert m[5] == pytest.approx(-depth, rel=1e-12, abs=1e-14)
    assert compared >= 150


# --- polygon against the world box ----------------------------------------------------------------------


WORLD = np.array([-5.0, 0.0, 5.0, 10.0])


def test_square_resting_flat_on_the_floor() -> None:
    poly, sides = table(SQUARE)
    m = ps.polygon_wall(poly, sides, 0, 1.0, 0.5 - 0.02, 0.0, 2, WORLD, 0.01)  # sunk 0.02 into the floor
    assert m == pytest.approx((2, 0.5, -0.01, -0.02, 1.5, -0.01, -0.02), abs=1e-12)  # vertex 0, then 1
    # Tilted clockwise a little: the lower corner (vertex 1, right) first, then its neighbour (vertex 0).
    m = ps.polygon_wall(poly, sides, 0, 1.0, 0.6, -0.05, 2, WORLD, 0.2)
    assert m[0] == 2 and m[3] < m[6] and m[1] > 1.0 > m[4]


def test_square_on_a_corner_touches_once() -> None:
    poly, sides = table(SQUARE)
    y = math.sqrt(0.5) + 0.01
    m = ps.polygon_wall(poly, sides, 0, 0.0, y, math.pi / 4, 2, WORLD, 0.05)
    assert m == pytest.approx((1, 0.0, 0.005, 0.01, 0.0, 0.0, 0.0), abs=1e-12)
    assert ps.polygon_wall(poly, sides, 0, 0.0, y, math.pi / 4, 2, WORLD, 0.005) == (0,) + (0.0,) * 6


@pytest.mark.parametrize("side", range(4))
def test_wall_sides_match_the_circle_kernels(side: int) -> None:
    """Gaps and normals per side as physics.py's ``_wall_gap`` and ``_wall_normal`` give them."""
    from p2c2r.tasks.physics import _wall_gap, _wall_normal

    poly, sides = table(phys._regular_polygon(5, 1.0, turn=0.2))
    x, y, angle = -4.2, 9.1, 0.7  # near the left wall and the ceiling
    corners = world_vertices(
        ps.check_polygon("p", phys._regular_polygon(5, 1.0, turn=0.2)).vertices, x, y, angle
    )
    gaps = [_wall_gap(vx, vy, 0.0, side, WORLD) for vx, vy in corners]
    order = sorted(range(5), key=lambda k: (gaps[k], k))[:2]
    m = ps.polygon_wall(poly, sides, 0, x, y, angle, side, WORLD, 20.0)
    nx, ny = _wall_normal(side)
    expected = []
    for k in order:
        expected += [corners[k][0] + 0.5 * gaps[k] * nx, corners[k][1] + 0.5 * gaps[k] * ny, gaps[k]]
    assert m == pytest.approx((2, *expected), abs=1e-12)


def test_outside_and_bounds_of_a_turned_square() -> None:
    poly, sides = table(SQUARE)
    h = math.sqrt(0.5)
    assert ps.polygon_bounds(poly, sides, 0, 1.0, 2.0, math.pi / 4) == pytest.approx(
        (1.0 - h, 2.0 - h, 1.0 + h, 2.0 + h), abs=1e-15
    )
    corners = world_vertices(ps.check_polygon("p", SQUARE).vertices, 1.0, 2.0, 0.3)
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    assert ps.polygon_bounds(poly, sides, 0, 1.0, 2.0, 0.3) == pytest.approx((*lo, *hi), abs=1e-15)
    assert ps.polygon_outside(poly, sides, 0, 1.0, 2.0, math.pi / 4, WORLD) == 0.0
    assert ps.polygon_outside(poly, sides, 0, 4.5, 2.0, math.pi / 4, WORLD) == pytest.approx(
        h - 0.5, abs=1e-15
    )
    assert ps.polygon_outside(poly, sides, 0, 0.0, 0.3, math.pi / 4, WORLD) == pytest.approx(
        h - 0.3, abs=1e-15
    )
    # A corner out on two sides at once: the larger of the two, not their combination.
    assert ps.polygon_outside(poly, sides, 0, -4.8, 9.9, 0.0, WORLD) == pytest.approx(0.4, abs=1e-15)


def test_polygons_deeper_than_gives_polygon_depths_verdict() -> None:
    """The overlap screen's early-exit test agrees with the full depth, including exactly at the limit."""
    rng = random.Random(99)
    for _ in range(400):
        va, vb = random_polygon(rng), random_polygon(rng)
        poly, sides = table(va, vb)
        xa, ya, aa, ab = rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-4, 4), rng.uniform(-4, 4)
        xb, yb = xa + rng.uniform(-1.5, 1.5), ya + rng.uniform(-1.5, 1.5)
        depth = ps.polygon_depth(poly, sides, 0, xa, ya, aa, 1, xb, yb, ab)
        for limit in (depth, depth - 1e-9, depth + 1e-9, 0.0, rng.uniform(-0.5, 0.5)):
            assert ps.polygons_deeper_than(poly, sides, 0, xa, ya, aa, 1, xb, yb, ab, limit) == (depth > limit)
