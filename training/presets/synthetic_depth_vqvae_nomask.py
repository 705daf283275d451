"""Stage 1, synthetic-scene depth tokenizer WITHOUT mask augmentation (the ablation of `synthetic_depth_vqvae`)."""

from training.presets.synthetic_depth_vqvae import PRESET as _MASKED

PRESET = {
    **_MASKED,
    "data": {**_MASKED["data"], "train_transform": {**_MASKED["data"]["train_transform"], "mask_ratio": 0.0}},
}
