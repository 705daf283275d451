"""Shared pieces of the ``tiny_*`` presets: models small enough to train in seconds on one CPU core.

The tiny tokenizer configs of the stage-1 presets equal those inside the tiny solver configs, so a tiny
stage-1 output folder can be given to a tiny stage-2 run (``--depth-tokenizer`` / ``--mask-tokenizer``).
"""

TINY_DEPTH_TOKENIZER = {
    "image_size": 64, "downsample_ratio": 16, "num_embeddings": 16, "embedding_dim": 8, "hidden_size": 4,
    "tau": 0.8, "normalize_inputs": False, "reconstruction_loss": "mse_ignore_zero", "tokenizer_type": "depth",
}  # fmt: skip
TINY_MASK_TOKENIZER = {
    "image_size": 16, "downsample_ratio": 8, "num_embeddings": 16, "embedding_dim": 8, "hidden_size": 4,
    "normalize_inputs": True, "reconstruction_loss": "mse", "tokenizer_type": "mask",
}  # fmt: skip
TINY_BACKBONE = {
    "embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_sizes": [4, 4, 4, 2],
    "pretrained_window_sizes": [0, 0, 0, 0], "shift_windows": [True, True, False, False], "rpe_hidden_dim": 16,
    "drop_path_rate": 0.0,
}  # fmt: skip


def tiny_solver_config(tasks: list[str], **kwargs) -> dict:
    """`AiTConfig` keyword arguments of a tiny solver (64x64 depth crops, 128x128 COCO inputs, 80 classes)."""
    config = {
        "backbone_config": dict(TINY_BACKBONE), "tasks": tasks, "d_model": 16, "encoder_layers": 1,
        "decoder_layers": 2, "num_attention_heads": 2, "ffn_dim": 32, "dropout": 0.0, "drop_path": 0.0,
        "encoder_grid": [4, 4], "max_decoder_length": 64, "num_bins": 64, "num_classes": 80,
        "num_mask_codes": 16, "num_depth_codes": 16, "num_queries": 5, "coord_norm_value": 128.0,
        "depth_tokenizer_config": dict(TINY_DEPTH_TOKENIZER), "mask_tokenizer_config": dict(TINY_MASK_TOKENIZER),
        "depth_tta_windows": 2, "sampling_top_p": 0.0,
    }  # fmt: skip
    config.update(kwargs)
    return config


def tiny_training(**kwargs) -> dict:
    """Stage-2 training settings of the tiny presets (20 steps, layer-decay AdamW, warmup + step decay)."""
    from training.presets import ORIGINAL_NO_DECAY_NAMES

    training = {
        "max_steps": 20,
        "optimizer": {
            "type": "adamw_layer_decay", "lr": 5e-3, "weight_decay": 0.05, "layer_decay_rate": 0.9,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {"type": "step", "milestones": [16], "gamma": 0.1, "warmup_steps": 3, "warmup_ratio": 0.1},
        "max_grad_norm": 10.0,
        "mixed_precision": "no",
        "eval_steps": 20,
        "save_steps": 10,
        "logging_steps": 5,
        "dataloader_num_workers": 0,
        "seed": 0,
    }  # fmt: skip
    training.update(kwargs)
    return training


TINY_DEPTH_TASK = {
    "total_batch_size": 4, "eval_batch_size": 2, "train_transform": {"crop_size": [64, 64]},
    "eval_transform": {}, "test_time_augmentation": True,
}  # fmt: skip


def tiny_coco_task(total_batch_size: int = 4) -> dict:
    return {
        "total_batch_size": total_batch_size, "eval_batch_size": 2,
        "train_transform": {"output_size": 128, "scale_range": [0.5, 1.5], "min_box_size": 0.01, "flip_p": 0.5},
        "eval_transform": {"output_size": 128},
    }  # fmt: skip


TINY_INIT = {"backbone": None, "load_from": None, "depth_tokenizer": None, "mask_tokenizer": None}
