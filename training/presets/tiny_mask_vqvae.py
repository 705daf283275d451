"""Stage 1, tiny instance-mask tokenizer (tests and demos): 16x16 box-cropped masks, trains in seconds."""

from training.presets._tiny import TINY_MASK_TOKENIZER

PRESET = {
    "stage": 1,
    "original": None,
    "model": {"config": dict(TINY_MASK_TOKENIZER)},
    "data": {"kind": "box_masks", "train_transform": {}, "eval_transform": {}, "eval_crop": None},
    "training": {
        "total_batch_size": 8,
        "num_epochs": 1,
        "max_steps": 40,
        "optimizer": {"type": "adamw", "lr": 1e-2, "weight_decay": 0.0},
        "schedule": {"type": "timm_cosine", "warmup_steps": 3, "warmup_ratio": 1e-3, "min_lr": 1e-6},
        "max_grad_norm": 0.0,
        "mixed_precision": "no",
        "eval_strategy": "steps",
        "eval_steps": 40,
        "save_strategy": "steps",
        "save_steps": 10,
        "logging_steps": 5,
        "eval_batch_size": 8,
        "dataloader_num_workers": 0,
        "seed": 0,
    },
}
