"""Stage 2: the original ``ait/configs/swinv2b_640reso_joint.py``. AiT joint instance segmentation (COCO) + depth (NYUv2), SwinV2-B, from the detection model.

Every step holds 60 COCO and 4 NYUv2 samples (over all processes); each task's loss is normalised by its own
supervised-token count, then the task losses are summed (the original multi-task runner).
"""

from training.presets import ORIGINAL_NO_DECAY_NAMES

PRESET = {
    "stage": 2,
    "original": "ait/configs/swinv2b_640reso_joint.py",
    "model": {"original_preset": "swinv2b_640reso_joint"},
    # What the original starts from (file names of the original release). Give local paths on the command line
    # (--backbone-checkpoint, --load-from, --depth-tokenizer, --mask-tokenizer), converted to HF folders where
    # the option says so.
    "init": {
        "backbone": "swin_v2_base_densesimmim.pth",
        "load_from": "ait_det_swinv2b_wodec.pth",
        "depth_tokenizer": "vqvae_depth.pt",
        "mask_tokenizer": "vqvae_insseg.pt",
    },
    "tasks": {
        "instance_segmentation": {
            "total_batch_size": 60,
            "eval_batch_size": 8,
            "train_transform": {
                "output_size": 640,
                "scale_range": [0.1, 3.0],
                "min_box_size": 0.01,
                "flip_p": 0.5,
            },
            "eval_transform": {"output_size": 640},
        },
        "depth": {
            "total_batch_size": 4,
            "eval_batch_size": 2,
            "train_transform": {"crop_size": [480, 480]},
            "eval_transform": {},
            "test_time_augmentation": True,
        },
    },
    "training": {
        "max_steps": 302875,
        "optimizer": {
            "type": "adamw_layer_decay",
            "lr": 0.0008,
            "weight_decay": 0.05,
            "layer_decay_rate": 0.85,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {
            "type": "linear_annealing",
            "min_lr_ratio": 0.01,
            "warmup_steps": 12115,
            "warmup_ratio": 0.1,
        },
        "max_grad_norm": 10.0,
        "mixed_precision": "fp16",
        "eval_steps": 302875,
        "save_steps": 12115,
        "logging_steps": 20,
        "dataloader_num_workers": 8,
        "seed": 0,
    },
}
