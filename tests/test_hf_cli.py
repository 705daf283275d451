"""The `ait-hf` command line (predict / convert / eval) and the shipped sample images, on tiny random models."""

import configparser
import importlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_testing import (
    direct_prediction,
    load_solver,
    odd_images,
    one_cpu_thread,
    random_image,
    save_tiny_solvers,
)
from PIL import Image

from ait_hf.cli import colourise_depth, main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "ait_hf" / "samples"


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return save_tiny_solvers(tmp_path_factory.mktemp("models"))


# ------------------------------------------------------------------------------------------ samples
def test_sample_images_are_small_and_reproducible():
    from make_sample_images import sample_images

    generated = sample_images()
    assert sorted(p.name for p in SAMPLES.glob("*.png")) == sorted(generated)
    for name, image in generated.items():
        shipped = Image.open(SAMPLES / name)
        assert shipped.mode == image.mode and shipped.size == image.size
        np.testing.assert_array_equal(np.asarray(shipped), np.asarray(image))
        assert (SAMPLES / name).stat().st_size < 64 * 1024
    assert Image.open(SAMPLES / "gray16.png").mode.startswith("I;16")  # a non-RGB sample


# ------------------------------------------------------------------------------------------ command line
def test_console_script_entry_point():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    (line,) = [s for s in parser["options.entry_points"]["console_scripts"].splitlines() if s.strip()]
    name, target = (part.strip() for part in line.split("="))
    module, function = target.split(":")
    assert name == "ait-hf" and getattr(importlib.import_module(module), function) is main
    assert "samples/*.png" in parser["options.package_data"]["ait_hf"]


