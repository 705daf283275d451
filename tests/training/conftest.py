"""Small synthetic NYUv2 / COCO data on disk and helpers to run the training entry points in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ait_hf.data.synthetic import make_synthetic_coco, make_synthetic_nyu


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: tiny models train faster without thread contention on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def training_data(tmp_path_factory) -> dict[str, Path]:
    """NYUv2-layout frames of 64x96 (12 train, 2 test) and COCO-layout train (12) / val (4) images."""
    root = tmp_path_factory.mktemp("training_data")
    nyu = make_synthetic_nyu(root / "nyu", num_train=12, num_test=2, height=64, width=96, seed=0)
    make_synthetic_coco(
        root / "coco", split="train", num_images=12, height=(96, 140), width=(96, 160), seed=1
    )
    val = make_synthetic_coco(
        root / "coco", split="val", num_images=4, height=(96, 128), width=(96, 128), seed=2
    )
    return {
        "nyu": nyu["root"],
        "train_list": nyu["train_list"],
        "test_list": nyu["test_list"],
        "coco": root / "coco",
        "coco_val_annotations": val["annotation_file"],
        "cache": root / "hf_cache",
    }
