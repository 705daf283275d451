"""Synthetic indoor scenes ray-cast from a small 3D description, written as NYUv2 and COCO data sets.

Each scene is a room (a box: floor, ceiling, four walls; 3-8 m wide and deep) seen by a pinhole camera
standing inside it, with a few objects on the floor (yaw-rotated boxes, spheres, vertical cylinders; some
stacked on a box, some spheres floating), procedural textures (checker, stripes, planks, smooth noise),
Lambertian shading from one or two point lights plus ambient light, and hard shadows. Rendering gives:

* an RGB image (uint8),
* metric depth in metres, the z-distance along the optical axis as NYUv2 stores it, with invalid (0)
  pixels where NYUv2 has them: through windows, in small "sensor holes" and beyond ``max_depth``,
* per-object visibility masks with classes (``SCENE_CLASS_NAMES``) and tight boxes.

Everything is deterministic from the seed (`numpy.random.Generator`); the 3D layout does not depend on the
image size, so one seed rendered at two sizes shows the same scene. All rays of an image are cast at once
with vectorised float32 numpy (analytic ray/plane, sphere, cylinder and slab intersections); each object
only tests the rays inside its projected bounding rectangle. The data set writers reuse
`ait_hf.data.synthetic.write_nyu_split` / `write_coco_split`, so the real loaders read the output.

The same scene index feeds both layouts ("joint" data): NYUv2 train pair ``rgb_{i+1:05d}`` and COCO
train2017 image id ``i + 1`` show the same scene, as do NYUv2 test and COCO val2017. Command line::

    python -m ait_hf.data.scenes --out DIR --nyu-train 2000 --nyu-test 200 --coco-train 2000 \
        --coco-val 200 --size 192 --seed 0
"""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import functools
import math
import multiprocessing
import multiprocessing.pool
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .synthetic import CocoImage, CocoInstance, NYUSample, write_coco_split, write_nyu_split

SCENE_CLASS_NAMES: tuple[str, ...] = ("box", "sphere", "cylinder")
# COCO category entries (id, name, supercategory); ids 1..K map to contiguous labels 0..K-1 in the loader.
SCENE_CATEGORIES: tuple[tuple[int, str, str], ...] = tuple(
    (label + 1, name, "shape") for label, name in enumerate(SCENE_CLASS_NAMES)
)
# Pixel value of `SyntheticScene.object_ids` for room surfaces (floor, ceiling, walls, windows).
ROOM = -1

Shape = Literal["box", "sphere", "cylinder"]
Pattern = Literal["plain", "checker", "stripes", "noise"]
SceneSeed = int | Sequence[int] | np.random.SeedSequence

_FLOOR, _CEILING = 0, 1  # room face ids; walls: 2 (x = 0), 3 (x = width), 4 (z = 0), 5 (z = length)
_FIRST_OBJECT = 6  # surface id of object k is _FIRST_OBJECT + k
_SPLIT_CODES = {"train": 0, "test": 1, "val": 1}  # NYUv2 test and COCO val share their scenes
_NYU_SCENES_PER_FOLDER = 1000
_NYU_PAIRS_PER_CHUNK = 256  # pairs held in memory before they are written


def scene_id2label() -> dict[int, str]:
    """``{label: class name}`` of the scene objects (for ``config.id2label``)."""
    return dict(enumerate(SCENE_CLASS_NAMES))


def scene_seed(seed: int, split: str, index: int) -> tuple[int, int, int]:
    """Seed of scene ``index`` of a split of the data set seeded ``seed``; NYUv2 "test" equals COCO "val"."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    return (int(seed), _SPLIT_CODES[split], int(index))


# ------------------------------------------------------------------------------------ scene description


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene distribution (the defaults give NYUv2-like indoor views)."""

    min_objects: int = 2
    max_objects: int = 8
    # Fraction of the image an object must cover to count as an instance (also at least 4 pixels).
    min_instance_area: float = 0.0015
    max_depth: float = 10.0  # metres; farther surfaces get depth 0 (invalid), as NYUv2's sensor range
    shadows: bool = True
    windows: bool = True  # windows on walls: bright image, depth 0
    sensor_holes: bool = True  # a few small blobs of depth 0
    noise_std: float = 2.0  # image noise (uniform, this standard deviation), in 8-bit units
    # Horizontal field of view range, degrees. NYUv2's Kinect (fx = 518.9 px at 640 px) sees 63.3 degrees;
    # one fixed camera, as there, keeps metric depth inferable from the image.
    horizontal_fov: tuple[float, float] = (63.3, 63.3)
    # Room extents (metres) and camera pose ranges: narrow them for an easier world (fewer degrees of freedom
    # between the image and metric depth). A (value, value) range fixes the quantity; the random draws stay the
    # same, so the other properties of a seed's scene do not change.
    room_width: tuple[float, float] = (3.0, 8.0)
    room_height: tuple[float, float] = (2.4, 3.2)
    room_length: tuple[float, float] = (3.0, 8.0)
    camera_height: tuple[float, float] = (
        1.0,
        1.7,
    )  # metres above the floor, also at most 0.5 below the ceiling
    camera_yaw: tuple[float, float] = (-0.6, 0.6)  # radians, 0 = looking along +z across the room
    camera_pitch: tuple[float, float] = (-0.45, -0.05)  # radians, negative = looking down
    camera_roll: tuple[float, float] = (-0.06, 0.06)  # radians

    def __post_init__(self) -> None:
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 0 <= min_objects <= max_objects, got {self.min_objects} and {self.max_objects}"
            )
        if not 10 <= self.horizontal_fov[0] <= self.horizontal_fov[1] <= 150:
            raise ValueError(
                f"horizontal_fov must be (low, high) degrees in [10, 150], got {self.horizontal_fov}"
            )
        if self.max_depth <= 0:
            raise ValueError(f"max_depth must be positive, got {self.max_depth}")
        for name in ("room_width", "room_height", "room_length", "camera_height", "camera_yaw", "camera_pitch",
                     "camera_roll"):  # fmt: skip
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(
                    f"SceneConfig.{name} must be (low, high) with low <= high, got {(low, high)}"
                )
        if self.room_width[0] < 3.0 or self.room_length[0] < 3.0 or self.room_height[0] < 2.4:
            # object placement and the camera's distance from the wall are tuned for rooms at least this big
            raise ValueError(
                f"rooms must be at least 3.0 x 2.4 x 3.0 m (width x height x length), got minimums "
                f"{self.room_width[0]} x {self.room_height[0]} x {self.room_length[0]}"
            )
        if not 0 < self.camera_height[0] <= self.room_height[0] - 0.5:
            raise ValueError(
                f"camera_height starts at {self.camera_height[0]}: it must be in (0, lowest ceiling - 0.5 m ="
                f" {self.room_height[0] - 0.5}]"
            )


