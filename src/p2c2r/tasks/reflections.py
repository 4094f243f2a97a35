"""Task kind ``rt_reflections``: a small Whitted-style ray tracer for reflections, shadows and glowing shots.

The gamer sends one scene (a pinhole camera, point lights, spheres, infinite planes and emissive
"projectiles") and an image size; the peer renders it and returns the RGB image, 8 bits a channel, row-major
from the top-left pixel, compressed with zlib.

The shading model, fixed because the images of two peers must be comparable:

* one primary ray through the centre of each pixel; the vertical field of view is ``camera.fov_deg``;
  coordinates are right-handed: the image's right is ``forward x up``;
* at a hit on a sphere or plane: ``colour * (ambient + sum of visible lights of max(0, n.l) * radiance)``
  plus, when the material has ``specular > 0``, a Phong term
  ``specular * max(0, r.l) ** shininess * radiance`` where ``r`` is the mirrored view ray;
  ``radiance = light.color * light.intensity`` and has no distance fall-off;
* hard shadows: a light is visible from a point when no sphere or plane crosses the segment between them
  (projectiles glow but neither cast shadows nor light other objects);
* a surface with reflectivity ``k`` shows ``(1 - k) * local + k * (what the mirrored ray sees)``, up to
  ``max_bounces`` mirrored rays deep; at the last level the surface shows its local shading alone;
* a projectile shows its emission colour, unshaded; a ray that hits nothing shows ``background``;
* planes are two-sided; spheres are solid and seen from both sides (a camera inside a sphere sees its
  inside);
* the final colour is clamped to [0, 1] and rounded to the nearest of 0..255.

The tracer is vectorised over rays with an array module ``xp``: NumPy on the CPU, or CuPy when it is
importable and a CUDA device is present. Both run the same code in float64. :func:`verify` re-traces a random
sample of pixels through the same per-ray function, so a peer's image is checked against the model rather than
against another peer.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Annotated, Any

import msgspec
import numpy as np
from msgspec import Meta

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks.base import Verdict, convert_input, convert_output, require_range

NAME = "rt_reflections"
VERSION = "1"
TOLERANCE_NOTE = (
    "same width and height, and at least 99% of pixels within 2 levels in every channel "
    "(float rounding may flip a pixel exactly on an edge)"
)

MAX_WIDTH = 640
MAX_HEIGHT = 360
MAX_BOUNCES = 4
MAX_OBJECTS = 64
"""Spheres, planes and projectiles together."""
MAX_PLANES = 8
MAX_LIGHTS = 8
COORD_LIMIT = 1000.0
"""Every position lies within this box; it keeps float64 intersection arithmetic far from cancellation."""
MIN_RADIUS = 0.01
MAX_RADIUS = 1000.0
MIN_FOV_DEG = 1.0
MAX_FOV_DEG = 170.0
MAX_INTENSITY = 100.0
MAX_EMISSION = 16.0
MIN_SHININESS = 1.0
MAX_SHININESS = 1024.0

MAX_IMAGE_BYTES = MAX_WIDTH * MAX_HEIGHT * 3
COMPRESSION_LEVEL = 6
"""Measured on the large example frames: level 6 is ~20% smaller than level 1 (about 20 KB against 25 KB)
for ~0.8 ms more, under 2% of the render; levels above 6 gain under 1% for ~50% more time."""

HIT_EPSILON = 1e-6
"""Nearest accepted ray distance, and how far a mirrored ray starts off its surface."""
SHADOW_EPSILON = 1e-4
"""A shadow segment stops this short of both ends, so that a surface never shadows the point it is lit at."""

# verify: how many pixels it re-traces and what it tolerates among them.
VERIFY_RANDOM_PIXELS = 224
VERIFY_CROPS = 2
VERIFY_CROP_SIDE = 4
CHANNEL_TOLERANCE = 2
"""Per-channel difference still counted as a match: rounding of x.5 and ulp-level differences between BLAS."""
MAX_MISMATCH_FRACTION = 0.02
"""Of the sampled pixels; only pixels exactly on a silhouette or shadow edge may flip between machines."""
AGREE_MIN_MATCH_FRACTION = 0.99

CPU_CHUNK_CELLS = 160_000
"""Cells of the widest matrix (spheres x rays, or lights x occluders x rays) traced together on the CPU.
Small enough that the temporaries stay in cache and the allocator keeps reusing the same few blocks instead
of mapping fresh pages for each (page faults are costly on virtual machines); large enough that NumPy's
per-call overhead is spread over many rays. Measured best among 20k..640k on the benchmark scene."""
CPU_CHUNK_RAYS_RANGE = (512, 8192)
"""Bounds on rays a chunk whatever the scene: fewer is mostly per-call overhead, more leaves the cache."""

Vec3 = tuple[float, float, float]
"""Ranges are checked by parse_input rather than msgspec, so that NaN and infinity get a message saying so."""


class Camera(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    position: Vec3
    look_at: Vec3
    up: Vec3 = (0.0, 1.0, 0.0)
    """Need not be orthogonal to the view direction, only not parallel to it."""
    fov_deg: float = 60.0
    """Vertical field of view in degrees."""


class Light(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    position: Vec3
    color: Vec3 = (1.0, 1.0, 1.0)
    intensity: float = 1.0


class Sphere(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    center: Vec3
    radius: float
    color: Vec3
    reflectivity: float = 0.0
    specular: float = 0.0
    shininess: float = 32.0


class Plane(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    point: Vec3
    normal: Vec3
    """Any non-zero length; normalised by the tracer."""
    color: Vec3
    reflectivity: float = 0.0
    specular: float = 0.0
    shininess: float = 32.0


class Projectile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    center: Vec3
    radius: float
    emission: Vec3
    """Linear RGB, may exceed 1 (clamped in the image) so that a shot glows in reflections too."""


class Input(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    camera: Camera
    width: Annotated[int, Meta(ge=1, le=MAX_WIDTH)]
    height: Annotated[int, Meta(ge=1, le=MAX_HEIGHT)]
    max_bounces: Annotated[int, Meta(ge=0, le=MAX_BOUNCES)] = 1
    ambient: Vec3 = (0.1, 0.1, 0.1)
    background: Vec3 = (0.05, 0.05, 0.08)
    lights: Annotated[tuple[Light, ...], Meta(max_length=MAX_LIGHTS)] = ()
    spheres: Annotated[tuple[Sphere, ...], Meta(max_length=MAX_OBJECTS)] = ()
    planes: Annotated[tuple[Plane, ...], Meta(max_length=MAX_PLANES)] = ()
    projectiles: Annotated[tuple[Projectile, ...], Meta(max_length=MAX_OBJECTS)] = ()


class Output(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    width: Annotated[int, Meta(ge=1, le=MAX_WIDTH)]
    height: Annotated[int, Meta(ge=1, le=MAX_HEIGHT)]
    rgb_zlib: Annotated[bytes, Meta(min_length=1, max_length=MAX_IMAGE_BYTES + 1024)]
    """zlib stream of ``width * height * 3`` bytes: RGB, row-major, top row first."""


# Input checks ------------------------------------------------------------------------------------------


def parse_input(raw: Any) -> Input:
    inp: Input = convert_input(raw, Input)
    _check_camera(inp.camera)
    _check_vector("ambient", inp.ambient, 0.0, 1.0)
    _check_vector("background", inp.background, 0.0, 1.0)
    for i, light in enumerate(inp.lights):
        where = f"lights[{i}]"
        _check_vector(f"{where}.position", light.position, -COORD_LIMIT, COORD_LIMIT)
        _check_vector(f"{where}.color", light.color, 0.0, 1.0)
        require_range(f"{where}.intensity", light.intensity, 0.0, MAX_INTENSITY)
    for i, sphere in enumerate(inp.spheres):
        where = f"spheres[{i}]"
        _check_vector(f"{where}.center", sphere.center, -COORD_LIMIT, COORD_LIMIT)
        require_range(f"{where}.radius", sphere.radius, MIN_RADIUS, MAX_RADIUS)
        _check_material(where, sphere.color, sphere.reflectivity, sphere.specular, sphere.shininess)
    for i, plane in enumerate(inp.planes):
        where = f"planes[{i}]"
        _check_vector(f"{where}.point", plane.point, -COORD_LIMIT, COORD_LIMIT)
        _check_vector(f"{where}.normal", plane.normal, -COORD_LIMIT, COORD_LIMIT)
        if _length(plane.normal) < 1e-9:
            raise TaskInputError(f"{where}.normal", "must be a non-zero vector")
        _check_material(where, plane.color, plane.reflectivity, plane.specular, plane.shininess)
    for i, shot in enumerate(inp.projectiles):
        where = f"projectiles[{i}]"
        _check_vector(f"{where}.center", shot.center, -COORD_LIMIT, COORD_LIMIT)
        require_range(f"{where}.radius", shot.radius, MIN_RADIUS, MAX_RADIUS)
        _check_vector(f"{where}.emission", shot.emission, 0.0, MAX_EMISSION)
    n_objects = len(inp.spheres) + len(inp.planes) + len(inp.projectiles)
    if n_objects > MAX_OBJECTS:
        raise TaskInputError(
            "spheres",
            f"spheres, planes and projectiles together must be at most {MAX_OBJECTS}, got {n_objects}",
        )
    return inp


def _check_camera(camera: Camera) -> None:
    _check_vector("camera.position", camera.position, -COORD_LIMIT, COORD_LIMIT)
    _check_vector("camera.look_at", camera.look_at, -COORD_LIMIT, COORD_LIMIT)
    _check_vector("camera.up", camera.up, -COORD_LIMIT, COORD_LIMIT)
    require_range("camera.fov_deg", camera.fov_deg, MIN_FOV_DEG, MAX_FOV_DEG)
    if _length(_sub(camera.look_at, camera.position)) < 1e-6:
        raise TaskInputError("camera.look_at", "must differ from camera.position by at least 1e-6")
    if _length(camera.up) < 1e-9:
        raise TaskInputError("camera.up", "must be a non-zero vector")
    forward = _normalize(_sub(camera.look_at, camera.position))
    if _length(_cross(forward, _normalize(camera.up))) < 1e-6:
        raise TaskInputError("camera.up", "must not be parallel to the view direction")


def _check_material(where: str, color: Vec3, reflectivity: float, specular: float, shininess: float) -> None:
    _check_vector(f"{where}.color", color, 0.0, 1.0)
    require_range(f"{where}.reflectivity", reflectivity, 0.0, 1.0)
    require_range(f"{where}.specular", specular, 0.0, 1.0)
    require_range(f"{where}.shininess", shininess, MIN_SHININESS, MAX_SHININESS)


def _check_vector(field: str, vector: Vec3, lo: float, hi: float) -> None:
    for i, component in enumerate(vector):
        require_range(f"{field}[{i}]", component, lo, hi)


# Output checks -----------------------------------------------------------------------------------------


def parse_output(raw: Any) -> Output:
    out: Output = convert_output(raw, Output)
    bound = _zlib_bound(out.width * out.height * 3)
    if len(out.rgb_zlib) > bound:
        raise TaskOutputError(
            "rgb_zlib", f"{len(out.rgb_zlib)} bytes is more than zlib ever needs for this image ({bound})"
        )
    return out


def _zlib_bound(n: int) -> int:
    # zlib's compressBound() plus the 2-byte header and 4-byte checksum of a zlib (not raw deflate) stream.
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13 + 6


def decode_image(out: Output) -> np.ndarray:
    """The image as a (height, width, 3) uint8 array; TaskOutputError unless it inflates to exactly that size.

    Inflation is capped at the expected size, so a zlib bomb costs no more than an honest image.
    """
    expected = out.width * out.height * 3
    inflater = zlib.decompressobj()
    try:
        pixels = inflater.decompress(out.rgb_zlib, expected)
        if inflater.unconsumed_tail and inflater.decompress(inflater.unconsumed_tail, 1):
            raise TaskOutputError("rgb_zlib", f"inflates to more than width*height*3 = {expected} bytes")
    except zlib.error as exc:
        raise TaskOutputError("rgb_zlib", f"not a zlib stream: {exc}") from None
    if len(pixels) != expected:
        raise TaskOutputError(
            "rgb_zlib", f"inflates to {len(pixels)} bytes, expected width*height*3 = {expected}"
        )
    if not inflater.eof:
        raise TaskOutputError("rgb_zlib", "zlib stream is truncated")
    if inflater.unused_data:
        raise TaskOutputError("rgb_zlib", f"{len(inflater.unused_data)} bytes follow the zlib stream")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(out.height, out.width, 3)


# Compute -----------------------------------------------------------------------------------------------


def compute(inp: Input, xp: ModuleType | None = None) -> Output:
    """Render the scene; ``xp`` forces an array module (numpy or cupy), else the best available is used."""
    xp = default_array_module() if xp is None else xp
    scene = build_scene(inp, xp)
    cols, rows = _pixel_grid(xp, inp.width, inp.height)
    rgb = trace_pixels(scene, cols, rows)
    host = _to_host(xp, rgb)
    return Output(
        width=inp.width, height=inp.height, rgb_zlib=zlib.compress(host.tobytes(), COMPRESSION_LEVEL)
    )


def select_array_module(import_module: Callable[[str], ModuleType] = importlib.import_module) -> ModuleType:
    """CuPy when it imports and sees at least one CUDA device, NumPy otherwise (never raises).

    ``import_module`` is a seam for tests, which hand in importers that fail in each possible way.
    """
    try:
        cupy = import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # any failure (no package, no driver, no device) means "use the CPU"
        pass
    return np


@cache
def default_array_module() -> ModuleType:
    """:func:`select_array_module`, probed once per process: a failed import is not cached by Python."""
    return select_array_module()


def _to_host(xp: ModuleType, array: Any) -> np.ndarray:
    to_numpy = getattr(xp, "asnumpy", None)
    return np.asarray(array) if to_numpy is None else to_numpy(array)


def _pixel_grid(xp: ModuleType, width: int, height: int) -> tuple[Any, Any]:
    ids = xp.arange(width * height)
    return (ids % width).astype(xp.float64), (ids // width).astype(xp.float64)


@dataclass(frozen=True, slots=True)
class Scene:
    """A parsed Input laid out as ``xp`` arrays. Objects are numbered spheres, then projectiles, then planes.

    Array fields are typed ``Any`` because they are NumPy or CuPy arrays; their shapes are in the comments.
    """

    xp: ModuleType
    width: int
    height: int
    max_bounces: int
    eye: Any  # (3,)
    forward: Any  # (3,)
    right: Any  # (3,) scaled by half the image-plane width at distance 1
    up: Any  # (3,) scaled by half the image-plane height at distance 1
    n_spheres: int  # spheres and projectiles
    sphere_centers: Any  # (S, 3)
    eye_to_center: Any  # (S, 3) c - eye
    to_eye_sq_minus_r2: Any  # (S,) |eye - c|^2 - r^2 for rays from the eye
    eye_hit_threshold: Any  # (S,) sqrt of that where positive, else -inf
    sphere_aug: Any  # (S, 5) so that sphere_aug @ [o, |o|^2, 1] = |o - c|^2 - r^2 for any origin o
    plane_normals: Any  # (P, 3) unit
    plane_offsets: Any  # (P,) n . point
    # Per object (S + P):
    colors: Any  # (3, O) base colour, or emission for projectiles
    reflectivity: Any  # (O,) 0 for projectiles
    specular: Any  # (O,)
    shininess: Any  # (O,)
    emissive: Any  # (O,) bool
    normal_scale: Any  # (O,) 1/r for spheres, 0 for planes
    normal_center: Any  # (3, O) c/r for spheres, 0 for planes
    normal_fixed: Any  # (3, O) 0 for spheres, the unit normal for planes
    has_specular: bool
    # Shadows: occluding spheres (projectiles excluded) seen from each light.
    n_occluders: int
    n_lights: int
    light_radiance: Any  # (L, 3)
    light_positions: Any  # (L, 3)
    light_to_occluder: Any  # (L, K, 3) light - c, so that it @ dir is the projection of each centre
    light_occluder_c: Any  # (L, K) |light - c|^2 - r^2
    light_occluder_threshold: Any  # (L, K) sqrt of that where positive, else -inf
    light_plane_side: Any  # (L, P) sign of the light's side of each plane (0 when within eps of it)
    ambient: Any  # (3,)
    background: Any  # (3,)


def build_scene(inp: Input, xp: ModuleType) -> Scene:
    cam = inp.camera
    forward = _normalize(_sub(cam.look_at, cam.position))
    right = _normalize(_cross(forward, _normalize(cam.up)))
    true_up = _cross(right, forward)
    half_height = math.tan(math.radians(cam.fov_deg) / 2.0)
    half_width = half_height * inp.width / inp.height

    balls = [(s.center, s.radius) for s in inp.spheres] + [(p.center, p.radius) for p in inp.projectiles]
    centers = np.array([c for c, _ in balls], dtype=np.float64).reshape(-1, 3)
    radii = np.array([r for _, r in balls], dtype=np.float64)
    eye = np.array(cam.position, dtype=np.float64)
    normals = np.array([_normalize(p.normal) for p in inp.planes], dtype=np.float64).reshape(-1, 3)
    offsets = np.array([_dot(_normalize(p.normal), p.point) for p in inp.planes], dtype=np.float64)

    surfaces = [*inp.spheres, *inp.projectiles, *inp.planes]
    colors = np.array(
        [s.emission if isinstance(s, Projectile) else s.color for s in surfaces], dtype=np.float64
    ).reshape(-1, 3)
    emissive = np.array([isinstance(s, Projectile) for s in surfaces], dtype=bool)
    reflectivity = np.array([getattr(s, "reflectivity", 0.0) for s in surfaces], dtype=np.float64)
    specular = np.array([getattr(s, "specular", 0.0) for s in surfaces], dtype=np.float64)
    shininess = np.array([getattr(s, "shininess", 1.0) for s in surfaces], dtype=np.float64)

    n_spheres = len(balls)
    n_planes = len(inp.planes)
    normal_scale = np.concatenate([1.0 / radii, np.zeros(n_planes)])
    normal_center = np.concatenate([centers / radii[:, None], np.zeros((n_planes, 3))])
    normal_fixed = np.concatenate([np.zeros((n_spheres, 3)), normals])

    # Augmented matrix so that one matmul gives |o - c|^2 - r^2 = |o|^2 - 2 o.c + |c|^2 - r^2 for any origin.
    sphere_aug = np.concatenate(
        [-2.0 * centers, np.ones((n_spheres, 1)), ((centers**2).sum(axis=1) - radii**2)[:, None]], axis=1
    )

    occluders = [(s.center, s.radius) for s in inp.spheres]
    occ_centers = np.array([c for c, _ in occluders], dtype=np.float64).reshape(-1, 3)
    occ_radii = np.array([r for _, r in occluders], dtype=np.float64)
    lights = inp.lights
    light_positions = np.array([lt.position for lt in lights], dtype=np.float64).reshape(-1, 3)
    light_radiance = np.array(
        [[c * lt.intensity for c in lt.color] for lt in lights], dtype=np.float64
    ).reshape(-1, 3)
    light_to_occ = light_positions[:, None, :] - occ_centers[None, :, :]  # (L, K, 3)
    light_occ_c = (light_to_occ**2).sum(axis=2) - occ_radii[None, :] ** 2  # (L, K)
    light_height = light_positions @ normals.T - offsets[None, :]  # (L, P)
    # A light within eps of a plane is on it, and that plane shadows nothing from it.
    light_plane_side = np.where(np.abs(light_height) > SHADOW_EPSILON, np.sign(light_height), 0.0)

    eye_c = ((eye[None, :] - centers) ** 2).sum(axis=1) - radii**2

    def put(array: np.ndarray) -> Any:
        return xp.asarray(array)

    return Scene(
        xp=xp,
        width=inp.width,
        height=inp.height,
        max_bounces=inp.max_bounces,
        eye=put(eye),
        forward=put(np.array(forward)),
        right=put(np.array(right) * half_width),
        up=put(np.array(true_up) * half_height),
        n_spheres=n_spheres,
        sphere_centers=put(centers),
        eye_to_center=put(centers - eye[None, :]),
        to_eye_sq_minus_r2=put(eye_c),
        eye_hit_threshold=put(_hit_threshold(eye_c)),
        sphere_aug=put(sphere_aug),
        plane_normals=put(normals),
        plane_offsets=put(offsets),
        colors=put(np.ascontiguousarray(colors.T)),
        reflectivity=put(reflectivity),
        specular=put(specular),
        shininess=put(shininess),
        emissive=put(emissive),
        normal_scale=put(normal_scale),
        normal_center=put(np.ascontiguousarray(normal_center.T)),
        normal_fixed=put(np.ascontiguousarray(normal_fixed.T)),
        has_specular=bool(np.any(specular > 0.0)),
        n_occluders=len(occluders),
        n_lights=len(lights),
        light_radiance=put(light_radiance),  # (L, 3)
        light_positions=put(light_positions),
        light_to_occluder=put(light_to_occ),
        light_occluder_c=put(light_occ_c),
        light_occluder_threshold=put(_hit_threshold(light_occ_c)),
        light_plane_side=put(light_plane_side),
        ambient=put(np.array(inp.ambient, dtype=np.float64)),
        background=put(np.array(inp.background, dtype=np.float64)),
    )


def _hit_threshold(c_term: np.ndarray) -> np.ndarray:
    """For rays of one origin: a sphere can be met ahead only where ``along`` exceeds this."""
    return np.where(c_term > 0.0, np.sqrt(np.maximum(c_term, 0.0)), -np.inf)


def trace_pixels(scene: Scene, cols: Any, rows: Any) -> Any:
    """uint8 RGB (N, 3) of the pixels at (cols[i], rows[i]), float64 index arrays of the scene's xp.

    Every ray is independent of the others, which is what lets :func:`verify` trace any subset.
    """
    xp = scene.xp
    n = int(cols.shape[0])
    out = xp.empty((n, 3), dtype=xp.uint8)
    chunk = _chunk_rays(scene, n)
    with _quiet_float_errors(xp):
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            dirs = _primary_directions(scene, cols[start:stop], rows[start:stop])
            radiance = _trace_rays(scene, dirs)
            # NaN (a light exactly on a lit point) counts as black rather than being cast to uint8, which
            # is undefined behaviour.
            radiance = xp.minimum(xp.where(radiance > 0.0, radiance, 0.0), 1.0)
            out[start:stop] = xp.floor(radiance.T * 255.0 + 0.5).astype(xp.uint8)
    return out


def _chunk_rays(scene: Scene, n: int) -> int:
    if scene.xp is not np:
        return max(1, n)  # a GPU wants every ray at once
    widest = max(1, scene.n_spheres + scene.plane_normals.shape[0], scene.n_lights * scene.n_occluders)
    lo, hi = CPU_CHUNK_RAYS_RANGE
    return min(hi, max(lo, CPU_CHUNK_CELLS // widest))


@contextlib.contextmanager
def _quiet_float_errors(xp: ModuleType) -> Iterator[None]:
    # The tracer relies on IEEE results rather than branches: a ray parallel to a plane divides by zero (an
    # infinite distance), a sphere pair that only just passed its filter takes the square root of a tiny
    # negative number, a light exactly on a point divides 0 by 0. The NaNs fail every comparison, so they
    # count as misses or as unlit.
    errstate = getattr(xp, "errstate", None)
    if errstate is None:
        yield
        return
    with errstate(invalid="ignore", divide="ignore"):
        yield


# Vectors are stored components first: (3, rays), or (lights, 3, rays). Each component is then one
# contiguous row, and a dot product is three multiplications and two additions of whole rows.


def _dot_rows(a: Any, b: Any) -> Any:
    """Dot products along the component axis (-2). Written out rather than a reduction or BLAS so that each
    ray's value depends on that ray alone, whatever the number of rays traced together."""
    return a[..., 0, :] * b[..., 0, :] + a[..., 1, :] * b[..., 1, :] + a[..., 2, :] * b[..., 2, :]


