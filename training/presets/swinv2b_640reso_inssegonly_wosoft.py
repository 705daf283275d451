"""Stage 2: the original ``ait/configs/swinv2b_640reso_inssegonly_wosoft.py``. AiT instance segmentation on COCO, SwinV2-B, without soft tokens (ablation)."""

from training.presets import ORIGINAL_NO_DECAY_NAMES

PRESET = {
    "stage": 2,
    "original": "ait/configs/swinv2b_640reso_inssegonly_wosoft.py",
    "model": {"original_preset": "swinv2b_640reso_inssegonly_wosoft"},
    # What the original starts from (file names of the original release). Give local paths on the command line
    # (--backbone-checkpoint, --load-from, --depth-tokenizer, --mask-tokenizer), converted to HF folders where
    # the option says so.
    "init": {
        "backbone": "swin_v2_base_densesimmim.pth",
        "load_from": "ait_det_swinv2b_wodec.pth",
        "depth_tokenizer": None,
        "mask_tokenizer": "vqvae_insseg.pt",
    },
    "tasks": {
        "instance_segmentation": {
            "total_batch_size": 16,
            "eval_batch_size": 8,
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
        "max_steps": 366500,
        "optimizer": {
            "type": "adamw_layer_decay",
            "lr": 0.0001,
            "weight_decay": 0.05,
            "layer_decay_rate": 0.85,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {
            "type": "linear_annealing",
            "min_lr_ratio": 0.01,
            "warmup_steps": 14660,
            "warmup_ratio": 0.1,
        },
        "max_grad_norm": 50.0,
        "mixed_precision": "fp16",
        "eval_steps": 73300,
        "save_steps": 7330,
        "logging_steps": 20,
        "dataloader_num_workers": 8,
        "seed": 0,
    },
}
