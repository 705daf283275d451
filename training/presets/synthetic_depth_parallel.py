"""Stage 2, synthetic-scene depth solver: parallel decoding in one pass (AiT-P)."""

from training.presets._synthetic import (
    SYNTHETIC_DEPTH_TASK,
    SYNTHETIC_INIT,
    synthetic_solver_config,
    synthetic_stage2_training,
)

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": synthetic_solver_config(["depth"], depth_parallel=True)},
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"depth": dict(SYNTHETIC_DEPTH_TASK)},
    "training": synthetic_stage2_training(),
}