def _primary_directions(scene: Scene, cols: Any, rows: Any) -> Any:
    u = (2.0 * (cols + 0.5) / scene.width) - 1.0
    v = 1.0 - (2.0 * (rows + 0.5) / scene.height)
    dirs = scene.forward[:, None] + scene.right[:, None] * u[None, :] + scene.up[:, None] * v[None, :]
    return dirs / scene.xp.sqrt(_dot_rows(dirs, dirs))[None, :]


def _trace_rays(scene: Scene, dirs: Any) -> Any:
    """Linear radiance (3, N) seen along ``dirs`` (3, N) from the eye, following mirrored rays."""
    xp = scene.xp
    n = dirs.shape[1]
    radiance = xp.zeros((3, n))
    ray_ids = xp.arange(n)  # which pixel each surviving ray belongs to
    weight = xp.ones(n)  # product of the reflectivities along the way
    origins = None  # None: all rays start at the eye, which allows the cheaper shared-origin intersection
    for depth in range(scene.max_bounces + 1):
        t, obj = _closest_hit(scene, origins, dirs)
        hit = obj >= 0
        missed = ~hit
        radiance[:, ray_ids[missed]] += scene.background[:, None] * weight[missed][None, :]
        ray_ids, weight, dirs, t, obj = ray_ids[hit], weight[hit], dirs[:, hit], t[hit], obj[hit]
        if ray_ids.shape[0] == 0:
            break
        start = scene.eye[:, None] if origins is None else origins[:, hit]
        points = start + dirs * t[None, :]
        normals = (
            points * scene.normal_scale[obj][None, :]
            - scene.normal_center[:, obj]
            + scene.normal_fixed[:, obj]
        )
        facing = _dot_rows(normals, dirs)
        normals = xp.where((facing > 0.0)[None, :], -normals, normals)
        # Mirror of the incoming ray: the reflected ray and the Phong highlight direction.
        mirrored = dirs + normals * (2.0 * xp.abs(facing))[None, :]
        local = _local_shading(scene, points, normals, mirrored, obj)
        if depth == scene.max_bounces:
            radiance[:, ray_ids] += local * weight[None, :]
            break
        k = scene.reflectivity[obj]
        radiance[:, ray_ids] += local * (weight * (1.0 - k))[None, :]
        bounce = k > 0.0
        ray_ids, weight = ray_ids[bounce], weight[bounce] * k[bounce]
        if ray_ids.shape[0] == 0:
            break
        origins = points[:, bounce] + normals[:, bounce] * HIT_EPSILON
        dirs = mirrored[:, bounce]
    return radiance


