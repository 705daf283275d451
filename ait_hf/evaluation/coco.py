"""COCO box and mask AP with pycocotools, following the conventions of the original (mmdet 2.x) evaluation.

What the original does and this module reproduces:

* contiguous labels 0..K-1 map to COCO category ids through the sorted category ids of the annotation
  file (mmdet's ``cat_ids``);
* boxes are given as (x1, y1, x2, y2) in original-image pixels and written as (x1, y1, x2 - x1, y2 - y1);
* a mask result carries the score of its box and NO "bbox" key, so pycocotools takes its area from the
  mask (mmdet pops "bbox" from segm results for the same reason);
* COCOeval runs with mmdet's ``maxDets = [100, 300, 1000]`` by default. pycocotools' ``summarize`` then
  reports AP at 100 detections per image (it hard-codes 100 for that entry), AP50/AP75/APs/APm/APl and
  ARs/ARm/ARl at 1000, and AR at 100/300/1000. Pass ``max_detections=COCO_MAX_DETECTIONS`` for the
  usual ``[1, 10, 100]``; results only differ when a model emits more than 100 detections per image.

Graceful edges (pycocotools itself crashes on an empty result list): an iou type without any detection
is scored against an empty result set, which gives 0.0 for every category that has ground truth and
-1.0 where no ground truth exists (pycocotools' "not applicable" marker), with a warning.
Images passed to `update` with no detections count as misses.

Boundary AP ("boundary" iou type) uses the maintained `faster-coco-eval` package when installed: the
original used the boundary-iou-api, which is not on PyPI; both implement Boundary IoU as
min(mask IoU, boundary IoU) with a dilation ratio of 0.02.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "COCO_MAX_DETECTIONS",
    "COCO_STAT_NAMES",
    "MMDET_MAX_DETECTIONS",
    "CocoInstanceEvaluator",
    "coco_category_ids",
    "coco_stat_names",
    "evaluate_coco_instances",
    "instances_to_coco_results",
    "load_coco_ground_truth",
]

MMDET_MAX_DETECTIONS: tuple[int, int, int] = (100, 300, 1000)
COCO_MAX_DETECTIONS: tuple[int, int, int] = (1, 10, 100)
SUPPORTED_IOU_TYPES: tuple[str, ...] = ("bbox", "segm", "boundary")


def coco_stat_names(max_detections: Sequence[int] = COCO_MAX_DETECTIONS) -> tuple[str, ...]:
    """Names of the 12 entries of `COCOeval.stats`, with the AR entries named by their detection limit."""
    first, second, third = max_detections
    return (
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        f"AR{first}",
        f"AR{second}",
        f"AR{third}",
        "ARs",
        "ARm",
        "ARl",
    )


COCO_STAT_NAMES: tuple[str, ...] = coco_stat_names(COCO_MAX_DETECTIONS)


def load_coco_ground_truth(source: str | os.PathLike | Mapping[str, Any] | COCO) -> COCO:
    """Return a pycocotools `COCO` from a path to an instances JSON file, its parsed dict, or a `COCO`."""
    if isinstance(source, COCO):
        return source
    if isinstance(source, Mapping):
        dataset = copy.deepcopy(dict(source))
        origin = "the ground-truth dict"
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        origin = path
        try:
            with open(path, encoding="utf-8") as handle:
                dataset = json.load(handle)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"COCO annotation file not found: {path}") from error
        except json.JSONDecodeError as error:
            raise ValueError(f"COCO annotation file {path} is not valid JSON: {error}") from error
    else:
        raise TypeError(
            f"ground truth must be a path, a dict or a pycocotools COCO; got {type(source).__name__}"
        )
    if not isinstance(dataset, dict):
        raise ValueError(f"{origin}: expected a JSON object at the top level, got {type(dataset).__name__}")
    for field in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(field), list):
            raise ValueError(
                f"{origin}: field '{field}' must be a list, got {type(dataset.get(field)).__name__}"
            )
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_category_ids(coco: COCO) -> list[int]:
    """COCO category id of each contiguous label: the annotation file's category ids, sorted (as mmdet)."""
    return sorted(coco.getCatIds())


