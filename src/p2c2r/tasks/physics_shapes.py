"""Convex polygon geometry for the ``physics`` kind: the packed wire form, validation and mass properties
(``check_polygon`` words what is wrong with one polygon; ``polygon_table`` checks thousands at once in
compiled code, by the same rules, and builds the table the kernels use) and the narrow phase (numba).

A polygon table ``poly`` has shape (P, 4, MAX_VERTICES): ``poly[p, 0:2, k]`` is local vertex k of polygon
p (counter-clockwise, centroid at the origin) and ``poly[p, 2:4, k]`` the outward unit normal of edge k,
from vertex k to vertex (k + 1) % count; ``sides[p]`` is its vertex count and unused slots are 0. A body
at (x, y) turned by ``angle`` (radians, counter-clockwise) has world vertex (x, y) + R(angle) @ local
vertex and world normal R(angle) @ local normal.

The narrow phase follows Box2D (b2CollidePolygons, b2CollidePolygonAndCircle): separating axes over the
edge normals, a reference face and an incident edge clipped to it, at most two points. Every kernel
returns a tuple of scalars and allocates nothing, since it runs once per candidate pair per sub-step.
Separations are signed distances between the surfaces (negative = penetrating) and reported points lie
midway between the surfaces, so they do not depend on which body is the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from p2c2r.errors import TaskInputError

MAX_VERTICES = 8
# The same values as MIN_RADIUS and MAX_RADIUS in physics.py, repeated here because physics.py imports
# this module: a polygon's circumradius obeys the same limits as a circle's radius.
MIN_EXTENT = 1e-4
MAX_EXTENT = 1e4
MIN_ROUNDNESS = 0.02  # smallest inradius / circumradius: slivers make the solver stiff and tunnel easily
CONVEX_TOLERANCE = 1e-12  # a turn at a vertex must exceed this times the squared circumradius
CENTROID_TOLERANCE = 1e-6  # the area centroid may sit this fraction of the circumradius off the origin
# Reference face choice: B's face wins only when it separates more than A's by this fraction of the smaller
# circumradius, so nearly equal faces do not swap from one sub-step to the next (Box2D: 0.1 linear slop).
FACE_TOLERANCE = 5e-4


@dataclass(frozen=True, slots=True)
class Polygon:
    vertices: np.ndarray  # (k, 2) float64, counter-clockwise, centroid at the origin
    circumradius: float  # largest vertex distance from the origin
    inradius: float  # smallest distance from the origin to an edge line
    area: float
    inertia_per_mass: float  # about the centroid, uniform density


def _turning(vertices: np.ndarray) -> tuple[np.ndarray, int]:
    """Cross products of consecutive edges at each vertex, and how many times the edges turn round.

    With every turn to the left, the edge direction only ever increases, and it passes "pointing right"
    (its y going from negative to non-negative) once per revolution: a convex polygon once, a pentagram
    twice. Counting those passes needs no trigonometry (polygon_table counts the same way).
    """
    edges = np.roll(vertices, -1, axis=0) - vertices
    following = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    revolutions = int(np.sum((edges[:, 1] < 0.0) & (following[:, 1] >= 0.0)))
    return cross, revolutions


def check_polygon(field: str, flat: Sequence[float]) -> Polygon:
    """Validate a flat list [x0, y0, x1, y1, ...] of body-frame vertices and compute mass properties."""
    if isinstance(flat, str | bytes) or not isinstance(flat, Sequence | np.ndarray):
        raise TaskInputError(
            field, f"must be a list of vertex coordinates [x0, y0, x1, y1, ...], got {flat!r}"
        )
    if len(flat) % 2:
        raise TaskInputError(field, f"needs an even number of coordinates (x, y pairs), got {len(flat)}")
    k = len(flat) // 2
    if not 3 <= k <= MAX_VERTICES:
        raise TaskInputError(field, f"needs 3 to {MAX_VERTICES} vertices, got {k}")
    for i, value in enumerate(flat):
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
            raise TaskInputError(f"{field}[{i}]", f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise TaskInputError(f"{field}[{i}]", f"must be a finite number, got {value!r}")
        if abs(value) > MAX_EXTENT:
            raise TaskInputError(
                f"{field}[{i}]", f"must be within [{-MAX_EXTENT:g}, {MAX_EXTENT:g}], got {value!r}"
            )
    vertices = np.array(flat, dtype=np.float64).reshape(k, 2)
    circumradius = float(np.max(np.hypot(vertices[:, 0], vertices[:, 1])))

    # All left turns is not enough (a pentagram turns left everywhere): the turns must also add up to one
    # full revolution, not two or more.
    cross, revolutions = _turning(vertices)
    if np.any(cross <= CONVEX_TOLERANCE * circumradius**2) or revolutions != 1:
        raise TaskInputError(
            field,
            "vertices must be listed counter-clockwise and form a strictly convex polygon "
            "(no repeated or collinear points)",
        )

    a = vertices
    b = np.roll(vertices, -1, axis=0)
    tri = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]  # twice the signed area of each triangle (origin, a, b)
    area = 0.5 * float(np.sum(tri))
    cx = float(np.sum((a[:, 0] + b[:, 0]) * tri)) / (6.0 * area)
    cy = float(np.sum((a[:, 1] + b[:, 1]) * tri)) / (6.0 * area)
    if math.hypot(cx, cy) > CENTROID_TOLERANCE * circumradius:
        raise TaskInputError(
            field,
            f"the polygon's centroid is at ({cx:.9g}, {cy:.9g}), not at the origin: every vertex must be "
            "given relative to the centroid, which is the body's position",
        )
    if not MIN_EXTENT <= circumradius <= MAX_EXTENT:
        raise TaskInputError(
            field,
            f"circumradius (largest vertex distance from the centroid) must be within "
            f"[{MIN_EXTENT:g}, {MAX_EXTENT:g}], got {circumradius!r}",
        )

    edges = b - a
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    inradius = float(np.min(tri / lengths))  # distance from the origin to each edge line (all positive here)
    if inradius < MIN_ROUNDNESS * circumradius:
        raise TaskInputError(
            field,
            f"too thin: the centroid is {inradius:.6g} from the nearest edge, less than {MIN_ROUNDNESS:g} "
            f"of the circumradius {circumradius:.6g}; use a fatter shape",
        )

    # Second moment about the origin, moved to the centroid (the two differ by at most 1e-12 R^2).
    dots = np.sum(a * a, axis=1) + np.sum(a * b, axis=1) + np.sum(b * b, axis=1)
    inertia = float(np.sum(tri * dots)) / (12.0 * area) - (cx * cx + cy * cy)
    return Polygon(vertices, circumradius, inradius, area, inertia)


def pack_vertices(vertices: list[list[float] | None] | bytes, n: int) -> bytes | None:
    """The polygons as the kernels take them: float64 bytes of n vertex counts (0 for a circle), then every
    polygon's x0, y0, x1, y1, ... in body order. None when every body is a circle."""
    if isinstance(vertices, bytes):
        if len(vertices) % 8 or len(vertices) < 8 * n:
            raise TaskInputError("vertices", f"packed float64 bytes must hold at least {n} vertex counts")
        circles_only = len(vertices) == 8 * n and not np.any(np.frombuffer(vertices, dtype="<f8") != 0.0)
        return None if circles_only else vertices
    if len(vertices) != n:
        raise TaskInputError(
            "vertices", f"must have one entry per body ({n}, the length of x), got {len(vertices)}"
        )
    counts = [0.0] * n
    coordinates: list[float] = []
    for i, polygon in enumerate(vertices):
        if polygon is None:
            continue
        if not 6 <= len(polygon) <= 2 * MAX_VERTICES or len(polygon) % 2:
            raise TaskInputError(
                f"vertices[{i}]",
                f"must be null (a circle) or 3 to {MAX_VERTICES} vertices as x, y pairs, got {len(polygon)} numbers",
            )
        counts[i] = len(polygon) / 2
        coordinates.extend(polygon)
    if not coordinates:
        return None
    return np.array(counts + coordinates, dtype="<f8").tobytes()


