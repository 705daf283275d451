"""Stage 1, tiny depth tokenizer (tests and demos): 64x64 crops of small NYUv2-layout frames, trains in seconds."""

from training.presets._tiny import TINY_DEPTH_TOKENIZER

PRESET = {
    "stage": 1,
    "original": None,
    "model": {"config": dict(TINY_DEPTH_TOKENIZER)},
    "data": {
        "kind": "nyu_depth",
        "train_transform": {
            "boundary_crop": None,
            "crop_size": [64, 64],
            "flip_p": 0.5,
            "mask_ratio": 0.5,
            "mask_patch_size": 16,
        },  # fmt: skip
        "eval_transform": {},
        "eval_crop": None,
    },
    "training": {
        "total_batch_size": 4,
        "num_epochs": 1,
        "max_steps": 40,
        "optimizer": {"type": "adam", "lr": 5e-3, "weight_decay": 0.0},
        "schedule": {"type": "exponential_every", "gamma": 0.98, "every": 10, "restart_each_epoch": True},
        "max_grad_norm": 0.0,
        "mixed_precision": "no",
        "eval_strategy": "steps",
        "eval_steps": 40,
        "save_strategy": "steps",
        "save_steps": 10,
        "logging_steps": 5,
        "eval_batch_size": 2,
        "dataloader_num_workers": 0,
        "seed": 0,
    },
}
