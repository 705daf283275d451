"""Build commands (``python -m ait_hf.data.<module>``), reading built data sets back, runtime skipping of bad
samples, and the transformed data sets in DataLoader worker processes."""

import pickle
import runpy
import sys
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ait_hf.data import (
    BadSampleWarning,
    DataValidationError,
    DepthCollator,
    LargeScaleJitter,
    NYUDepthTrainTransform,
    SkipBadSamples,
    load_coco_instances,
    load_nyu_depth_v2,
    load_prepared_dataset,
)
from ait_hf.data.coco import main as coco_main
from ait_hf.data.nyu import main as nyu_main


@pytest.mark.filterwarnings("ignore:'ait_hf.data.nyu' found in sys.modules")
def test_nyu_build_command_and_reading_back(synthetic_nyu, hf_cache, tmp_path, monkeypatch, capsys):
    output = tmp_path / "nyu_test"
    argv = ["ait_hf.data.nyu", "--root", str(synthetic_nyu["root"]), "--split", "test",
            "--list-file", str(synthetic_nyu["test_list"]), "--output", str(output), "--cache-dir", str(hf_cache)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("ait_hf.data.nyu", run_name="__main__")  # what `python -m ait_hf.data.nyu ...` runs
    assert "wrote 3 NYUv2 test pairs" in capsys.readouterr().out
    built = load_prepared_dataset(output)
    direct = load_nyu_depth_v2(synthetic_nyu["root"], "test", synthetic_nyu["test_list"], cache_dir=hf_cache)
    assert len(built) == 3
    for a, b in zip(built, direct):
        assert a["depth"].dtype == np.float32
        np.testing.assert_array_equal(a["depth"], b["depth"])
        assert a["file_name"] == b["file_name"]
    # Embedded files make a self-contained copy.
    nyu_main(
        argv[1:7] + ["--output", str(tmp_path / "embedded"), "--embed-files", "--cache-dir", str(hf_cache)]
    )
    np.testing.assert_array_equal(
        load_prepared_dataset(tmp_path / "embedded")[0]["depth"], direct[0]["depth"]
    )


def test_coco_build_command_and_reading_back(synthetic_coco, hf_cache, tmp_path, capsys):
    output = tmp_path / "coco_val"
    coco_main(["--image-dir", str(synthetic_coco["image_dir"]), "--annotations", str(synthetic_coco["annotation_file"]),
               "--output", str(output), "--filter-empty", "--cache-dir", str(hf_cache)])  # fmt: skip
    assert "wrote 5 COCO images" in capsys.readouterr().out
    built = load_prepared_dataset(output)
    direct = load_coco_instances(synthetic_coco["image_dir"], synthetic_coco["annotation_file"], filter_empty=True,
                                 cache_dir=hf_cache)  # fmt: skip
    assert built["image_id"] == direct["image_id"]
    assert built[0]["objects"] == direct[0]["objects"]
    assert built.features == direct.features


class _Flaky:
    """A data set whose listed indices fail to load."""

    def __init__(self, size, bad):
        self.size, self.bad = size, set(bad)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        if index in self.bad:
            raise OSError(f"image file truncated (sample {index})")
        return {"index": index}


def test_skip_bad_samples_at_training_time():
    data = SkipBadSamples(_Flaky(6, bad={1, 2}))
    with pytest.warns(BadSampleWarning) as record:
        assert data[1] == {"index": 3}
    messages = [str(w.message) for w in record if isinstance(w.message, BadSampleWarning)]
    assert len(messages) == 2 and "index 1 (OSError: image file truncated (sample 1))" in messages[0]
    assert "2 skipped so far" in messages[1] and data.skipped == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data[0] == {"index": 0}  # good samples: no warning
    with pytest.warns(BadSampleWarning):
        assert SkipBadSamples(_Flaky(3, bad={2}))[2] == {"index": 0}  # wraps around
    with pytest.raises(OSError, match="truncated"):
        SkipBadSamples(_Flaky(3, bad={0}), on_error="raise")[0]
    with pytest.warns(BadSampleWarning), pytest.raises(DataValidationError, match="3 consecutive samples"):
        SkipBadSamples(_Flaky(5, bad={0, 1, 2, 3}), max_consecutive=3)[0]


def test_skip_a_truncated_image_found_only_when_decoding(coco_copy, hf_cache):
    dataset = load_coco_instances(coco_copy["image_dir"], coco_copy["annotation_file"], cache_dir=hf_cache)
    broken = coco_copy["image_dir"] / dataset[0]["file_name"]
    broken.write_bytes(broken.read_bytes()[:200])  # header intact, data cut off
    transformed = dataset.with_transform(LargeScaleJitter("object_detection"))
    with pytest.raises(OSError):
        transformed[0]
    with pytest.warns(BadSampleWarning, match="skipped bad sample at index 0"):
        example = SkipBadSamples(transformed)[0]
    assert example["pixel_values"].shape == (3, 640, 640)


def test_transformed_datasets_work_in_dataloader_workers(synthetic_nyu, hf_cache):
    dataset = load_nyu_depth_v2(
        synthetic_nyu["root"], "train", synthetic_nyu["train_list"], cache_dir=hf_cache
    )
    transformed = dataset.with_transform(NYUDepthTrainTransform())
    pickle.loads(pickle.dumps(transformed))  # spawn-started workers need this
    loader = DataLoader(transformed, batch_size=3, num_workers=2, collate_fn=DepthCollator())
    batches = list(loader)
    assert len(batches) == 2
    assert all(b["pixel_values"].shape == (3, 3, 480, 480) and b["task"] == "depth" for b in batches)
    assert torch.isfinite(torch.cat([b["depth_labels"] for b in batches])).all()