def polygon_error(vertices: bytes, n: int, bad: int) -> TaskInputError:
    """The error that names what is wrong with body ``bad``'s polygon (``n``: the counts do not add up)."""
    values = np.frombuffer(vertices, dtype="<f8")
    if bad == n:
        return TaskInputError("vertices", "packed form: the coordinates do not match the vertex counts")
    counts = values[:n]
    start = n + 2 * int(np.sum(counts[:bad]))
    count = counts[bad]
    field = f"vertices[{bad}]"
    if not (3 <= count <= MAX_VERTICES and count == int(count)):
        return TaskInputError(field, f"packed vertex count must be 0 or 3 to {MAX_VERTICES}, got {count!r}")
    if start + 2 * int(count) > len(values):
        return TaskInputError(
            field,
            f"packed form: {int(count)} vertices need {2 * int(count)} coordinates, {len(values) - start} remain",
        )
    try:
        check_polygon(field, values[start : start + 2 * int(count)].tolist())
    except TaskInputError as error:
        return error
    return TaskInputError(field, "is not a valid convex polygon (counter-clockwise, about its centroid)")


# =========================================================================================================
# Kernels (numba). Fixed iteration order; the narrow phase returns scalars only.
# =========================================================================================================


@njit(cache=True, error_model="numpy")
def polygon_table(packed, n):  # pragma: no cover - compiled
    """The polygons of packed vertices (see pack_vertices), checked and ready for the kernels.

    Returns (shape_of, poly, sides, poly_props, circumradius, bad): shape_of[i] is body i's row of the
    polygon table or -1 for a circle; poly and sides as this module documents; poly_props rows are
    inradius and inertia per unit mass (about the centroid, uniform density); circumradius per body (0
    for circles). bad is the first body whose polygon breaks a rule (check_polygon says which), n when
    the coordinates do not add up to the counts, -1 when all is well. The rules are check_polygon's (which
    words the error, see polygon_error); this is the fast path for thousands of polygons per input.
    """
    values = np.frombuffer(packed, dtype=np.float64)
    shape_of = np.full(n, -1, dtype=np.int64)
    count = 0
    for i in range(n):
        if values[i] != 0.0:
            count += 1
    poly = np.zeros((count, 4, MAX_VERTICES))
    sides = np.zeros(count, dtype=np.int64)
    poly_props = np.zeros((2, count))
    circumradius = np.zeros(n)
    offset = n
    p = 0
    for i in range(n):
        c = values[i]
        if c == 0.0:
            continue
        if not (3.0 <= c <= MAX_VERTICES and c == math.floor(c)) or offset + 2 * int(c) > values.shape[0]:
            return shape_of, poly, sides, poly_props, circumradius, i
        k = int(c)
        vx = values[offset : offset + 2 * k : 2]
        vy = values[offset + 1 : offset + 2 * k : 2]
        offset += 2 * k
        r2 = 0.0
        area2 = 0.0
        cx = 0.0
        cy = 0.0
        moment = 0.0
        for j in range(k):
            if not (abs(vx[j]) <= MAX_EXTENT and abs(vy[j]) <= MAX_EXTENT):  # NaN fails too
                return shape_of, poly, sides, poly_props, circumradius, i
            r2 = max(r2, vx[j] * vx[j] + vy[j] * vy[j])
            q = (j + 1) % k
            cross = vx[j] * vy[q] - vy[j] * vx[q]
            area2 += cross
            cx += (vx[j] + vx[q]) * cross
            cy += (vy[j] + vy[q]) * cross
            moment += cross * (
                vx[j] * vx[j] + vy[j] * vy[j] + vx[j] * vx[q] + vy[j] * vy[q] + vx[q] * vx[q] + vy[q] * vy[q]
            )
        radius = math.sqrt(r2)
        if not (MIN_EXTENT <= radius <= MAX_EXTENT) or area2 <= 0.0:
            return shape_of, poly, sides, poly_props, circumradius, i
        cx /= 3.0 * area2
        cy /= 3.0 * area2
        if math.sqrt(cx * cx + cy * cy) > CENTROID_TOLERANCE * radius:
            return shape_of, poly, sides, poly_props, circumradius, i
        inradius = np.inf
        revolutions = 0
        for j in range(k):
            q = (j + 1) % k
            ex = vx[q] - vx[j]
            ey = vy[q] - vy[j]
            fx = vx[(j + 2) % k] - vx[q]
            fy = vy[(j + 2) % k] - vy[q]
            cross = ex * fy - ey * fx
            if cross <= CONVEX_TOLERANCE * r2:  # a right turn or a straight one: not strictly convex CCW
                return shape_of, poly, sides, poly_props, circumradius, i
            revolutions += ey < 0.0 and fy >= 0.0  # (see _turning)
            length = math.sqrt(ex * ex + ey * ey)
            nx = ey / length
            ny = -ex / length
            inradius = min(inradius, vx[j] * nx + vy[j] * ny)
            poly[p, 0, j] = vx[j]
            poly[p, 1, j] = vy[j]
            poly[p, 2, j] = nx
            poly[p, 3, j] = ny
        if revolutions != 1:  # a star turns left everywhere too, but twice round
            return shape_of, poly, sides, poly_props, circumradius, i
        if inradius < MIN_ROUNDNESS * radius:
            return shape_of, poly, sides, poly_props, circumradius, i
        sides[p] = k
        poly_props[0, p] = inradius
        poly_props[1, p] = moment / (6.0 * area2) - (cx * cx + cy * cy)
        circumradius[i] = radius
        shape_of[i] = p
        p += 1
    if offset != values.shape[0]:
        return shape_of, poly, sides, poly_props, circumradius, n
    return shape_of, poly, sides, poly_props, circumradius, -1


