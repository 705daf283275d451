"""Training throughput and peak memory of the stage-1 and stage-2 presets (tiny and full size).

Each preset runs in its own process through the real entry point (`training.stage1` / `training.stage2`
`build_trainer`, the Trainer loop, the data pipeline on synthetic on-disk data of the preset's input size),
for a few optimiser steps. Printed per preset: the per-process batch, seconds of the first step (warm-up),
steps/s over the following steps, samples/s, and the peak memory (CUDA: max allocated; CPU: the process's peak
resident set, which includes the Python runtime and the data).

    python tests/benchmarks/bench_training.py                       # tiny + full size, CPU: 2 full-size steps
    python tests/benchmarks/bench_training.py --presets tiny_depth --steps 50
    python tests/benchmarks/bench_training.py --full-batch           # the preset's total batch (needs a GPU)

Full-size presets use a per-process batch of 1 on the CPU unless --full-batch is given; the backbone, the
tokenizers and the sequence lengths are those of the released models.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "tiny_depth_vqvae",
    "tiny_mask_vqvae",
    "tiny_depth",
    "tiny_depth_parallel",
    "tiny_insseg",
    "tiny_joint",
]
FULL = ["ait_depth_vqvae", "ait_insseg_vqvae", "swinv2b_480reso_depthonly", "swinv2b_480reso_parallel_depthonly",
        "swinv2b_640reso_inssegonly"]  # fmt: skip


def make_data(root: Path, full: bool) -> dict[str, Path]:
    from ait_hf.data.synthetic import make_synthetic_coco, make_synthetic_nyu

    height, width = (480, 640) if full else (64, 96)
    nyu = make_synthetic_nyu(root / "nyu", num_train=8, num_test=1, height=height, width=width, seed=0)
    size = (400, 640) if full else (96, 160)
    make_synthetic_coco(root / "coco", split="train", num_images=8, height=size, width=size, seed=1)
    return {
        "nyu": nyu["root"],
        "train_list": nyu["train_list"],
        "test_list": nyu["test_list"],
        "coco": root / "coco",
    }


def run_one(preset_name: str, steps: int, data_root: Path, full_batch: bool) -> dict:
    import torch
    from transformers import TrainerCallback

    from training import stage1, stage2
    from training.common import preset_from_args
    from training.presets import load_preset

    preset = load_preset(preset_name)
    full = not preset_name.startswith("tiny")
    data = make_data(data_root, full)
    module = stage1 if preset["stage"] == 1 else stage2
    argv = ["--preset", preset_name, "--output-dir", str(data_root / "out"), "--no-eval", "--report-to", "none",
            "--disable-tqdm", "--cache-dir", str(data_root / "cache"), "--set", f"training.max_steps={steps}",
            "training.save_steps=100000", "training.logging_steps=100000", "training.dataloader_num_workers=0"]  # fmt: skip
    if full and not full_batch:
        if preset["stage"] == 1:
            argv.append(
                "training.total_batch_size=" + ("64" if preset["data"]["kind"] == "box_masks" else "1")
            )
        else:
            argv += [f"tasks.{task}.total_batch_size=1" for task in preset["tasks"]]
    if preset["stage"] == 1:
        if preset["data"]["kind"] == "nyu_depth":
            argv += ["--nyu-root", str(data["nyu"]), "--train-list", str(data["train_list"])]
        else:
            argv += ["--box-masks-train", str(data["coco"] / "annotations" / "instances_train2017.json")]
    else:
        if "depth" in preset["tasks"]:
            argv += ["--nyu-root", str(data["nyu"]), "--train-list", str(data["train_list"])]
        if set(preset["tasks"]) - {"depth"}:
            argv += ["--coco-root", str(data["coco"])]
    args = module.parse_args(argv)
    trainer = module.build_trainer(args, preset_from_args(args, preset["stage"]))

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    trainer.add_callback(StepTimer())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    per_process = trainer.args.per_device_train_batch_size
    later = times[1:] or times
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
        where = "cuda max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "cpu peak rss"
    return {
        "preset": preset_name,
        "stage": preset["stage"],
        "batch_per_process": per_process,
        "first_step_s": round(times[0], 3),
        "steps_per_s": round(len(later) / sum(later), 3),
        "samples_per_s": round(per_process * len(later) / sum(later), 2),
        "peak_memory_mib": round(peak, 1),
        "memory": where,
        "steps": len(times),
        "device": "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=TINY + FULL)
    parser.add_argument("--steps", type=int, default=None, help="steps per preset (default: tiny 20, full 2)")
    parser.add_argument(
        "--full-batch", action="store_true", help="full-size presets at their total batch size"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(
            "RESULT " + json.dumps(run_one(args.run_one, args.steps, Path(args.data), args.full_batch)),
            flush=True,
        )
        return
    rows = []
    for name in args.presets:
        steps = args.steps or (20 if name.startswith("tiny") else 2)
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, __file__, "--run-one", name, "--steps", str(steps), "--data", tmp]
            command += ["--full-batch"] if args.full_batch else []
            command += ["--threads", str(args.threads)] if args.threads else []
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode or not lines:
            print(f"{name}: failed\n{result.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
        row = rows[-1]
        print(
            f"{row['preset']:38s} stage {row['stage']}  batch/process {row['batch_per_process']:4d}  "
            f"first step {row['first_step_s']:8.3f} s  {row['steps_per_s']:8.3f} steps/s  "
            f"{row['samples_per_s']:8.2f} samples/s  peak {row['peak_memory_mib']:9.1f} MiB ({row['memory']}, {row['device']})",
            flush=True,
        )


if __name__ == "__main__":
    main()
