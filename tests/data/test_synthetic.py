"""The synthetic data generator writes real, deterministic NYUv2 and COCO layouts from arrays."""

import hashlib
import json

import numpy as np
import PIL.Image
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO

from ait_hf.data.synthetic import (
    CocoImage,
    CocoInstance,
    NYUSample,
    make_synthetic_coco,
    make_synthetic_nyu,
    uncompressed_rle,
    write_coco_split,
    write_nyu_split,
)


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    for name, make in (("nyu", lambda r, s: make_synthetic_nyu(r, 2, 1, 48, 64, seed=s)),
                       ("coco", lambda r, s: make_synthetic_coco(r, num_images=4, seed=s))):  # fmt: skip
        make(tmp_path / f"{name}_a", 3)
        make(tmp_path / f"{name}_b", 3)
        make(tmp_path / f"{name}_c", 4)
        assert _digest(tmp_path / f"{name}_a") == _digest(tmp_path / f"{name}_b")
        assert _digest(tmp_path / f"{name}_a") != _digest(tmp_path / f"{name}_c")


def test_nyu_layout(synthetic_nyu):
    root = synthetic_nyu["root"]
    for split, folder in (("train", root), ("test", root / "official_splits" / "test")):
        lines = synthetic_nyu[f"{split}_list"].read_text().splitlines()
        assert lines
        for line in lines:
            image, depth = line.split()
            assert image.startswith("/") and image.endswith(".jpg") and "/rgb_" in image
            assert depth == image.replace("rgb_", "sync_depth_").replace(".jpg", ".png")
            with PIL.Image.open(folder / depth.lstrip("/")) as png:
                assert png.format == "PNG" and png.mode == "I;16"
                millimetres = np.array(png)
            assert millimetres.dtype == np.uint16 and (millimetres == 0).any() and millimetres.max() < 10000
            with PIL.Image.open(folder / image.lstrip("/")) as jpeg:
                assert jpeg.format == "JPEG" and jpeg.mode == "RGB" and jpeg.size == (640, 480)


def test_nyu_writer_takes_metres_or_millimetres(tmp_path):
    metres = np.array([[0.0, 1.2344], [2.0004, 9.9999]])
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    write_nyu_split(tmp_path, "train", [NYUSample("room", 3, image, metres)])
    written = np.array(PIL.Image.open(tmp_path / "room" / "sync_depth_00003.png"))
    np.testing.assert_array_equal(written, np.array([[0, 1234], [2000, 10000]], dtype=np.uint16))
    assert (tmp_path / "train_list.txt").read_text() == "/room/rgb_00003.jpg /room/sync_depth_00003.png\n"
    with pytest.raises(ValueError, match="depth shape"):
        write_nyu_split(tmp_path, "train", [NYUSample("room", 4, image, np.zeros((3, 3), np.uint16))])
    with pytest.raises(ValueError, match="0, 65.535"):
        write_nyu_split(tmp_path, "train", [NYUSample("room", 5, image, np.full((2, 2), 70.0))])


def test_coco_layout_has_every_form(synthetic_coco):
    data = json.loads(synthetic_coco["annotation_file"].read_text())
    assert synthetic_coco["annotation_file"].name == "instances_val2017.json"
    assert {"images", "annotations", "categories"} <= set(data) and len(data["categories"]) == 80
    forms = {
        "polygon": any(isinstance(a["segmentation"], list) for a in data["annotations"]),
        "rle": any(
            isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], list)
            for a in data["annotations"]
        ),  # fmt: skip
        "compressed_rle": any(
            isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str)
            for a in data["annotations"]
        ),  # fmt: skip
        "crowd": any(a["iscrowd"] for a in data["annotations"]),
        "image_without_annotations": len({a["image_id"] for a in data["annotations"]}) < len(data["images"]),
    }
    assert all(forms.values()), forms
    coco = COCO(str(synthetic_coco["annotation_file"]))
    for annotation in data["annotations"]:
        rle = coco.annToRLE(annotation)
        assert annotation["area"] == pytest.approx(float(mask_utils.area(rle)))
        x, y, w, h = annotation["bbox"]
        mask = coco.annToMask(annotation)
        ys, xs = np.nonzero(mask)
        # The box encloses the mask (pixel (i, j) covers [j, j + 1) x [i, i + 1)).
        assert xs.min() >= np.floor(x) - 1 and xs.max() + 1 <= np.ceil(x + w) + 1
        assert ys.min() >= np.floor(y) - 1 and ys.max() + 1 <= np.ceil(y + h) + 1
    for image in data["images"]:
        with PIL.Image.open(synthetic_coco["image_dir"] / image["file_name"]) as jpeg:
            assert jpeg.size == (image["width"], image["height"])


def test_coco_writer_takes_masks_in_both_rle_forms(tmp_path):
    rng = np.random.default_rng(0)
    mask_a = (rng.random((30, 40)) < 0.3).astype(np.uint8)
    mask_b = np.zeros((30, 40), dtype=np.uint8)
    mask_b[0, 0] = mask_b[29, 39] = 1  # runs starting and ending with foreground
    image = CocoImage(5, np.zeros((30, 40, 3), dtype=np.uint8), [
        CocoInstance(3, mask=mask_a, encoding="rle"),
        CocoInstance(3, mask=mask_b, encoding="compressed_rle"),
        CocoInstance(1, mask=mask_b, iscrowd=True, encoding="rle"),
    ])  # fmt: skip
    annotation_file = write_coco_split(tmp_path, "train", [image])
    coco = COCO(str(annotation_file))
    for annotation, mask in zip(coco.dataset["annotations"], (mask_a, mask_b, mask_b)):
        np.testing.assert_array_equal(coco.annToMask(annotation), mask)
    assert uncompressed_rle(mask_b)["counts"][0] == 0
    assert sum(uncompressed_rle(mask_a)["counts"]) == 30 * 40
    with pytest.raises(ValueError, match="pass polygons"):
        write_coco_split(
            tmp_path,
            "x",
            [CocoImage(1, np.zeros((2, 2, 3), np.uint8), [CocoInstance(1, mask=mask_a[:2, :2])])],
        )
    with pytest.raises(ValueError, match="differs from the image"):
        write_coco_split(tmp_path, "y", [CocoImage(1, np.zeros((2, 2, 3), np.uint8),
                                                   [CocoInstance(1, mask=mask_a, encoding="rle")])])  # fmt: skip
