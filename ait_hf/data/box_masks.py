"""Box-cropped instance masks: the training data of the mask VQ-VAE (the original's "maskcoco").

Each COCO instance mask is cropped to its box and resized to 64x64 by RoI-align (output 64x64, one sample per
bin chosen adaptively, half-pixel aligned) and binarised at 0.5: the same rule the original task solver uses
to turn ground-truth masks into the VQ-VAE's input, so the tokenizer is trained on what it will encode.
Objects: those mmdet trains on (not crowd, box inside the image, width and height >= 1, area > 0).

Write once to disk (parallel over processes, resumable: finished shards are kept, a rerun does the rest)::

    python -m ait_hf.data.box_masks --annotations data/coco/annotations/instances_train2017.json \
        --output data/prepared/maskcoco_train --num-proc 8

and read it back with `load_box_cropped_masks(output)`.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from torchvision.ops import roi_align

from ._arrow import dataset_from_rows, fingerprint_of
from .coco import coco_object_masks, load_coco_instances
from .transforms import training_object_indices
from .validation import DataValidationError

BOX_MASK_FEATURES = datasets.Features(
    {
        "mask": datasets.Image(),
        "image_id": datasets.Value("int64"),
        "annotation_id": datasets.Value("int64"),
        "label": datasets.Value("int64"),
        "category_id": datasets.Value("int64"),
        "box": datasets.List(datasets.Value("float32"), length=4),
    }
)
_PLAN_FILE = "plan.json"
_DONE_FILE = "done.json"


def crop_and_resize_masks(
    masks: torch.Tensor | np.ndarray, boxes: torch.Tensor | np.ndarray, size: int = 64, binarize: bool = True
) -> torch.Tensor:
    """Crop every mask (N, H, W) to its box (N, 4; xyxy pixels) and resize to (size, size) with RoI-align.

    ``aligned=True`` (pixel centres at +0.5) and an adaptive sampling grid (``sampling_ratio=0``), then
    ``>= 0.5`` when ``binarize``. Returns float32 (N, size, size) with values in {0, 1} when binarised.
    """
    masks = torch.as_tensor(masks)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if masks.shape[0] != boxes.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {boxes.shape[0]} boxes")
    if masks.shape[0] == 0:
        return torch.zeros((0, size, size), dtype=torch.float32)
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], dim=1)
    crops = roi_align(
        masks[:, None].float(), rois, (size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True
    )
    crops = crops[:, 0]
    return (crops >= 0.5).float() if binarize else crops


def _encode_png(mask: np.ndarray) -> dict[str, Any]:
    buffer = io.BytesIO()
    PIL.Image.fromarray(mask.astype(bool)).save(buffer, format="PNG")
    return {"path": None, "bytes": buffer.getvalue()}


def box_mask_rows(coco: datasets.Dataset, mask_size: int = 64, chunk: int = 32) -> Iterator[dict[str, Any]]:
    """Rows of box-cropped masks (1-bit PNG) for the objects mmdet trains on, in data set order."""
    columns = [c for c in coco.column_names if c != "image"]
    for example in coco.select_columns(columns):
        indices = training_object_indices(example)
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            masks = torch.from_numpy(coco_object_masks(example, part))
            boxes = torch.tensor([example["objects"]["bbox"][i] for i in part], dtype=torch.float32)
            crops = crop_and_resize_masks(masks, boxes, mask_size).to(torch.uint8).numpy()
            for crop, index, box in zip(crops, part, boxes.tolist()):
                yield {
                    "mask": _encode_png(crop),
                    "image_id": int(example["image_id"]),
                    "annotation_id": int(example["objects"]["id"][index]),
                    "label": int(example["objects"]["label"][index]),
                    "category_id": int(example["objects"]["category_id"][index]),
                    "box": box,
                }


def build_box_cropped_masks(
    coco: datasets.Dataset, mask_size: int = 64, cache_dir: str | os.PathLike | None = None
) -> datasets.Dataset:
    """Box-cropped masks of a `load_coco_instances` data set as a memory-mapped `datasets.Dataset`.

    Columns: ``mask`` (PIL 1-bit image, mask_size x mask_size), ``image_id``, ``annotation_id``, ``label``,
    ``category_id``, ``box`` (xyxy, the crop box). For the full COCO train split use `write_box_cropped_masks`
    (parallel and resumable).
    """
    fingerprint = fingerprint_of("box_masks", coco._fingerprint, mask_size)
    return dataset_from_rows(
        lambda: box_mask_rows(coco, mask_size), BOX_MASK_FEATURES, fingerprint, cache_dir
    )


def _write_shard(arguments: tuple[datasets.Dataset, str, int]) -> int:
    shard, directory, mask_size = arguments
    torch.set_num_threads(1)
    final = Path(directory)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    rows = list(box_mask_rows(shard, mask_size))
    columns = {name: [row[name] for row in rows] for name in BOX_MASK_FEATURES}
    datasets.Dataset.from_dict(columns, features=BOX_MASK_FEATURES).save_to_disk(str(partial))
    (partial / _DONE_FILE).write_text(json.dumps({"num_masks": len(rows)}))
    os.replace(partial, final)  # a shard is either complete or absent
    return len(rows)


def write_box_cropped_masks(
    coco: datasets.Dataset,
    output_dir: str | os.PathLike,
    mask_size: int = 64,
    num_shards: int = 64,
    num_proc: int = 1,
) -> Path:
    """Write the box-cropped masks of ``coco`` to ``output_dir`` in shards, ``num_proc`` processes at a time.

    Resumable: a shard is written to a temporary folder and renamed when complete; a rerun with the same
    inputs keeps the finished shards and writes the others. A rerun with other inputs (another annotation
    file, mask size or shard count) is refused instead of mixing data.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, min(num_shards, len(coco)))
    plan = {"source": coco._fingerprint, "mask_size": mask_size, "num_shards": num_shards, "rows": len(coco)}
    plan_path = output / _PLAN_FILE
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous != plan:
            raise DataValidationError(
                f"{output} holds box masks of other inputs ({previous}); use another output folder"
            )
    else:
        plan_path.write_text(json.dumps(plan))

    source = coco.with_format(None).select_columns([c for c in coco.column_names if c != "image"])
    jobs = []
    for index in range(num_shards):
        directory = output / f"shard-{index:05d}-of-{num_shards:05d}"
        if not (directory / _DONE_FILE).exists():
            jobs.append((source.shard(num_shards, index, contiguous=True), str(directory), mask_size))
    if num_proc > 1 and len(jobs) > 1:
        # fork starts workers without re-importing the package (seconds each with spawn); workers use one
        # torch thread, so the parent's thread pools are not touched after forking.
        method = "fork" if sys.platform == "linux" else "spawn"
        with multiprocessing.get_context(method).Pool(min(num_proc, len(jobs))) as pool:
            for _ in pool.imap_unordered(_write_shard, jobs):
                pass
    else:
        for job in jobs:
            _write_shard(job)
    total = sum(
        json.loads((output / f"shard-{i:05d}-of-{num_shards:05d}" / _DONE_FILE).read_text())["num_masks"]
        for i in range(num_shards)
    )
    (output / "manifest.json").write_text(json.dumps({**plan, "num_masks": total}))
    return output