@dataclass(frozen=True)
class Texture:
    """A procedural texture: ``pattern`` mixes ``colour`` and ``second_colour`` (linear RGB in [0, 1])."""

    pattern: Pattern
    colour: tuple[float, float, float]
    second_colour: tuple[float, float, float]
    scale: float  # metres per checker cell / stripe
    offset: tuple[float, float, float]  # shifts the pattern (metres), so cell edges avoid faces
    frequencies: tuple[tuple[float, float, float], ...]  # smooth-noise wave vectors (rad/m)
    phases: tuple[float, ...]


@dataclass(frozen=True)
class SceneCamera:
    """Pinhole camera: pixel (col, row) looks along ``rotation @ ((col+.5-cx)/f, -(row+.5-cy)/f, 1)``.

    ``rotation`` is world-from-camera; its columns are the camera's right, up and forward axes in world
    coordinates (world: y up, floor at y = 0). A ray parameter t along that direction is the z-depth.
    """

    focal: float  # pixels
    principal_point: tuple[float, float]  # (cx, cy) pixels
    rotation: np.ndarray  # (3, 3)
    position: np.ndarray  # (3,)

    def pixel_directions(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World directions (x, y, z components, each (H, W) float32) of the pixel centres' rays."""
        cx, cy = self.principal_point
        x = ((np.arange(width, dtype=np.float32) + 0.5 - cx) / self.focal)[None, :]
        y = (-(np.arange(height, dtype=np.float32) + 0.5 - cy) / self.focal)[:, None]
        r = self.rotation.astype(np.float32)
        return tuple(r[i, 0] * x + r[i, 1] * y + r[i, 2] for i in range(3))  # type: ignore[return-value]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel coordinates (col, row) and z-depth of world points (N, 3)."""
        local = (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation
        z = local[:, 2]
        cx, cy = self.principal_point
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.focal * local[:, 0] / z + cx, -self.focal * local[:, 1] / z + cy, z


@dataclass(frozen=True)
class SceneObject:
    """One object. ``center`` is the centre of its bounding box; ``size`` its full extents along its own
    x, y (up) and z axes; it is rotated by ``yaw`` (radians) about the vertical axis. A sphere has equal
    extents (the diameter), a cylinder equal x and z extents (the diameter) and its height along y."""

    shape: Shape
    center: np.ndarray  # (3,)
    size: np.ndarray  # (3,)
    yaw: float
    texture: Texture

    @property
    def label(self) -> int:
        return SCENE_CLASS_NAMES.index(self.shape)

    @property
    def bounding_radius(self) -> float:
        """Radius of a sphere about ``center`` that holds the object."""
        half = [float(v) / 2 for v in self.size]
        if self.shape == "sphere":
            return half[0]
        if self.shape == "cylinder":
            return math.hypot(half[0], half[1])
        return math.sqrt(half[0] ** 2 + half[1] ** 2 + half[2] ** 2)

    def to_local(self, x: Any, y: Any, z: Any, is_direction: bool = False) -> tuple[Any, Any, Any]:
        """World coordinates (points or directions, scalars or arrays) in the object's frame."""
        if not is_direction:
            cx, cy, cz = (float(v) for v in self.center)  # Python floats keep float32 arrays float32
            x, y, z = x - cx, y - cy, z - cz
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return c * x - s * z, y, s * x + c * z

    def to_world_direction(self, x: Any, y: Any, z: Any) -> tuple[Any, Any, Any]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return c * x + s * z, y, -s * x + c * z

    def ray_interval(
        self, origin: Sequence[Any], direction: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Entry and exit parameters t of rays ``origin + t * direction`` through the object (solid).

        ``origin`` and ``direction`` are (x, y, z) triples of scalars or broadcastable arrays; a ray that
        misses has entry > exit. Works for primary rays (one origin) and shadow rays (one per pixel).
        """
        ox, oy, oz = self.to_local(*origin)
        dx, dy, dz = self.to_local(*direction, is_direction=True)
        half = [float(v) / 2 for v in self.size]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.shape == "sphere":
                radius = half[0]
                a = dx * dx + dy * dy + dz * dz
                b = dx * ox + dy * oy + dz * oz
                # b^2 - a c written as a r^2 - |d x o|^2: no cancellation of large terms in float32.
                cx, cy, cz = dy * oz - dz * oy, dz * ox - dx * oz, dx * oy - dy * ox
                return _quadratic_interval(a, b, a * (radius * radius) - (cx * cx + cy * cy + cz * cz))
            if self.shape == "cylinder":
                radius = half[0]
                a = np.maximum(dx * dx + dz * dz, 1e-12)
                b = dx * ox + dz * oz
                cross = dx * oz - dz * ox
                enter, leave = _quadratic_interval(a, b, a * (radius * radius) - cross * cross)
                y_enter, y_leave = _slab(oy, dy, half[1])
                return np.maximum(enter, y_enter), np.minimum(leave, y_leave)
            # Box: the slab method in the object's frame.
            x_enter, x_leave = _slab(ox, dx, half[0])
            y_enter, y_leave = _slab(oy, dy, half[1])
            z_enter, z_leave = _slab(oz, dz, half[2])
            return (
                np.maximum(np.maximum(x_enter, y_enter), z_enter),
                np.minimum(np.minimum(x_leave, y_leave), z_leave),
            )

    def surface_normals(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Outward unit normals (world) at surface points given by world coordinate arrays."""
        lx, ly, lz = self.to_local(x, y, z)
        half = [float(v) / 2 for v in self.size]
        if self.shape == "sphere":
            return self.to_world_direction(lx / half[0], ly / half[0], lz / half[0])
        if self.shape == "cylinder":
            radial = np.sqrt(lx * lx + lz * lz)
            on_side = np.abs(radial - half[0]) < half[1] - np.abs(ly)
            safe = np.maximum(radial, 1e-6)
            nx = np.where(on_side, lx / safe, 0.0)
            ny = np.where(on_side, 0.0, np.sign(ly))
            nz = np.where(on_side, lz / safe, 0.0)
            return self.to_world_direction(nx, ny, nz)
        ratios = np.stack([np.abs(lx) / half[0], np.abs(ly) / half[1], np.abs(lz) / half[2]])
        axis = np.argmax(ratios, axis=0)
        nx = np.where(axis == 0, np.sign(lx), 0.0)
        ny = np.where(axis == 1, np.sign(ly), 0.0)
        nz = np.where(axis == 2, np.sign(lz), 0.0)
        return self.to_world_direction(nx, ny, nz)


@dataclass(frozen=True)
class Window:
    """A window on wall ``face`` (2: x = 0, 3: x = width, 5: z = length): a rectangle in the wall's
    (horizontal, vertical) coordinates, metres."""

    face: int
    horizontal: tuple[float, float]
    vertical: tuple[float, float]


@dataclass(frozen=True)
class SceneLayout:
    """The full 3D description of a scene (independent of the image size)."""

    room_size: np.ndarray  # (width along x, height along y, length along z), metres
    camera_pose: tuple[np.ndarray, np.ndarray]  # world-from-camera rotation (3, 3), position (3,)
    horizontal_fov: float  # radians
    objects: tuple[SceneObject, ...]
    lights: tuple[tuple[np.ndarray, np.ndarray], ...]  # (position (3,), linear RGB intensity (3,))
    ambient: float
    floor_texture: Texture
    wall_texture: Texture
    ceiling_texture: Texture
    floor_planks: bool
    baseboard_colour: tuple[float, float, float]
    windows: tuple[Window, ...]
    sky_colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    # Depth holes: ellipses (centre row, centre column, radius along rows, along columns) as image fractions.
    sensor_holes: tuple[tuple[float, float, float, float], ...]

    def camera(self, height: int, width: int) -> SceneCamera:
        focal = width / (2 * math.tan(self.horizontal_fov / 2))
        rotation, position = self.camera_pose
        return SceneCamera(focal, (width / 2, height / 2), rotation, position)


@dataclass
class SyntheticScene:
    """A rendered scene: image, metric depth, instances and the description that produced them."""

    image: np.ndarray  # uint8 (H, W, 3)
    depth: np.ndarray  # float32 (H, W), metres, 0 = invalid
    instance_masks: np.ndarray  # bool (N, H, W): visible pixels of each instance
    labels: np.ndarray  # int64 (N,), indices into SCENE_CLASS_NAMES
    boxes: np.ndarray  # float32 (N, 4), tight xyxy pixel boxes of the masks (x1, y1 exclusive)
    object_indices: np.ndarray  # int64 (N,), index in `layout.objects` of each instance
    object_ids: np.ndarray  # int16 (H, W), index of the object seen at each pixel, ROOM (-1) for the room
    camera: SceneCamera
    layout: SceneLayout
    class_names: tuple[str, ...] = field(default=SCENE_CLASS_NAMES)


# ------------------------------------------------------------------------------------ geometry helpers


def _quadratic_interval(a: Any, b: Any, disc: Any) -> tuple[np.ndarray, np.ndarray]:
    """Roots of a t^2 + 2 b t + c = 0 given ``disc`` = b^2 - a c, as (smaller, larger); (inf, -inf) where
    there is none."""
    root = np.sqrt(np.maximum(disc, 0))
    hit = disc >= 0
    enter = np.where(hit, (-b - root) / a, np.inf)
    leave = np.where(hit, (-b + root) / a, -np.inf)
    return enter, leave


def _slab(origin: Any, direction: Any, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval of t where ``origin + t * direction`` lies in [-half, half] (a zero direction gives
    (-inf, inf) inside the slab and (inf, -inf) or (-inf, -inf) outside, both empty)."""
    inverse = 1 / direction
    first, second = (-half - origin) * inverse, (half - origin) * inverse
    return np.minimum(first, second), np.maximum(first, second)


def _hash01(values: np.ndarray) -> np.ndarray:
    """A cheap deterministic pseudo-random value in [0, 1) per integer (plank and tile shading)."""
    product = np.sin(values.astype(np.float32) * np.float32(12.9898)) * np.float32(43758.547)
    return product - np.floor(product)


def _texture_albedo(texture: Texture, u: np.ndarray, v: np.ndarray, w: Any) -> np.ndarray:
    """Albedo (N, 3) of a texture at coordinates (u, v, w) (metres, 1-D float32 arrays or a scalar w)."""
    u, v, w = u + texture.offset[0], v + texture.offset[1], w + texture.offset[2]
    grain = np.zeros(np.broadcast(u, v, w).shape, dtype=np.float32)  # smooth variation: a few waves
    for (fu, fv, fw), phase in zip(texture.frequencies, texture.phases):
        grain += np.sin(fu * u + fv * v + fw * w + phase)
    grain *= 0.5 / max(len(texture.frequencies), 1)  # in [-0.5, 0.5]
    colours = np.array([texture.colour, texture.second_colour], dtype=np.float32)
    if texture.pattern == "noise":  # the two colours blended by the smooth variation
        albedo = colours[0] + (grain + 0.5)[:, None] * (colours[1] - colours[0])
        return albedo
    if texture.pattern == "checker":
        cells = np.floor(u / texture.scale) + np.floor(v / texture.scale) + np.floor(w / texture.scale)
        albedo = colours[cells.astype(np.int64) & 1]
    elif texture.pattern == "stripes":
        albedo = colours[np.floor(v / texture.scale).astype(np.int64) & 1]
    else:
        albedo = np.broadcast_to(colours[0], (grain.size, 3))
    return albedo * (1 + 0.15 * grain)[:, None]


# ------------------------------------------------------------------------------------- scene sampling


def _choose(rng: np.random.Generator, weights: Sequence[float]) -> int:
    """Index drawn with the given (unnormalised) weights; plain Python, as ``rng.choice(p=...)`` is slow."""
    threshold = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        threshold -= weight
        if threshold < 0:
            return index
    return len(weights) - 1


def _random_colour(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> tuple[float, float, float]:
    """A random colour in linear RGB (HSV drawn in sRGB-like space, then gamma 2.2)."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return (rgb[0] ** 2.2, rgb[1] ** 2.2, rgb[2] ** 2.2)


def _random_texture(
    rng: np.random.Generator,
    patterns: Sequence[Pattern],
    weights: Sequence[float],
    saturation: tuple[float, float],
    value: tuple[float, float],
    scale: tuple[float, float],
) -> Texture:
    pattern = patterns[_choose(rng, weights)]
    colour = _random_colour(rng, saturation, value)
    if rng.random() < 0.5:  # a darker shade of the same colour
        factor = rng.uniform(0.25, 0.6)
        second = (colour[0] * factor, colour[1] * factor, colour[2] * factor)
    else:
        second = _random_colour(rng, saturation, value)
    frequencies = rng.normal(0, 6, (2, 3)).tolist()
    return Texture(
        pattern,
        colour,
        second,
        rng.uniform(*scale),
        tuple(rng.random(3).tolist()),
        tuple(tuple(f) for f in frequencies),
        tuple(rng.uniform(0, 2 * np.pi, 2).tolist()),
    )


def _object_texture(rng: np.random.Generator) -> Texture:
    return _random_texture(
        rng, ("plain", "checker", "stripes", "noise"), (0.35, 0.25, 0.25, 0.15), (0.3, 0.9), (0.35, 0.95),
        (0.06, 0.2),
    )  # fmt: skip


def _camera_pose(
    rng: np.random.Generator, room: np.ndarray, config: SceneConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """A hand-held camera near the z = 0 wall looking across the room (slightly down), and its yaw."""
    width, height, length = room
    low, high = config.camera_height
    position = np.array(
        [
            rng.uniform(0.3, 0.7) * width,
            rng.uniform(low, max(low, min(high, height - 0.5))),
            rng.uniform(0.3, min(1.2, 0.3 * length)),
        ]
    )
    yaw = rng.uniform(*config.camera_yaw)
    pitch = rng.uniform(*config.camera_pitch)
    roll = rng.uniform(*config.camera_roll)
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    right, up = math.cos(roll) * right + math.sin(roll) * up, -math.sin(roll) * right + math.cos(roll) * up
    return np.stack([right, up, forward], axis=1), position, yaw


def _footprint_free(x: float, z: float, radius: float, placed: list[tuple[float, float, float]]) -> bool:
    return all((x - px) ** 2 + (z - pz) ** 2 > (radius + pr + 0.05) ** 2 for px, pz, pr in placed)


def _sample_objects(
    rng: np.random.Generator,
    room: np.ndarray,
    camera_position: np.ndarray,
    camera_yaw: float,
    horizontal_fov: float,
    count: int,
) -> tuple[SceneObject, ...]:
    """Objects resting on the floor, most of them in the camera's view; some stacked or floating."""
    width, height, length = room
    objects: list[SceneObject] = []
    footprints: list[tuple[float, float, float]] = [(camera_position[0], camera_position[2], 0.6)]
    supports: list[SceneObject] = []  # boxes that may carry one more object
    for _ in range(count):
        shape: Shape = ("box", "sphere", "cylinder")[_choose(rng, (0.45, 0.25, 0.3))]
        texture = _object_texture(rng)
        yaw = float(rng.uniform(0, np.pi))
        if shape == "box":
            size = np.array([rng.uniform(0.25, 1.4), rng.uniform(0.25, 1.1), rng.uniform(0.25, 1.2)])
        elif shape == "sphere":
            size = np.full(3, 2 * rng.uniform(0.12, 0.45))
        else:
            diameter = 2 * rng.uniform(0.08, 0.4)
            size = np.array([diameter, rng.uniform(0.25, 1.4), diameter])

        if supports and rng.random() < 0.25:  # stacked on a box: small enough to fit on its top
            base = supports.pop(int(rng.integers(len(supports))))
            top_extent = min(base.size[0], base.size[2])
            size = size * min(1.0, 0.8 * top_extent / max(size[0], size[2]))
            size[1] = min(size[1], 0.6)
            if shape == "sphere":
                size[:] = min(size)
            shift = rng.uniform(-0.5, 0.5, 2) * np.array([base.size[0] - size[0], base.size[2] - size[2]]) / 2
            local = np.array([shift[0], 0.0, shift[1]])
            cx, _, cz = base.to_world_direction(*local)
            center = np.array([base.center[0] + cx, base.center[1] + base.size[1] / 2 + size[1] / 2,
                               base.center[2] + cz])  # fmt: skip
            objects.append(SceneObject(shape, center, size, yaw, texture))
            continue

        radius = float(np.hypot(size[0], size[2]) / 2)
        for _attempt in range(20):
            if rng.random() < 0.8:  # in view: a direction inside the horizontal field of view
                angle = camera_yaw + rng.uniform(-0.45, 0.45) * horizontal_fov
                distance = rng.uniform(1.0, 6.0) + radius
                x = camera_position[0] + distance * math.sin(angle)
                z = camera_position[2] + distance * math.cos(angle)
            else:
                x, z = rng.uniform(0, width), rng.uniform(0, length)
            if (
                radius + 0.02 < x < width - radius - 0.02
                and radius + 0.02 < z < length - radius - 0.02
                and _footprint_free(x, z, radius, footprints)
            ):
                break
        else:
            continue
        footprints.append((x, z, radius))
        floating = shape == "sphere" and rng.random() < 0.15
        if floating:
            y = rng.uniform(1.0, max(1.0, height - 0.6 - size[1] / 2))
        else:
            y = size[1] / 2
        obj = SceneObject(shape, np.array([x, y, z]), size, yaw, texture)
        objects.append(obj)
        if shape == "box" and size[1] < 1.0 and min(size[0], size[2]) > 0.3:
            supports.append(obj)
    return tuple(objects)


def sample_layout(seed: SceneSeed, config: SceneConfig | None = None) -> SceneLayout:
    """The 3D description of scene ``seed``: room, camera, objects, lights, textures, windows, holes."""
    config = config or SceneConfig()
    rng = np.random.default_rng(seed)
    room = np.array(
        [rng.uniform(*config.room_width), rng.uniform(*config.room_height), rng.uniform(*config.room_length)]
    )
    rotation, position, camera_yaw = _camera_pose(rng, room, config)
    horizontal_fov = math.radians(rng.uniform(*config.horizontal_fov))
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    objects = _sample_objects(rng, room, position, camera_yaw, horizontal_fov, count)

    lights = []
    for _ in range(int(rng.integers(1, 3))):
        light_position = np.array(
            [
                rng.uniform(0.15, 0.85) * room[0],
                room[1] - rng.uniform(0.1, 0.4),
                rng.uniform(0.15, 0.85) * room[2],
            ]
        )
        tint = np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0)])  # warm-ish white
        lights.append((light_position, tint * rng.uniform(2.0, 5.0)))
    ambient = float(rng.uniform(0.15, 0.35))

    floor_planks = rng.random() < 0.35
    floor_texture = _random_texture(
        rng, ("plain", "checker", "noise"), (0.2, 0.5, 0.3), (0.1, 0.6), (0.25, 0.8), (0.15, 0.7)
    )
    wall_texture = _random_texture(
        rng, ("plain", "stripes", "noise"), (0.45, 0.3, 0.25), (0.0, 0.35), (0.55, 0.95), (0.08, 0.4)
    )
    ceiling_texture = _random_texture(rng, ("plain",), (1.0,), (0.0, 0.1), (0.8, 0.95), (1.0, 1.0))
    baseboard_colour = _random_colour(rng, (0.0, 0.2), (0.3, 0.95))

    windows = []
    if config.windows:
        for _ in range(_choose(rng, (0.35, 0.45, 0.2))):
            face = (2, 3, 5)[int(rng.integers(3))]
            wall_length = room[0] if face == 5 else room[2]
            window_width = rng.uniform(0.6, min(2.0, 0.6 * wall_length))
            start = rng.uniform(0.1, wall_length - window_width - 0.1)
            bottom = rng.uniform(0.7, 1.1)
            top = min(bottom + rng.uniform(0.7, 1.4), room[1] - 0.15)
            windows.append(Window(face, (start, start + window_width), (bottom, top)))
    sky = _random_colour(rng, (0.1, 0.4), (0.85, 1.0))
    sky_colours = (sky, tuple(min(1.0, c * 1.3 + 0.1) for c in sky))

    holes = []
    if config.sensor_holes:
        for _ in range(int(rng.integers(0, 6))):
            holes.append(
                (float(rng.random()), float(rng.random()), float(rng.uniform(0.005, 0.03)),
                 float(rng.uniform(0.005, 0.03)))
            )  # fmt: skip
    return SceneLayout(
        room, (rotation, position), horizontal_fov, objects, tuple(lights), ambient, floor_texture,
        wall_texture, ceiling_texture, floor_planks, baseboard_colour, tuple(windows), sky_colours,
        tuple(holes),
    )  # fmt: skip


# -------------------------------------------------------------------------------------------- rendering


def _pixel_rectangle(
    camera: SceneCamera, obj: SceneObject, height: int, width: int
) -> tuple[slice, slice] | None:
    """Rows and columns that can see ``obj`` (from its projected bounding box), or None if off-screen."""
    corners = obj.center + obj.bounding_radius * np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    )
    cols, rows, z = camera.project(corners)
    if (z <= 0.05).any():  # the box around the object reaches behind the camera: test every pixel
        return slice(0, height), slice(0, width)
    r0, r1 = max(int(math.floor(rows.min())) - 1, 0), min(int(math.ceil(rows.max())) + 1, height)
    c0, c1 = max(int(math.floor(cols.min())) - 1, 0), min(int(math.ceil(cols.max())) + 1, width)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _room_hits(
    room: np.ndarray, origin: np.ndarray, d: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter and face id (0..5) where rays from inside the room leave it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        # A zero direction component never reaches that axis' walls (t = +inf; dividing would give -inf).
        tx, ty, tz = (
            np.where(
                d[i] != 0,
                np.where(d[i] > 0, room[i] - origin[i], -origin[i]).astype(np.float32) / d[i],
                np.inf,
            )
            for i in range(3)
        )
    t = np.minimum(np.minimum(tx, ty), tz)
    face = np.where(
        (tx <= ty) & (tx <= tz),
        2 + (d[0] > 0),
        np.where(ty <= tz, _FLOOR + (d[1] > 0), 4 + (d[2] > 0)),
    ).astype(np.int16)
    return t, face


def _room_albedo(
    layout: SceneLayout,
    surface: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    albedo: np.ndarray,
) -> np.ndarray:
    """Write the albedo of the room's pixels (planar textures) into ``albedo`` (H*W, 3); return the flat
    indices of the window panes. Flat integer indices: much faster than boolean masks in numpy."""
    floor = np.flatnonzero(surface == _FLOOR)
    if floor.size:
        fx, fz = px[floor], pz[floor]
        floor_albedo = _texture_albedo(layout.floor_texture, fx, fz, 0.0)
        if layout.floor_planks:  # wooden planks along z, staggered, each with its own brightness
            plank_width = layout.floor_texture.scale * 0.4
            column = np.floor(fx / plank_width)
            plank = column * 7 + np.floor((fz + 1.3 * column) / 1.2)
            floor_albedo = floor_albedo * (0.75 + 0.4 * _hash01(plank))[:, None]
        albedo[floor] = floor_albedo
    ceiling = np.flatnonzero(surface == _CEILING)
    if ceiling.size:
        albedo[ceiling] = _texture_albedo(layout.ceiling_texture, px[ceiling], pz[ceiling], 0.0)
    walls = np.flatnonzero((surface >= 2) & (surface < _FIRST_OBJECT))
    if not walls.size:
        return walls
    wall_face = surface[walls]
    # Horizontal coordinate along each wall: z on the x walls, x on the z walls.
    along = np.where(wall_face <= 3, pz[walls], px[walls])
    up = py[walls]
    # Stripes vary along the second coordinate: vertical wallpaper stripes.
    wall_albedo = _texture_albedo(layout.wall_texture, up, along, wall_face.astype(np.float32) * 3.1)
    wall_albedo[up < 0.09] = layout.baseboard_colour
    pane = np.zeros(wall_face.size, dtype=bool)
    for spec in layout.windows:
        (left, right), (bottom, top) = spec.horizontal, spec.vertical
        near = (
            (wall_face == spec.face)
            & (along > left - 0.06)
            & (along < right + 0.06)
            & (up > bottom - 0.06)
            & (up < top + 0.06)
        )
        inside = near & (along > left) & (along < right) & (up > bottom) & (up < top)
        wall_albedo[near & ~inside] = 0.8  # the frame
        pane |= inside
    albedo[walls] = wall_albedo
    return walls[pane]


def _render(
    layout: SceneLayout, height: int, width: int, config: SceneConfig, rng: np.random.Generator
) -> SyntheticScene:
    camera = layout.camera(height, width)
    origin = [float(v) for v in camera.position]
    d = camera.pixel_directions(height, width)
    t, surface = _room_hits(layout.room_size, origin, d)

    # Primary visibility: each object tests only the rays inside its projected rectangle.
    rectangles: list[tuple[slice, slice] | None] = []
    for index, obj in enumerate(layout.objects):
        rect = _pixel_rectangle(camera, obj, height, width)
        rectangles.append(rect)
        if rect is None:
            continue
        enter, leave = obj.ray_interval(origin, [component[rect] for component in d])
        closer = (enter <= leave) & (enter > 0) & (enter < t[rect])
        t[rect] = np.where(closer, enter, t[rect])
        surface[rect] = np.where(closer, _FIRST_OBJECT + index, surface[rect])
    # From here on, per-pixel arrays are flat (H*W) and pixel sets are flat integer indices.
    t, surface = t.ravel(), surface.ravel()
    px, py, pz = (origin[i] + t * d[i].ravel() for i in range(3))

    # Normals: the room's face normals (pointing into the room) by table look-up; objects' below.
    table = np.zeros((3, _FIRST_OBJECT + len(layout.objects)), dtype=np.float32)
    table[:, :_FIRST_OBJECT] = np.array(
        [[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float32
    ).T
    normal = [np.take(table[axis], surface) for axis in range(3)]
    albedo = np.empty((height * width, 3), dtype=np.float32)
    window = _room_albedo(layout, surface, px, py, pz, albedo)

    # Objects: normals and solid textures in object coordinates.
    for index, (obj, rect) in enumerate(zip(layout.objects, rectangles)):
        if rect is None:
            continue
        rows, cols = np.nonzero(surface.reshape(height, width)[rect] == _FIRST_OBJECT + index)
        if rows.size == 0:
            continue
        pixels = (rows + rect[0].start) * width + cols + rect[1].start
        x, y, z = px[pixels], py[pixels], pz[pixels]
        nx, ny, nz = obj.surface_normals(x, y, z)
        length = np.sqrt(nx * nx + ny * ny + nz * nz)
        for axis, component in enumerate((nx, ny, nz)):
            normal[axis][pixels] = component / length
        albedo[pixels] = _texture_albedo(obj.texture, *obj.to_local(x, y, z))

    # Lambertian shading from point lights (softened inverse-square falloff), hard shadows from objects.
    irradiance = np.full((height * width, 3), layout.ambient, dtype=np.float32)
    start = [p + 2e-3 * n for p, n in zip((px, py, pz), normal)]  # shadow rays start just off the surface
    for light_position, intensity in layout.lights:
        to_light = [float(c) - s for c, s in zip(light_position, start)]
        distance2 = to_light[0] * to_light[0] + to_light[1] * to_light[1] + to_light[2] * to_light[2]
        facing = to_light[0] * normal[0] + to_light[1] * normal[1] + to_light[2] * normal[2]
        cosine = facing / np.sqrt(distance2)
        lit = cosine > 0
        if config.shadows:
            for index, obj in enumerate(layout.objects):
                _cast_shadow(
                    obj, _FIRST_OBJECT + index, light_position, start, to_light, distance2, surface, lit
                )
        strength = np.where(lit, cosine / (1 + 0.2 * distance2), 0).astype(np.float32)
        irradiance += strength[:, None] * intensity.astype(np.float32)
    linear = albedo * irradiance
    exposure = min(max(0.4 / max(float(linear.mean()), 1e-3), 0.5), 3.0)  # auto-exposure
    if window.size:  # windows are emissive: a bright sky gradient
        low, high = (np.asarray(c, dtype=np.float32) for c in layout.sky_colours)
        blend = np.clip(py[window] / float(layout.room_size[1]), 0, 1)[:, None]
        linear[window] = (low + blend * (high - low)) * (0.9 / exposure)
    srgb = np.sqrt(np.clip(linear * exposure, 0, 1))  # gamma 2 (cheaper than 2.2, looks the same here)
    image = srgb * 255 + 0.5
    if config.noise_std:  # uniform noise of that standard deviation (cheaper to draw than Gaussian)
        image += (rng.random(image.shape, dtype=np.float32) - 0.5) * (config.noise_std * math.sqrt(12))
    image = np.clip(image, 0, 255).astype(np.uint8).reshape(height, width, 3)

    # Depth: the ray parameter is the z-depth (camera-z of every direction is 1); invalid where NYUv2 is.
    depth = t.astype(np.float32)
    depth[window] = 0
    depth[~(depth <= config.max_depth)] = 0
    depth = depth.reshape(height, width)
    rows = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    cols = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width
    for row, col, radius_row, radius_col in layout.sensor_holes:
        rr, cc = int(row * height), int(col * width)
        band = (slice(max(rr - int(radius_row * height) - 1, 0), rr + int(radius_row * height) + 2),
                slice(max(cc - int(radius_col * width) - 1, 0), cc + int(radius_col * width) + 2))  # fmt: skip
        hole = ((rows[band[0]] - row) / radius_row) ** 2 + ((cols[:, band[1]] - col) / radius_col) ** 2 <= 1
        depth[band][hole] = 0

    object_ids = np.where(surface >= _FIRST_OBJECT, surface - _FIRST_OBJECT, ROOM).astype(np.int16)
    object_ids = object_ids.reshape(height, width)
    return _instances(image, depth, object_ids, camera, layout, config)


def _cast_shadow(
    obj: SceneObject,
    surface_id: int,
    light_position: np.ndarray,
    start: Sequence[np.ndarray],
    to_light: Sequence[np.ndarray],
    distance2: np.ndarray,
    surface: np.ndarray,
    lit: np.ndarray,
) -> None:
    """Clear ``lit`` where the segment from the surface point to the light passes through ``obj``.

    A cheap cone test on all pixels first (the cone from the light tangent to the object's bounding
    sphere, which contains its shadow), the exact test only on the pixels it keeps. Objects are convex, so
    an object never shadows itself beyond what the cosine term already does.
    """
    axis = np.asarray(obj.center, dtype=np.float64) - light_position
    distance = float(np.linalg.norm(axis))
    radius = obj.bounding_radius
    if distance > radius:
        wx, wy, wz = (float(v) for v in axis / distance)
        along = -(to_light[0] * wx + to_light[1] * wy + to_light[2] * wz)  # (point - light) . axis
        cos2 = 1 - (radius / distance) ** 2
        maybe = (
            lit & (along > 0) & (along * along >= cos2 * distance2) & (distance2 >= (distance - radius) ** 2)
        )
    else:  # the light is inside the bounding sphere: every lit pixel is a candidate
        maybe = lit
    picked = np.flatnonzero(maybe)
    picked = picked[surface[picked] != surface_id]
    if picked.size == 0:
        return
    enter, leave = obj.ray_interval([o[picked] for o in start], [v[picked] for v in to_light])
    blocked = (enter <= leave) & (leave > 0) & (enter < 1)
    lit[picked[blocked]] = False


def _instances(
    image: np.ndarray,
    depth: np.ndarray,
    object_ids: np.ndarray,
    camera: SceneCamera,
    layout: SceneLayout,
    config: SceneConfig,
) -> SyntheticScene:
    """Masks, labels and tight boxes of the objects that cover at least the minimum area."""
    height, width = object_ids.shape
    min_pixels = max(4, int(math.ceil(config.min_instance_area * height * width)))
    counts = np.bincount(object_ids[object_ids >= 0].ravel(), minlength=len(layout.objects))
    indices = [k for k in range(len(layout.objects)) if counts[k] >= min_pixels]
    masks = np.zeros((len(indices), height, width), dtype=bool)
    boxes = np.zeros((len(indices), 4), dtype=np.float32)
    for n, k in enumerate(indices):
        masks[n] = object_ids == k
        rows = np.flatnonzero(masks[n].any(axis=1))
        cols = np.flatnonzero(masks[n].any(axis=0))
        boxes[n] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    labels = np.array([layout.objects[k].label for k in indices], dtype=np.int64)
    return SyntheticScene(
        image, depth, masks, labels, boxes, np.array(indices, dtype=np.int64), object_ids, camera, layout
    )


def _image_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8x8 pixels, got {height}x{width}")
    return height, width


def render_scene(
    seed: SceneSeed, size: int | tuple[int, int] = 192, config: SceneConfig | None = None
) -> SyntheticScene:
    """Render scene ``seed`` at ``size`` (an int for square images, or (height, width)).

    The same seed gives the same arrays; the 3D layout depends on the seed only, not on the size.
    """
    config = config or SceneConfig()
    height, width = _image_size(size)
    layout = sample_layout(seed, config)
    # Image noise uses its own stream so that it cannot change the layout.
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    noise_rng = np.random.default_rng([*sequence.generate_state(2), height, width])
    return _render(layout, height, width, config, noise_rng)


def render_scenes(
    seed: int, split: str, count: int, size: int | tuple[int, int] = 192, config: SceneConfig | None = None
) -> Iterator[SyntheticScene]:
    """Scenes 0..count-1 of a split of the data set seeded ``seed`` (see `scene_seed`), one at a time."""
    for index in range(count):
        yield render_scene(scene_seed(seed, split, index), size, config)


# ------------------------------------------------------------------------------------ on-disk data sets


def nyu_sample(scene: SyntheticScene, index: int) -> NYUSample:
    """The NYUv2 pair of scene ``index`` of a split (file ``rgb_{index+1:05d}``, 1000 pairs per folder)."""
    folder = f"synthetic_{index // _NYU_SCENES_PER_FOLDER:04d}"
    return NYUSample(folder, index + 1, scene.image, scene.depth)


def coco_image(scene: SyntheticScene, index: int) -> CocoImage:
    """The COCO image of scene ``index`` of a split (image id ``index + 1``), masks as compressed RLE."""
    instances = [
        CocoInstance(int(label) + 1, mask=mask.astype(np.uint8), encoding="compressed_rle")
        for mask, label in zip(scene.instance_masks, scene.labels)
    ]
    return CocoImage(index + 1, scene.image, instances)


class _ChunkedNYUWriter:
    """Feeds `write_nyu_split` a chunk at a time (bounded memory) and joins the chunks' list files."""

    def __init__(self, root: Path, split: str, chunk: int | None = None):
        self.root, self.split, self.chunk = root, split, chunk or _NYU_PAIRS_PER_CHUNK
        self.pending: list[NYUSample] = []
        self.lines: list[str] = []

    def add(self, sample: NYUSample) -> None:
        self.pending.append(sample)
        if len(self.pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        part = self.root / f".{self.split}_list.part"
        write_nyu_split(self.root, self.split, self.pending, list_file=part)  # type: ignore[arg-type]
        self.lines.extend(line for line in part.read_text(encoding="utf-8").splitlines() if line)
        part.unlink()
        self.pending = []

    def finish(self) -> Path:
        self._flush()
        list_path = self.root / f"{self.split}_list.txt"
        list_path.write_text("\n".join(self.lines) + ("\n" if self.lines else ""), encoding="utf-8")
        return list_path


def _rendered(
    seed: int,
    split: str,
    indices: range,
    size: int | tuple[int, int],
    config: SceneConfig | None,
    pool: multiprocessing.pool.Pool | None,
) -> Iterator[tuple[int, SyntheticScene]]:
    """(index, scene) of a split in order, rendered here or by ``pool`` (in bounded batches: rendered scenes
    never pile up in memory faster than they are written)."""
    if pool is None:
        for index in indices:
            yield index, render_scene(scene_seed(seed, split, index), size, config)
        return
    render = functools.partial(render_scene, size=size, config=config)
    batch = 32 * pool._processes  # type: ignore[attr-defined]
    for first in range(indices.start, indices.stop, batch):
        part = range(first, min(first + batch, indices.stop))
        yield from zip(part, pool.imap(render, [scene_seed(seed, split, i) for i in part], chunksize=4))


def _write_split(
    seed: int,
    split: str,
    size: int | tuple[int, int],
    config: SceneConfig | None,
    nyu: tuple[Path, str, int] | None,
    coco: tuple[Path, str, int] | None,
    pool: multiprocessing.pool.Pool | None = None,
) -> dict[str, Path]:
    """Render the scenes of one split once and write them to NYUv2 and/or COCO; scene i feeds both."""
    nyu_writer = _ChunkedNYUWriter(nyu[0], nyu[1]) if nyu is not None and nyu[2] > 0 else None
    nyu_count = nyu[2] if nyu is not None else 0
    coco_count = coco[2] if coco is not None else 0
    paths: dict[str, Path] = {}

    def coco_images() -> Iterator[CocoImage]:
        for index, scene in _rendered(seed, split, range(coco_count), size, config, pool):
            if nyu_writer is not None and index < nyu_count:
                nyu_writer.add(nyu_sample(scene, index))
            yield coco_image(scene, index)

    if coco is not None:
        paths["coco_annotation_file"] = write_coco_split(coco[0], coco[1], coco_images(), SCENE_CATEGORIES)
        paths["coco_image_dir"] = coco[0] / f"{coco[1]}2017"
    if nyu is not None:
        writer = nyu_writer or _ChunkedNYUWriter(nyu[0], nyu[1])
        for index, scene in _rendered(seed, split, range(coco_count, nyu_count), size, config, pool):
            writer.add(nyu_sample(scene, index))
        paths["nyu_list"] = writer.finish()
    return paths


@contextlib.contextmanager
def _render_pool(workers: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """A pool of ``workers`` rendering processes, or None (render in this process) for 0."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        yield None
        return
    with multiprocessing.Pool(workers) as pool:
        yield pool


def _write_data_sets(
    nyu_root: Path,
    coco_root: Path,
    counts: dict[str, int],
    size: int | tuple[int, int],
    seed: int,
    config: SceneConfig | None,
    workers: int,
) -> dict[str, Path]:
    """Write the NYUv2 splits under ``nyu_root`` and COCO splits under ``coco_root`` (counts keyed
    ``nyu_train``, ``nyu_test``, ``coco_train``, ``coco_val``); paths keyed ``nyu_train_list``,
    ``coco_val_image_dir`` and so on."""
    for name, count in counts.items():
        if count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")
    paths: dict[str, Path] = {}
    with _render_pool(workers) as pool:
        for split, coco_split in (("train", "train"), ("test", "val")):
            nyu_count, coco_count = counts.get(f"nyu_{split}", 0), counts.get(f"coco_{coco_split}", 0)
            if nyu_count:
                nyu_root.mkdir(parents=True, exist_ok=True)
            written = _write_split(
                seed,
                split,
                size,
                config,
                (nyu_root, split, nyu_count) if nyu_count else None,
                (coco_root, coco_split, coco_count) if coco_count else None,
                pool,
            )
            if "nyu_list" in written:
                paths[f"nyu_{split}_list"] = written["nyu_list"]
            if "coco_image_dir" in written:
                paths[f"coco_{coco_split}_image_dir"] = written["coco_image_dir"]
                paths[f"coco_{coco_split}_annotation_file"] = written["coco_annotation_file"]
    return paths


def write_synthetic_scenes(
    root: str | os.PathLike,
    nyu_train: int = 0,
    nyu_test: int = 0,
    coco_train: int = 0,
    coco_val: int = 0,
    size: int | tuple[int, int] = 192,
    seed: int = 0,
    config: SceneConfig | None = None,
    workers: int = 0,
) -> dict[str, Path]:
    """Write rendered scenes as NYUv2 (``root/nyu_depth_v2``) and COCO (``root/coco``) data sets.

    Scene i of "train" is NYUv2 train pair i and COCO train2017 image i (rendered once); "test"/"val" alike.
    ``workers`` processes render while this one writes (0: render here). Returns the paths the loaders
    take: ``nyu_root``, ``nyu_train_list``, ``nyu_test_list``, ``coco_root``, ``coco_train_image_dir``,
    ``coco_train_annotation_file``, ``coco_val_image_dir``, ``coco_val_annotation_file`` (those of the
    splits written)::

        load_nyu_depth_v2(paths["nyu_root"], "train", paths["nyu_train_list"])
        load_coco_instances(paths["coco_val_image_dir"], paths["coco_val_annotation_file"])
    """
    root = Path(root)
    counts = {"nyu_train": nyu_train, "nyu_test": nyu_test, "coco_train": coco_train, "coco_val": coco_val}
    paths = _write_data_sets(root / "nyu_depth_v2", root / "coco", counts, size, seed, config, workers)
    if nyu_train or nyu_test:
        paths["nyu_root"] = root / "nyu_depth_v2"
    if coco_train or coco_val:
        paths["coco_root"] = root / "coco"
    return paths


def write_synthetic_nyu(
    root: str | os.PathLike,
    num_train: int,
    num_test: int,
    size: int | tuple[int, int] = 192,
    seed: int = 0,
    config: SceneConfig | None = None,
    workers: int = 0,
) -> dict[str, Path]:
    """Rendered scenes in the NYUv2 layout under ``root``; returns ``{"root", "train_list", "test_list"}``
    (lists of empty splits are absent) for ``load_nyu_depth_v2(root, split, list_file)``."""
    root = Path(root)
    counts = {"nyu_train": num_train, "nyu_test": num_test}
    paths = _write_data_sets(root, root, counts, size, seed, config, workers)
    root.mkdir(parents=True, exist_ok=True)
    return {"root": root, **{key.removeprefix("nyu_"): path for key, path in paths.items()}}


def write_synthetic_coco(
    root: str | os.PathLike,
    num_train: int,
    num_val: int,
    size: int | tuple[int, int] = 192,
    seed: int = 0,
    config: SceneConfig | None = None,
    workers: int = 0,
) -> dict[str, Path]:
    """Rendered scenes in the COCO layout under ``root`` (``train2017/``, ``val2017/``, ``annotations/``).

    Returns ``root``, ``train_image_dir``, ``train_annotation_file``, ``val_image_dir``,
    ``val_annotation_file`` (those of non-empty splits) for ``load_coco_instances(image_dir,
    annotation_file)``. Categories are `SCENE_CATEGORIES` (ids 1..3): the loader's labels are the scenes'.
    """
    root = Path(root)
    counts = {"coco_train": num_train, "coco_val": num_val}
    paths = _write_data_sets(root, root, counts, size, seed, config, workers)
    return {"root": root, **{key.removeprefix("coco_"): path for key, path in paths.items()}}


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write rendered scenes as NYUv2 and COCO data sets."""
    parser = argparse.ArgumentParser(
        prog="python -m ait_hf.data.scenes",
        description="Render synthetic indoor scenes and write them as NYUv2 (depth) and COCO (instances).",
    )
    parser.add_argument("--out", required=True, help="folder; gets nyu_depth_v2/ and coco/")
    parser.add_argument("--nyu-train", type=int, default=0)
    parser.add_argument("--nyu-test", type=int, default=0)
    parser.add_argument("--coco-train", type=int, default=0)
    parser.add_argument("--coco-val", type=int, default=0)
    parser.add_argument("--size", type=int, nargs="+", default=[192], help="SIZE or HEIGHT WIDTH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=0, help="processes that render while the main one writes (0: none)"
    )
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error("--size takes one value (square) or two (height width)")
    size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])
    paths = write_synthetic_scenes(
        args.out,
        args.nyu_train,
        args.nyu_test,
        args.coco_train,
        args.coco_val,
        size,
        args.seed,
        workers=args.workers,
    )
    for key, path in sorted(paths.items()):
        print(f"{key}: {path}")


if __name__ == "__main__":
    main()