def _closest_hit(scene: Scene, origins: Any | None, dirs: Any) -> tuple[Any, Any]:
    """Distance to and index of the nearest object along each ray (index -1 and distance inf: a miss).

    Matrices are (objects, rays). Most rays miss most spheres, so only the cheap test "the line meets the
    sphere" runs on the whole matrix; the square roots and the nearest-hit bookkeeping run on the few
    (sphere, ray) pairs that pass it.
    """
    xp = scene.xp
    n = dirs.shape[1]
    best_t = xp.full(n, xp.inf)
    best_obj = xp.full(n, -1, dtype=xp.int64)
    if scene.n_spheres:
        # With d a unit vector: |o + t d - c|^2 = r^2  <=>  t^2 - 2 t along + c_term = 0, where
        # along = d.(c - o) and c_term = |o - c|^2 - r^2; the line meets the sphere iff along^2 > c_term.
        if origins is None:
            along = scene.eye_to_center @ dirs
            c_term = scene.to_eye_sq_minus_r2[:, None]
            # From outside, a hit ahead needs along > sqrt(c_term); from inside, every ray hits.
            pairs = xp.flatnonzero(along > scene.eye_hit_threshold[:, None])
        else:
            along = scene.sphere_centers @ dirs - _dot_rows(dirs, origins)[None, :]
            origin_rows = xp.concatenate([origins, _dot_rows(origins, origins)[None, :], xp.ones((1, n))])
            c_term = scene.sphere_aug @ origin_rows
            pairs = xp.flatnonzero(along * along > c_term)
        if pairs.shape[0]:
            sphere, ray = pairs // n, pairs % n
            a = along.ravel()[pairs]
            c = scene.to_eye_sq_minus_r2[sphere] if origins is None else c_term.ravel()[pairs]
            root = xp.sqrt(a * a - c)  # NaN for a pair that only just passed the filter: dropped below
            # The nearer root if it lies ahead, else the farther one (the ray starts inside the sphere).
            t = a - root
            t = xp.where(t > HIT_EPSILON, t, a + root)
            ahead = t > HIT_EPSILON
            sphere, ray, t = sphere[ahead], ray[ahead], t[ahead]
            _scatter_min(xp, best_t, ray, t)
            # Of the spheres at the nearest distance, the lowest index: a tie must not be settled by the
            # order of writes, which CuPy leaves undefined.
            nearest = t == best_t[ray]
            lowest = xp.full(n, scene.n_spheres, dtype=xp.int64)
            _scatter_min(xp, lowest, ray[nearest], sphere[nearest])
            best_obj = xp.where(lowest < scene.n_spheres, lowest, -1)
    if scene.plane_normals.shape[0]:
        facing = scene.plane_normals @ dirs
        if origins is None:
            height = (scene.plane_offsets - scene.plane_normals @ scene.eye)[:, None]
        else:
            height = scene.plane_offsets[:, None] - scene.plane_normals @ origins
        t = height / facing
        t = xp.where(t > HIT_EPSILON, t, xp.inf)  # behind, parallel (inf) and 0/0 (NaN) all become a miss
        nearest = xp.argmin(t, axis=0)
        plane_t = xp.min(t, axis=0)
        closer = plane_t < best_t
        best_t = xp.where(closer, plane_t, best_t)
        best_obj = xp.where(closer, nearest + scene.n_spheres, best_obj)
    return best_t, best_obj


