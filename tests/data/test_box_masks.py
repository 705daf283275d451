"""Box-cropped 64x64 masks (mask VQ-VAE data): the crop rule, the data set, and the resumable writer."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ait_hf.data import (
    BoxMaskTransform,
    DataValidationError,
    VQVAECollator,
    build_box_cropped_masks,
    crop_and_resize_masks,
    load_box_cropped_masks,
    load_coco_instances,
    load_prepared_dataset,
    write_box_cropped_masks,
)
from ait_hf.data.box_masks import main as box_masks_main


def _bilinear(image: np.ndarray, y: float, x: float) -> float:
    height, width = image.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * image[y_low, x_low]
        + hy * lx * image[y_low, x_high]
        + ly * hx * image[y_high, x_low]
        + ly * lx * image[y_high, x_high]
    )


def reference_roi_align(mask: np.ndarray, box, size: int) -> np.ndarray:
    """RoI-align written out from its definition (half-pixel aligned, adaptive sampling grid)."""
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    bin_h, bin_w = (y2 - y1) / size, (x2 - x1) / size
    grid_h, grid_w = math.ceil((y2 - y1) / size), math.ceil((x2 - x1) / size)
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            total = 0.0
            for iy in range(grid_h):
                y = y1 + i * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    x = x1 + j * bin_w + (ix + 0.5) * bin_w / grid_w
                    total += _bilinear(mask, y, x)
            out[i, j] = total / (grid_h * grid_w)
    return out


def test_crop_rule_matches_roi_align_definition_on_random_masks_and_fractional_boxes():
    rng = np.random.default_rng(0)
    masks, boxes = [], []
    for _ in range(4):
        mask = np.zeros((40, 50), dtype=np.uint8)
        y0, x0 = rng.integers(0, 20), rng.integers(0, 25)
        mask[y0 : y0 + rng.integers(5, 20), x0 : x0 + rng.integers(5, 25)] = 1
        mask |= (rng.random((40, 50)) < 0.1).astype(np.uint8)
        masks.append(mask)
        x1, y1 = rng.uniform(-3, 30), rng.uniform(-3, 20)
        boxes.append([x1, y1, x1 + rng.uniform(2, 60), y1 + rng.uniform(2, 40)])
    size = 16
    soft = crop_and_resize_masks(np.stack(masks), boxes, size, binarize=False)
    hard = crop_and_resize_masks(np.stack(masks), boxes, size)
    for k in range(4):
        expected = reference_roi_align(masks[k].astype(np.float64), boxes[k], size)
        np.testing.assert_allclose(soft[k].numpy(), expected, atol=1e-5)
        np.testing.assert_array_equal(hard[k].numpy(), (soft[k].numpy() >= 0.5).astype(np.float32))


def test_a_mask_filling_its_box_and_a_left_half():
    mask = np.zeros((2, 100, 200), dtype=np.uint8)
    mask[0, 8:72, 8:136] = 1  # exactly the box below
    mask[1, 8:72, 8:72] = 1  # its left half
    boxes = [[8, 8, 136, 72], [8, 8, 136, 72]]
    crops = crop_and_resize_masks(mask, boxes, 64)
    assert crops.shape == (2, 64, 64) and crops.dtype == torch.float32
    assert crops[0].eq(1).all()
    assert crops[1][:, :32].eq(1).all() and crops[1][:, 32:].eq(0).all()
    assert crop_and_resize_masks(np.zeros((0, 5, 5)), np.zeros((0, 4)), 64).shape == (0, 64, 64)
    with pytest.raises(ValueError, match="2 masks but 1 boxes"):
        crop_and_resize_masks(mask, boxes[:1])


def _expected_crops(annotation_file):
    """Independent path: pycocotools masks of the objects mmdet trains on, cropped by RoI-align."""
    coco = COCO(str(annotation_file))
    expected = []
    for image_id in coco.getImgIds():
        image = coco.imgs[image_id]
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            x, y, w, h = annotation["bbox"]
            inside_w = max(0, min(x + w, image["width"]) - max(x, 0))
            inside_h = max(0, min(y + h, image["height"]) - max(y, 0))
            if annotation["iscrowd"] or inside_w * inside_h == 0 or annotation["area"] <= 0 or w < 1 or h < 1:
                continue
            mask = coco.annToMask(annotation)[None]
            crop = crop_and_resize_masks(mask, [[x, y, x + w, y + h]], 64)[0]
            expected.append((annotation["id"], crop.numpy()))
    return expected


def test_box_cropped_mask_dataset(synthetic_coco, hf_cache):
    coco = load_coco_instances(
        synthetic_coco["image_dir"], synthetic_coco["annotation_file"], cache_dir=hf_cache
    )
    masks = build_box_cropped_masks(coco, cache_dir=hf_cache)
    expected = _expected_crops(synthetic_coco["annotation_file"])
    assert masks.cache_files  # memory-mapped
    assert masks["annotation_id"] == [annotation_id for annotation_id, _ in expected]
    crowd_ids = {
        a["id"]
        for a in json.loads(synthetic_coco["annotation_file"].read_text())["annotations"]
        if a["iscrowd"]
    }
    assert crowd_ids and not crowd_ids & set(masks["annotation_id"])
    for row, (_, crop) in zip(masks, expected):
        assert row["mask"].size == (64, 64)
        np.testing.assert_array_equal(np.asarray(row["mask"]).astype(np.float32), crop)
    sample = masks.with_transform(BoxMaskTransform())[0]
    np.testing.assert_array_equal(sample["pixel_values"][0].numpy(), expected[0][1])
    batch = VQVAECollator()([masks.with_transform(BoxMaskTransform())[i] for i in range(3)])
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == (3, 1, 64, 64) and batch["pixel_values"].dtype == torch.float32
    assert torch.equal(batch["pixel_values"], batch["labels"])
    assert set(batch["pixel_values"].unique().tolist()) <= {0.0, 1.0}


def test_parallel_resumable_writer_and_command(synthetic_coco, hf_cache, tmp_path):
    coco = load_coco_instances(
        synthetic_coco["image_dir"], synthetic_coco["annotation_file"], cache_dir=hf_cache
    )
    reference = build_box_cropped_masks(coco, cache_dir=hf_cache)
    output = write_box_cropped_masks(coco, tmp_path / "masks", num_shards=3, num_proc=2)
    written = load_box_cropped_masks(output)
    assert written["annotation_id"] == reference["annotation_id"]
    assert [np.asarray(m).tolist() for m in written["mask"]] == [
        np.asarray(m).tolist() for m in reference["mask"]
    ]
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["num_masks"] == len(reference) and manifest["num_shards"] == 3

    # Resume: a lost shard and a half-written leftover are redone; finished shards are not touched.
    shards = sorted(p for p in output.iterdir() if p.name.startswith("shard-"))
    kept_times = {p.name: (p / "done.json").stat().st_mtime_ns for p in shards[1:]}
    shutil.rmtree(shards[0])
    (output / (shards[0].name + ".partial")).mkdir()
    write_box_cropped_masks(coco, output, num_shards=3, num_proc=1)
    assert not (output / (shards[0].name + ".partial")).exists()
    assert {p.name: (p / "done.json").stat().st_mtime_ns for p in shards[1:]} == kept_times
    assert load_box_cropped_masks(output)["annotation_id"] == reference["annotation_id"]
    assert len(load_prepared_dataset(output)) == len(reference)

    with pytest.raises(DataValidationError, match="holds box masks of other inputs"):
        write_box_cropped_masks(coco, output, mask_size=32, num_shards=3)
    with pytest.raises(DataValidationError, match="has no manifest.json"):
        load_box_cropped_masks(tmp_path)

    # The command reads only the annotation file.
    box_masks_main(["--annotations", str(synthetic_coco["annotation_file"]), "--output", str(tmp_path / "cli"),
                    "--num-shards", "2", "--cache-dir", str(hf_cache)])  # fmt: skip
    assert load_box_cropped_masks(tmp_path / "cli")["annotation_id"] == reference["annotation_id"]
