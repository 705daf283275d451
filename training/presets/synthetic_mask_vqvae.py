"""Stage 1, synthetic-scene instance-mask tokenizer: 16x16 box-cropped masks of the COCO-layout scenes."""

from training.presets._synthetic import SYNTHETIC_MASK_TOKENIZER, synthetic_stage1_training

PRESET = {
    "stage": 1,
    "original": None,
    "model": {"config": dict(SYNTHETIC_MASK_TOKENIZER)},
    "data": {"kind": "box_masks", "train_transform": {}, "eval_transform": {}, "eval_crop": None},
    "training": synthetic_stage1_training(
        max_steps=300,
        lr=3e-3,
        batch_size=32,
        optimizer="adamw",
        schedule={"type": "timm_cosine", "warmup_steps": 10, "warmup_ratio": 1e-3, "min_lr": 1e-5},
    ),  # fmt: skip
}