def _scatter_min(xp: ModuleType, target: Any, index: Any, values: Any) -> None:
    """target[index] = min(target[index], values), repeated indices included (unbuffered)."""
    if xp is np:
        np.minimum.at(target, index, values)
    else:  # CuPy: an atomic scatter, available in every release that has float64 atomics
        importlib.import_module("cupyx").scatter_min(target, index, values)


def _local_shading(scene: Scene, points: Any, normals: Any, mirrored: Any, obj: Any) -> Any:
    """Colour (3, M) of each hit before reflection: ambient, Lambert and Phong over every visible light."""
    xp = scene.xp
    colors = scene.colors[:, obj]
    if scene.n_lights == 0:
        local = colors * scene.ambient[:, None]
        return xp.where(scene.emissive[obj][None, :], colors, local)
    to_light = scene.light_positions[:, :, None] - points[None, :, :]  # (L, 3, M)
    distance = xp.sqrt(_dot_rows(to_light, to_light))  # (L, M)
    to_light /= distance[:, None, :]
    lambert = _dot_rows(normals[None, :, :], to_light)  # (L, M)
    visible = lambert > 0.0
    visible &= ~_in_shadow(scene, points, to_light, distance, visible)
    lambert = xp.where(visible, lambert, 0.0)
    irradiance = scene.ambient[:, None] + scene.light_radiance.T @ lambert  # (3, L) @ (L, M)
    local = colors * irradiance
    if scene.has_specular:
        cos_r = _dot_rows(mirrored[None, :, :], to_light)
        cos_r = xp.where(visible & (cos_r > 0.0), cos_r, 0.0)
        highlight = cos_r ** scene.shininess[obj][None, :] * scene.specular[obj][None, :]
        local += scene.light_radiance.T @ highlight
    return xp.where(scene.emissive[obj][None, :], colors, local)


