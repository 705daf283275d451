"""Stage 2, tiny joint instance segmentation + depth (both tasks in every step) (tests and demos): a few-thousand-parameter solver that trains in seconds on a CPU."""

from training.presets._tiny import (
    TINY_DEPTH_TASK,
    TINY_INIT,
    tiny_coco_task,
    tiny_solver_config,
    tiny_training,
)

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": tiny_solver_config(["instance_segmentation", "depth"])},
    "init": dict(TINY_INIT),
    "tasks": {"instance_segmentation": tiny_coco_task(4), "depth": dict(TINY_DEPTH_TASK, total_batch_size=2)},
    "training": tiny_training(),
}