@njit(cache=True, error_model="numpy")
def _vertex(poly, p, k, x, y, c, s):  # pragma: no cover - compiled
    lx = poly[p, 0, k]
    ly = poly[p, 1, k]
    return x + c * lx - s * ly, y + s * lx + c * ly


@njit(cache=True, error_model="numpy")
def _normal(poly, p, k, c, s):  # pragma: no cover - compiled
    nx = poly[p, 2, k]
    ny = poly[p, 3, k]
    return c * nx - s * ny, s * nx + c * ny


@njit(cache=True, error_model="numpy")
def _extent(poly, sides, p):  # pragma: no cover - compiled
    """Circumradius (vertex distances do not depend on the pose)."""
    r2 = 0.0
    for k in range(sides[p]):
        r2 = max(r2, poly[p, 0, k] ** 2 + poly[p, 1, k] ** 2)
    return math.sqrt(r2)


@njit(cache=True, error_model="numpy")
def _edge_separation(poly, sides, p1, i, x1, y1, c1, s1, p2, x2, y2, c2, s2):  # pragma: no cover - compiled
    """How far polygon 2 lies out along the normal of polygon 1's edge i (its nearest vertex; < 0: in)."""
    nx, ny = _normal(poly, p1, i, c1, s1)
    vx, vy = _vertex(poly, p1, i, x1, y1, c1, s1)
    deepest = np.inf
    for j in range(sides[p2]):
        wx, wy = _vertex(poly, p2, j, x2, y2, c2, s2)
        deepest = min(deepest, nx * (wx - vx) + ny * (wy - vy))
    return deepest


