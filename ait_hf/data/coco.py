"""COCO 2017 instances (images + ``instances_{split}2017.json``) as a memory-mapped `datasets.Dataset`.

One row per image, images decoded lazily. Per-object fields live in the ``objects`` column (a dict of
lists, the Hugging Face detection layout): ``id``, ``bbox`` (xyxy float32, pixels), ``bbox_xywh`` (as in the
json), ``label`` (contiguous 0..K-1, a `ClassLabel` whose names give ``id2label``), ``category_id`` (the
original COCO id), ``iscrowd``, ``area`` and ``segmentation`` (the annotation's polygons or RLE, compressed or
uncompressed, kept exactly as the JSON text of the file).

Binary masks are decoded on demand with pycocotools, identical to ``COCO.annToMask``:
`coco_object_masks(row)` gives all of a row's masks, `decode_coco_segmentation(seg, h, w)` one of them.

Build once on disk::

    python -m ait_hf.data.coco --image-dir data/coco/train2017 \
        --annotations data/coco/annotations/instances_train2017.json --output data/prepared/coco_train
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pycocotools.mask as mask_utils

from ._arrow import dataset_from_rows, file_signature, fingerprint_of, image_header_size, image_reference
from .validation import BadSampleLog, DataValidationError, OnError

COCO_DATASET_TAG = "ait_hf.coco_instances"


def coco_features(class_names: Sequence[str]) -> datasets.Features:
    """Arrow schema of the COCO instances data set for the given (contiguous) class names."""
    box = datasets.List(datasets.Value("float32"), length=4)
    return datasets.Features(
        {
            "image": datasets.Image(),
            "image_id": datasets.Value("int64"),
            "file_name": datasets.Value("string"),
            "height": datasets.Value("int32"),
            "width": datasets.Value("int32"),
            "objects": {
                "id": datasets.List(datasets.Value("int64")),
                "bbox": datasets.List(box),
                "bbox_xywh": datasets.List(datasets.List(datasets.Value("float64"), length=4)),
                "label": datasets.List(datasets.ClassLabel(names=list(class_names))),
                "category_id": datasets.List(datasets.Value("int64")),
                "iscrowd": datasets.List(datasets.Value("bool")),
                "area": datasets.List(datasets.Value("float64")),
                "segmentation": datasets.List(datasets.Value("string")),
            },
        }
    )


# ----------------------------------------------------------------------------------------------- masks


def decode_coco_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Binary mask (uint8, HxW) of one COCO segmentation, the same as pycocotools' ``annToMask``.

    ``segmentation`` is the stored JSON text or the parsed value: a list of polygons, an uncompressed RLE
    (``counts`` a list) or a compressed RLE (``counts`` a string).
    """
    if isinstance(segmentation, str):
        segmentation = json.loads(segmentation)
    if segmentation is None:
        raise DataValidationError("this object has no segmentation (a detection-only annotation file?)")
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def coco_object_masks(example: dict[str, Any], indices: Sequence[int] | None = None) -> np.ndarray:
    """All binary masks of one data set row, uint8 (N, height, width); ``indices`` picks some objects."""
    segmentations = example["objects"]["segmentation"]
    if indices is not None:
        segmentations = [segmentations[i] for i in indices]
    height, width = int(example["height"]), int(example["width"])
    if not segmentations:
        return np.zeros((0, height, width), dtype=np.uint8)
    return np.stack([decode_coco_segmentation(seg, height, width) for seg in segmentations])


def coco_id2label(dataset: datasets.Dataset) -> dict[int, str]:
    """``{label: class name}`` of a data set made by `load_coco_instances` (for ``config.id2label``)."""
    names = dataset.features["objects"]["label"].feature.names
    return dict(enumerate(names))


def coco_category_ids(dataset: datasets.Dataset) -> list[int]:
    """Original COCO category id of every contiguous label (to write detections for COCO evaluation)."""
    info = json.loads(dataset.info.description or "{}")
    if info.get("ait_hf") != COCO_DATASET_TAG:
        raise DataValidationError("this data set was not made by ait_hf.data.load_coco_instances")
    return list(info["category_ids"])


# ------------------------------------------------------------------------------------------ validation


