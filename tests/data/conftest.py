"""Synthetic on-disk NYUv2 and COCO data sets shared by the data tests (written once per test session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ait_hf.data.synthetic import make_synthetic_coco, make_synthetic_nyu


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run data tests with one torch thread, as DataLoader workers do (per-sample ops are slower with more
    threads on a busy machine); the previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> Path:
    """A `datasets` cache folder private to this test session (never the user's cache)."""
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="session")
def synthetic_nyu(tmp_path_factory) -> dict[str, Path]:
    """Full-size (480x640) synthetic NYUv2: 6 train and 3 test pairs. Do not modify: copy it first."""
    return make_synthetic_nyu(
        tmp_path_factory.mktemp("nyu") / "nyu_depth_v2", num_train=6, num_test=3, seed=0
    )


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory) -> dict[str, Path]:
    """Synthetic COCO val split with polygons, both RLE forms, a crowd and an empty image. Do not modify."""
    return make_synthetic_coco(tmp_path_factory.mktemp("coco") / "coco", split="val", num_images=6, seed=0)


@pytest.fixture
def coco_copy(synthetic_coco, tmp_path) -> dict[str, Path]:
    """A private copy of the synthetic COCO split that a test may break."""
    root = tmp_path / "coco"
    shutil.copytree(synthetic_coco["root"], root)
    return {
        "root": root,
        "image_dir": root / "val2017",
        "annotation_file": root / "annotations" / "instances_val2017.json",
    }


@pytest.fixture
def nyu_copy(synthetic_nyu, tmp_path) -> dict[str, Path]:
    """A private copy of the synthetic NYUv2 that a test may break."""
    root = tmp_path / "nyu_depth_v2"
    shutil.copytree(synthetic_nyu["root"], root)
    return {"root": root, "train_list": root / "train_list.txt", "test_list": root / "test_list.txt"}


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def edit_json():
    """``edit_json(path, edit)``: load a json file, let ``edit`` change it in place, write it back."""
    return _edit_json