@njit(cache=True, error_model="numpy")
def _max_separation(poly, sides, p1, x1, y1, c1, s1, p2, x2, y2, c2, s2):  # pragma: no cover - compiled
    """(separation, edge): the edge normal of polygon 1 along which polygon 2 lies farthest out."""
    best = -np.inf
    edge = 0
    for i in range(sides[p1]):
        deepest = _edge_separation(poly, sides, p1, i, x1, y1, c1, s1, p2, x2, y2, c2, s2)
        if deepest > best:  # strict: the lowest edge index wins a tie
            best = deepest
            edge = i
    return best, edge


@njit(cache=True, error_model="numpy")
def _clip(ax, ay, bx, by, da, db):  # pragma: no cover - compiled
    """Clip segment a-b to the side of a plane where the distance d <= 0; (ok, a', b') in the same order.

    As Box2D: fails unless two points survive (a segment that only touches the plane gives none).
    """
    if da <= 0.0 and db <= 0.0:
        return True, ax, ay, bx, by
    if da * db < 0.0:
        t = da / (da - db)
        ix = ax + t * (bx - ax)
        iy = ay + t * (by - ay)
        if da > 0.0:
            return True, ix, iy, bx, by
        return True, ax, ay, ix, iy
    return False, ax, ay, bx, by


