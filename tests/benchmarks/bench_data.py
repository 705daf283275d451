"""Throughput of the transformed data pipelines (samples/s) with 0, 1 and 2 DataLoader workers.

Writes synthetic full-size data (NYUv2 480x640 pairs, COCO images of 480-640 px with a few objects) to a
temporary folder, then times each pipeline: loader -> transform -> collator -> batches. Not a test:

    python tests/benchmarks/bench_data.py [--samples 64] [--workers 0 1 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ait_hf.data import (
    BoxMaskTransform,
    CocoResizePad,
    DepthCollator,
    DepthVQVAETransform,
    DetectionCollator,
    LargeScaleJitter,
    NYUDepthTrainTransform,
    VQVAECollator,
    build_box_cropped_masks,
    load_coco_instances,
    load_nyu_depth_v2,
)
from ait_hf.data.synthetic import make_synthetic_coco, make_synthetic_nyu


def throughput(dataset, collator, workers: int, batch_size: int, samples: int) -> float:
    """Samples per second over ``samples`` samples (repeating the data set), after one warm-up batch."""
    indices = [i % len(dataset) for i in range(samples + batch_size)]
    subset = torch.utils.data.Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=collator)
    iterator = iter(loader)
    next(iterator)  # worker start-up and first decode are not counted
    start = time.perf_counter()
    count = sum(len(batch["pixel_values"]) for batch in iterator)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="samples timed per pipeline and worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="threads of the main process (workers use 1)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        nyu_paths = make_synthetic_nyu(root / "nyu", num_train=32, num_test=1, seed=0)
        coco_paths = make_synthetic_coco(root / "coco", "train", num_images=32, height=(420, 480), width=(560, 640),
                                         seed=0, max_objects=6)  # fmt: skip
        cache = root / "cache"
        nyu = load_nyu_depth_v2(nyu_paths["root"], "train", nyu_paths["train_list"], cache_dir=cache)
        coco = load_coco_instances(coco_paths["image_dir"], coco_paths["annotation_file"], cache_dir=cache)
        masks = build_box_cropped_masks(coco, cache_dir=cache)
        pipelines = {
            "NYUv2 task-solver train (480x480)": (
                nyu.with_transform(NYUDepthTrainTransform()),
                DepthCollator(),
            ),
            "NYUv2 depth VQ-VAE train (masked)": (nyu.with_transform(DepthVQVAETransform()), VQVAECollator()),
            "COCO LSJ instance segmentation": (
                coco.with_transform(LargeScaleJitter("instance_segmentation")),
                DetectionCollator("instance_segmentation"),
            ),
            "COCO LSJ object detection": (
                coco.with_transform(LargeScaleJitter("object_detection")),
                DetectionCollator("object_detection"),
            ),
            "COCO test resize+pad (detection)": (
                coco.with_transform(CocoResizePad("object_detection")),
                DetectionCollator("object_detection"),
            ),
            "box-cropped masks 64x64": (masks.with_transform(BoxMaskTransform()), VQVAECollator()),
        }
        print(f"batch size {args.batch_size}, {args.samples} samples per measurement, torch threads "
              f"{torch.get_num_threads()} in the main process")  # fmt: skip
        header = "pipeline".ljust(38) + "".join(f"{w} workers".rjust(14) for w in args.workers)
        print(header)
        print("-" * len(header))
        for name, (dataset, collator) in pipelines.items():
            rates = [throughput(dataset, collator, w, args.batch_size, args.samples) for w in args.workers]
            print(name.ljust(38) + "".join(f"{rate:10.1f} /s".rjust(14) for rate in rates), flush=True)


if __name__ == "__main__":
    main()
