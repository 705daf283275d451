"""Stage 2, synthetic-scene joint solver (instance segmentation + parallel depth, AiT-P, in every step): the bundled
default model's second phase. It has the instance solver's shape (`SYNTHETIC_INSSEG_SOLVER`), so that it can start
from a trained ``synthetic_insseg`` solver (``--load-from``): from random weights its boxes do not learn within a
joint budget of minutes (README, "Does it learn?")."""

from training.presets._synthetic import (
    SYNTHETIC_COCO_TASK,
    SYNTHETIC_DEPTH_TASK,
    SYNTHETIC_INIT,
    SYNTHETIC_INSSEG_SOLVER,
    synthetic_solver_config,
    synthetic_stage2_training,
)

PRESET = {
    "stage": 2,
    "original": None,
    "model": {
        "config": synthetic_solver_config(
            ["instance_segmentation", "depth"], depth_parallel=True, **SYNTHETIC_INSSEG_SOLVER
        )
    },
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"instance_segmentation": dict(SYNTHETIC_COCO_TASK), "depth": dict(SYNTHETIC_DEPTH_TASK)},
    "training": synthetic_stage2_training(),
}
