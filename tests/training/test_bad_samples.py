"""Bad samples follow the data layer's skip policy: left out when loading finds them, replaced by the next
sample with a warning when they only fail at training time; or the run stops with ``--on-bad-sample raise``."""

import shutil

import pytest
from training_test_helpers import build_in_process

from ait_hf.data import BadSampleWarning, DataValidationError
from training import stage2


def _corrupt_first_image(root, list_file):
    first = root.joinpath(list_file.read_text().split()[0].lstrip("/"))
    first.write_bytes(first.read_bytes()[:300])


@pytest.mark.parametrize("when", ["loading", "training"])
def test_a_corrupt_image_is_skipped_with_a_warning(when, training_data, tmp_path):
    root = tmp_path / "nyu"
    shutil.copytree(training_data["nyu"], root)
    argv = ["--preset", "tiny_depth", "--output-dir", str(tmp_path / "out"), "--nyu-root", str(root),
            "--train-list", str(root / "train_list.txt"), "--cache-dir", str(tmp_path / "cache"), "--no-eval",
            "--set", "training.max_steps=3", "training.save_steps=100"]  # fmt: skip
    if when == "loading":
        _corrupt_first_image(root, root / "train_list.txt")
        with pytest.warns(BadSampleWarning, match="skipped 1 bad item"):
            trainer, _ = build_in_process(stage2, argv)
        assert trainer.train_dataset.sizes["depth"] == 11
    else:
        trainer, _ = build_in_process(stage2, argv)
        _corrupt_first_image(root, root / "train_list.txt")
        with pytest.warns(BadSampleWarning, match=r"skipped bad depth sample at index 0 \(OSError"):
            for index in range(12):  # every sample once: the broken one is replaced by its successor
                trainer.train_dataset[("depth", 0, index)]
        assert trainer.train_dataset.skipped == 1
        trainer.train()
        assert trainer.state.global_step == 3
        with pytest.raises(DataValidationError, match="cannot read image .*rgb_00000.jpg"):
            build_in_process(stage2, [*argv, "--on-bad-sample", "raise"])