def load_box_cropped_masks(output_dir: str | os.PathLike) -> datasets.Dataset:
    """The data set written by `write_box_cropped_masks` (all shards, memory-mapped, in order)."""
    output = Path(output_dir)
    manifest = output / "manifest.json"
    if not manifest.exists():
        raise DataValidationError(f"{output} has no manifest.json: the box-mask build did not finish")
    num_shards = json.loads(manifest.read_text())["num_shards"]
    shards = [
        datasets.load_from_disk(str(output / f"shard-{i:05d}-of-{num_shards:05d}")) for i in range(num_shards)
    ]
    return datasets.concatenate_datasets(shards)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write the box-cropped masks of a COCO annotation file once (parallel, resumable)."""
    parser = argparse.ArgumentParser(
        prog="python -m ait_hf.data.box_masks",
        description="Write box-cropped 64x64 instance masks (mask VQ-VAE data) once on disk.",
    )
    parser.add_argument(
        "--annotations", required=True, help="e.g. data/coco/annotations/instances_train2017.json"
    )
    parser.add_argument("--output", required=True, help="folder to write the shards to")
    parser.add_argument("--mask-size", type=int, default=64)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--num-shards", type=int, default=64)
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"))
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    coco = load_coco_instances(
        None, args.annotations, on_error=args.on_error, check_image_files=False, cache_dir=args.cache_dir
    )
    output = write_box_cropped_masks(coco, args.output, args.mask_size, args.num_shards, args.num_proc)
    print(f"wrote {len(load_box_cropped_masks(output))} box-cropped masks to {output}")


if __name__ == "__main__":
    main()
