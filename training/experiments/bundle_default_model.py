"""Train the bundled default model (`ait_hf/default_model`) on synthetic scenes and write its model card.

The model is the ``synthetic_joint`` preset (instance segmentation + depth) trained with the real stage-1 and
stage-2 entry points on rendered rooms in two phases: a ``synthetic_insseg`` solver first (its boxes need many
steps, README "Does it learn?"), then the joint solver starting from it (`ait_hf.data.scenes`), NOT on NYUv2 or COCO. Its card reports metrics on
the first ``CARD_SCENES`` held-out scenes (NYUv2 "test" = COCO "val2017" of data seed 0, never trained on), which
`card_metrics` recomputes (greedy decoding, deterministic) and ``tests/test_learning.py`` compares with the card.
A few held-out scenes are saved as sample images under ``samples/``. Command line::

    python -m training.experiments.bundle_default_model --work runs/default_model --out ait_hf/default_model
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.experiments.synthetic_ablation import (
    evaluate_depth_model,
    evaluate_insseg_model,
    image_blind_insseg_control,
    mean_depth_baseline,
    per_pixel_depth_baseline,
    train_stage1,
    train_stage2,
    write_data,
)

DATA_SEED = 0
CARD_SCENES = 16  # held-out scenes the card's metrics are measured on (and the test recomputes)
NUM_SAMPLES = 3
DEFAULT_BUDGET = {
    "scenes_train": 2000, "scenes_test": CARD_SCENES, "depth_vqvae_steps": 800, "mask_vqvae_steps": 300,
    "insseg_steps": 12000, "joint_steps": 3000,
}  # fmt: skip
# Metrics on the card: (card label, key of `card_metrics`), in the card's order.
CARD_METRICS = (
    ("Depth RMSE (m)", "depth_rmse"),
    ("Depth AbsRel", "depth_abs_rel"),
    ("Depth delta1", "depth_d1"),
    ("Mask AP", "segm_AP"),
    ("Mask AP50", "segm_AP50"),
    ("Box AP", "bbox_AP"),
    ("Mask AP, image-blind control", "segm_AP_image_blind"),
)


def write_card_scenes(root: str | os.PathLike, count: int = CARD_SCENES) -> dict[str, Path]:
    """Write the first `count` held-out scenes of data seed `DATA_SEED` (NYUv2 test + COCO val2017 layouts)."""
    from ait_hf.data.scenes import write_synthetic_scenes
    from training.presets._synthetic import SYNTHETIC_FRAME, synthetic_scene_config

    return write_synthetic_scenes(
        root,
        nyu_test=count,
        coco_val=count,
        size=SYNTHETIC_FRAME,
        seed=DATA_SEED,
        config=synthetic_scene_config(),
    )


def card_metrics(model_dir: str | os.PathLike, scenes_root: str | os.PathLike) -> dict[str, float]:
    """Held-out metrics of the joint model in `model_dir` on the card's scenes, written under `scenes_root`.

    Greedy decoding, no flips (see `training.experiments.synthetic_ablation` for the protocol): deterministic.
    """
    paths = write_card_scenes(scenes_root)
    depth = evaluate_depth_model(Path(model_dir), paths)
    coco = evaluate_insseg_model(Path(model_dir), paths)
    blind = image_blind_insseg_control(Path(model_dir), paths)
    return {
        "depth_rmse": depth["rmse"], "depth_abs_rel": depth["abs_rel"], "depth_d1": depth["d1"],
        "segm_AP": coco["segm_AP"], "segm_AP50": coco["segm_AP50"], "bbox_AP": coco["bbox_AP"],
        "segm_AP_image_blind": blind["segm_AP"],
    }  # fmt: skip


def parse_card_metrics(card: str) -> dict[str, float]:
    """The held-out metrics table of a model card written by `write_card` (label -> value)."""
    values = {}
    for label, key in CARD_METRICS:
        for line in card.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[0] == label:
                values[key] = float(cells[1])
    return values


def save_samples(out: Path, count: int = NUM_SAMPLES) -> list[str]:
    """Held-out scenes as PNG sample images (scenes CARD_SCENES.. of the test split: not in the card's set)."""
    from PIL import Image

    from ait_hf.data.scenes import render_scene, scene_seed
    from training.presets._synthetic import synthetic_scene_config

    folder = out / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        scene = render_scene(
            scene_seed(DATA_SEED, "test", CARD_SCENES + index), (192, 256), synthetic_scene_config()
        )
        name = f"room_{index}.png"
        Image.fromarray(scene.image).save(folder / name)
        names.append(f"samples/{name}")
    return names


def describe_architecture(config: Any) -> str:
    """One line on the solver's size for the card, read from its config."""
    backbone = config.backbone_config
    if not isinstance(backbone, dict):
        backbone = backbone.to_dict()
    return (
        f"SwinV2 backbone of width {backbone['embed_dim']} with {len(backbone['depths'])} stages, "
        f"{config.encoder_layers} encoder and {config.decoder_layers} decoder layers of width {config.d_model}"
    )


def write_card(
    out: Path, metrics: dict[str, float], baseline: dict[str, float], info: dict[str, Any]
) -> None:
    """The model card (README.md) of the bundled model, with its measured held-out metrics."""
    rows = "\n".join(f"| {label} | {metrics[key]:.3f} |" for label, key in CARD_METRICS)
    budget = info["budget"]
    better = metrics["depth_rmse"] < baseline["rmse"]
    verdict = (
        f"depth RMSE {metrics['depth_rmse']:.3f} m is {'below' if better else 'ABOVE'} the mean-depth baseline's "
        f"{baseline['rmse']:.3f} m"
        + ("" if better else " (this model does worse than predicting one constant depth)")
        + f"; mask AP {metrics['segm_AP']:.3f}"
        + (" (essentially no correct instance)." if metrics["segm_AP"] < 0.01 else ".")
    )
    card = f"""---
license: mit
library_name: transformers
tags: [ait, depth-estimation, instance-segmentation, synthetic-data, toy-model]
---

# ait-hf default model: a tiny AiT trained on synthetic rooms

**What it is.** A {info["parameters"] / 1e3:.0f}k-parameter AiT ({info["architecture"]}) for monocular depth (parallel decoding, AiT-P) and instance segmentation (classes: box,
sphere, cylinder), with its own depth tokenizer (8x8 grid, 32 codes) and mask tokenizer (4x4 grid, 32 codes). It is what
`ait-hf predict` uses when no `--model` is given, so that the package does something on a fresh install.

**What it is not.** It was trained ONLY on synthetic ray-cast rooms (`ait_hf.data.scenes`: a pinhole camera
in a box-shaped room with boxes, spheres and cylinders, procedural textures, 64x85-pixel frames; the
experiment's world `training.presets._synthetic.SYNTHETIC_SCENES`: one fixed camera pose 1.4 m high looking
slightly down, rooms 3-8 m wide and deep, 1-3 objects), not on
NYUv2 or COCO. On real photos its output is meaningless beyond "it runs". It is not a released AiT
configuration and has nothing to do with the paper's numbers.

## Training (exact budget)
`python -m training.experiments.bundle_default_model --work runs/default_model --out ait_hf/default_model`
(presets `synthetic_depth_vqvae`, `synthetic_mask_vqvae`, `synthetic_joint`; seed {info["seed"]}, data seed {DATA_SEED}):
- data: {budget["scenes_train"]} training scenes (the same scenes in the NYUv2 and COCO layouts);
- depth tokenizer: {budget["depth_vqvae_steps"]} steps, batch 16; mask tokenizer: {budget["mask_vqvae_steps"]} steps, batch 32;
- instance segmentation solver (`synthetic_insseg`): {budget["insseg_steps"]} steps of 8 object images, from random
  weights, lr constant after warm-up;
- joint solver: {budget["joint_steps"]} steps (each step 8 depth crops + 8 object images), starting from the instance
  solver (its depth parts from random weights), lr annealed;
- wall time {info["wall_time_s"] / 60:.1f} min on a shared 2-core CPU (1 torch thread), load average
  {info["load_average"]} (other engineers' jobs shared the machine).

## Held-out metrics (measured)
The first {CARD_SCENES} held-out scenes (test split of data seed {DATA_SEED}, never trained on), greedy decoding,
depth without flips over all valid pixels (no NYU crop), COCO AP with pycocotools (every decoded object kept).
`tests/test_learning.py` recomputes these numbers and compares them with this table.

| Metric | Value |
|---|---|
{rows}

**Verdict: {verdict}**

For scale, predicting the training-set mean depth ({baseline["mean_depth"]:.2f} m) everywhere gives depth RMSE
{baseline["rmse"]:.3f} m on these scenes, predicting each pixel's training-set mean depth (ignoring the image)
{info["per_pixel_rmse"]:.3f} m, and predicting no object gives mask AP 0. The image-blind control scores each scene's
detections against the next scene's objects: what the model would get from where objects usually are, without
reading the image.

## Use
```
ait-hf predict ait_hf/default_model/samples/room_0.png --task depth
ait-hf predict ait_hf/default_model/samples/room_0.png --task instance
```
"""
    (out / "README.md").write_text(card)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = argparse.ArgumentParser(prog="python -m training.experiments.bundle_default_model")
    parser.add_argument("--work", required=True, help="working folder (data, tokenizers, checkpoints)")
    parser.add_argument("--out", default="ait_hf/default_model", help="where the model folder is written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="budget", nargs="+", default=[], metavar="KEY=INT")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = dict(DEFAULT_BUDGET)
    for item in args.budget:
        key, _, value = item.partition("=")
        if key not in budget:
            raise SystemExit(f"--set {item}: unknown budget key {key!r}; valid keys: {', '.join(budget)}")
        budget[key] = int(value)
    work, out = Path(args.work), Path(args.out)
    start = time.perf_counter()
    paths = write_data(work / "data", budget, DATA_SEED)
    cache = work / "cache"
    depth_tokenizer = train_stage1(
        "synthetic_depth_vqvae", work / "depth_vqvae", paths, args.seed, budget["depth_vqvae_steps"], cache
    )
    mask_tokenizer = train_stage1(
        "synthetic_mask_vqvae", work / "mask_vqvae", paths, args.seed, budget["mask_vqvae_steps"], cache
    )
    instance_solver = train_stage2(
        "synthetic_insseg", work / "insseg", paths, args.seed, budget["insseg_steps"], cache,
        mask_tokenizer=mask_tokenizer,
    )  # fmt: skip
    solver = train_stage2(
        "synthetic_joint", work / "joint", paths, args.seed, budget["joint_steps"], cache,
        depth_tokenizer=depth_tokenizer, mask_tokenizer=mask_tokenizer, load_from=instance_solver,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    # A rerun with every stage already trained (folders in --work) reports the wall time of the run that trained.
    timing_file = work / "train_wall_time_s.json"
    if elapsed > 60 or not timing_file.is_file():
        timing_file.write_text(json.dumps({"wall_time_s": elapsed, "load_average": os.getloadavg()[0]}))
    recorded = json.loads(timing_file.read_text())
    elapsed = float(recorded["wall_time_s"])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        if (solver / name).is_file():
            shutil.copy2(solver / name, out / name)
    from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation

    model = AiTForDepthAndInstanceSegmentation.from_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    metrics = card_metrics(out, work / "card_scenes")
    card_scenes = write_card_scenes(work / "card_scenes")
    baseline = mean_depth_baseline(paths, held_out=card_scenes)
    per_pixel = per_pixel_depth_baseline(paths, held_out=card_scenes)
    info = {"budget": budget, "seed": args.seed, "wall_time_s": elapsed, "load_average": recorded["load_average"],
            "parameters": parameters, "per_pixel_rmse": per_pixel["rmse"],
            "architecture": describe_architecture(model.config)}  # fmt: skip
    save_samples(out)
    write_card(out, metrics, baseline, info)
    (work / "card_metrics.json").write_text(
        json.dumps({"metrics": metrics, "baseline": baseline, **info}, indent=1)
    )
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
