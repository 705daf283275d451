"""Stage 2, synthetic-scene joint solver (instance segmentation + parallel depth, AiT-P, in every step): the bundled
default model."""

from training.presets._synthetic import (
    SYNTHETIC_COCO_TASK,
    SYNTHETIC_DEPTH_TASK,
    SYNTHETIC_INIT,
    synthetic_solver_config,
    synthetic_stage2_training,
)

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": synthetic_solver_config(["instance_segmentation", "depth"], depth_parallel=True)},
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"instance_segmentation": dict(SYNTHETIC_COCO_TASK), "depth": dict(SYNTHETIC_DEPTH_TASK)},
    "training": synthetic_stage2_training(),
}
