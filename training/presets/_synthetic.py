"""Shared pieces of the ``synthetic_*`` presets: small AiT models for the synthetic-scene experiment.

Sized to train in minutes on 2 CPU cores on `ait_hf.data.scenes` rooms rendered at 64x85 pixels (NYUv2 layout,
64x64 training crops) and the same scenes in the COCO layout (3 classes: box, sphere, cylinder). The tokenizer
configs of the stage-1 presets equal those inside the solver configs, so a stage-1 output folder can be passed to
stage 2 with ``--depth-tokenizer`` / ``--mask-tokenizer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.presets import ORIGINAL_NO_DECAY_NAMES

if TYPE_CHECKING:
    from ait_hf.data.scenes import SceneConfig

# Synthetic frames are rendered at SYNTHETIC_FRAME = (height, width): the depth tokenizer's side and 4/3 of it,
# the frame `ait_hf.hub.image_processor_for_config` gives a depth model.
SYNTHETIC_FRAME = (64, 85)
SYNTHETIC_MAX_DEPTH = 10.0  # `SceneConfig.max_depth`
# The experiment's world (`ait_hf.data.scenes.SceneConfig` fields; the rest keep their defaults): rooms 3-8 m wide
# and deep as in the default world but 2.8 m high, 1 to 3 objects, and one fixed camera pose (1.4 m high, looking
# 0.25 rad down, no yaw or roll). With the default world's six camera degrees of freedom and 2-8 objects, no
# from-scratch solver came near half the mean-depth baseline within a CPU budget of minutes (README, "Does it
# learn?"); here what varies is the room and the objects, which the image shows (where the walls meet the floor).
SYNTHETIC_SCENES = {
    "room_height": (2.8, 2.8), "camera_height": (1.4, 1.4), "camera_yaw": (0.0, 0.0),
    "camera_pitch": (-0.25, -0.25), "camera_roll": (0.0, 0.0), "min_objects": 1, "max_objects": 3,
}  # fmt: skip


def synthetic_scene_config() -> SceneConfig:
    """The `SceneConfig` of the synthetic experiment's world (`SYNTHETIC_SCENES`); imported lazily so that
    loading a preset stays light."""
    from ait_hf.data.scenes import SceneConfig

    return SceneConfig(**SYNTHETIC_SCENES)


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

# Instance segmentation needs a finer memory and more width than depth: with the 4-stage backbone (a 4x4 memory
# for 128x128 inputs) and width 32 the box tokens did not learn in 3000 steps (held-out mask AP 0.000); with 3
# stages (8x8 memory) and width 64 they do, slowly (README, "Does it learn?").
SYNTHETIC_INSSEG_SOLVER = {
    "backbone_config": {
        **SYNTHETIC_BACKBONE, "depths": [1, 1, 1], "num_heads": [1, 2, 2], "window_sizes": [4, 4, 4],
        "pretrained_window_sizes": [0, 0, 0], "shift_windows": [True, True, False], "out_indices": [2],
    },
    "encoder_grid": [8, 8], "d_model": 64, "ffn_dim": 128,
}  # fmt: skip
# Instance solvers keep their lr constant after warmup: their box tokens are still leaving the coordinate marginal
# when an annealed lr has decayed (12,000 steps: held-out mask AP 0.081 constant vs 0.044 annealed to 1%).
SYNTHETIC_INSSEG_MIN_LR_RATIO = 1.0


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


def synthetic_stage2_training(
    max_steps: int = 4000, lr: float = 5e-4, warmup_steps: int = 300, min_lr_ratio: float = 0.01
) -> dict:
    """Stage-2 settings: layer-decay AdamW, warmup then linear annealing to `min_lr_ratio` (it follows
    ``--max-steps``; 1.0 keeps the lr constant after warmup), no intermediate checkpoints.

    From random weights a solver first fits the input-independent token prior; at lr >= 1e-3 its input path
    stayed collapsed there, while 5e-4 with a 300-step warmup starts reading the image after ~1000 steps
    (README, "Does it learn?").
    """
    return {
        "max_steps": max_steps,
        "optimizer": {
            "type": "adamw_layer_decay", "lr": lr, "weight_decay": 0.05, "layer_decay_rate": 0.9,
            "no_decay_names": ORIGINAL_NO_DECAY_NAMES,
        },
        "schedule": {
            "type": "linear_annealing", "min_lr_ratio": min_lr_ratio, "warmup_steps": warmup_steps,
            "warmup_ratio": 0.1,
        },
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