def test_predict_depth_on_a_sample_image(model_dirs, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["predict", str(SAMPLES / "indoor.png"), "--model", str(model_dirs["depth"]), "--out", str(out)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["indoor_depth.npy", "indoor_depth.png"]
    depth = np.load(out / "indoor_depth.npy")
    image = Image.open(SAMPLES / "indoor.png")
    assert depth.dtype == np.float32 and depth.shape == (image.height, image.width)
    expected = direct_prediction(model_dirs["depth"], "depth", image)["predicted_depth"].numpy()
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-5)
    colours = np.asarray(Image.open(out / "indoor_depth.png"))
    assert colours.shape == (image.height, image.width, 3)
    np.testing.assert_array_equal(colours, colourise_depth(depth))
    assert "indoor_depth.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kind", "task", "suffix"), [("joint", "instance", "instances"), ("insseg", "detection", "detections")]
)
def test_predict_objects_on_a_sample_image(model_dirs, tmp_path, kind, task, suffix):
    out = tmp_path / "out"
    args = ["predict", str(SAMPLES / "objects.png"), "--model", str(model_dirs[kind]), "--task", task]
    assert main([*args, "--out", str(out), "--threshold", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"objects_{suffix}.json", f"objects_{suffix}.png"]
    records = json.loads((out / f"objects_{suffix}.json").read_text())
    image = Image.open(SAMPLES / "objects.png")
    ait_task = {"instance": "instance_segmentation", "detection": "object_detection"}[task]
    if task == "instance":
        model, processor = load_solver(model_dirs[kind])
        with torch.no_grad():
            outputs = model(
                processor(image, task=ait_task, return_tensors="pt")["pixel_values"], task=ait_task
            )
        maps = processor.post_process_instance_segmentation(
            outputs, threshold=0.0, target_sizes=[(120, 160)], return_binary_maps=True
        )[0]
        assert [r["score"] for r in records] == pytest.approx([s["score"] for s in maps["segments_info"]])
        assert [r["mask_area"] for r in records] == maps["segmentation"].flatten(1).sum(1).tolist()
    else:
        expected = direct_prediction(model_dirs[kind], ait_task, image, threshold=0.0)
        assert [r["score"] for r in records] == pytest.approx(expected["scores"].tolist())
        np.testing.assert_allclose([r["box"] for r in records], expected["boxes"].numpy(), rtol=1e-6)
    assert len(records) > 0 and all(set(r) >= {"label", "label_id", "score", "box"} for r in records)
    overlay = Image.open(out / f"objects_{suffix}.png")
    assert overlay.size == image.size and overlay.mode == "RGB"
    assert not np.array_equal(np.asarray(overlay), np.asarray(image))  # something was drawn


def test_predict_many_odd_images_with_progress(model_dirs, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, image in odd_images().items():
        image.save(inputs / f"{name}.png")
    random_image(1, 1).save(inputs / "one_pixel.png")
    Image.open(SAMPLES / "gray16.png").save(inputs / "sample16.png")
    out = tmp_path / "out"
    status = main(
        ["predict", str(inputs), "--model", str(model_dirs["joint"]), "--out", str(out), "--batch-size", "3"]
    )
    assert status == 0
    captured = capsys.readouterr()
    assert "6/6" in captured.err  # the progress bar
    for path in inputs.iterdir():
        depth = np.load(out / f"{path.stem}_depth.npy")
        assert depth.shape == np.asarray(Image.open(path)).shape[:2] and np.isfinite(depth).all()


def test_predict_skips_corrupt_files_and_reports_them(model_dirs, tmp_path, capsys):
    good, corrupt, empty = tmp_path / "good.png", tmp_path / "corrupt.jpg", tmp_path / "empty.png"
    random_image(20, 30).save(good)
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    empty.write_bytes(b"")
    out = tmp_path / "out"
    args = [
        "predict",
        str(corrupt),
        str(good),
        str(empty),
        "--model",
        str(model_dirs["depth"]),
        "--out",
        str(out),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert (
        f"skipped {corrupt}" in err and f"skipped {empty}" in err and "2 of 3 images could not be read" in err
    )
    assert sorted(p.name for p in out.iterdir()) == ["good_depth.npy", "good_depth.png"]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, t: ["predict", str(t / "x.png"), "--model", str(t / "missing")], "no such directory"),
        (lambda d, t: ["predict", str(t / "x.png"), "--model", str(t / "x.png")], "not a directory"),
        (
            lambda d, t: ["predict", str(t / "x.png"), "--model", str(t / "bert")],
            "model_type 'bert', expected 'ait'",
        ),
        (lambda d, t: ["predict", str(t / "x.png"), "--model", str(t / "noconfig")], "has no config.json"),
        (lambda d, t: ["predict", str(t / "x.png"), "--model", str(t / "tok")], "VQ-VAE tokenizer"),
        (
            lambda d, t: ["predict", str(t / "x.png"), "--model", str(d["depth"]), "--task", "instance"],
            r"no 'instance_segmentation' head; it was trained for \['depth'\]",
        ),
        (
            lambda d, t: ["predict", str(t / "missing.png"), "--model", str(d["depth"])],
            "missing.png: no such file",
        ),
        (lambda d, t: ["predict", str(t / "noconfig"), "--model", str(d["depth"])], "holds no image files"),
        (
            lambda d, t: ["predict", str(t / "x.png"), "--model", str(d["depth"]), "--batch-size", "0"],
            "at least 1",
        ),
        (lambda d, t: ["predict", str(t / "x.png"), "--model", str(d["det"]), "--threshold", "2"], "within"),
    ],
)
def test_cli_usage_errors_are_clear(model_dirs, tmp_path, capsys, make_args, message):
    random_image(8, 8).save(tmp_path / "x.png")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "config.json").write_text('{"model_type": "ait_vqvae"}')
    assert main(make_args(model_dirs, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "ait-hf: error: " in err
    assert re.search(message, err), err


def test_cli_convert_delegates_to_the_conversion_script(fixtures_dir, tmp_path, capsys):
    case = fixtures_dir / "det"
    out = tmp_path / "det-hf"
    args = [
        "convert",
        "--checkpoint",
        str(case / "checkpoint.pth"),
        "--original-config",
        str(case / "config.json"),
    ]
    assert main([*args, "--output-dir", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert json.loads((out / "preprocessor_config.json").read_text())["task"] == "object_detection"
    assert (
        (out / "README.md")
        .read_text()
        .startswith("---\nlibrary_name: transformers\npipeline_tag: object-detection")
    )
    assert "auto_map" in json.loads((out / "config.json").read_text())
    assert (out / "modeling_ait.py").is_file()
    assert (
        main(
            [
                "convert",
                "--checkpoint",
                str(case / "checkpoint.pth"),
                "--original-config",
                "nope",
                "--output-dir",
                str(out),
            ]
        )
        == 2
    )
    assert "neither an existing file nor a preset" in capsys.readouterr().err


def test_cli_eval_delegates_to_the_evaluation_runner(model_dirs, tmp_path, capsys):
    from ait_hf.data.synthetic import make_synthetic_nyu

    assert main(["eval", "--help"]) == 0
    assert "usage: ait-hf eval" in capsys.readouterr().out
    data = make_synthetic_nyu(tmp_path / "nyu", num_train=1, num_test=2, height=48, width=64)
    out = tmp_path / "metrics"
    args = ["eval", "--model", str(model_dirs["depth"]), "--task", "depth", "--data", str(data["root"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 48x64 maps are scored without the 480x640 NYU crop
        status = main([*args, "--list-file", str(data["test_list"]), "--quiet", "--output", str(out)])
    assert status == 0, capsys.readouterr().err
    assert (out / "metrics.json").is_file() and (out / "metrics.md").is_file()
    assert "rmse" in capsys.readouterr().out
    missing = [
        "eval",
        "--model",
        str(model_dirs["depth"]),
        "--task",
        "depth",
        "--data",
        str(tmp_path / "none"),
    ]
    assert main(missing) == 2
    assert "ait-hf eval: error:" in capsys.readouterr().err


def test_colourise_depth():
    depth = np.array([[1.0, 2.0], [3.0, np.nan]], dtype=np.float32)
    colours = colourise_depth(depth)
    assert colours.dtype == np.uint8 and colours.shape == (2, 2, 3)
    assert colours[0, 0].tolist() == [253, 231, 37]  # nearest: the bright end
    assert colours[1, 0].tolist() == [68, 1, 84]  # farthest: the dark end
    assert colours[0, 1].tolist() == [33, 145, 140]  # halfway: the middle anchor
    assert colours[1, 1].tolist() == [0, 0, 0]  # not finite
    assert colourise_depth(np.full((3, 3), 2.0))[1, 1].tolist() == [253, 231, 37]  # constant map


def test_predict_reports_images_over_the_pil_size_limit(model_dirs, tmp_path, capsys, monkeypatch):
    random_image(40, 40).save(tmp_path / "big.png")
    random_image(8, 8).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1600 pixels > 2 x 500: PIL refuses to decode
    args = [
        "predict",
        str(tmp_path / "big.png"),
        str(tmp_path / "small.png"),
        "--model",
        str(model_dirs["depth"]),
    ]
    assert main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "big.png: the image is larger than PIL's safety limit" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small_depth.npy", "small_depth.png"]


def test_predict_depth_with_flip_test_time_augmentation(model_dirs, tmp_path):
    out = tmp_path / "out"
    args = ["predict", str(SAMPLES / "indoor.png"), "--model", str(model_dirs["depth"]), "--tta"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    model, processor = load_solver(model_dirs["depth"])
    image = Image.open(SAMPLES / "indoor.png")
    with torch.no_grad():
        outputs = model(
            processor(image, return_tensors="pt")["pixel_values"], task="depth", test_time_augmentation=True
        )
    expected = processor.post_process_depth_estimation(outputs, target_sizes=[(120, 160)])[0][
        "predicted_depth"
    ]
    np.testing.assert_allclose(np.load(out / "indoor_depth.npy"), expected.numpy(), rtol=1e-5, atol=1e-5)
    plain = direct_prediction(model_dirs["depth"], "depth", image)["predicted_depth"].numpy()
    assert not np.allclose(np.load(out / "indoor_depth.npy"), plain)  # the flips changed the prediction


def test_cli_without_model_and_without_the_bundled_one(tmp_path, monkeypatch, capsys):
    import ait_hf.cli

    monkeypatch.setattr(ait_hf.cli, "DEFAULT_MODEL_DIR", tmp_path / "not-installed")
    assert ait_hf.cli.main(["predict", str(tmp_path / "x.png")]) != 0
    assert "--model is required" in capsys.readouterr().err
