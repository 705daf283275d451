"""Small but real on-disk NYUv2 and COCO data sets, for tests and benchmarks (nothing is downloaded).

Two layers:

* writers that take arrays and write exactly the layouts the loaders read: `write_nyu_split` (JPEG images,
  uint16 PNG depth in millimetres, list files) and `write_coco_split` (JPEG images and an
  ``instances_{split}2017.json`` whose objects are polygons, uncompressed RLE or compressed RLE, crowd or
  not). Any generator of images, depth maps and instance masks (such as a rendered 3D scene) can use them.
* seeded generators of simple scenes built on those writers: `make_synthetic_nyu`, `make_synthetic_coco`.
  The same seed gives the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import PIL.Image
import pycocotools.mask as mask_utils

# The 80 COCO 2017 instance categories (id, name, supercategory); the ids have gaps, as in the real file.
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)  # fmt: skip

MaskEncoding = Literal["polygon", "rle", "compressed_rle"]


# --------------------------------------------------------------------------------------------- NYUv2


@dataclass
class NYUSample:
    """One NYUv2 pair: an RGB image (H, W, 3) uint8 and its depth, uint16 millimetres or float metres."""

    scene: str
    index: int
    image: np.ndarray
    depth: np.ndarray


def depth_metres_to_millimetres(depth: np.ndarray) -> np.ndarray:
    """uint16 millimetres (rounded) of a float metres map; 0 (invalid) stays 0."""
    millimetres = np.rint(np.asarray(depth, dtype=np.float64) * 1000.0)
    if millimetres.min() < 0 or millimetres.max() > np.iinfo(np.uint16).max:
        raise ValueError("depth must lie in [0, 65.535] metres to be stored as uint16 millimetres")
    return millimetres.astype(np.uint16)


def write_nyu_split(
    root: str | os.PathLike,
    split: Literal["train", "test"],
    samples: Iterable[NYUSample],
    list_file: str | os.PathLike | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write NYUv2 pairs in the BTS/GLPDepth layout and their list file; returns the list file's path.

    Train pairs go to ``root/<scene>/``, test pairs to ``root/official_splits/test/<scene>/``; each list
    line is ``/<scene>/rgb_XXXXX.jpg /<scene>/sync_depth_XXXXX.png``. The default list file is
    ``root/<split>_list.txt``.
    """
    root = Path(root)
    folder = root / "official_splits" / "test" if split == "test" else root
    lines = []
    for sample in samples:
        image = np.asarray(sample.image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        depth = np.asarray(sample.depth)
        depth_mm = depth if depth.dtype == np.uint16 else depth_metres_to_millimetres(depth)
        if depth_mm.shape != image.shape[:2]:
            raise ValueError(f"depth shape {depth_mm.shape} differs from image shape {image.shape[:2]}")
        scene_dir = folder / sample.scene
        scene_dir.mkdir(parents=True, exist_ok=True)
        image_name = f"rgb_{sample.index:05d}.jpg"
        depth_name = f"sync_depth_{sample.index:05d}.png"
        PIL.Image.fromarray(image).save(scene_dir / image_name, quality=jpeg_quality)
        PIL.Image.fromarray(depth_mm).save(scene_dir / depth_name)
        lines.append(f"/{sample.scene}/{image_name} /{sample.scene}/{depth_name}")
    list_path = Path(list_file) if list_file is not None else root / f"{split}_list.txt"
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1]: a coarse grid of random values, bilinearly upsampled."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    image = PIL.Image.fromarray(coarse).resize((width, height), PIL.Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def synthetic_nyu_sample(
    rng: np.random.Generator, scene: str, index: int, height: int, width: int
) -> NYUSample:
    """A room-like depth map (a tilted floor/wall plane plus boxes in front), an image shaded by depth,
    and invalid (zero) depth along the border and in a few holes, as in real Kinect depth."""
    rows = np.mgrid[0:height, 0:width][0].astype(np.float32)
    far = rng.uniform(3.0, 8.0)
    depth = far - rng.uniform(0.5, 2.0) * rows / height + 0.5 * _smooth_field(rng, height, width)
    colour = rng.integers(40, 220, size=3)
    image = np.empty((height, width, 3), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        y1, x1 = (
            y0 + int(rng.integers(height // 8, height // 2)),
            x0 + int(rng.integers(width // 8, width // 2)),
        )
        depth[y0:y1, x0:x1] = rng.uniform(0.7, far - 0.5)
    shade = 1.0 - depth / 10.0
    image[:] = shade[..., None] * colour[None, None, :] + 30.0 * _smooth_field(rng, height, width)[..., None]
    image = np.clip(image + rng.normal(0.0, 3.0, image.shape), 0, 255).astype(np.uint8)
    depth = np.clip(depth, 0.3, 9.99)
    border = max(1, height // 48)
    depth[:border], depth[-border:], depth[:, :border], depth[:, -border:] = 0, 0, 0, 0
    for _ in range(int(rng.integers(0, 4))):
        y, x = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
        depth[y : y + int(rng.integers(2, 12)), x : x + int(rng.integers(2, 12))] = 0
    return NYUSample(scene, index, image, depth_metres_to_millimetres(depth))


def make_synthetic_nyu(
    root: str | os.PathLike,
    num_train: int = 8,
    num_test: int = 4,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    num_scenes: int = 3,
) -> dict[str, Path]:
    """Write a seeded synthetic NYUv2 (train + official test split) under ``root``.

    Returns ``{"root", "train_list", "test_list"}``. Depth is uint16 millimetres with zero (invalid) pixels.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    scenes = [f"synthetic_room_{k:04d}" for k in range(num_scenes)]
    train = [synthetic_nyu_sample(rng, scenes[i % num_scenes], i, height, width) for i in range(num_train)]
    test = [
        synthetic_nyu_sample(rng, scenes[i % num_scenes], 1000 + i, height, width) for i in range(num_test)
    ]
    return {
        "root": root,
        "train_list": write_nyu_split(root, "train", train),
        "test_list": write_nyu_split(root, "test", test),
    }


# ---------------------------------------------------------------------------------------------- COCO


@dataclass
class CocoInstance:
    """One object: a category, and either polygons (x0, y0, x1, y1, ...) or a binary mask (H, W)."""

    category_id: int
    polygons: list[list[float]] | None = None
    mask: np.ndarray | None = None
    iscrowd: bool = False
    encoding: MaskEncoding = "polygon"


@dataclass
class CocoImage:
    """One image (H, W, 3) uint8 with its objects (possibly none)."""

    image_id: int
    image: np.ndarray
    instances: list[CocoInstance] = field(default_factory=list)
    file_name: str | None = None


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major run lengths, starting with a run of zeros) of a binary mask.

    Hand-written because pycocotools only produces the compressed form.
    """
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(r) for r in runs]}


def _annotation(instance: CocoInstance, height: int, width: int) -> dict[str, Any]:
    if instance.polygons is not None:
        segmentation: Any = [[float(v) for v in polygon] for polygon in instance.polygons]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        xs = np.concatenate([np.asarray(p[0::2], dtype=np.float64) for p in segmentation])
        ys = np.concatenate([np.asarray(p[1::2], dtype=np.float64) for p in segmentation])
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]
    elif instance.mask is not None:
        mask = np.asarray(instance.mask, dtype=np.uint8)
        if mask.shape != (height, width):
            raise ValueError(f"instance mask shape {mask.shape} differs from the image's {(height, width)}")
        rle = mask_utils.encode(np.asfortranarray(mask))
        if instance.encoding == "compressed_rle":
            segmentation = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
        elif instance.encoding == "rle":
            segmentation = uncompressed_rle(mask)
        else:
            raise ValueError("a mask is written as RLE: pass polygons for a polygon annotation")
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
    else:
        raise ValueError("an instance needs polygons or a mask")
    return {
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "iscrowd": int(instance.iscrowd),
        "bbox": bbox,
        "category_id": int(instance.category_id),
    }


def write_coco_split(
    root: str | os.PathLike,
    split: str,
    images: Iterable[CocoImage],
    categories: Sequence[tuple[int, str, str]] = COCO_CATEGORIES,
    year: str = "2017",
    jpeg_quality: int = 95,
) -> Path:
    """Write COCO images to ``root/{split}{year}/`` and ``root/annotations/instances_{split}{year}.json``.

    Returns the annotation file's path. Objects given as polygons are written as polygons (bbox = polygon
    extent, as in COCO); objects given as masks as uncompressed (``encoding="rle"``, the form COCO uses for
    crowds) or compressed RLE (bbox = mask extent). ``area`` is the mask area from pycocotools.
    """
    root = Path(root)
    image_dir = root / f"{split}{year}"
    image_dir.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for item in images:
        array = np.asarray(item.image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
        height, width = array.shape[:2]
        file_name = item.file_name or f"{item.image_id:012d}.jpg"
        PIL.Image.fromarray(array).save(image_dir / file_name, quality=jpeg_quality)
        entries.append({"id": int(item.image_id), "file_name": file_name, "height": height, "width": width})
        for instance in item.instances:
            annotation = _annotation(instance, height, width)
            annotation.update(id=len(annotations) + 1, image_id=int(item.image_id))
            annotations.append(annotation)
    annotation_file = root / "annotations" / f"instances_{split}{year}.json"
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "info": {"description": "ait_hf synthetic COCO-format data", "year": int(year)},
        "licenses": [],
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": s} for i, n, s in categories],
    }
    annotation_file.write_text(json.dumps(content), encoding="utf-8")
    return annotation_file


def _random_polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> list[float]:
    """A star-shaped polygon (vertices sorted by angle) around (cx, cy), coordinates with 2 decimals."""
    count = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = radius * rng.uniform(0.5, 1.0, count)
    xs, ys = cx + radii * np.cos(angles), cy + radii * np.sin(angles)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _ellipse_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    ry, rx = rng.uniform(0.1, 0.3) * height + 1, rng.uniform(0.1, 0.3) * width + 1
    return (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0).astype(np.uint8)


def synthetic_coco_image(
    rng: np.random.Generator,
    image_id: int,
    height: int,
    width: int,
    max_objects: int = 4,
    categories: Sequence[tuple[int, str, str]] = COCO_CATEGORIES,
    encodings: Sequence[MaskEncoding] | None = None,
    crowd: bool = False,
) -> CocoImage:
    """A noisy background with coloured objects; the objects are drawn into the image.

    ``encodings`` fixes the encoding of each object (else all polygons, 1..max_objects of them); ``crowd``
    adds one crowd region (uncompressed RLE).
    """
    image = (rng.random((height, width, 3)) * 60 + 80).astype(np.float32)
    encodings = (
        list(encodings) if encodings is not None else ["polygon"] * int(rng.integers(1, max_objects + 1))
    )
    instances = []
    for encoding in encodings:
        category_id = int(categories[int(rng.integers(0, len(categories)))][0])
        if encoding == "polygon":
            radius = rng.uniform(0.15, 0.4) * min(height, width)
            cx, cy = (
                rng.uniform(radius * 0.6, width - radius * 0.6),
                rng.uniform(radius * 0.6, height - radius * 0.6),
            )
            parts = [_random_polygon(rng, cx, cy, radius)]
            if rng.random() < 0.25:  # a second part, as occluded COCO objects have
                parts.append(_random_polygon(rng, rng.uniform(0, width), rng.uniform(0, height), radius / 2))
            instance = CocoInstance(category_id, polygons=parts)
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))
        else:
            mask = _ellipse_mask(rng, height, width)
            instance = CocoInstance(category_id, mask=mask, encoding=encoding)
        if mask.any():
            image[mask.astype(bool)] = rng.integers(0, 256, size=3)
            instances.append(instance)
    if crowd:
        mask = _ellipse_mask(rng, height, width)
        image[mask.astype(bool)] = 0.5 * image[mask.astype(bool)] + 60
        instances.append(CocoInstance(int(categories[0][0]), mask=mask, iscrowd=True, encoding="rle"))
    return CocoImage(image_id, image.astype(np.uint8), instances)


def make_synthetic_coco(
    root: str | os.PathLike,
    split: str = "val",
    num_images: int = 6,
    height: int | tuple[int, int] = (96, 160),
    width: int | tuple[int, int] = (96, 200),
    seed: int = 0,
    max_objects: int = 4,
) -> dict[str, Path]:
    """Write a seeded synthetic COCO split under ``root`` (``{split}2017/`` + ``annotations/``).

    Every form the loader must read appears once ``num_images >= 4``: image 0 has polygon objects and a crowd
    region (uncompressed RLE), image 1 an uncompressed-RLE object, image 2 a compressed-RLE object, and the
    last image has no annotations. Sizes are drawn from the given (min, max) ranges.
    Returns ``{"root", "image_dir", "annotation_file"}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)

    def draw(size: int | tuple[int, int]) -> int:
        return size if isinstance(size, int) else int(rng.integers(size[0], size[1] + 1))

    images = []
    for index in range(num_images):
        image_id = 100 + 7 * index  # ids need not be contiguous
        h, w = draw(height), draw(width)
        if index == num_images - 1 and num_images >= 4:
            item = synthetic_coco_image(rng, image_id, h, w, encodings=[])
        elif index == 0:
            item = synthetic_coco_image(rng, image_id, h, w, encodings=["polygon", "polygon"], crowd=True)
        elif index == 1:
            item = synthetic_coco_image(rng, image_id, h, w, encodings=["rle", "polygon"])
        elif index == 2:
            item = synthetic_coco_image(rng, image_id, h, w, encodings=["compressed_rle", "polygon"])
        else:
            item = synthetic_coco_image(rng, image_id, h, w, max_objects=max_objects)
        images.append(item)
    annotation_file = write_coco_split(root, split, images)
    return {"root": root, "image_dir": root / f"{split}2017", "annotation_file": annotation_file}
