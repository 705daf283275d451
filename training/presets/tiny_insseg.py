"""Stage 2, tiny instance segmentation (tests and demos): a few-thousand-parameter solver that trains in seconds on a CPU."""

from training.presets._tiny import TINY_INIT, tiny_coco_task, tiny_solver_config, tiny_training

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": tiny_solver_config(["instance_segmentation"])},
    "init": dict(TINY_INIT),
    "tasks": {"instance_segmentation": tiny_coco_task()},
    "training": tiny_training(),
}
