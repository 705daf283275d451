"""Proof that AiT learns: train and evaluate small AiT models on synthetic room scenes, with ablations.

The scenes are the experiment's world (`training.presets._synthetic.SYNTHETIC_SCENES`: one fixed camera pose,
rooms and 1-3 objects that vary). Every number comes from held-out scenes (NYUv2 "test" = COCO "val2017" scenes, never trained on). For each
seed the script trains, through the real stage-1 / stage-2 entry points (`training.stage1` / `training.stage2`
with the ``synthetic_*`` presets), three tokenizers (depth with and without mask augmentation, masks) and six
solvers, then reports:

* tokenizer upper bounds: ground truth encoded and decoded by the trained tokenizers (depth RMSE, mask AP);
* depth: autoregressive with soft tokens (AiT) vs autoregressive with hard tokens vs parallel (AiT-P);
* depth tokenizer trained with vs without mask augmentation (the downstream AR-soft solver's RMSE);
* instance segmentation: soft vs hard mask tokens (mask AP);
* trivial baselines: the training-set mean depth everywhere; each pixel's training-set mean depth (the best
  prediction that ignores the image); predicting no object (AP 0 by definition).

The table (mean and sample standard deviation over seeds) is written to ``OUT/results.md`` and every run's
metrics to ``OUT/results.json``. Command lines::

    python -m training.experiments.synthetic_ablation --out runs/ablation            # 3 seeds, full budget
    python -m training.experiments.synthetic_ablation --out runs/ablation_quick --quick  # 1 seed, minutes
    # soft vs hard mask tokens at a budget where boxes are learned (~50 min per seed; run seeds side by side):
    python -m training.experiments.synthetic_ablation --out runs/insseg_s1 --seeds 1 --instance-only \
        --set insseg_steps=8000 --insseg-set +model.config.box_regression_loss_weight=5.0

Evaluation protocol (synthetic frames are 64x85, not NYUv2's 480x640): depth metrics over all valid pixels
(depth in (1e-3, 10] m, no NYU crop), greedy decoding, the model's two sliding windows without flips; COCO
box/mask AP with pycocotools (mmdet ``maxDets``), every decoded object kept. Runs use one torch thread each
(``--threads``): on a shared 2-core machine more threads per process made training ~10x slower.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Held-out depth metric settings for 64x85 synthetic frames (see the module docstring).
DEPTH_METRIC_KWARGS: dict[str, Any] = {"eval_crop": None, "min_depth": 1e-3, "max_depth": 10.0}

FULL_BUDGET = {
    "scenes_train": 2000, "scenes_test": 100, "depth_vqvae_steps": 800, "mask_vqvae_steps": 300,
    "depth_steps": 2000, "insseg_steps": 1000,
}  # fmt: skip
QUICK_BUDGET = {
    "scenes_train": 2000, "scenes_test": 100, "depth_vqvae_steps": 400, "mask_vqvae_steps": 150,
    "depth_steps": 500, "insseg_steps": 300,
}  # fmt: skip
# The learning tests' budget (tests/test_learning.py): one solver each, with more steps than the ablation's
# (which trains 3 seeds x 6 solvers): ~4 min of one core for depth, ~20 min for instance segmentation.
LEARNING_TEST_BUDGET = {**FULL_BUDGET, "depth_steps": 4000, "insseg_steps": 8000}
# The instance learning test adds the soft box L1 loss (`AiTConfig.box_regression_loss_weight`, an extension of
# ours; the presets keep the original losses): held-out mask AP after 8000 steps 0.040 / 0.046 on two training
# seeds, against 0.024 without it (annealed lr) and 0.081 without it after 12,000 (README, "Does it learn?").
LEARNING_TEST_INSSEG_OVERRIDES = ("+model.config.box_regression_loss_weight=5.0",)

# name -> (preset, depth tokenizer run) of the depth solvers; insseg solvers use the mask tokenizer.
DEPTH_SOLVERS = {
    "depth_ar_soft": ("synthetic_depth", "depth_vqvae"),
    "depth_ar_hard": ("synthetic_depth_hard", "depth_vqvae"),
    "depth_parallel": ("synthetic_depth_parallel", "depth_vqvae"),
    "depth_ar_soft_tokenizer_without_mask_aug": ("synthetic_depth", "depth_vqvae_nomask"),
}
INSSEG_SOLVERS = {"insseg_soft": "synthetic_insseg", "insseg_hard": "synthetic_insseg_hard"}


# ------------------------------------------------------------------------------------------------ data
def write_data(root: Path, budget: dict[str, int], data_seed: int) -> dict[str, Path]:
    """Render the train / held-out scenes once in the NYUv2 and COCO layouts (skipped when present)."""
    from ait_hf.data.scenes import write_synthetic_scenes
    from training.presets._synthetic import SYNTHETIC_FRAME, synthetic_scene_config

    marker = root / "paths.json"
    if marker.is_file():
        return {key: Path(value) for key, value in json.loads(marker.read_text()).items()}
    train, test = budget["scenes_train"], budget["scenes_test"]
    paths = write_synthetic_scenes(
        root, nyu_train=train, nyu_test=test, coco_train=train, coco_val=test, size=SYNTHETIC_FRAME,
        seed=data_seed, config=synthetic_scene_config(),
    )  # fmt: skip
    marker.write_text(json.dumps({key: str(value) for key, value in paths.items()}, indent=1))
    return paths


def _common_argv(preset: str, output_dir: Path, seed: int, steps: int, cache_dir: Path) -> list[str]:
    return [
        "--preset", preset, "--output-dir", str(output_dir), "--seed", str(seed), "--max-steps", str(steps),
        "--no-eval", "--report-to", "none", "--disable-tqdm", "--cache-dir", str(cache_dir),
    ]  # fmt: skip


def train_stage1(
    preset: str, output_dir: Path, paths: dict[str, Path], seed: int, steps: int, cache: Path
) -> Path:
    """A stage-1 tokenizer run (skipped when its saved folder exists); returns the folder."""
    from training import stage1

    if (output_dir / "config.json").is_file():
        return output_dir
    argv = _common_argv(preset, output_dir, seed, steps, cache)
    from training.presets import load_preset

    if load_preset(preset)["data"]["kind"] == "box_masks":
        argv += ["--box-masks-train", str(paths["coco_train_annotation_file"])]
    else:
        argv += ["--nyu-root", str(paths["nyu_root"]), "--train-list", str(paths["nyu_train_list"])]
    stage1.main(argv)
    return output_dir


def train_stage2(
    preset: str, output_dir: Path, paths: dict[str, Path], seed: int, steps: int, cache: Path,
    depth_tokenizer: Path | None = None, mask_tokenizer: Path | None = None, load_from: Path | None = None,
    overrides: Sequence[str] = (),
) -> Path:  # fmt: skip
    """A stage-2 solver run (skipped when its saved folder exists), optionally starting from the matching
    tensors of the solver in `load_from` and with preset `overrides` (``--set`` items); returns the folder."""
    from training import stage2

    if (output_dir / "config.json").is_file():
        return output_dir
    argv = _common_argv(preset, output_dir, seed, steps, cache)
    if depth_tokenizer is not None:
        argv += ["--nyu-root", str(paths["nyu_root"]), "--train-list", str(paths["nyu_train_list"])]
        argv += ["--depth-tokenizer", str(depth_tokenizer)]
    if mask_tokenizer is not None:
        argv += ["--coco-root", str(paths["coco_root"]), "--mask-tokenizer", str(mask_tokenizer)]
    if load_from is not None:
        argv += ["--load-from", str(load_from)]
    if overrides:
        argv += ["--set", *overrides]
    stage2.main(argv)
    return output_dir


# ------------------------------------------------------------------------------------------ evaluation
def held_out_depth(paths: dict[str, Path], cache: Path | None = None) -> Any:
    from ait_hf.data import load_nyu_depth_v2

    return load_nyu_depth_v2(
        paths["nyu_root"], "test", paths["nyu_test_list"], cache_dir=str(cache) if cache else None
    )


def held_out_coco(paths: dict[str, Path], cache: Path | None = None) -> Any:
    from ait_hf.data import load_coco_instances

    return load_coco_instances(
        paths["coco_val_image_dir"],
        paths["coco_val_annotation_file"],
        cache_dir=str(cache) if cache else None,
    )


def evaluate_depth_model(
    model_dir: Path, paths: dict[str, Path], limit: int | None = None
) -> dict[str, float]:
    """Held-out depth metrics of a saved solver (greedy decoding, no flips)."""
    from ait_hf.evaluation.runner import evaluate_depth, load_model_and_processor

    model, processor = load_model_and_processor(model_dir, "cpu")
    result = evaluate_depth(
        model, held_out_depth(paths), processor=processor, batch_size=8, test_time_augmentation=False,
        limit=limit, top_p=0.0, progress=False, metric_kwargs=DEPTH_METRIC_KWARGS,
    )  # fmt: skip
    return dict(result.metrics)


def evaluate_insseg_model(
    model_dir: Path, paths: dict[str, Path], limit: int | None = None, dataset: Any = None
) -> dict[str, float]:
    """Held-out COCO box and mask AP of a saved solver (greedy decoding); `dataset` replaces the held-out
    rows (same ids)."""
    from ait_hf.evaluation.runner import evaluate_coco, load_model_and_processor

    model, processor = load_model_and_processor(model_dir, "cpu")
    result = evaluate_coco(
        model, held_out_coco(paths) if dataset is None else dataset, str(paths["coco_val_annotation_file"]), task="instance_segmentation",
        processor=processor, batch_size=8, limit=limit, top_p=0.0, progress=False,
    )  # fmt: skip
    return dict(result.metrics)


def image_blind_insseg_control(model_dir: Path, paths: dict[str, Path]) -> dict[str, float]:
    """The solver's held-out COCO AP with each scene's detections scored against the NEXT scene's annotations.

    The images are rolled by one against their ids, so what still scores is what the solver would find without
    reading the image (where objects usually are in this fixed-camera world, their usual sizes): the AP that a
    solver fitting only the box prior gets. A solver that localises must score well above it.
    """
    return evaluate_insseg_model(model_dir, paths, dataset=images_rolled_by_one(held_out_coco(paths)))


def images_rolled_by_one(data: Any) -> Any:
    """`data` with row i's ``image`` replaced by row i - 1's (cyclically); every other column kept."""
    from datasets import concatenate_datasets

    images = data.select_columns(["image"]).select(np.roll(np.arange(len(data)), 1))
    return concatenate_datasets([data.remove_columns(["image"]), images], axis=1)


def depth_upper_bound(tokenizer_dir: Path, paths: dict[str, Path]) -> dict[str, float]:
    """Held-out depth metrics of ground truth encoded and decoded by the tokenizer (the solver's windows)."""
    from ait_hf.data.nyu import depth_to_metres
    from ait_hf.evaluation import depth_tokenizer_upper_bound
    from ait_hf.modeling_ait_vqvae import AiTVQVAE

    tokenizer = AiTVQVAE.from_pretrained(tokenizer_dir).eval()
    rows = held_out_depth(paths).select_columns(["depth"])
    maps = (depth_to_metres(row["depth"]) for row in rows)
    with torch.inference_mode():
        bound = depth_tokenizer_upper_bound(
            tokenizer, maps, mode="windows", num_windows=2, flip=False, batch_size=16, **DEPTH_METRIC_KWARGS
        )
    return {key: value for key, value in bound.items() if key != "num_images"}


def mask_upper_bound(tokenizer_dir: Path, paths: dict[str, Path]) -> dict[str, float]:
    """Held-out mask AP of ground-truth instance masks through the tokenizer (the solver's crop and paste)."""
    from ait_hf.evaluation import mask_tokenizer_upper_bound
    from ait_hf.modeling_ait_vqvae import AiTVQVAE

    tokenizer = AiTVQVAE.from_pretrained(tokenizer_dir).eval()
    with torch.inference_mode():
        bound = mask_tokenizer_upper_bound(
            tokenizer, str(paths["coco_val_annotation_file"]), protocol="solver"
        )
    return {key: value for key, value in bound.items() if key.startswith("segm_")}


def _training_depth_maps(paths: dict[str, Path]) -> np.ndarray:
    """Every training depth map in metres, (N, H, W) float64 (synthetic frames all have one size)."""
    from ait_hf.data import load_nyu_depth_v2
    from ait_hf.data.nyu import depth_to_metres

    rows = load_nyu_depth_v2(paths["nyu_root"], "train", paths["nyu_train_list"]).select_columns(["depth"])
    return np.stack([np.asarray(depth_to_metres(row["depth"]), dtype=np.float64) for row in rows])


def _held_out_metrics(prediction: np.ndarray, held_out: dict[str, Path]) -> dict[str, float]:
    """Held-out depth metrics of one fixed prediction (a scalar or an (H, W) map) for every held-out scene."""
    from ait_hf.data.nyu import depth_to_metres
    from ait_hf.evaluation import DepthMetrics

    metrics = DepthMetrics(**DEPTH_METRIC_KWARGS)
    for row in held_out_depth(held_out).select_columns(["depth"]):
        target = torch.as_tensor(np.asarray(depth_to_metres(row["depth"]), dtype=np.float32))
        guess = torch.as_tensor(np.broadcast_to(prediction, target.shape).astype(np.float32))
        metrics.update(guess[None], target[None])
    return metrics.compute()


def mean_depth_baseline(paths: dict[str, Path], held_out: dict[str, Path] | None = None) -> dict[str, float]:
    """Held-out metrics of predicting the mean valid training depth at every pixel.

    The mean is taken over the training split of `paths`; the held-out scenes are those of `held_out`
    (default: the test split of `paths`).
    """
    maps = _training_depth_maps(paths)
    mean = float(maps[maps > DEPTH_METRIC_KWARGS["min_depth"]].mean())
    return {**_held_out_metrics(np.asarray(mean), held_out or paths), "mean_depth": mean}


def per_pixel_depth_baseline(
    paths: dict[str, Path], held_out: dict[str, Path] | None = None
) -> dict[str, float]:
    """Held-out metrics of predicting, at each pixel, that pixel's mean valid training depth.

    The best any model can do without looking at the image (up to the choice of loss): a solver that does
    not beat it has learned the world's average layout, not to read depth from its input.
    """
    maps = _training_depth_maps(paths)
    valid = maps > DEPTH_METRIC_KWARGS["min_depth"]
    fallback = float(maps[valid].mean())  # pixels never valid in training
    counts = valid.sum(0)
    prior = np.where(counts > 0, (maps * valid).sum(0) / np.maximum(counts, 1), fallback)
    return _held_out_metrics(prior, held_out or paths)


# --------------------------------------------------------------------------------------------- one seed
def run_seed(
    root: Path, paths: dict[str, Path], seed: int, budget: dict[str, int], instance_only: bool = False,
    insseg_overrides: Sequence[str] = (),
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Train every tokenizer and solver of one seed (only the mask tokenizer and the instance solvers with
    `instance_only`; `insseg_overrides` are ``--set`` items for the instance solvers) and evaluate them on the
    held-out scenes."""
    cache = root / "cache"
    runs = root / f"seed{seed}"
    results: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 1)
        logger.info("seed %d: %s took %.0f s", seed, name, timings[name])
        return value

    tokenizers = {}
    stage1_runs = [("mask_vqvae", "synthetic_mask_vqvae", budget["mask_vqvae_steps"])]
    if not instance_only:
        stage1_runs += [
            ("depth_vqvae", "synthetic_depth_vqvae", budget["depth_vqvae_steps"]),
            ("depth_vqvae_nomask", "synthetic_depth_vqvae_nomask", budget["depth_vqvae_steps"]),
        ]
    for name, preset, steps in stage1_runs:
        tokenizers[name] = timed(
            f"train {name}", train_stage1, preset, runs / name, paths, seed, steps, cache
        )
    results["upper_bound_mask"] = mask_upper_bound(tokenizers["mask_vqvae"], paths)
    if not instance_only:
        results["upper_bound_depth"] = depth_upper_bound(tokenizers["depth_vqvae"], paths)
        results["upper_bound_depth_nomask"] = depth_upper_bound(tokenizers["depth_vqvae_nomask"], paths)

    for name, (preset, tokenizer) in ({} if instance_only else DEPTH_SOLVERS).items():
        folder = timed(
            f"train {name}", train_stage2, preset, runs / name, paths, seed, budget["depth_steps"], cache,
            depth_tokenizer=tokenizers[tokenizer],
        )  # fmt: skip
        results[name] = timed(f"evaluate {name}", evaluate_depth_model, folder, paths)
    for name, preset in INSSEG_SOLVERS.items():
        folder = timed(
            f"train {name}", train_stage2, preset, runs / name, paths, seed, budget["insseg_steps"], cache,
            mask_tokenizer=tokenizers["mask_vqvae"], overrides=insseg_overrides,
        )  # fmt: skip
        results[name] = timed(f"evaluate {name}", evaluate_insseg_model, folder, paths)
        results[f"{name}_image_blind"] = image_blind_insseg_control(folder, paths)
    results["timings_s"] = timings
    return results


# ---------------------------------------------------------------------------------------------- report
ROWS: list[tuple[str, str, str, str]] = [
    # (label, result key, metric key, "lower" / "higher" is better)
    ("Baseline: training-set mean depth everywhere", "baseline_mean_depth", "rmse", "lower"),
    (
        "Baseline: per-pixel training-set mean depth (ignores the image)",
        "baseline_per_pixel_depth",
        "rmse",
        "lower",
    ),
    ("Depth tokenizer upper bound (with mask aug.)", "upper_bound_depth", "rmse", "lower"),
    ("Depth tokenizer upper bound (without mask aug.)", "upper_bound_depth_nomask", "rmse", "lower"),
    ("Depth, AR + soft tokens (AiT)", "depth_ar_soft", "rmse", "lower"),
    ("Depth, AR + hard tokens", "depth_ar_hard", "rmse", "lower"),
    ("Depth, parallel (AiT-P)", "depth_parallel", "rmse", "lower"),
    (
        "Depth, AR + soft, tokenizer without mask aug.",
        "depth_ar_soft_tokenizer_without_mask_aug",
        "rmse",
        "lower",
    ),
    ("Baseline: predict no object", "baseline_nothing", "segm_AP", "higher"),
    ("Mask tokenizer upper bound", "upper_bound_mask", "segm_AP", "higher"),
    ("Instance seg., soft mask tokens (AiT)", "insseg_soft", "segm_AP", "higher"),
    ("Instance seg., hard mask tokens", "insseg_hard", "segm_AP", "higher"),
    ("Instance seg., soft mask tokens: box AP", "insseg_soft", "bbox_AP", "higher"),
    ("Instance seg., hard mask tokens: box AP", "insseg_hard", "bbox_AP", "higher"),
    ("Instance seg., soft: image-blind control", "insseg_soft_image_blind", "segm_AP", "higher"),
]


def _mean_spread(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def format_table(per_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one row per result that some seed has (``--instance-only`` runs have no depth rows),
    mean ± sample std over seeds, and the per-seed values."""
    seeds = sorted(per_seed)
    lines = [
        "| Result (held-out scenes) | Metric | Mean ± std over seeds | Per seed |",
        "|---|---|---|---|",
    ]
    for label, key, metric, better in ROWS:
        values = [per_seed[s].get(key, {}).get(metric) for s in seeds]
        if all(value is None for value in values):
            continue
        per = ", ".join("n/a" if v is None else f"{v:.3f}" for v in values)
        arrow = "↓" if better == "lower" else "↑"
        lines.append(f"| {label} | {metric} {arrow} | {_mean_spread(values)} | {per} |")
    lines.append("")
    lines.append(
        f"Seeds: {', '.join(map(str, seeds))} (training seed; the scenes are the same for all seeds)."
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments.synthetic_ablation", description=__doc__
    )
    parser.add_argument("--out", required=True, help="working folder: data, runs, results.md, results.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    parser.add_argument("--quick", action="store_true", help="one seed and a smaller budget (minutes)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the rendered scenes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--set", dest="budget", nargs="+", default=[], metavar="KEY=INT",
        help=f"budget overrides, keys: {', '.join(FULL_BUDGET)}",
    )  # fmt: skip
    parser.add_argument(
        "--instance-only", action="store_true",
        help="only the mask tokenizer and the instance-segmentation solvers (no depth runs or baselines)",
    )  # fmt: skip
    parser.add_argument(
        "--insseg-set", nargs="+", default=[], metavar="KEY=VALUE",
        help="preset overrides (training.stage2 --set items) for both instance-segmentation solvers, e.g. "
        "+model.config.box_regression_loss_weight=5.0",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    budget = dict(QUICK_BUDGET if args.quick else FULL_BUDGET)
    for item in args.budget:
        key, _, value = item.partition("=")
        if key not in budget:
            raise SystemExit(f"--set {item}: unknown budget key {key!r}; valid keys: {', '.join(budget)}")
        budget[key] = int(value)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = write_data(root / "data", budget, args.data_seed)
    baselines: dict[str, dict[str, float]] = {"baseline_nothing": {"segm_AP": 0.0, "bbox_AP": 0.0}}
    if not args.instance_only:
        baselines["baseline_mean_depth"] = mean_depth_baseline(paths)
        baselines["baseline_per_pixel_depth"] = per_pixel_depth_baseline(paths)
    per_seed = {}
    for seed in seeds:
        seed_results = run_seed(root, paths, seed, budget, args.instance_only, args.insseg_set)
        per_seed[seed] = {**baselines, **seed_results}
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    table = format_table(per_seed)
    command = "python -m training.experiments.synthetic_ablation " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    report = (
        f"{table}\n\nBudget: {json.dumps(budget)}; {len(seeds)} seed(s); wall time {elapsed / 60:.1f} min with "
        f"{args.threads} torch thread(s); load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"on {os.cpu_count()} CPUs."
        + (f" Instance solvers with {' '.join(args.insseg_set)}." if args.insseg_set else "")
        + "\n"
    )
    (root / "results.md").write_text(report)
    summary = {"budget": budget, "seeds": seeds, "wall_time_s": elapsed, "load_average": load, "results": per_seed,
               "command": command, "insseg_overrides": args.insseg_set}  # fmt: skip
    (root / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    print(report)
    return summary


if __name__ == "__main__":
    main()
