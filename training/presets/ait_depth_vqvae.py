"""Stage 1, depth tokenizer: the original ``vae/configs/depth/ait_depth_vqvae.py``.

480x480 crops of NYUv2 depth (after cropping the valid columns 41..600), half of the 16x16 patches of the
input masked (the target stays whole), 128 codes of 512 dims on a 15x15 grid; Adam 3e-4 for 20 epochs at a
total batch of 8, learning rate x0.98 at every 500th iteration of an epoch (and at each epoch's first);
validation on the 654 test frames (reconstruction loss and depth metrics of the reconstruction) every epoch.
"""

PRESET = {
    "stage": 1,
    "original": "vae/configs/depth/ait_depth_vqvae.py",
    "model": {
        "original_stage_config": {
            "image_size": 480,
            "num_resnet_blocks": 2,
            "downsample_ratio": 32,
            "num_tokens": 128,
            "codebook_dim": 512,
            "hidden_dim": 16,
            "use_norm": False,
            "channels": 1,
            "train_objective": "regression",
            "max_value": 10.0,
            "residul_type": "v1",
            "loss_type": "mse_ignore_zero",
        },
    },  # fmt: skip
    "data": {
        "kind": "nyu_depth",
        "train_transform": {
            "boundary_crop": [41, 0, 601, 480],
            "crop_size": [480, 480],
            "flip_p": 0.5,
            "mask_ratio": 0.5,
            "mask_patch_size": 16,
        },  # fmt: skip
        "eval_transform": {},
        "eval_crop": "nyu",
    },
    "training": {
        "total_batch_size": 8,
        "num_epochs": 20,
        "max_steps": -1,
        "optimizer": {"type": "adam", "lr": 3e-4, "weight_decay": 0.0},
        "schedule": {"type": "exponential_every", "gamma": 0.98, "every": 500, "restart_each_epoch": True},
        "max_grad_norm": 0.0,
        "mixed_precision": "no",
        "eval_strategy": "epoch",
        "eval_steps": None,
        "save_strategy": "epoch",
        "save_steps": None,
        "logging_steps": 100,
        "eval_batch_size": 1,
        "dataloader_num_workers": 1,
        "seed": 0,
    },
}