@njit(cache=True, error_model="numpy")
def collide_polygons(
    poly, sides, pa, xa, ya, angle_a, pb, xb, yb, angle_b, margin
):  # pragma: no cover - compiled
    """(count, nx, ny, p0x, p0y, sep0, p1x, p1y, sep1): contact manifold, normal from A to B."""
    ca, sa = math.cos(angle_a), math.sin(angle_a)
    cb, sb = math.cos(angle_b), math.sin(angle_b)
    sep_a, edge_a = _max_separation(poly, sides, pa, xa, ya, ca, sa, pb, xb, yb, cb, sb)
    if sep_a > margin:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    sep_b, edge_b = _max_separation(poly, sides, pb, xb, yb, cb, sb, pa, xa, ya, ca, sa)
    if sep_b > margin:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    tolerance = FACE_TOLERANCE * min(_extent(poly, sides, pa), _extent(poly, sides, pb))
    flip = sep_b > sep_a + tolerance
    if flip:  # reference face on B, incident edge on A
        p1, x1, y1, c1, s1, edge = pb, xb, yb, cb, sb, edge_b
        p2, x2, y2, c2, s2 = pa, xa, ya, ca, sa
    else:
        p1, x1, y1, c1, s1, edge = pa, xa, ya, ca, sa, edge_a
        p2, x2, y2, c2, s2 = pb, xb, yb, cb, sb

    nx, ny = _normal(poly, p1, edge, c1, s1)
    tx, ty = -ny, nx  # along the reference edge, from its vertex ``edge`` to the next
    v1x, v1y = _vertex(poly, p1, edge, x1, y1, c1, s1)
    v2x, v2y = _vertex(poly, p1, (edge + 1) % sides[p1], x1, y1, c1, s1)

    # Incident edge: the edge of polygon 2 whose normal is most anti-parallel to the reference normal.
    incident = 0
    lowest = np.inf
    for k in range(sides[p2]):
        mx, my = _normal(poly, p2, k, c2, s2)
        d = nx * mx + ny * my
        if d < lowest:
            lowest = d
            incident = k
    ax, ay = _vertex(poly, p2, incident, x2, y2, c2, s2)
    bx, by = _vertex(poly, p2, (incident + 1) % sides[p2], x2, y2, c2, s2)

    # Clip the incident edge to the reference face's two side planes.
    low = tx * v1x + ty * v1y
    ok, ax, ay, bx, by = _clip(ax, ay, bx, by, low - (tx * ax + ty * ay), low - (tx * bx + ty * by))
    if not ok:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    high = tx * v2x + ty * v2y
    ok, ax, ay, bx, by = _clip(ax, ay, bx, by, tx * ax + ty * ay - high, tx * bx + ty * by - high)
    if not ok:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0

    face = nx * v1x + ny * v1y
    sep0 = nx * ax + ny * ay - face
    sep1 = nx * bx + ny * by - face
    # Midway between the surfaces: the incident vertex moved half its separation back along the normal.
    p0x, p0y = ax - 0.5 * sep0 * nx, ay - 0.5 * sep0 * ny
    p1x, p1y = bx - 0.5 * sep1 * nx, by - 0.5 * sep1 * ny
    if flip:
        nx, ny = -nx, -ny
    if sep0 <= margin and sep1 <= margin:
        return 2, nx, ny, p0x, p0y, sep0, p1x, p1y, sep1
    if sep0 <= margin:
        return 1, nx, ny, p0x, p0y, sep0, 0.0, 0.0, 0.0
    if sep1 <= margin:
        return 1, nx, ny, p1x, p1y, sep1, 0.0, 0.0, 0.0
    return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0


