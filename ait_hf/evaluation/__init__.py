"""Evaluation: NYUv2 depth metrics, COCO box/mask AP, metric reports, tokenizer upper bounds, the runner.

The metric modules (`depth`, `coco`, `report`, `model_metrics`) and `upper_bounds` import no modeling code,
so metrics can be computed (and tested) without a model. The model runner (`ait_hf.evaluation.runner`, also
``python -m ait_hf.evaluation.runner``) loads models; its names are imported from here on first use.
"""

from importlib import import_module
from typing import Any

from .coco import (
    COCO_MAX_DETECTIONS,
    COCO_STAT_NAMES,
    MMDET_MAX_DETECTIONS,
    CocoInstanceEvaluator,
    coco_category_ids,
    coco_stat_names,
    evaluate_coco_instances,
    instances_to_coco_results,
    load_coco_ground_truth,
)
from .depth import (
    DEPTH_METRIC_NAMES,
    NYU_EVAL_CROP,
    NYU_EVAL_IMAGE_SIZE,
    NYU_MAX_DEPTH,
    NYU_MIN_DEPTH,
    DepthMetrics,
    compute_depth_metrics,
    depth_metrics_per_image,
    make_depth_compute_metrics,
)
from .model_metrics import (
    EVAL_TASKS,
    CocoMetricAccumulator,
    DepthMetricAccumulator,
    EvaluationError,
    canonical_task,
    coco_batch_metadata,
    make_compute_metrics,
    make_prediction_fn,
)
from .report import format_metrics_markdown, write_metrics_report
from .upper_bounds import (
    DEPTH_UPPER_BOUND_MODES,
    MASK_UPPER_BOUND_PROTOCOLS,
    depth_tokenizer_upper_bound,
    mask_tokenizer_upper_bound,
    reconstruct_box_masks,
    reconstruct_depth,
)

# Names of the runner, loaded lazily (it imports the models).
_RUNNER_NAMES = (
    "EvaluationResult",
    "evaluate_coco",
    "evaluate_depth",
    "load_model_and_processor",
    "load_tokenizer",
    "run_evaluation",
)


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        return getattr(import_module(".runner", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_RUNNER_NAMES,
    "COCO_MAX_DETECTIONS",
    "COCO_STAT_NAMES",
    "DEPTH_METRIC_NAMES",
    "DEPTH_UPPER_BOUND_MODES",
    "EVAL_TASKS",
    "MASK_UPPER_BOUND_PROTOCOLS",
    "MMDET_MAX_DETECTIONS",
    "NYU_EVAL_CROP",
    "NYU_EVAL_IMAGE_SIZE",
    "NYU_MAX_DEPTH",
    "NYU_MIN_DEPTH",
    "CocoInstanceEvaluator",
    "CocoMetricAccumulator",
    "DepthMetricAccumulator",
    "EvaluationError",
    "DepthMetrics",
    "canonical_task",
    "coco_batch_metadata",
    "coco_category_ids",
    "coco_stat_names",
    "compute_depth_metrics",
    "depth_metrics_per_image",
    "depth_tokenizer_upper_bound",
    "evaluate_coco_instances",
    "format_metrics_markdown",
    "instances_to_coco_results",
    "load_coco_ground_truth",
    "make_compute_metrics",
    "make_depth_compute_metrics",
    "make_prediction_fn",
    "mask_tokenizer_upper_bound",
    "reconstruct_box_masks",
    "reconstruct_depth",
    "write_metrics_report",
]
