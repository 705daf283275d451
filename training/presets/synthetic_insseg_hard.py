"""Stage 2, synthetic-scene instance segmentation solver with hard mask tokens: trained without the soft-decode
auxiliary mask loss (argmax codes are not differentiable, so a hard-token model has no such loss), argmax decoder
inputs and argmax mask decoding. The soft preset `synthetic_insseg` differs in exactly these three."""

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
    "model": {
        "config": synthetic_solver_config(
            ["instance_segmentation"],
            soft_token_inputs=False,
            soft_mask_decoding=False,
            mask_decoder_loss_weight=0.0,
            **SYNTHETIC_INSSEG_SOLVER,
        )
    },
    "init": dict(SYNTHETIC_INIT),
    "tasks": {"instance_segmentation": dict(SYNTHETIC_COCO_TASK)},
    "training": synthetic_stage2_training(min_lr_ratio=SYNTHETIC_INSSEG_MIN_LR_RATIO),
}