def _compressed_rle_counts(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string.

    Hand-written because pycocotools decodes malformed strings without complaint (a wrong total length
    gives a silently wrong mask); this is the inverse of its string encoding, used only for validation.
    """
    values: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("the string ends inside a run length")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"character {counts[position]!r} is not in the RLE alphabet")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def _segmentation_problem(segmentation: Any, height: int, width: int) -> tuple[str, str] | None:
    """(reason, detail) when a segmentation cannot be decoded into a mask of this image, else None."""
    if segmentation is None:
        return None
    if isinstance(segmentation, list):
        if not segmentation:
            return "empty_polygon", "segmentation is an empty list of polygons"
        for index, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                size = len(polygon) if isinstance(polygon, list) else type(polygon).__name__
                return (
                    "empty_polygon",
                    f"polygon {index} has {size} coordinates; needs an even number, at least 6",
                )
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in polygon):
                return "empty_polygon", f"polygon {index} has non-numeric or non-finite coordinates"
        return None
    if not isinstance(segmentation, dict):
        return "invalid_rle", f"segmentation has type {type(segmentation).__name__}; expected polygons or RLE"
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not isinstance(size, list) or len(size) != 2:
        return "invalid_rle", f"RLE 'size' is {size!r}; expected [height, width]"
    if list(size) != [height, width]:
        return "invalid_rle", f"RLE size {size} does not match the image size [{height}, {width}]"
    if isinstance(counts, list):
        runs = counts
    elif isinstance(counts, str):
        try:
            runs = _compressed_rle_counts(counts)
        except ValueError as error:
            return "invalid_rle", f"compressed RLE 'counts' is malformed: {error}"
    else:
        return "invalid_rle", f"RLE 'counts' has type {type(counts).__name__}; expected a list or a string"
    if not all(isinstance(v, int) and v >= 0 for v in runs):
        return "invalid_rle", "RLE 'counts' has negative or non-integer run lengths"
    if sum(runs) != height * width:
        return "invalid_rle", f"RLE run lengths add up to {sum(runs)}, not height*width = {height * width}"
    return None


def _box_problem(bbox: Any, height: int, width: int) -> tuple[str, str] | None:
    if not isinstance(bbox, list) or len(bbox) != 4:
        return "degenerate_box", f"bbox {bbox!r} is not [x, y, width, height]"
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        return "degenerate_box", f"bbox {bbox} has non-numeric or non-finite values"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "degenerate_box", f"bbox {bbox} has zero or negative width/height"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "box_outside_image", f"bbox {bbox} lies outside the {width}x{height} image"
    return None


def _read_annotation_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataValidationError(f"COCO annotation file {path} does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataValidationError(f"COCO annotation file {path} is not valid JSON: {error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataValidationError(f"COCO annotation file {path} has no '{key}' list")
    return data


def _parse_categories(data: dict[str, Any], path: Path) -> tuple[list[int], list[str]]:
    categories = {}
    for entry in data["categories"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or "name" not in entry:
            raise DataValidationError(f"{path}: category entry {entry!r} needs an integer 'id' and a 'name'")
        if entry["id"] in categories:
            raise DataValidationError(f"{path}: category id {entry['id']} appears twice")
        categories[entry["id"]] = str(entry["name"])
    if not categories:
        raise DataValidationError(f"{path}: 'categories' is empty")
    ids = sorted(categories)
    return ids, [categories[i] for i in ids]


# -------------------------------------------------------------------------------------------- loading


def load_coco_instances(
    image_dir: str | os.PathLike | None,
    annotation_file: str | os.PathLike,
    *,
    on_error: OnError = "raise",
    filter_empty: bool = False,
    min_image_size: int = 0,
    check_image_files: bool = True,
    verify_images: bool = False,
    embed_images: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Load COCO instances as a memory-mapped `datasets.Dataset`, one row per image (lazy images).

    Args:
        image_dir: folder of the split's images (``train2017``); None only with ``check_image_files=False``
            for annotation-only uses (box-cropped masks), and then ``image`` is empty.
        annotation_file: ``instances_{split}2017.json``.
        on_error: "raise" stops at the first bad item with a message naming the file, the field and the value;
            "skip" leaves the bad item out (an object, or the whole image when its file is the problem) and
            warns once with the count (`BadSampleWarning`). Bad items: image files that are missing or (with
            ``verify_images``) unreadable or of another size than the json says, annotations whose image id has
            no image entry, unknown category ids, degenerate (w or h <= 0, non-finite) boxes, boxes entirely
            outside the image, empty or malformed polygons, invalid RLE.
        filter_empty: drop images without annotations (training, as mmdet's ``filter_empty_gt``); they are
            kept by default for evaluation.
        min_image_size: drop images whose shorter side is smaller (mmdet trains with 32).
        check_image_files: check every image file exists.
        verify_images: also open every image header (readable, size equals the json's).
        embed_images: store image bytes in the Arrow file instead of paths.
        cache_dir: `datasets` cache folder for the Arrow file.
    """
    annotation_path = Path(annotation_file)
    data = _read_annotation_file(annotation_path)
    category_ids, class_names = _parse_categories(data, annotation_path)
    label_of = {category_id: label for label, category_id in enumerate(category_ids)}
    if image_dir is None and check_image_files:
        raise DataValidationError("image_dir is required unless check_image_files=False")
    image_folder = Path(image_dir) if image_dir is not None else None
    if image_folder is not None and check_image_files and not image_folder.is_dir():
        raise DataValidationError(f"COCO image folder {image_folder} does not exist")
    log = BadSampleLog(f"COCO {annotation_path}", on_error)

    images: dict[int, dict[str, Any]] = {}
    for entry in data["images"]:
        missing = [key for key in ("id", "file_name", "height", "width") if key not in entry]
        if missing:
            raise DataValidationError(f"{annotation_path}: image entry {entry!r} lacks {missing}")
        if entry["id"] in images:
            raise DataValidationError(f"{annotation_path}: image id {entry['id']} appears twice")
        images[entry["id"]] = entry

    objects_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for annotation in data["annotations"]:
        where = f"{annotation_path}: annotation id {annotation.get('id')!r}"
        image = images.get(annotation.get("image_id"))
        if image is None:
            log.report(
                "image_id_without_image",
                where,
                f"image_id {annotation.get('image_id')!r} has no entry in 'images'",
            )
            continue
        if annotation.get("category_id") not in label_of:
            log.report(
                "unknown_category",
                where,
                f"category_id {annotation.get('category_id')!r} is not in 'categories'",
            )
            continue
        height, width = int(image["height"]), int(image["width"])
        problem = _box_problem(annotation.get("bbox"), height, width) or _segmentation_problem(
            annotation.get("segmentation"), height, width
        )
        if problem is not None:
            log.report(problem[0], where, f"(image {image['file_name']}) {problem[1]}")
            continue
        if "area" not in annotation:
            log.report("missing_field", where, "has no 'area'")
            continue
        objects_of[image["id"]].append(annotation)

    rows = []
    for image_id, image in images.items():
        objects = objects_of.get(image_id, [])
        if filter_empty and not objects:
            continue
        if min(int(image["height"]), int(image["width"])) < min_image_size:
            continue
        path = image_folder / image["file_name"] if image_folder is not None else None
        where = f"{annotation_path}: image id {image_id}"
        if check_image_files:
            if not path.is_file():
                log.report("missing_image", where, f"image file {path} does not exist")
                continue
            if verify_images:
                try:
                    size = image_header_size(path)
                except (OSError, SyntaxError, ValueError) as error:
                    log.report("unreadable_image", where, f"cannot read image {path}: {error}")
                    continue
                if size != (int(image["width"]), int(image["height"])):
                    log.report(
                        "size_mismatch",
                        where,
                        f"image {path} is {size[0]}x{size[1]} but the json says "
                        f"{image['width']}x{image['height']}",
                    )
                    continue
        rows.append(_row(image, objects, path, label_of, embed_images and check_image_files))
    log.finish()

    fingerprint = fingerprint_of(
        "coco",
        file_signature(annotation_path),
        str(image_folder.resolve()) if image_folder is not None else None,
        on_error,
        filter_empty,
        min_image_size,
        check_image_files,
        verify_images,
        embed_images,
        len(rows),
    )
    dataset = dataset_from_rows(rows, coco_features(class_names), fingerprint, cache_dir)
    dataset.info.description = json.dumps(
        {"ait_hf": COCO_DATASET_TAG, "category_ids": category_ids, "annotation_file": str(annotation_path)}
    )
    return dataset


def _row(
    image: dict[str, Any],
    annotations: list[dict[str, Any]],
    path: Path | None,
    label_of: dict[int, int],
    embed: bool,
) -> dict[str, Any]:
    boxes_xywh = [[float(v) for v in a["bbox"]] for a in annotations]
    # x2 = x + w in double precision, then float32, as mmdet builds its gt boxes.
    boxes_xyxy = [[x, y, x + w, y + h] for x, y, w, h in boxes_xywh]
    return {
        "image": image_reference(path, embed) if path is not None else None,
        "image_id": int(image["id"]),
        "file_name": str(image["file_name"]),
        "height": int(image["height"]),
        "width": int(image["width"]),
        "objects": {
            "id": [int(a.get("id", -1)) for a in annotations],
            "bbox": boxes_xyxy,
            "bbox_xywh": boxes_xywh,
            "label": [label_of[a["category_id"]] for a in annotations],
            "category_id": [int(a["category_id"]) for a in annotations],
            "iscrowd": [bool(a.get("iscrowd", 0)) for a in annotations],
            "area": [float(a["area"]) for a in annotations],
            "segmentation": [json.dumps(a.get("segmentation")) for a in annotations],
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build the COCO instances data set once and save it with `save_to_disk`."""
    parser = argparse.ArgumentParser(
        prog="python -m ait_hf.data.coco",
        description="Build the COCO instances data set (Arrow) once on disk.",
    )
    parser.add_argument("--image-dir", required=True, help="e.g. data/coco/train2017")
    parser.add_argument(
        "--annotations", required=True, help="e.g. data/coco/annotations/instances_train2017.json"
    )
    parser.add_argument("--output", required=True, help="folder to write the data set to")
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"))
    parser.add_argument("--filter-empty", action="store_true", help="drop images without annotations")
    parser.add_argument("--min-image-size", type=int, default=0)
    parser.add_argument("--verify-images", action="store_true", help="open every image header")
    parser.add_argument("--embed-images", action="store_true", help="store image bytes instead of paths")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    dataset = load_coco_instances(
        args.image_dir,
        args.annotations,
        on_error=args.on_error,
        filter_empty=args.filter_empty,
        min_image_size=args.min_image_size,
        verify_images=args.verify_images,
        embed_images=args.embed_images,
        cache_dir=args.cache_dir,
    )
    dataset.save_to_disk(args.output)
    print(f"wrote {len(dataset)} COCO images to {args.output}")


if __name__ == "__main__":
    main()
