"""Helpers of the training tests: command-line pieces for the synthetic data and in-process runs."""

from __future__ import annotations

from pathlib import Path


def nyu_args(data: dict[str, Path]) -> list[str]:
    return [
        "--nyu-root", str(data["nyu"]), "--train-list", str(data["train_list"]),
        "--test-list", str(data["test_list"]), "--cache-dir", str(data["cache"]),
    ]  # fmt: skip


def coco_args(data: dict[str, Path]) -> list[str]:
    return ["--coco-root", str(data["coco"]), "--cache-dir", str(data["cache"])]


def build_in_process(module, argv: list[str]):
    """The `AiTTrainer` that `training.stage1` / `training.stage2` would run for `argv` (and its args)."""
    from training.common import preset_from_args

    extra = ["--disable-tqdm"] + ([] if "--report-to" in argv else ["--report-to", "none"])
    args = module.parse_args([*argv, *extra])
    preset = preset_from_args(args, stage=1 if module.__name__.endswith("stage1") else 2)
    return module.build_trainer(args, preset), args


def run_in_process(module, argv: list[str], callbacks=()):
    """Build the trainer for `argv`, add `callbacks` and train (resuming when `--resume` says so)."""
    from training.common import resolve_resume

    trainer, args = build_in_process(module, argv)
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resolve_resume(args.resume, args.output_dir))
    return trainer


def step_losses(trainer, key: str = "loss") -> list[float]:
    return [
        entry[key] for entry in trainer.state.log_history if key in entry and "train_runtime" not in entry
    ]
