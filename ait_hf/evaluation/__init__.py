"""Model-independent evaluation: NYUv2 depth metrics, COCO box/mask AP and metric reports.

Nothing here imports modeling code, so metrics can be computed (and tested) without a model.
"""

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
from .report import format_metrics_markdown, write_metrics_report

__all__ = [
    "COCO_MAX_DETECTIONS",
    "COCO_STAT_NAMES",
    "DEPTH_METRIC_NAMES",
    "MMDET_MAX_DETECTIONS",
    "NYU_EVAL_CROP",
    "NYU_EVAL_IMAGE_SIZE",
    "NYU_MAX_DEPTH",
    "NYU_MIN_DEPTH",
    "CocoInstanceEvaluator",
    "DepthMetrics",
    "coco_category_ids",
    "coco_stat_names",
    "compute_depth_metrics",
    "depth_metrics_per_image",
    "evaluate_coco_instances",
    "format_metrics_markdown",
    "instances_to_coco_results",
    "load_coco_ground_truth",
    "make_depth_compute_metrics",
    "write_metrics_report",
]
