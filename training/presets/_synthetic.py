"""Shared pieces of the ``synthetic_*`` presets: small AiT models for the synthetic-scene experiment.

Sized to train in minutes on 2 CPU cores on `ait_hf.data.scenes` rooms rendered at 64x85 pixels (NYUv2 layout,
64x64 training crops) and the same scenes in the COCO layout (3 classes: box, sphere, cylinder). The tokenizer
configs of the stage-1 presets equal those inside the solver configs, so a stage-1 output folder can be passed to
stage 2 with ``--depth-tokenizer`` / ``--mask-tokenizer``.
"""

from training.presets import ORIGINAL_NO_DECAY_NAMES

# Synthetic frames are rendered at SYNTHETIC_FRAME = (height, width): the depth tokenizer's side and 4/3 of it,
# the frame `ait_hf.hub.image_processor_for_config` gives a depth model.
SYNTHETIC_FRAME = (64, 85)
SYNTHETIC_MAX_DEPTH = 10.0  # `SceneConfig.max_depth`

SYNTHETIC_DEPTH_TOKENIZER = {
    "image_size": 64, "downsample_ratio": 8, "num_embeddings": 32, "embedding_dim": 16, "hidden_size": 8,
    "num_resnet_blocks": 1, "tau": 0.8, "normalize_inputs": False, "reconstruction_loss": "mse_ignore_zero",
    "tokenizer_type": "depth", "ema_decay": 0.9,
}  # fmt: skip
SYNTHETIC_MASK_TOKENIZER = {
    "image_size": 16, "downsample_ratio": 4, "num_embeddings": 32, "embedding_dim": 16, "hidden_size": 8,
    "num_resnet_blocks": 1, "normalize_inputs": True, "reconstruction_loss": "mse", "tokenizer_type": "mask", "ema_decay": 0.9,
}  # fmt: skip
SYNTHETIC_BACKBONE = {
    "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4], "window_sizes": [4, 4, 4, 2],
    "pretrained_window_sizes": [0, 0, 0, 0], "shift_windows": [True, True, False, False], "rpe_hidden_dim": 16,
    "drop_path_rate": 0.0,
}  # fmt: skip


def synthetic_solver_config(tasks: list[str], **kwargs) -> dict:
    """`AiTConfig` keyword arguments of a small solver for 64x64 depth windows and 128x128 object inputs."""
    config = {
        "backbone_config": dict(SYNTHETIC_BACKBONE), "tasks": tasks, "d_model": 32, "encoder_layers": 1,
        "decoder_layers": 2, "num_attention_heads": 2, "ffn_dim": 64, "dropout": 0.0, "drop_path": 0.0,
        "encoder_grid": [4, 4], "max_decoder_length": 192, "num_bins": 64, "num_classes": 3,
        "num_mask_codes": 32, "num_depth_codes": 32, "num_queries": 8, "coord_norm_value": 128.0,
        "image_size": 128, "depth_tokenizer_config": dict(SYNTHETIC_DEPTH_TOKENIZER),
        "mask_tokenizer_config": dict(SYNTHETIC_MASK_TOKENIZER), "depth_tta_windows": 2, "sampling_top_p": 0.0,
        "id2label": {0: "box", 1: "sphere", 2: "cylinder"},
    }  # fmt: skip
    config.update(kwargs)
    return config


def synthetic_stage1_training(
    max_steps: int, lr: float, batch_size: int, optimizer: str, schedule: dict
) -> dict:
    """Stage-1 training settings: no intermediate checkpoints or evaluation (the experiment evaluates)."""
    return {
        "total_batch_size": batch_size, "num_epochs": 1000, "max_steps": max_steps,
        "optimizer": {"type": optimizer, "lr": lr, "weight_decay": 0.0}, "schedule": schedule,
        "max_grad_norm": 0.0, "mixed_precision": "no", "eval_strategy": "no", "eval_steps": None,
        "save_strategy": "no", "save_steps": None, "logging_steps": 50, "eval_batch_size": 8,
        "dataloader_num_workers": 0, "seed": 0,
    }  # fmt: skip


def synthetic_stage2_training(max_steps: int = 600, lr: float = 2e-3) -> dict:
    """Stage-2 settings: layer-decay AdamW, warmup then linear annealing to 1% (it follows ``--max-steps``),
    no intermediate checkpoints."""
    return {
        "max_steps": max_steps,
        "optimizer": {
            "type": "adamw_layer_decay", "lr": lr, "weight_decay": 0.05, "layer_decay_rate": 0.9,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {"type": "linear_annealing", "min_lr_ratio": 0.01, "warmup_steps": 20, "warmup_ratio": 0.1},
        "max_grad_norm": 10.0, "mixed_precision": "no", "eval_steps": None, "save_strategy": "no",
        "save_steps": None, "logging_steps": 50, "dataloader_num_workers": 0, "seed": 0,
    }  # fmt: skip


SYNTHETIC_DEPTH_TASK = {
    "total_batch_size": 8, "eval_batch_size": 8, "train_transform": {"crop_size": [64, 64]},
    "eval_transform": {}, "test_time_augmentation": False,
}  # fmt: skip
SYNTHETIC_COCO_TASK = {
    "total_batch_size": 8, "eval_batch_size": 8,
    "train_transform": {"output_size": 128, "scale_range": [0.8, 1.25], "min_box_size": 0.01, "flip_p": 0.5},
    "eval_transform": {"output_size": 128},
}  # fmt: skip
SYNTHETIC_INIT = {"backbone": None, "load_from": None, "depth_tokenizer": None, "mask_tokenizer": None}