def _to_numpy(value: Any) -> np.ndarray:
    """Torch tensors (any device) and array-likes to numpy, without importing torch here."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _encode_masks(masks: Any, image_id: int, height: int, width: int, count: int) -> list[dict[str, Any]]:
    """Binary (K, H, W) masks (or K RLE dicts) to compressed RLEs with str counts (JSON friendly)."""
    if isinstance(masks, (list, tuple)) and (len(masks) == 0 or isinstance(masks[0], Mapping)):
        rles = [dict(rle) for rle in masks]
        for rle in rles:
            if tuple(rle.get("size", ())) != (height, width):
                raise ValueError(
                    f"image {image_id}: RLE mask size {rle.get('size')} differs from the image size {[height, width]}"
                )
    else:
        array = _to_numpy(masks)
        if array.ndim == 2 and count == 1:
            array = array[None]
        if array.ndim != 3 or array.shape[0] != count or array.shape[1:] != (height, width):
            raise ValueError(
                f"image {image_id}: masks must have shape ({count}, {height}, {width}) "
                f"(one full-image binary mask per box); got {array.shape}"
            )
        if array.dtype != np.bool_:
            if not np.isin(array, (0, 1)).all():
                raise ValueError(
                    f"image {image_id}: masks must be binary (0/1 or bool); threshold them first"
                )
            array = array.astype(bool)
        rles = (
            mask_utils.encode(np.asfortranarray(array.transpose(1, 2, 0).astype(np.uint8))) if count else []
        )
    if len(rles) != count:
        raise ValueError(f"image {image_id}: got {len(rles)} masks for {count} boxes")
    for rle in rles:
        if isinstance(rle["counts"], bytes):
            rle["counts"] = rle["counts"].decode("ascii")
    return rles


def instances_to_coco_results(
    image_id: int,
    prediction: Mapping[str, Any],
    category_ids: Sequence[int],
    *,
    image_size: tuple[int, int] | None = None,
    with_masks: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Convert one image's predictions to COCO result dicts.

    Args:
        image_id: COCO image id.
        prediction: "boxes" (K, 4) x1y1x2y2 in original-image pixels, "scores" (K,), "labels" (K,)
            contiguous in [0, len(category_ids)), optional "masks": (K, H, W) binary at the original
            image size, or K RLE dicts.
        category_ids: COCO category id of each contiguous label (`coco_category_ids`).
        image_size: (height, width) of the image, required to check and encode masks.
        with_masks: build the mask results too (then "masks" must be present).

    Returns:
        (bbox results, segm results); segm results carry no "bbox" key (see module docstring).
    """
    for key in ("boxes", "scores", "labels"):
        if key not in prediction:
            raise ValueError(f"image {image_id}: prediction has no '{key}' (keys: {sorted(prediction)})")
    boxes = _to_numpy(prediction["boxes"]).astype(np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"image {image_id}: boxes must have shape (K, 4) as x1, y1, x2, y2; got {boxes.shape}"
        )
    scores = _to_numpy(prediction["scores"]).astype(np.float64).reshape(-1)
    labels = _to_numpy(prediction["labels"]).reshape(-1)
    count = boxes.shape[0]
    if scores.shape[0] != count or labels.shape[0] != count:
        raise ValueError(
            f"image {image_id}: boxes, scores and labels must have the same length; "
            f"got {count}, {scores.shape[0]} and {labels.shape[0]}"
        )
    if count and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            raise ValueError(f"image {image_id}: labels must be integers, got {labels[:5]}")
    labels = labels.astype(np.int64)
    if count and (labels.min() < 0 or labels.max() >= len(category_ids)):
        raise ValueError(
            f"image {image_id}: labels must lie in [0, {len(category_ids)}) (contiguous class indices); "
            f"got min {labels.min()}, max {labels.max()}"
        )
    box_results = []
    for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        box_results.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_ids[label]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            }
        )
    mask_results: list[dict[str, Any]] = []
    if with_masks:
        if "masks" not in prediction or prediction["masks"] is None:
            raise ValueError(f"image {image_id}: mask AP needs 'masks' in the prediction")
        if image_size is None:
            raise ValueError(f"image {image_id}: image_size is needed to check the masks")
        rles = _encode_masks(prediction["masks"], image_id, image_size[0], image_size[1], count)
        for rle, score, label in zip(rles, scores.tolist(), labels.tolist()):
            mask_results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_ids[label]),
                    "segmentation": rle,
                    "score": score,
                }
            )
    return box_results, mask_results


