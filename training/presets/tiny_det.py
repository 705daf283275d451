"""Stage 2, tiny object detection (tests and demos): a few-thousand-parameter solver that trains in seconds on a CPU."""

from training.presets._tiny import TINY_INIT, tiny_coco_task, tiny_solver_config, tiny_training

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": tiny_solver_config(["object_detection"])},
    "init": dict(TINY_INIT),
    "tasks": {"object_detection": tiny_coco_task()},
    "training": tiny_training(),
}
