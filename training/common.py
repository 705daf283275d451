"""Command-line and `TrainingArguments` plumbing shared by `training.stage1` and `training.stage2`."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .presets import list_presets, load_preset

logger = logging.getLogger(__name__)

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every training command has (preset, overrides, output, resume, precision, logging)."""
    parser.add_argument("--preset", required=True, help=f"preset name; one of: {', '.join(list_presets())}")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override preset values, e.g. training.max_steps=100 training.optimizer.lr=1e-4 "
        "(+key=value adds a key)",
    )
    parser.add_argument("--output-dir", required=True, help="checkpoints, logs and the final HF folder")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="resume from a checkpoint folder, or (no value / 'latest') from the last one in --output-dir",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="shortcut for training.max_steps")
    parser.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION,
        default="auto",
        help="'auto': the preset's choice where the device supports it (fp16/bf16 need CUDA), else fp32",
    )
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None, help="shortcut for training.seed")
    parser.add_argument("--no-eval", action="store_true", help="train without evaluation")
    parser.add_argument(
        "--report-to",
        nargs="+",
        default=["tensorboard"],
        help="Trainer loggers ('none' for none); TensorBoard logs go to OUTPUT_DIR/runs",
    )
    parser.add_argument("--save-total-limit", type=int, default=None)
    parser.add_argument(
        "--on-nonfinite-loss",
        choices=("skip", "raise"),
        default="skip",
        help="a NaN/inf loss is reported with the step and sample ids; then skip that step or stop",
    )
    parser.add_argument("--on-bad-sample", choices=("skip", "raise"), default="skip")
    parser.add_argument("--num-workers", type=int, default=None, help="shortcut for dataloader workers")
    parser.add_argument("--cache-dir", default=None, help="`datasets` cache folder for the Arrow files")
    parser.add_argument("--disable-tqdm", action="store_true")


def preset_from_args(args: argparse.Namespace, stage: int) -> dict[str, Any]:
    """Load the preset, apply ``--set`` and the shortcut options, and check it is a preset of `stage`."""
    preset = load_preset(args.preset, args.overrides)
    if preset["stage"] != stage:
        raise ValueError(
            f"preset {args.preset!r} is a stage-{preset['stage']} preset; use training.stage{preset['stage']}"
        )
    training = preset["training"]
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    if args.seed is not None:
        training["seed"] = args.seed
    if args.num_workers is not None:
        training["dataloader_num_workers"] = args.num_workers
    return preset


def resolve_mixed_precision(requested: str, preset_choice: str) -> str:
    """ "no", "fp16" or "bf16" for this device; "auto" takes the preset's choice when the device supports it."""
    choice = preset_choice if requested == "auto" else requested
    if choice not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed precision must be one of {MIXED_PRECISION}, got {choice!r}")
    if choice == "no":
        return "no"
    cuda = torch.cuda.is_available()
    supported = cuda and (choice == "fp16" or torch.cuda.is_bf16_supported())
    if supported:
        return choice
    if requested == "auto":
        logger.warning("mixed precision %s is not available on this device; training in float32", choice)
        return "no"
    raise ValueError(f"--mixed-precision {choice} needs a CUDA device that supports it")


def report_to(requested: Sequence[str]) -> list[str]:
    """The Trainer's ``report_to`` list, without TensorBoard when it is not installed (with a warning)."""
    names = [name for name in requested if name != "none"]
    if "tensorboard" in names and importlib.util.find_spec("tensorboard") is None:
        if importlib.util.find_spec("tensorboardX") is None:
            logger.warning("tensorboard is not installed (pip install tensorboard): no TensorBoard logs")
            names.remove("tensorboard")
    return names


def resolve_resume(resume: str | None, output_dir: str) -> str | None:
    """Checkpoint folder to resume from: ``latest`` = the last ``checkpoint-*`` in `output_dir` (if any)."""
    if resume is None:
        return None
    if resume == "latest":
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            logger.warning("no checkpoint in %s to resume from: starting a new run", output_dir)
        return last
    if not os.path.isdir(resume):
        raise ValueError(f"--resume {resume}: no such checkpoint folder")
    return resume


def world_size() -> int:
    """Processes of this run (from the launcher's environment, before the Trainer initialises them)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_arguments(
    args: argparse.Namespace,
    training: dict[str, Any],
    per_process_batch: int,
    eval_batch_size: int,
    label_names: list[str],
    has_eval: bool,
) -> TrainingArguments:
    """`TrainingArguments` for an AiT run from the preset's ``training`` dict and the command line."""
    precision = resolve_mixed_precision(args.mixed_precision, training.get("mixed_precision", "no"))
    max_steps = int(training.get("max_steps", -1) or -1)
    eval_strategy = training.get("eval_strategy", "steps") if has_eval and not args.no_eval else "no"
    eval_steps = training.get("eval_steps")
    if eval_strategy == "steps" and not eval_steps:
        eval_strategy = "no"
    save_strategy = training.get("save_strategy", "steps")
    distributed = world_size() > 1
    kwargs: dict[str, Any] = {
        "output_dir": args.output_dir,
        "per_device_train_batch_size": per_process_batch,
        "per_device_eval_batch_size": eval_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_steps": max_steps,
        "num_train_epochs": float(training.get("num_epochs", 1)),
        "learning_rate": float(training["optimizer"]["lr"]),
        "weight_decay": float(training["optimizer"].get("weight_decay", 0.0)),
        "max_grad_norm": float(training.get("max_grad_norm") or 0.0),
        "fp16": precision == "fp16",
        "bf16": precision == "bf16",
        "eval_strategy": eval_strategy,
        "eval_steps": eval_steps if eval_strategy == "steps" else None,
        "save_strategy": save_strategy,
        "save_steps": training.get("save_steps") or 500,
        "save_total_limit": args.save_total_limit,
        "logging_steps": training.get("logging_steps", 20),
        "logging_first_step": True,
        "report_to": report_to(args.report_to),
        "seed": int(training.get("seed", 0)),
        "dataloader_num_workers": int(training.get("dataloader_num_workers", 0)),
        "remove_unused_columns": False,
        "label_names": label_names,
        "batch_eval_metrics": True,
        "ddp_find_unused_parameters": False,
        # The original trains with broadcast_buffers=False: the tokenizers' buffers are frozen (stage 2) or
        # each process keeps its own EMA codebook (stage 1) and the first process's is saved.
        "ddp_broadcast_buffers": False,
        "disable_tqdm": args.disable_tqdm,
        "use_cpu": not torch.cuda.is_available(),
    }
    if distributed and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"
    return TrainingArguments(**kwargs)


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)


def run_script(main: Callable[[], object]) -> None:
    """Run a training script's `main`, then free what it left and tear down the distributed process group.

    Why: a `torch.distributed.run` worker can abort in teardown ("terminate called without an active
    exception", seen twice in two-process tests) when gloo objects are destroyed during interpreter shutdown.
    PyTorch asks programs to destroy the group before exiting, but that alone is not enough: the trainer sits
    in reference cycles, so after `main` returns its DDP wrapper, whose reducer holds the process group, stays
    alive until a garbage-collection pass (measured: one wrapper per rank alive after `main`, none after
    `gc.collect()`). Collecting first frees it while the interpreter is whole.
    """
    try:
        main()
    finally:
        gc.collect()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
