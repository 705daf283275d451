"""Read back a data set written by one of the build commands (``python -m ait_hf.data.<module>``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets

from .box_masks import load_box_cropped_masks
from .nyu import NYU_DATASET_TAG, NYUDepthDecode


def load_prepared_dataset(path: str | os.PathLike) -> datasets.Dataset:
    """Open a built data set (memory-mapped) with the same decoding as the loader that made it.

    NYUv2 data sets get their depth decoding (float32 metres) back; box-cropped mask folders are read shard by
    shard; COCO data sets are returned as saved.
    """
    path = Path(path)
    if (path / "manifest.json").exists():
        return load_box_cropped_masks(path)
    dataset = datasets.load_from_disk(str(path))
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"{path} holds a DatasetDict; open one split folder")
    info = (
        json.loads(dataset.info.description or "{}")
        if (dataset.info.description or "").startswith("{")
        else {}
    )
    if info.get("ait_hf") == NYU_DATASET_TAG:
        return dataset.with_transform(NYUDepthDecode())
    return dataset
