"""Metrics of raw AiT model outputs, for the evaluation runner and for `transformers.Trainer`.

`DepthMetricAccumulator` and `CocoMetricAccumulator` turn model outputs into the original evaluation's inputs
(depth resized to the ground truth; boxes divided by the resize factor back to original pixels and box-local
masks pasted there) and accumulate the metrics. `make_prediction_fn` is a Trainer evaluation step that
decodes like the runner, and `make_compute_metrics` the matching ``compute_metrics``.

Importing this module loads no modeling code; `make_prediction_fn` calls the model it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..image_processing_ait import get_keep_ratio_scale_factor, paste_masks_in_image
from .coco import MMDET_MAX_DETECTIONS, CocoInstanceEvaluator
from .depth import DepthMetrics

__all__ = [
    "COCO_METADATA_COLUMNS",
    "EVAL_TASKS",
    "CocoMetricAccumulator",
    "DepthMetricAccumulator",
    "EvaluationError",
    "canonical_task",
    "coco_batch_metadata",
    "make_compute_metrics",
    "make_prediction_fn",
]

EVAL_TASKS: tuple[str, ...] = ("depth", "instance_segmentation", "object_detection")
_TASK_ALIASES = {
    "depth": "depth",
    "depth_estimation": "depth",
    "instance_segmentation": "instance_segmentation",
    "instance": "instance_segmentation",
    "insseg": "instance_segmentation",
    "object_detection": "object_detection",
    "detection": "object_detection",
    "det": "object_detection",
}
# Columns of the metadata tensor a COCO evaluation step returns as its "labels" (see make_prediction_fn).
COCO_METADATA_COLUMNS = ("image_id", "height", "width", "width_scale", "height_scale")


class EvaluationError(Exception):
    """A user-facing problem (bad folder, data or option); the command line prints it without a traceback."""


def canonical_task(task: str) -> str:
    """The canonical task name ("depth", "instance_segmentation", "object_detection") of any accepted spelling."""
    key = task.strip().lower().replace("-", "_") if isinstance(task, str) else None
    if key not in _TASK_ALIASES:
        raise EvaluationError(f"unknown task {task!r}; valid tasks are {', '.join(EVAL_TASKS)}")
    return _TASK_ALIASES[key]


def _size_value(size: Any, key: str) -> Any:
    """Read `key` from a transformers `SizeDict` or a plain dict (image processor size settings)."""
    if size is None:
        return None
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


# =========================================================================================== accumulators
class DepthMetricAccumulator:
    """NYUv2 depth metrics of model predictions; predictions of another size than the ground truth are
    resized to it bilinearly (as `post_process_depth_estimation` does) before scoring.

    `metric_kwargs` go to `DepthMetrics` (the NYU crop applies to 480x640 ground truth).
    """

    def __init__(self, **metric_kwargs: Any) -> None:
        self.metrics = DepthMetrics(**metric_kwargs)

    @property
    def num_images(self) -> int:
        return self.metrics.num_images

    def reset(self) -> None:
        self.metrics.reset()

    def update(self, predicted_depth: torch.Tensor | np.ndarray, depth_labels: Any) -> None:
        """Score a batch: `predicted_depth` (B, h, w) metres; `depth_labels` (B, H, W) or B maps (H, W)."""
        predictions = torch.as_tensor(predicted_depth).detach()
        if predictions.ndim == 4 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
        labels = [
            torch.as_tensor(np.asarray(label) if not torch.is_tensor(label) else label)
            for label in depth_labels
        ]
        if predictions.ndim != 3 or predictions.shape[0] != len(labels):
            raise ValueError(
                f"predicted_depth must be (B, h, w) with one map per label; got {tuple(predictions.shape)} "
                f"for {len(labels)} labels"
            )
        resized = []
        for prediction, label in zip(predictions, labels):
            prediction = prediction.float()
            if tuple(prediction.shape) != tuple(label.shape[-2:]):
                prediction = F.interpolate(
                    prediction[None, None], size=tuple(label.shape[-2:]), mode="bilinear", align_corners=False
                )[0, 0]
            resized.append(prediction.cpu())
        if len({tuple(label.shape) for label in labels}) == 1:
            self.metrics.update(torch.stack(resized), torch.stack([label.float().cpu() for label in labels]))
        else:
            for prediction, label in zip(resized, labels):
                self.metrics.update(prediction, label.float().cpu())

    def update_from_trainer(self, predictions: Any, label_ids: Any) -> None:
        """`update` from an `EvalPrediction` made by `make_prediction_fn("depth")`."""
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        if isinstance(label_ids, (tuple, list)):
            label_ids = label_ids[0]
        self.update(predictions, label_ids if torch.is_tensor(label_ids) else np.asarray(label_ids))

    def compute(self) -> dict[str, float]:
        return self.metrics.compute()


class CocoMetricAccumulator:
    """COCO box (and mask) AP of raw model outputs: boxes back to original pixels, masks pasted there.

    Args:
        ground_truth: COCO instances annotations (path, dict or pycocotools `COCO`).
        task: "instance_segmentation" (bbox and segm AP) or "object_detection" (bbox AP).
        instance_size: ``(longest_edge, shortest_edge)`` of the keep-ratio resize the inputs went through
            (the image processor's ``instance_size``); used to recompute each image's resize factor.
        mask_threshold: binarisation threshold of the pasted masks (0.5 as the original).
        max_detections: COCOeval ``maxDets`` (mmdet's by default).
    """

    def __init__(
        self,
        ground_truth: Any,
        task: str = "instance_segmentation",
        *,
        instance_size: tuple[int, int | None] = (640, 640),
        mask_threshold: float = 0.5,
        max_detections: Sequence[int] = MMDET_MAX_DETECTIONS,
        iou_types: Sequence[str] | None = None,
    ) -> None:
        task = canonical_task(task)
        if task == "depth":
            raise ValueError("CocoMetricAccumulator scores instance segmentation or object detection")
        self.task = task
        self.with_masks = task == "instance_segmentation"
        if iou_types is None:
            iou_types = ("bbox", "segm") if self.with_masks else ("bbox",)
        self.evaluator = CocoInstanceEvaluator(
            ground_truth, iou_types=iou_types, max_detections=max_detections
        )
        self.with_masks = any(iou_type in ("segm", "boundary") for iou_type in self.evaluator.iou_types)
        self.instance_size = instance_size
        self.mask_threshold = mask_threshold

    @classmethod
    def from_processor(
        cls, ground_truth: Any, task: str, processor: Any, **kwargs: Any
    ) -> CocoMetricAccumulator:
        """Take the resize settings from an `AiTImageProcessor`."""
        size = processor.instance_size
        instance_size = (_size_value(size, "longest_edge"), _size_value(size, "shortest_edge"))
        if not processor.do_resize:
            instance_size = None
        return cls(ground_truth, task, instance_size=instance_size, **kwargs)

    @property
    def category_ids(self) -> list[int]:
        return self.evaluator.category_ids

    @property
    def num_images(self) -> int:
        return self.evaluator.num_images

    def reset(self) -> None:
        self.evaluator.reset()

    def scale_factor(self, height: int, width: int) -> tuple[float, float]:
        """(width_scale, height_scale) the preprocessing applied to an image of that original size."""
        if self.instance_size is None:
            return 1.0, 1.0
        return get_keep_ratio_scale_factor(height, width, *self.instance_size)

    def update(
        self,
        image_ids: Sequence[int],
        original_sizes: Sequence[Sequence[int]],
        pred_boxes: torch.Tensor,
        pred_scores: torch.Tensor,
        pred_labels: torch.Tensor,
        pred_masks: torch.Tensor | None = None,
        scale_factors: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """Add a batch of model outputs.

        Args:
            image_ids: COCO image id of each image.
            original_sizes: (height, width) of each original image.
            pred_boxes: (B, Q, 4) x1y1x2y2 in model-input pixels; pred_scores, pred_labels: (B, Q).
            pred_masks: (B, Q, S, S) box-local mask probabilities (instance segmentation).
            scale_factors: (width_scale, height_scale) per image; default: recomputed from the sizes.
        """
        pred_boxes, pred_scores, pred_labels = (
            torch.as_tensor(v) for v in (pred_boxes, pred_scores, pred_labels)
        )
        if self.with_masks and pred_masks is None:
            raise ValueError(
                "instance segmentation AP needs pred_masks (run the model with task='instance_segmentation')"
            )
        predictions = {}
        for index, image_id in enumerate(image_ids):
            height, width = (int(v) for v in original_sizes[index])
            if scale_factors is not None and scale_factors[index] is not None:
                width_scale, height_scale = (float(np.float32(v)) for v in scale_factors[index])
            else:
                width_scale, height_scale = self.scale_factor(height, width)
            boxes = pred_boxes[index].float()
            scale = torch.tensor([width_scale, height_scale, width_scale, height_scale], device=boxes.device)
            boxes = boxes / scale
            prediction: dict[str, Any] = {
                "boxes": boxes.cpu(),
                "scores": pred_scores[index].float().cpu(),
                "labels": pred_labels[index].cpu(),
            }
            if self.with_masks:
                masks = torch.as_tensor(pred_masks[index]).float()
                pasted = paste_masks_in_image(
                    masks, boxes.to(masks.device), (height, width), threshold=self.mask_threshold
                )
                prediction["masks"] = pasted.cpu().numpy()
            predictions[int(image_id)] = prediction
        self.evaluator.update(predictions)

    def update_from_trainer(self, predictions: Any, label_ids: Any) -> None:
        """`update` from an `EvalPrediction` made by `make_prediction_fn` for a COCO task."""
        predictions = [torch.as_tensor(np.asarray(p) if not torch.is_tensor(p) else p) for p in predictions]
        metadata = np.asarray(label_ids.cpu() if torch.is_tensor(label_ids) else label_ids, dtype=np.float64)
        if metadata.ndim != 2 or metadata.shape[1] != len(COCO_METADATA_COLUMNS):
            raise ValueError(
                f"label_ids must be the (B, {len(COCO_METADATA_COLUMNS)}) metadata of make_prediction_fn "
                f"({', '.join(COCO_METADATA_COLUMNS)}); got shape {metadata.shape}"
            )
        scales = [None if np.isnan(row[3:]).any() else (row[3], row[4]) for row in metadata]
        self.update(
            [int(row[0]) for row in metadata],
            [(int(row[1]), int(row[2])) for row in metadata],
            predictions[0],
            predictions[1],
            predictions[2],
            predictions[3] if self.with_masks else None,
            scale_factors=scales,
        )

    def compute(self) -> dict[str, float]:
        return self.evaluator.compute()


# ============================================================================================ Trainer glue
def coco_batch_metadata(batch: Mapping[str, Any]) -> torch.Tensor:
    """(B, 5) float64 metadata (`COCO_METADATA_COLUMNS`) of a COCO evaluation batch.

    The batch needs ``image_ids`` and ``original_sizes`` (``DetectionCollator(..., return_metadata=True)``
    or this runner's collator); ``scale_factors`` are used when present, else left NaN (recomputed later).
    """
    if "image_ids" not in batch or "original_sizes" not in batch:
        raise ValueError(
            "a COCO evaluation batch needs 'image_ids' and 'original_sizes' (use "
            "DetectionCollator(task, return_metadata=True)); got keys " + ", ".join(sorted(batch))
        )
    scales = batch.get("scale_factors")
    if scales is None:
        scales = [None] * len(batch["image_ids"])
    rows = []
    for image_id, size, scale in zip(batch["image_ids"], batch["original_sizes"], scales):
        scale = (math.nan, math.nan) if scale is None else tuple(float(v) for v in scale)
        rows.append([float(image_id), float(size[0]), float(size[1]), *scale])
    return torch.tensor(rows, dtype=torch.float64)


def make_prediction_fn(
    task: str, *, test_time_augmentation: bool = True, generator: torch.Generator | None = None
) -> Callable[[torch.nn.Module, Mapping[str, Any]], tuple[None, Any, Any]]:
    """An evaluation step ``(model, inputs) -> (None, predictions, labels)`` for a Trainer.

    depth: predictions = predicted depth (B, h, w), labels = ``inputs["depth_labels"]``;
    COCO tasks: predictions = (pred_boxes, pred_scores, pred_labels[, pred_masks]), labels = the
    `coco_batch_metadata` of the batch. `make_compute_metrics` consumes exactly these.

    COCO batches carry ``image_ids`` and ``original_sizes``, which the model's forward does not take: run the
    Trainer with ``remove_unused_columns=False`` or it drops them before the step sees the batch.
    """
    task = canonical_task(task)

    def prediction_fn(model: torch.nn.Module, inputs: Mapping[str, Any]) -> tuple[None, Any, Any]:
        from ..hub import model_task_for

        pixel_values = inputs["pixel_values"]
        if task == "depth":
            output = model(
                pixel_values, task="depth", test_time_augmentation=test_time_augmentation, generator=generator
            )
            return None, output.predicted_depth, inputs["depth_labels"]
        head = model_task_for(model.config, task)
        output = model(pixel_values, task=head, generator=generator)
        predictions = (output.pred_boxes, output.pred_scores, output.pred_labels)
        if task == "instance_segmentation":
            predictions = (*predictions, output.pred_masks)
        return None, predictions, coco_batch_metadata(inputs).to(pixel_values.device)

    return prediction_fn


def make_compute_metrics(
    task: str,
    *,
    ground_truth: Any = None,
    processor: Any = None,
    metric_prefix: str = "",
    **kwargs: Any,
) -> Callable[..., dict[str, float]]:
    """A `compute_metrics` for `transformers.Trainer` fed by `make_prediction_fn(task)`.

    Works per batch (``batch_eval_metrics=True``: accumulates and returns the metrics when the Trainer
    passes ``compute_result=True``) or on the concatenated predictions. COCO tasks need `ground_truth` (the
    annotation file) and the image processor (or ``instance_size=(longest, shortest)``) of the inputs;
    other `kwargs` go to `DepthMetricAccumulator` / `CocoMetricAccumulator`.
    """
    task = canonical_task(task)
    if task == "depth":
        accumulator: Any = DepthMetricAccumulator(**kwargs)
    else:
        if ground_truth is None:
            raise ValueError(f"{task} metrics need ground_truth (the COCO annotation file)")
        if processor is not None:
            accumulator = CocoMetricAccumulator.from_processor(ground_truth, task, processor, **kwargs)
        else:
            accumulator = CocoMetricAccumulator(ground_truth, task, **kwargs)

    def compute_metrics(eval_prediction: Any, compute_result: bool | None = None) -> dict[str, float]:
        accumulator.update_from_trainer(eval_prediction.predictions, eval_prediction.label_ids)
        if compute_result is False:
            return {}
        metrics = accumulator.compute()
        accumulator.reset()
        return {f"{metric_prefix}{name}": value for name, value in metrics.items()}

    return compute_metrics
