"""Stage 2, synthetic-scene depth solver: AR decoding with hard tokens (argmax inputs and argmax decoding)."""

from training.presets._synthetic import (
    SYNTHETIC_DEPTH_TASK,
    SYNTHETIC_INIT,
    synthetic_solver_config,
    synthetic_stage2_training,
)

PRESET = {
    "stage": 2,
    "original": None,
    "model": {
        "config": synthetic_solver_config(["depth"], soft_token_inputs=False, depth_soft_decoding=False)
    },
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"depth": dict(SYNTHETIC_DEPTH_TASK)},
    "training": synthetic_stage2_training(),
}
