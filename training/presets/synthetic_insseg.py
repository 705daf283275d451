"""Stage 2, synthetic-scene instance segmentation solver: soft mask tokens (soft decoder inputs and soft mask decoding, AiT)."""

from training.presets._synthetic import (
    SYNTHETIC_COCO_TASK,
    SYNTHETIC_INIT,
    SYNTHETIC_INSSEG_MIN_LR_RATIO,
    SYNTHETIC_INSSEG_SOLVER,
    synthetic_solver_config,
    synthetic_stage2_training,
)

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": synthetic_solver_config(["instance_segmentation"], **SYNTHETIC_INSSEG_SOLVER)},
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"instance_segmentation": dict(SYNTHETIC_COCO_TASK)},
    "training": synthetic_stage2_training(min_lr_ratio=SYNTHETIC_INSSEG_MIN_LR_RATIO),
}