class CocoInstanceEvaluator:
    """Accumulates per-image detections / instance masks and scores them with COCOeval.

    Example:
        >>> evaluator = CocoInstanceEvaluator("instances_val2017.json", iou_types=("bbox", "segm"))
        >>> evaluator.update({image_id: {"boxes": ..., "scores": ..., "labels": ..., "masks": ...}})
        >>> evaluator.compute()  # {"bbox_AP": ..., ..., "segm_ARl": ...}
    """

    def __init__(
        self,
        ground_truth: str | os.PathLike | Mapping[str, Any] | COCO,
        iou_types: Sequence[str] = ("bbox", "segm"),
        *,
        max_detections: Sequence[int] = MMDET_MAX_DETECTIONS,
        restrict_to_seen_images: bool = True,
    ) -> None:
        """
        Args:
            ground_truth: COCO instances annotations (path, dict or pycocotools `COCO`).
            iou_types: any of "bbox", "segm", "boundary" ("boundary" needs `faster-coco-eval`).
            max_detections: COCOeval `maxDets`, three increasing values that include 100 (pycocotools'
                summary reads AP at 100 detections). Default: mmdet's (100, 300, 1000).
            restrict_to_seen_images: score only the images given to `update` (so a subset can be
                evaluated); False scores every image of the annotation file, unseen ones as misses.
        """
        iou_types = tuple(iou_types)
        unknown = [iou_type for iou_type in iou_types if iou_type not in SUPPORTED_IOU_TYPES]
        if unknown or not iou_types:
            raise ValueError(
                f"iou_types must be a non-empty subset of {SUPPORTED_IOU_TYPES}; got {iou_types}"
            )
        max_detections = tuple(int(value) for value in max_detections)
        if (
            len(max_detections) != 3
            or 100 not in max_detections
            or sorted(max_detections) != list(max_detections)
        ):
            raise ValueError(
                "max_detections must be three increasing values including 100 (pycocotools' summary reads "
                f"AP at 100 detections); got {max_detections}"
            )
        if "boundary" in iou_types:
            _import_faster_coco_eval()  # fail early with an install hint
        self.coco_gt = load_coco_ground_truth(ground_truth)
        self.iou_types = iou_types
        self.max_detections = max_detections
        self.restrict_to_seen_images = restrict_to_seen_images
        self.category_ids = coco_category_ids(self.coco_gt)
        self.stat_names = coco_stat_names(max_detections)
        self.summaries: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every prediction added so far."""
        self._seen_image_ids: set[int] = set()
        self._box_results: list[dict[str, Any]] = []
        self._mask_results: list[dict[str, Any]] = []

    @property
    def num_images(self) -> int:
        """Images given to `update` (with or without detections)."""
        return len(self._seen_image_ids)

    @property
    def num_detections(self) -> int:
        """Detections added so far."""
        return len(self._box_results)

    def update(
        self,
        predictions: Mapping[int, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
        image_ids: Iterable[int] | None = None,
    ) -> None:
        """Add the predictions of some images.

        Args:
            predictions: either {image_id: prediction} or a list of predictions, each a mapping with
                "boxes", "scores", "labels" and (for mask AP) "masks"; see `instances_to_coco_results`.
            image_ids: COCO image id of each list entry; may be omitted when each entry has "image_id".
        """
        if isinstance(predictions, Mapping):
            pairs = list(predictions.items())
        else:
            predictions = list(predictions)
            if image_ids is None:
                missing = [
                    index for index, prediction in enumerate(predictions) if "image_id" not in prediction
                ]
                if missing:
                    raise ValueError(f"predictions {missing[:5]} have no 'image_id'; pass image_ids")
                image_ids = [prediction["image_id"] for prediction in predictions]
            image_ids = [int(_to_numpy(image_id)) for image_id in image_ids]
            if len(image_ids) != len(predictions):
                raise ValueError(f"got {len(image_ids)} image_ids for {len(predictions)} predictions")
            pairs = list(zip(image_ids, predictions))
        needs_masks = any(iou_type in ("segm", "boundary") for iou_type in self.iou_types)
        new_box_results: list[dict[str, Any]] = []
        new_mask_results: list[dict[str, Any]] = []
        batch_ids: set[int] = set()
        for image_id, prediction in pairs:
            image_id = int(image_id)
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"image id {image_id} is not in the ground-truth annotations")
            if image_id in self._seen_image_ids or image_id in batch_ids:
                raise ValueError(f"image id {image_id} was given twice; each image must be added once")
            batch_ids.add(image_id)
            image = self.coco_gt.imgs[image_id]
            image_size = (int(image["height"]), int(image["width"])) if needs_masks else None
            box_results, mask_results = instances_to_coco_results(
                image_id, prediction, self.category_ids, image_size=image_size, with_masks=needs_masks
            )
            new_box_results.extend(box_results)
            new_mask_results.extend(mask_results)
        # Only commit once the whole call validated, so a bad entry leaves the state unchanged.
        self._seen_image_ids |= batch_ids
        self._box_results.extend(new_box_results)
        self._mask_results.extend(new_mask_results)

    def results(self, iou_type: str) -> list[dict[str, Any]]:
        """The COCO result dicts for `iou_type` (JSON-serialisable; "boundary" uses the mask results)."""
        if iou_type not in self.iou_types:
            raise ValueError(f"iou type {iou_type!r} is not evaluated here; iou_types={self.iou_types}")
        return copy.deepcopy(self._box_results if iou_type == "bbox" else self._mask_results)

    def _image_ids(self) -> list[int]:
        if self.restrict_to_seen_images:
            if not self._seen_image_ids:
                raise ValueError("no image was given to update(); nothing to evaluate")
            return sorted(self._seen_image_ids)
        return sorted(self.coco_gt.getImgIds())

    def _evaluate(self, iou_type: str) -> np.ndarray:
        results = self.results(iou_type)
        if not results:
            warnings.warn(
                f"no {iou_type} detections on {self.num_images} images: scoring an empty result set "
                "(0.0 where ground truth exists, -1.0 where none does)",
                stacklevel=3,
            )
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            if iou_type == "boundary":
                stats = self._evaluate_boundary(results)
            else:
                coco_dt = self._load_results(results)
                evaluator = COCOeval(self.coco_gt, coco_dt, iou_type)
                self._configure(evaluator.params)
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
                stats = np.asarray(evaluator.stats, dtype=np.float64)
        self.summaries[iou_type] = buffer.getvalue()
        return stats

    def _configure(self, params: Any) -> None:
        params.catIds = list(self.category_ids)
        params.imgIds = self._image_ids()
        params.maxDets = list(self.max_detections)

    def _load_results(self, results: list[dict[str, Any]]) -> COCO:
        """`COCO.loadRes`, plus an empty result set (loadRes raises IndexError on an empty list)."""
        if results:
            return self.coco_gt.loadRes(results)
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": list(self.coco_gt.dataset["images"]),
            "categories": copy.deepcopy(self.coco_gt.dataset["categories"]),
            "annotations": [],
        }
        coco_dt.createIndex()
        return coco_dt

    def _evaluate_boundary(self, results: list[dict[str, Any]]) -> np.ndarray:
        faster_coco_eval = _import_faster_coco_eval()
        coco_gt = faster_coco_eval.COCO(copy.deepcopy(self.coco_gt.dataset))
        coco_dt = coco_gt.loadRes(results)
        evaluator = faster_coco_eval.COCOeval_faster(
            coco_gt, coco_dt, iouType="boundary", print_function=print
        )
        self._configure(evaluator.params)
        evaluator.evaluate()
        evaluator.accumulate()
        # faster-coco-eval's own summary orders and limits its stats differently; ask its per-entry
        # summariser for pycocotools' 12 entries so every iou type reports the same quantities.
        first, second, third = self.max_detections
        summarize = evaluator._summarize
        return np.asarray(
            [
                summarize(1, maxDets=100),
                summarize(1, iouThr=0.5, maxDets=third),
                summarize(1, iouThr=0.75, maxDets=third),
                summarize(1, areaRng="small", maxDets=third),
                summarize(1, areaRng="medium", maxDets=third),
                summarize(1, areaRng="large", maxDets=third),
                summarize(0, maxDets=first),
                summarize(0, maxDets=second),
                summarize(0, maxDets=third),
                summarize(0, areaRng="small", maxDets=third),
                summarize(0, areaRng="medium", maxDets=third),
                summarize(0, areaRng="large", maxDets=third),
            ],
            dtype=np.float64,
        )

    def compute(self, nested: bool = False) -> dict[str, Any]:
        """Run COCOeval for each iou type.

        Returns:
            {"bbox_AP": ..., "bbox_AP50": ..., ..., "segm_ARl": ...} (floats; -1.0 means "no ground
            truth in that area range", as pycocotools reports), or {"bbox": {"AP": ...}, ...} when
            `nested`. The printed COCOeval summaries are kept in `self.summaries`.
        """
        self._image_ids()  # raises when nothing was added, before any evaluation work
        by_type = {}
        for iou_type in self.iou_types:
            stats = self._evaluate(iou_type)
            by_type[iou_type] = {name: float(value) for name, value in zip(self.stat_names, stats)}
        if nested:
            return by_type
        return {
            f"{iou_type}_{name}": value
            for iou_type, stats in by_type.items()
            for name, value in stats.items()
        }


def _import_faster_coco_eval() -> Any:
    try:
        import faster_coco_eval
    except ImportError as error:
        raise ImportError(
            "boundary AP needs the 'faster-coco-eval' package (pip install faster-coco-eval)"
        ) from error
    return faster_coco_eval


def evaluate_coco_instances(
    ground_truth: str | os.PathLike | Mapping[str, Any] | COCO,
    predictions: Mapping[int, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    image_ids: Iterable[int] | None = None,
    *,
    iou_types: Sequence[str] = ("bbox", "segm"),
    max_detections: Sequence[int] = MMDET_MAX_DETECTIONS,
    restrict_to_seen_images: bool = True,
    nested: bool = False,
) -> dict[str, Any]:
    """One-call COCO AP: `CocoInstanceEvaluator(...)`, one `update`, then `compute`."""
    evaluator = CocoInstanceEvaluator(
        ground_truth,
        iou_types,
        max_detections=max_detections,
        restrict_to_seen_images=restrict_to_seen_images,
    )
    evaluator.update(predictions, image_ids)
    return evaluator.compute(nested=nested)