@njit(cache=True, error_model="numpy")
def _circle_feature(poly, sides, p, x, y, c, s, cx, cy):  # pragma: no cover - compiled
    """(distance, nx, ny): signed distance from a point to the polygon and the direction to the point.

    Box2D's regions: the edge of greatest separation, then its face region or one of its two vertices.
    Inside (or on the boundary), the face of least penetration.
    """
    best = -np.inf
    edge = 0
    for k in range(sides[p]):
        nx, ny = _normal(poly, p, k, c, s)
        vx, vy = _vertex(poly, p, k, x, y, c, s)
        d = nx * (cx - vx) + ny * (cy - vy)
        if d > best:
            best = d
            edge = k
    nx, ny = _normal(poly, p, edge, c, s)
    if best <= 0.0:
        return best, nx, ny
    v1x, v1y = _vertex(poly, p, edge, x, y, c, s)
    v2x, v2y = _vertex(poly, p, (edge + 1) % sides[p], x, y, c, s)
    # Outside, the nearest vertex is never closer than ``best`` > 0, so the normalisations are safe.
    if (cx - v1x) * (v2x - v1x) + (cy - v1y) * (v2y - v1y) <= 0.0:
        d = math.hypot(cx - v1x, cy - v1y)
        return d, (cx - v1x) / d, (cy - v1y) / d
    if (cx - v2x) * (v1x - v2x) + (cy - v2y) * (v1y - v2y) <= 0.0:
        d = math.hypot(cx - v2x, cy - v2y)
        return d, (cx - v2x) / d, (cy - v2y) / d
    return best, nx, ny


@njit(cache=True, error_model="numpy")
def collide_polygon_circle(
    poly, sides, p, x, y, angle, cx, cy, radius, margin
):  # pragma: no cover - compiled
    """(count, nx, ny, px, py, sep): the contact of a polygon and a circle, normal towards the circle."""
    c, s = math.cos(angle), math.sin(angle)
    d, nx, ny = _circle_feature(poly, sides, p, x, y, c, s, cx, cy)
    sep = d - radius
    if sep > margin:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0
    # Polygon surface at centre - d n, circle surface at centre - radius n.
    h = 0.5 * (d + radius)
    return 1, nx, ny, cx - h * nx, cy - h * ny, sep


@njit(cache=True, error_model="numpy")
def polygon_circle_depth(poly, sides, p, x, y, angle, cx, cy, radius):  # pragma: no cover - compiled
    """Radius minus the signed distance from the centre to the polygon; > 0 is the overlap depth."""
    d, _, _ = _circle_feature(poly, sides, p, x, y, math.cos(angle), math.sin(angle), cx, cy)
    return radius - d


@njit(cache=True, error_model="numpy")
def polygon_depth(poly, sides, pa, xa, ya, angle_a, pb, xb, yb, angle_b):  # pragma: no cover - compiled
    """Penetration depth of two convex polygons: minus the largest separation along any edge normal.

    > 0: they overlap and this is the exact minimum translation distance. <= 0: they are apart, and minus
    the value is a lower bound of their distance (exact unless the closest features are two vertices).
    """
    ca, sa = math.cos(angle_a), math.sin(angle_a)
    cb, sb = math.cos(angle_b), math.sin(angle_b)
    sep_a, _ = _max_separation(poly, sides, pa, xa, ya, ca, sa, pb, xb, yb, cb, sb)
    sep_b, _ = _max_separation(poly, sides, pb, xb, yb, cb, sb, pa, xa, ya, ca, sa)
    return -max(sep_a, sep_b)


