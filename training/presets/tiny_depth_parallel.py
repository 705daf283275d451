"""Stage 2, tiny depth AiT-P (parallel decoding) (tests and demos): a few-thousand-parameter solver that trains in seconds on a CPU."""

from training.presets._tiny import TINY_DEPTH_TASK, TINY_INIT, tiny_solver_config, tiny_training

PRESET = {
    "stage": 2,
    "original": None,
    "model": {"config": tiny_solver_config(["depth"], depth_parallel=True)},
    "init": dict(TINY_INIT),
    "tasks": {"depth": dict(TINY_DEPTH_TASK)},
    "training": tiny_training(),
}
