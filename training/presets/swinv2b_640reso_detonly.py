"""Stage 2: the original ``ait/configs/swinv2b_640reso_detonly.py``. AiT object detection on COCO, SwinV2-B, 100 epochs (trained in fp32: the original config has no fp16)."""

from training.presets import ORIGINAL_NO_DECAY_NAMES

PRESET = {
    "stage": 2,
    "original": "ait/configs/swinv2b_640reso_detonly.py",
    "model": {"original_preset": "swinv2b_640reso_detonly"},
    # What the original starts from (file names of the original release). Give local paths on the command line
    # (--backbone-checkpoint, --load-from, --depth-tokenizer, --mask-tokenizer), converted to HF folders where
    # the option says so.
    "init": {
        "backbone": "swin_v2_base_densesimmim.pth",
        "load_from": None,
        "depth_tokenizer": None,
        "mask_tokenizer": None,
    },
    "tasks": {
        "object_detection": {
            "total_batch_size": 128,
            "eval_batch_size": 20,
            "train_transform": {
                "output_size": 640,
                "scale_range": [0.1, 3.0],
                "min_box_size": 0.01,
                "flip_p": 0.5,
            },
            "eval_transform": {"output_size": 640},
        }
    },
    "training": {
        "max_steps": 183300,
        "optimizer": {
            "type": "adamw_layer_decay",
            "lr": 0.001,
            "weight_decay": 0.05,
            "layer_decay_rate": 0.85,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {
            "type": "linear_annealing",
            "min_lr_ratio": 0.01,
            "warmup_steps": 18330,
            "warmup_ratio": 0.1,
        },
        "max_grad_norm": 1.0,
        "mixed_precision": "no",
        "eval_steps": 18330,
        "save_steps": 9165,
        "logging_steps": 20,
        "dataloader_num_workers": 8,
        "seed": 0,
    },
}