@njit(cache=True, error_model="numpy")
def polygons_deeper_than(poly, sides, pa, xa, ya, angle_a, pb, xb, yb, angle_b, limit):  # pragma: no cover
    """polygon_depth(...) > limit, leaving at the first edge normal along which the two are closer than
    that to apart (each normal's separation is polygon_depth's own, _edge_separation)."""
    ca, sa = math.cos(angle_a), math.sin(angle_a)
    cb, sb = math.cos(angle_b), math.sin(angle_b)
    for first in range(2):
        p1, x1, y1, c1, s1 = (pa, xa, ya, ca, sa) if first == 0 else (pb, xb, yb, cb, sb)
        p2, x2, y2, c2, s2 = (pb, xb, yb, cb, sb) if first == 0 else (pa, xa, ya, ca, sa)
        for i in range(sides[p1]):
            if not -_edge_separation(poly, sides, p1, i, x1, y1, c1, s1, p2, x2, y2, c2, s2) > limit:
                return False
    return True


@njit(cache=True, error_model="numpy")
def _wall_plane(side, world):  # pragma: no cover - compiled
    """(nx, ny, offset): ``_wall_normal(side)`` of physics.py (body towards wall), and gap = offset - n.v."""
    if side == 0:
        return -1.0, 0.0, -world[0]
    if side == 1:
        return 1.0, 0.0, world[2]
    if side == 2:
        return 0.0, -1.0, -world[1]
    return 0.0, 1.0, world[3]


@njit(cache=True, error_model="numpy")
def polygon_wall(poly, sides, p, x, y, angle, side, world, margin):  # pragma: no cover - compiled
    """(count, p0x, p0y, sep0, p1x, p1y, sep1): the (up to) two vertices nearest one wall of the box."""
    c, s = math.cos(angle), math.sin(angle)
    nx, ny, offset = _wall_plane(side, world)
    # The two smallest gaps, strict comparisons so the lower vertex index wins a tie. On a convex polygon
    # the runner-up is a neighbour of the nearest vertex, so together they are its nearest edge.
    g0 = g1 = np.inf
    v0x = v0y = v1x = v1y = 0.0
    for k in range(sides[p]):
        vx, vy = _vertex(poly, p, k, x, y, c, s)
        g = offset - (nx * vx + ny * vy)
        if g < g0:
            g1, v1x, v1y = g0, v0x, v0y
            g0, v0x, v0y = g, vx, vy
        elif g < g1:
            g1, v1x, v1y = g, vx, vy
    if g0 > margin:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    p0x, p0y = v0x + 0.5 * g0 * nx, v0y + 0.5 * g0 * ny
    if g1 > margin:
        return 1, p0x, p0y, g0, 0.0, 0.0, 0.0
    return 2, p0x, p0y, g0, v1x + 0.5 * g1 * nx, v1y + 0.5 * g1 * ny, g1


@njit(cache=True, error_model="numpy")
def polygon_outside(poly, sides, p, x, y, angle, world):  # pragma: no cover - compiled
    """How far the polygon pokes out of the box along either axis (0 when inside)."""
    c, s = math.cos(angle), math.sin(angle)
    depth = 0.0
    for k in range(sides[p]):
        vx, vy = _vertex(poly, p, k, x, y, c, s)
        depth = max(depth, world[0] - vx, vx - world[2], world[1] - vy, vy - world[3])
    return depth


@njit(cache=True, error_model="numpy")
def polygon_bounds(poly, sides, p, x, y, angle):  # pragma: no cover - compiled
    """(min_x, min_y, max_x, max_y) of the world vertices."""
    c, s = math.cos(angle), math.sin(angle)
    lo_x = lo_y = np.inf
    hi_x = hi_y = -np.inf
    for k in range(sides[p]):
        vx, vy = _vertex(poly, p, k, x, y, c, s)
        lo_x = min(lo_x, vx)
        lo_y = min(lo_y, vy)
        hi_x = max(hi_x, vx)
        hi_y = max(hi_y, vy)
    return lo_x, lo_y, hi_x, hi_y