def _in_shadow(scene: Scene, points: Any, to_light: Any, distance: Any, candidates: Any) -> Any:
    """(L, M): whether a sphere or plane crosses the segment from each point to each light (ends trimmed).

    Only ``candidates`` (points that face the light) are tested against spheres; others come back False.
    """
    xp = scene.xp
    n_lights, m = distance.shape
    blocked = xp.zeros((n_lights, m), dtype=bool)
    if scene.n_occluders:
        # From the light towards the point each centre projects at `along`, (L, K, M). The segment comes
        # within r of a centre iff its point nearest the centre, s = clamp(along, eps, dist - eps),
        # satisfies |light + s*dir - c|^2 < r^2, i.e. s * (s - 2 along) + c_term < 0 with
        # c_term = |light - c|^2 - r^2. From a light outside the sphere that needs along > sqrt(c_term)
        # (the sphere ahead, and the line meeting it); from a light inside, any segment may.
        along = scene.light_to_occluder @ to_light
        c_terms = scene.light_occluder_c
        pairs = xp.flatnonzero(along > scene.light_occluder_threshold[:, :, None])
        if pairs.shape[0]:
            light_occluder, ray = pairs // m, pairs % m
            light, occluder = light_occluder // scene.n_occluders, light_occluder % scene.n_occluders
            facing = candidates[light, ray]
            pairs, ray, light, occluder = pairs[facing], ray[facing], light[facing], occluder[facing]
            a = along.ravel()[pairs]
            s = xp.minimum(xp.maximum(a, SHADOW_EPSILON), distance[light, ray] - SHADOW_EPSILON)
            crossing = s * (s - 2.0 * a) + c_terms[light, occluder] < 0.0
            blocked[light[crossing], ray[crossing]] = True
    if scene.plane_normals.shape[0]:
        # Opposite sides, the point clear of the plane by more than eps: the plane lies between.
        side = scene.plane_normals @ points - scene.plane_offsets[:, None]  # (P, M)
        blocked |= (side[None, :, :] * scene.light_plane_side[:, :, None] < -SHADOW_EPSILON).any(axis=1)
    return blocked


