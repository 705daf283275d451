"""Stage 1, synthetic-scene depth tokenizer with the original's mask augmentation (half the 8x8 input patches)."""

from training.presets._synthetic import SYNTHETIC_DEPTH_TOKENIZER, synthetic_stage1_training

PRESET = {
    "stage": 1,
    "original": None,
    "model": {"config": dict(SYNTHETIC_DEPTH_TOKENIZER)},
    "data": {
        "kind": "nyu_depth",
        "train_transform": {
            "boundary_crop": None,
            "crop_size": [64, 64],
            "flip_p": 0.5,
            "mask_ratio": 0.5,
            "mask_patch_size": 8,
        },  # fmt: skip
        "eval_transform": {},
        "eval_crop": None,
    },
    "training": synthetic_stage1_training(
        max_steps=800,
        lr=2e-3,
        batch_size=16,
        optimizer="adam",
        schedule={"type": "exponential_every", "gamma": 0.98, "every": 20, "restart_each_epoch": False},
    ),  # fmt: skip
}
