"""Stage 2: the original ``ait/configs/swinv2b_480reso_parallel_depthonly.py``. AiT-P depth estimation on NYUv2, SwinV2-B: all depth tokens decoded in parallel."""

from training.presets import ORIGINAL_NO_DECAY_NAMES

PRESET = {
    "stage": 2,
    "original": "ait/configs/swinv2b_480reso_parallel_depthonly.py",
    "model": {"original_preset": "swinv2b_480reso_parallel_depthonly"},
    # What the original starts from (file names of the original release). Give local paths on the command line
    # (--backbone-checkpoint, --load-from, --depth-tokenizer, --mask-tokenizer), converted to HF folders where
    # the option says so.
    "init": {
        "backbone": "swin_v2_base_densesimmim.pth",
        "load_from": None,
        "depth_tokenizer": "vqvae_depth.pt",
        "mask_tokenizer": None,
    },
    "tasks": {
        "depth": {
            "total_batch_size": 24,
            "eval_batch_size": 2,
            "train_transform": {"crop_size": [480, 480]},
            "eval_transform": {},
            "test_time_augmentation": True,
        }
    },
    "training": {
        "max_steps": 25250,
        "optimizer": {
            "type": "adamw_layer_decay",
            "lr": 0.0002,
            "weight_decay": 0.05,
            "layer_decay_rate": 0.9,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {
            "type": "step",
            "milestones": [18180],
            "gamma": 0.1,
            "warmup_steps": 500,
            "warmup_ratio": 0.1,
        },
        "max_grad_norm": 10.0,
        "mixed_precision": "fp16",
        "eval_steps": 25250,
        "save_steps": 5050,
        "logging_steps": 20,
        "dataloader_num_workers": 8,
        "seed": 0,
    },
}