# Verify and agree --------------------------------------------------------------------------------------


def verify(inp: Input, out: Output, rng: random.Random) -> Verdict:
    """Size, a bomb-proof inflate, then ~256 pixels chosen by ``rng`` re-traced and compared.

    An image whose wrong pixels cover a fraction f of the frame passes with probability
    P[Binomial(256, f) <= 5]: about 0.6 at f = 2%, 0.01 at 5%, 3e-7 at 10%.
    """
    if (out.width, out.height) != (inp.width, inp.height):
        return Verdict.reject(
            f"image is {out.width}x{out.height}, the task asked for {inp.width}x{inp.height}"
        )
    try:
        image = decode_image(out)
    except TaskOutputError as exc:
        return Verdict.reject(exc.message)
    pixel_ids = sample_pixels(inp.width, inp.height, rng)
    cols = (pixel_ids % inp.width).astype(np.float64)
    rows = (pixel_ids // inp.width).astype(np.float64)
    expected = trace_pixels(build_scene(inp, np), cols, rows).astype(np.int16)
    got = image.reshape(-1, 3)[pixel_ids].astype(np.int16)
    mismatched = int((np.abs(expected - got).max(axis=1) > CHANNEL_TOLERANCE).sum())
    allowed = max(1, int(MAX_MISMATCH_FRACTION * len(pixel_ids)))
    if mismatched > allowed:
        return Verdict.reject(
            f"{mismatched} of {len(pixel_ids)} re-traced pixels differ by more than {CHANNEL_TOLERANCE} "
            f"(at most {allowed} allowed)"
        )
    return Verdict.accept()


def sample_pixels(width: int, height: int, rng: random.Random) -> np.ndarray:
    """Pixel indices verify re-traces: random pixels plus a few small square crops, all distinct."""
    n_pixels = width * height
    if n_pixels <= VERIFY_RANDOM_PIXELS + VERIFY_CROPS * VERIFY_CROP_SIDE**2:
        return np.arange(n_pixels)
    chosen = set(rng.sample(range(n_pixels), VERIFY_RANDOM_PIXELS))
    # A crop that lands on a locally edited patch (an object moved or removed) fails as a block of 16,
    # more than the allowance for scattered edge pixels, so it rejects on its own.
    side_x, side_y = min(VERIFY_CROP_SIDE, width), min(VERIFY_CROP_SIDE, height)
    for _ in range(VERIFY_CROPS):
        x0, y0 = rng.randrange(width - side_x + 1), rng.randrange(height - side_y + 1)
        chosen.update((y0 + dy) * width + x0 + dx for dy in range(side_y) for dx in range(side_x))
    return np.array(sorted(chosen), dtype=np.int64)


def agree(a: Output, b: Output) -> bool:
    """Same size and at least 99% of the pixels within CHANNEL_TOLERANCE in every channel."""
    if (a.width, a.height) != (b.width, b.height):
        return False
    try:
        image_a, image_b = decode_image(a), decode_image(b)
    except TaskOutputError:
        return False
    close = np.abs(image_a.astype(np.int16) - image_b.astype(np.int16)).max(axis=2) <= CHANNEL_TOLERANCE
    return bool(close.mean() >= AGREE_MIN_MATCH_FRACTION)


# Example scenes ----------------------------------------------------------------------------------------


def example(rng: random.Random, size: str = "small") -> dict[str, Any]:
    """A floor-mirror scene: spheres resting on a reflective floor, glowing shots in the air, lights above.

    small: 80x45, 1 bounce, 5 objects, 2 lights; large: 320x180, 2 bounces, 20 objects, 3 lights.
    """
    if size == "small":
        width, height, bounces, n_spheres, n_shots, n_lights = 80, 45, 1, 3, 1, 2
    elif size == "large":
        width, height, bounces, n_spheres, n_shots, n_lights = 320, 180, 2, 15, 4, 3
    else:
        raise ValueError(f"size must be 'small' or 'large', got {size!r}")

    def r3(x: float) -> float:
        return round(x, 3)

    def colour() -> list[float]:
        return [r3(rng.uniform(0.2, 1.0)) for _ in range(3)]

    spheres = []
    for _ in range(n_spheres):
        radius = rng.uniform(0.4, 1.4)
        spheres.append(
            {
                "center": [r3(rng.uniform(-7.0, 7.0)), r3(radius), r3(rng.uniform(-2.0, 10.0))],
                "radius": r3(radius),
                "color": colour(),
                "reflectivity": r3(rng.choice([0.0, 0.0, rng.uniform(0.2, 0.9)])),
                "specular": r3(rng.uniform(0.0, 0.8)),
                "shininess": float(rng.choice([8, 16, 32, 64])),
            }
        )
    shots = [
        {
            "center": [r3(rng.uniform(-5.0, 5.0)), r3(rng.uniform(1.0, 3.0)), r3(rng.uniform(-1.0, 8.0))],
            "radius": r3(rng.uniform(0.1, 0.25)),
            "emission": [r3(rng.uniform(1.0, 4.0)), r3(rng.uniform(0.3, 2.0)), r3(rng.uniform(0.0, 0.5))],
        }
        for _ in range(n_shots)
    ]
    lights = [
        {
            "position": [r3(rng.uniform(-8.0, 8.0)), r3(rng.uniform(6.0, 10.0)), r3(rng.uniform(-6.0, 4.0))],
            "color": [1.0, r3(rng.uniform(0.85, 1.0)), r3(rng.uniform(0.7, 1.0))],
            "intensity": r3(rng.uniform(0.9, 1.3) / n_lights),
        }
        for _ in range(n_lights)
    ]
    return {
        "camera": {
            "position": [0.0, 3.0, -12.0],
            "look_at": [0.0, 1.0, 2.0],
            "up": [0.0, 1.0, 0.0],
            "fov_deg": 60.0,
        },
        "width": width,
        "height": height,
        "max_bounces": bounces,
        "ambient": [0.08, 0.08, 0.1],
        "background": [0.1, 0.12, 0.2],
        "lights": lights,
        "spheres": spheres,
        "planes": [
            {
                "point": [0.0, 0.0, 0.0],
                "normal": [0.0, 1.0, 0.0],
                "color": [0.7, 0.7, 0.75],
                "reflectivity": 0.35,
            }
        ],
        "projectiles": shots,
    }


# Scalar reference --------------------------------------------------------------------------------------


def trace_pixel_reference(inp: Input, col: int, row: int) -> tuple[int, int, int]:
    """The same model, one pixel, in plain Python floats and written independently of the array code.

    Not used on the wire: the tests compare it with the vectorised tracer, and the benchmark times it as the
    naive baseline.
    """
    cam = inp.camera
    forward = _normalize(_sub(cam.look_at, cam.position))
    right = _normalize(_cross(forward, _normalize(cam.up)))
    up = _cross(right, forward)
    half_h = math.tan(math.radians(cam.fov_deg) / 2.0)
    half_w = half_h * inp.width / inp.height
    u = (2.0 * (col + 0.5) / inp.width - 1.0) * half_w
    v = (1.0 - 2.0 * (row + 0.5) / inp.height) * half_h
    direction = _normalize(_add(forward, _add(_scale(right, u), _scale(up, v))))
    r, g, b = (
        int(math.floor(min(max(c, 0.0), 1.0) * 255.0 + 0.5))
        for c in _reference_radiance(inp, cam.position, direction, 0)
    )
    return r, g, b


def _reference_radiance(inp: Input, origin: Vec3, direction: Vec3, depth: int) -> Vec3:
    t_min = HIT_EPSILON
    nearest_t, nearest = math.inf, None
    for body in (*inp.spheres, *inp.projectiles):
        t = _reference_sphere_hit(origin, direction, body.center, body.radius, t_min)
        if t < nearest_t:
            nearest_t, nearest = t, body
    for plane in inp.planes:
        n = _normalize(plane.normal)
        denom = _dot(direction, n)
        if denom != 0.0:
            t = (_dot(n, plane.point) - _dot(n, origin)) / denom
            if t_min < t < nearest_t:
                nearest_t, nearest = t, plane
    if nearest is None:
        return inp.background
    if isinstance(nearest, Projectile):
        return nearest.emission
    point = _add(origin, _scale(direction, nearest_t))
    if isinstance(nearest, Plane):
        normal = _normalize(nearest.normal)
    else:
        normal = _scale(_sub(point, nearest.center), 1.0 / nearest.radius)
    if _dot(normal, direction) > 0.0:
        normal = _scale(normal, -1.0)
    mirrored = _add(direction, _scale(normal, -2.0 * _dot(direction, normal)))
    irradiance = list(inp.ambient)
    highlight = [0.0, 0.0, 0.0]
    for light in inp.lights:
        to_light = _sub(light.position, point)
        distance = _length(to_light)
        to_light = _scale(to_light, 1.0 / distance)
        lambert = _dot(normal, to_light)
        if lambert <= 0.0 or _reference_blocked(inp, point, light.position, distance):
            continue
        spec = nearest.specular * max(_dot(mirrored, to_light), 0.0) ** nearest.shininess
        for i in range(3):
            radiance = light.color[i] * light.intensity
            irradiance[i] += lambert * radiance
            highlight[i] += spec * radiance
    local = _add(
        _mul(nearest.color, (irradiance[0], irradiance[1], irradiance[2])),
        (highlight[0], highlight[1], highlight[2]),
    )
    if depth == inp.max_bounces or nearest.reflectivity == 0.0:
        return local
    k = nearest.reflectivity
    start = _add(point, _scale(normal, HIT_EPSILON))
    seen = _reference_radiance(inp, start, mirrored, depth + 1)
    return _add(_scale(local, 1.0 - k), _scale(seen, k))


def _reference_sphere_hit(origin: Vec3, direction: Vec3, center: Vec3, radius: float, t_min: float) -> float:
    oc = _sub(origin, center)
    b = _dot(oc, direction)
    c = _dot(oc, oc) - radius * radius
    disc = b * b - c
    if disc < 0.0:
        return math.inf
    root = math.sqrt(disc)
    for t in (-b - root, -b + root):
        if t > t_min:
            return t
    return math.inf


def _reference_blocked(inp: Input, point: Vec3, light: Vec3, distance: float) -> bool:
    direction = _scale(_sub(point, light), 1.0 / distance)  # from the light, like the array code
    for sphere in inp.spheres:
        oc = _sub(light, sphere.center)
        b = _dot(oc, direction)
        disc = b * b - (_dot(oc, oc) - sphere.radius**2)
        if disc <= 0.0:
            continue
        root = math.sqrt(disc)
        near, far = -b - root, -b + root
        if near < distance - SHADOW_EPSILON and far > SHADOW_EPSILON:
            return True
    for plane in inp.planes:
        n = _normalize(plane.normal)
        offset = _dot(n, plane.point)
        light_side = _dot(n, light) - offset
        point_side = _dot(n, point) - offset
        if (
            light_side * point_side < 0.0
            and abs(point_side) > SHADOW_EPSILON
            and abs(light_side) > SHADOW_EPSILON
        ):
            return True
    return False


# Small 3-vector helpers on tuples ----------------------------------------------------------------------


def _add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _mul(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] * b[0], a[1] * b[1], a[2] * b[2])


def _scale(a: Vec3, s: float) -> Vec3:
    return (a[0] * s, a[1] * s, a[2] * s)


def _sub(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _length(a: Vec3) -> float:
    return math.sqrt(_dot(a, a))


def _normalize(a: Any) -> Vec3:
    length = _length(a)
    return (a[0] / length, a[1] / length, a[2] / length)
