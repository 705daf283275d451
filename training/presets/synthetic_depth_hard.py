"""Stage 2, synthetic-scene depth solver with hard tokens: trained without the soft-decode auxiliary depth loss
(argmax codes are not differentiable), argmax decoder inputs and argmax depth decoding. The soft preset
`synthetic_depth` differs in exactly these three."""

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
        "config": synthetic_solver_config(
            ["depth"], soft_token_inputs=False, depth_soft_decoding=False, depth_decoder_loss_weight=0.0
        )
    },
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"depth": dict(SYNTHETIC_DEPTH_TASK)},
    "training": synthetic_stage2_training(),
}
