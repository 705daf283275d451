"""Train the bundled default model (`ait_hf/default_model`) on synthetic scenes and write its model card.

The model is the ``synthetic_joint`` preset (instance segmentation + depth) trained with the real stage-1 and
stage-2 entry points on rendered rooms (`ait_hf.data.scenes`), NOT on NYUv2 or COCO. Its card reports metrics on
the first ``CARD_SCENES`` held-out scenes (NYUv2 "test" = COCO "val2017" of data seed 0, never trained on), which
`card_metrics` recomputes (greedy decoding, deterministic) and ``tests/test_learning.py`` compares with the card.
A few held-out scenes are saved as sample images under ``samples/``. Command line::

    python -m training.experiments.bundle_default_model --work runs/default_model --out ait_hf/default_model
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.experiments.synthetic_ablation import (
    DEPTH_METRIC_KWARGS,
    mean_depth_baseline,
    train_stage1,
    train_stage2,
    write_data,
)

DATA_SEED = 0
CARD_SCENES = 16  # held-out scenes the card's metrics are measured on (and the test recomputes)
NUM_SAMPLES = 3
DEFAULT_BUDGET = {
    "scenes_train": 400, "scenes_test": CARD_SCENES, "depth_vqvae_steps": 800, "mask_vqvae_steps": 300,
    "joint_steps": 600,
}  # fmt: skip
# Metrics on the card: (card label, key of `card_metrics`), in the card's order.
CARD_METRICS = (
    ("Depth RMSE (m)", "depth_rmse"),
    ("Depth AbsRel", "depth_abs_rel"),
    ("Depth delta1", "depth_d1"),
    ("Mask AP", "segm_AP"),
    ("Mask AP50", "segm_AP_50"),
    ("Box AP", "bbox_AP"),
)


def held_out_scenes(count: int = CARD_SCENES, size: tuple[int, int] | None = None) -> list[Any]:
    """The first `count` held-out scenes of data seed `DATA_SEED`, rendered in memory."""
    from ait_hf.data.scenes import render_scenes
    from training.presets._synthetic import SYNTHETIC_FRAME

    return list(render_scenes(DATA_SEED, "test", count, size or SYNTHETIC_FRAME))


def card_metrics(model: Any, count: int = CARD_SCENES) -> dict[str, float]:
    """Held-out metrics of the joint `model` on the first `count` held-out scenes, greedy decoding.

    The scenes are rendered in memory and written as a COCO annotation dict, so that this needs no data on disk.
    """
    from ait_hf.data.scenes import SCENE_CATEGORIES, coco_image, nyu_sample
    from ait_hf.evaluation import CocoMetricAccumulator, DepthMetricAccumulator
    from ait_hf.hub import image_processor_for_config

    scenes = held_out_scenes(count)
    depth_processor = image_processor_for_config(model.config, "depth")
    coco_processor = image_processor_for_config(model.config, "instance_segmentation")
    depth_metrics = DepthMetricAccumulator(**DEPTH_METRIC_KWARGS)
    ground_truth = _coco_ground_truth([coco_image(scene, index) for index, scene in enumerate(scenes)],
                                      SCENE_CATEGORIES)  # fmt: skip
    coco_metrics = CocoMetricAccumulator.from_processor(ground_truth, "instance_segmentation", coco_processor)
    previous_top_p = model.config.sampling_top_p
    model.config.sampling_top_p = 0.0  # greedy: the card's numbers do not depend on a random stream
    try:
        with torch.inference_mode():
            for index, scene in enumerate(scenes):
                sample = nyu_sample(scene, index)
                image = np.asarray(sample.image)
                inputs = depth_processor(images=image, return_tensors="pt")
                output = model(inputs["pixel_values"], task="depth", test_time_augmentation=False)
                depth_metrics.update(output.predicted_depth.float(), [torch.as_tensor(scene.depth)])
                inputs = coco_processor(images=image, return_tensors="pt")
                output = model(inputs["pixel_values"], task="instance_segmentation")
                coco_metrics.update(
                    [index + 1], [image.shape[:2]], output.pred_boxes, output.pred_scores, output.pred_labels,
                    output.pred_masks,
                )  # fmt: skip
    finally:
        model.config.sampling_top_p = previous_top_p
    depth = depth_metrics.compute()
    coco = coco_metrics.compute()
    return {
        "depth_rmse": depth["rmse"], "depth_abs_rel": depth["abs_rel"], "depth_d1": depth["d1"],
        "segm_AP": coco["segm_AP"], "segm_AP_50": coco["segm_AP_50"], "bbox_AP": coco["bbox_AP"],
    }  # fmt: skip


def _coco_ground_truth(images: Sequence[Any], categories: Sequence[tuple[int, str, str]]) -> dict[str, Any]:
    """COCO instances dict of rendered scenes (image ids 1..N), as `write_coco_split` would write it."""
    from ait_hf.data.synthetic import coco_annotation_dict

    return coco_annotation_dict(images, categories)
