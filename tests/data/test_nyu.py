"""NYUv2 loader on generated data: layout, exact metres, lazy memory-mapped storage, and bad input."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from datasets.table import MemoryMappedTable

from ait_hf.data import (
    BadSampleWarning,
    DataValidationError,
    load_nyu_depth_v2,
    packaged_nyu_list_file,
    parse_nyu_list_file,
)
from ait_hf.data.synthetic import NYUSample, write_nyu_split


def _read_png_mm(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        assert image.mode == "I;16"
        return np.array(image)


def test_train_split_columns_and_exact_metres(synthetic_nyu, hf_cache):
    dataset = load_nyu_depth_v2(
        synthetic_nyu["root"], "train", synthetic_nyu["train_list"], cache_dir=hf_cache
    )
    assert len(dataset) == 6
    assert {"image", "depth", "scene", "file_name"} <= set(dataset.column_names)
    lines = synthetic_nyu["train_list"].read_text().split()
    for index, row in enumerate(dataset):
        assert isinstance(row["image"], PIL.Image.Image) and row["image"].mode == "RGB"
        assert row["image"].size == (640, 480)
        depth = row["depth"]
        assert isinstance(depth, np.ndarray) and depth.dtype == np.float32 and depth.shape == (480, 640)
        millimetres = _read_png_mm(synthetic_nyu["root"] / lines[2 * index + 1].lstrip("/"))
        # Exactly the original's float32 division, and invalid (0) pixels stay 0.
        expected = (torch.from_numpy(millimetres.astype(np.float32)) / 1000.0).numpy()
        np.testing.assert_array_equal(depth, expected)
        assert (millimetres == 0).any()
        np.testing.assert_array_equal(depth == 0, millimetres == 0)
        assert row["file_name"] == lines[2 * index].lstrip("/")
        assert row["scene"] == row["file_name"].split("/")[0]
        assert (row["height"], row["width"]) == (480, 640)
        assert row["focal"] is None


def test_test_split_reads_official_splits_folder(synthetic_nyu, hf_cache):
    dataset = load_nyu_depth_v2(synthetic_nyu["root"], "test", synthetic_nyu["test_list"], cache_dir=hf_cache)
    assert len(dataset) == 3
    paths = [value["path"] for value in dataset.data.column("image").to_pylist()]
    assert all(Path(path).parts[-4:-2] == ("official_splits", "test") for path in paths)
    assert dataset[0]["depth"].shape == (480, 640)


def test_dataset_is_memory_mapped_and_images_are_lazy(synthetic_nyu, hf_cache):
    dataset = load_nyu_depth_v2(
        synthetic_nyu["root"], "train", synthetic_nyu["train_list"], cache_dir=hf_cache
    )
    assert dataset.cache_files and isinstance(dataset.data, MemoryMappedTable)
    stored = dataset.data.column("image").to_pylist() + dataset.data.column("depth").to_pylist()
    assert all(value["bytes"] is None and Path(value["path"]).is_file() for value in stored)
    embedded = load_nyu_depth_v2(
        synthetic_nyu["root"], "train", synthetic_nyu["train_list"], embed_files=True, cache_dir=hf_cache
    )
    first = embedded.data.column("depth").to_pylist()[0]
    assert first["bytes"] == Path(stored[len(dataset)]["path"]).read_bytes()
    np.testing.assert_array_equal(embedded[0]["depth"], dataset[0]["depth"])


def test_packaged_test_list_loads_all_654_pairs(tmp_path, hf_cache):
    # Tiny files under every name of the original test list: the packaged list is used when none is given.
    pairs = parse_nyu_list_file(packaged_nyu_list_file("test"))
    rng = np.random.default_rng(0)
    samples = [
        NYUSample(
            pair.scene,
            int(pair.image.split("_")[-1].split(".")[0]),
            rng.integers(0, 255, (4, 6, 3), dtype=np.uint8),
            rng.integers(0, 9000, (4, 6)).astype(np.uint16),
        )
        for pair in pairs
    ]
    write_nyu_split(tmp_path / "nyu", "test", samples, list_file=tmp_path / "unused.txt")
    dataset = load_nyu_depth_v2(tmp_path / "nyu", "test", cache_dir=hf_cache)
    assert len(dataset) == 654
    np.testing.assert_array_equal(
        dataset[653]["depth"], samples[653].depth.astype(np.float32) / np.float32(1000)
    )


def test_bts_style_list_with_focal_and_sync_folder(synthetic_nyu, tmp_path, hf_cache):
    # BTS downloads keep train scenes in root/sync and list "scene/rgb.jpg scene/depth.png focal".
    root = tmp_path / "nyu"
    (root / "sync").mkdir(parents=True)
    lines = synthetic_nyu["train_list"].read_text().splitlines()[:2]
    for line in lines:
        for rel in line.split():
            source = synthetic_nyu["root"] / rel.lstrip("/")
            target = root / "sync" / rel.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    list_file = tmp_path / "bts.txt"
    list_file.write_text(
        "".join(f"{a.lstrip('/')}  {b.lstrip('/')} 518.8579\r\n" for a, b in map(str.split, lines))
    )
    dataset = load_nyu_depth_v2(root, "train", list_file, cache_dir=hf_cache)
    assert len(dataset) == 2
    assert dataset[0]["focal"] == pytest.approx(518.8579)


# ---------------------------------------------------------------------------------------------- bad input


def _first_pair(nyu) -> tuple[Path, Path]:
    image, depth = nyu["train_list"].read_text().splitlines()[0].split()
    return nyu["root"] / image.lstrip("/"), nyu["root"] / depth.lstrip("/")


def _load_both_ways(nyu, hf_cache, match: str, reason: str, expected_rows: int = 5):
    with pytest.raises(DataValidationError, match=match):
        load_nyu_depth_v2(nyu["root"], "train", nyu["train_list"], cache_dir=hf_cache)
    with pytest.warns(BadSampleWarning) as record:
        dataset = load_nyu_depth_v2(
            nyu["root"], "train", nyu["train_list"], on_error="skip", cache_dir=hf_cache
        )
    warning = [w.message for w in record if isinstance(w.message, BadSampleWarning)][0]
    assert warning.count == 1 and warning.reasons == {reason: 1}
    assert len(dataset) == expected_rows
    return warning


def test_unparsable_list_line(nyu_copy, hf_cache):
    with nyu_copy["train_list"].open("a") as handle:
        handle.write("/scene/rgb_00001.jpg\n")
    _load_both_ways(
        nyu_copy, hf_cache, r"train_list\.txt:7: expected 'IMAGE DEPTH \[FOCAL\]'", "unparsable_line", 6
    )


def test_list_line_with_bad_focal(nyu_copy, hf_cache):
    with nyu_copy["train_list"].open("a") as handle:
        handle.write("/a/rgb_00001.jpg /a/sync_depth_00001.png f=518\n")
    _load_both_ways(
        nyu_copy, hf_cache, "train_list.txt:7: focal length 'f=518' is not a number", "unparsable_line", 6
    )


def test_missing_image(nyu_copy, hf_cache):
    image, _ = _first_pair(nyu_copy)
    image.unlink()
    _load_both_ways(
        nyu_copy, hf_cache, rf"train_list\.txt:1: image file .*{image.name} does not exist", "missing_file"
    )


def test_unreadable_image(nyu_copy, hf_cache):
    image, _ = _first_pair(nyu_copy)
    image.write_bytes(b"this is not a jpeg")
    _load_both_ways(nyu_copy, hf_cache, rf"cannot read image .*{image.name}", "unreadable_image")


def test_depth_png_of_wrong_dtype(nyu_copy, hf_cache):
    _, depth = _first_pair(nyu_copy)
    PIL.Image.fromarray(np.zeros((480, 640), dtype=np.uint8)).save(depth)  # 8-bit
    _load_both_ways(
        nyu_copy,
        hf_cache,
        rf"depth file .*{depth.name} is PNG mode 'L'; expected a 16-bit",
        "bad_depth_dtype",
    )


def test_depth_size_mismatch(nyu_copy, hf_cache):
    _, depth = _first_pair(nyu_copy)
    PIL.Image.fromarray(np.ones((240, 320), dtype=np.uint16)).save(depth)
    _load_both_ways(
        nyu_copy, hf_cache, rf"depth .*{depth.name} is 320x240 but image .* is 640x480", "size_mismatch"
    )


def test_every_pair_bad_is_an_error_even_when_skipping(nyu_copy, hf_cache):
    nyu_copy["train_list"].write_text("garbage\n")
    with pytest.warns(BadSampleWarning), pytest.raises(DataValidationError, match="no usable NYUv2 pairs"):
        load_nyu_depth_v2(
            nyu_copy["root"], "train", nyu_copy["train_list"], on_error="skip", cache_dir=hf_cache
        )


def test_bad_arguments(nyu_copy, hf_cache, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_nyu_depth_v2(nyu_copy["root"], "val")
    with pytest.raises(DataValidationError, match="root folder .*missing does not exist"):
        load_nyu_depth_v2(tmp_path / "missing")
    with pytest.raises(DataValidationError, match="list file .*nope.txt does not exist"):
        load_nyu_depth_v2(nyu_copy["root"], "train", tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="on_error must be"):
        load_nyu_depth_v2(nyu_copy["root"], "train", nyu_copy["train_list"], on_error="ignore")
