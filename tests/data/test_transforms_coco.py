"""COCO large-scale jitter and test-time resize/pad: boxes, labels and masks stay consistent with the image."""

import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ait_hf.data import (
    COCO_IMAGE_MEAN,
    COCO_IMAGE_STD,
    CocoResizePad,
    DataValidationError,
    LargeScaleJitter,
    load_coco_instances,
)
from ait_hf.data.synthetic import CocoImage, CocoInstance, write_coco_split

MEAN = torch.tensor(COCO_IMAGE_MEAN)[:, None, None]
STD = torch.tensor(COCO_IMAGE_STD)[:, None, None]


@pytest.fixture(scope="module")
def coco(synthetic_coco, tmp_path_factory):
    return load_coco_instances(
        synthetic_coco["image_dir"],
        synthetic_coco["annotation_file"],
        cache_dir=tmp_path_factory.mktemp("cache"),
    )


def _training_objects(annotation_file, image_id):
    """mmdet's training objects of one image, read straight from the json (not from the loader)."""
    data = json.loads(annotation_file.read_text())
    image = next(i for i in data["images"] if i["id"] == image_id)
    category_ids = sorted(c["id"] for c in data["categories"])
    boxes, labels = [], []
    for a in data["annotations"]:
        if a["image_id"] != image_id or a["iscrowd"]:
            continue
        x, y, w, h = a["bbox"]
        inside = max(0, min(x + w, image["width"]) - max(x, 0)) * max(
            0, min(y + h, image["height"]) - max(y, 0)
        )
        if inside == 0 or a["area"] <= 0 or w < 1 or h < 1:
            continue
        boxes.append([x, y, x + w, y + h])
        labels.append(category_ids.index(a["category_id"]))
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64)


def _replay_boxes(boxes, labels, height, width, generator_state, output=640):
    """mmdet's Resize(keep_ratio, ratio_range) -> RandomCrop -> FilterAnnotations -> RandomFlip on boxes."""
    g = torch.Generator()
    g.set_state(generator_state)
    ratio = 0.1 + 2.9 * float(torch.rand((), generator=g))
    scale = int(output * ratio)
    factor = min(scale / max(height, width), scale / min(height, width))
    new_h, new_w = int(height * factor + 0.5), int(width * factor + 0.5)
    boxes = boxes * np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, new_w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, new_h)
    crop_h, crop_w = min(output, new_h), min(output, new_w)
    top = int(torch.randint(0, new_h - crop_h + 1, (), generator=g))
    left = int(torch.randint(0, new_w - crop_w + 1, (), generator=g))
    boxes = boxes - np.array([left, top, left, top], dtype=np.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, crop_w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, crop_h)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, labels = boxes[keep], labels[keep]
    keep = ((boxes[:, 2] - boxes[:, 0]) > 0.01) & ((boxes[:, 3] - boxes[:, 1]) > 0.01)
    assert keep.any() or len(keep) == 0, "this draw would be retried; pick another seed"
    boxes, labels = boxes[keep], labels[keep]
    if float(torch.rand((), generator=g)) < 0.5:
        boxes = np.stack([crop_w - boxes[:, 2], boxes[:, 1], crop_w - boxes[:, 0], boxes[:, 3]], axis=1)
    return boxes, labels, (crop_h, crop_w), factor


def test_large_scale_jitter_matches_mmdet_geometry(coco, synthetic_coco):
    generator = torch.Generator().manual_seed(0)
    transform = LargeScaleJitter("instance_segmentation", generator=generator)
    seen_scales = []
    for seed in range(16):
        row = coco[seed % 5]
        generator.manual_seed(seed)
        state = generator.get_state()
        out = transform.example(row)
        assert set(out) == {"pixel_values", "boxes", "class_labels", "masks", "task"}
        assert out["task"] == "instance_segmentation"
        boxes, labels = _training_objects(synthetic_coco["annotation_file"], row["image_id"])
        expected, expected_labels, (crop_h, crop_w), factor = _replay_boxes(
            boxes, labels, row["height"], row["width"], state
        )
        seen_scales.append(factor)
        np.testing.assert_allclose(out["boxes"].numpy(), expected, atol=2e-3)
        np.testing.assert_array_equal(out["class_labels"].numpy(), expected_labels)
        assert out["boxes"].dtype == torch.float32 and out["class_labels"].dtype == torch.int64
        pixels, masks = out["pixel_values"], out["masks"]
        assert pixels.shape == (3, 640, 640) and pixels.dtype == torch.float32
        assert masks.shape == (len(expected), 640, 640) and masks.dtype == torch.uint8
        # Padding (bottom/right, after normalisation) is exactly 0, in the image and in the masks.
        assert (pixels[:, crop_h:] == 0).all() and (pixels[:, :, crop_w:] == 0).all()
        assert (masks[:, crop_h:] == 0).all() and (masks[:, :, crop_w:] == 0).all()
        raw = pixels[:, :crop_h, :crop_w] * STD + MEAN
        assert raw.min() > -1e-3 and raw.max() < 255 + 1e-3
        assert set(masks.unique().tolist()) <= {0, 1}
        # Every mask lies within its box (up to the nearest-neighbour rounding of one source pixel).
        tolerance = 1.5 + factor
        for mask, box in zip(masks, out["boxes"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs) == 0:
                continue
            assert xs.min() >= box[0] - tolerance and xs.max() + 1 <= box[2] + tolerance
            assert ys.min() >= box[1] - tolerance and ys.max() + 1 <= box[3] + tolerance
    assert min(seen_scales) < 1 < max(seen_scales)


def test_empty_crops_are_allowed(tmp_path):
    image = np.full((200, 200, 3), 90, dtype=np.uint8)
    item = CocoImage(1, image, [CocoInstance(1, polygons=[[5, 5, 40, 5, 40, 40, 5, 40]])])
    annotation_file = write_coco_split(tmp_path, "train", [item])
    dataset = load_coco_instances(tmp_path / "train2017", annotation_file, cache_dir=tmp_path / "cache")
    # 200 px -> 960 px: the object covers [24, 192) of the 960, the 640 crop starts anywhere in [0, 320].
    transform = LargeScaleJitter(scale_range=(1.5, 1.5), generator=torch.Generator().manual_seed(0))
    counts = [len(transform.example(dataset[0])["class_labels"]) for _ in range(12)]
    assert 0 in counts and 1 in counts
    empty = next(
        out for out in (transform.example(dataset[0]) for _ in range(50)) if len(out["class_labels"]) == 0
    )
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 640, 640)


def test_size_filter_and_retry(coco):
    transform = LargeScaleJitter(min_box_size=50.0, generator=torch.Generator().manual_seed(1))
    for _ in range(6):
        out = transform.example(coco[3])
        widths, heights = out["boxes"][:, 2] - out["boxes"][:, 0], out["boxes"][:, 3] - out["boxes"][:, 1]
        assert (widths > 50).all() and (heights > 50).all()
    # Nothing can pass: after max_retries draws the sample is kept without objects.
    nothing = LargeScaleJitter(min_box_size=1e6, max_retries=3).example(coco[3])
    assert nothing["boxes"].shape == (0, 4) and nothing["masks"].shape[0] == 0
    assert nothing["pixel_values"].abs().sum() > 0


def test_crowd_regions_are_not_targets(coco):
    row = coco[0]
    objects = row["objects"]
    assert any(objects["iscrowd"]) and not all(objects["iscrowd"])
    out = CocoResizePad().example(row)
    w_scale, h_scale = out["scale_factor"]
    scale = np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)
    kept = [k for k, crowd in enumerate(objects["iscrowd"]) if not crowd]
    expected = np.array([objects["bbox"][k] for k in kept], dtype=np.float32) * scale
    expected[:, 0::2] = expected[:, 0::2].clip(0, out["image_size"][1])
    expected[:, 1::2] = expected[:, 1::2].clip(0, out["image_size"][0])
    np.testing.assert_allclose(out["boxes"].numpy(), expected, rtol=1e-6)
    assert out["class_labels"].tolist() == [objects["label"][k] for k in kept]


def test_detection_does_not_decode_masks(coco, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("masks decoded for detection")

    monkeypatch.setattr("ait_hf.data.transforms.coco_object_masks", refuse)
    for transform in (LargeScaleJitter("object_detection"), CocoResizePad("object_detection")):
        out = transform.example(coco[0])
        assert set(out) >= {"pixel_values", "boxes", "class_labels", "task"} and "masks" not in out
        assert out["task"] == "object_detection"
    with pytest.raises(ValueError, match="task must be"):
        LargeScaleJitter("depth")


def test_resize_pad_for_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    wide = CocoImage(1, rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                     [CocoInstance(1, polygons=[[10.5, 20, 300, 20, 300, 400.25, 10.5, 400.25]])])  # fmt: skip
    tall = CocoImage(2, rng.integers(0, 256, (333, 250, 3), dtype=np.uint8),
                     [CocoInstance(3, polygons=[[0, 0, 249, 0, 249, 332, 0, 332]])])  # fmt: skip
    annotation_file = write_coco_split(tmp_path, "val", [wide, tall])
    dataset = load_coco_instances(tmp_path / "val2017", annotation_file, cache_dir=tmp_path / "cache")
    coco = COCO(str(annotation_file))
    transform = CocoResizePad()
    out = transform.example(dataset[0])
    # The 640-wide image is not resized: normalised pixels exactly, then zero padding.
    image = torch.from_numpy(np.array(dataset[0]["image"])).permute(2, 0, 1).float()
    assert torch.equal(out["pixel_values"][:, :480], (image - MEAN) / STD)
    assert (out["pixel_values"][:, 480:] == 0).all()
    assert out["image_size"] == (480, 640) and out["scale_factor"] == (1.0, 1.0)
    assert out["original_size"] == (480, 640) and out["image_id"] == 1
    np.testing.assert_array_equal(out["masks"][0, :480].numpy(), coco.annToMask(coco.anns[1]))
    assert torch.equal(out["boxes"], torch.tensor([[10.5, 20.0, 300.0, 400.25]]))
    # The tall image: longer side to 640 (mmcv's rounding), boxes scaled and clipped.
    out = transform.example(dataset[1])
    factor = 640 / 333
    assert out["image_size"] == (int(333 * factor + 0.5), int(250 * factor + 0.5)) == (640, 480)
    w_scale, h_scale = out["scale_factor"]
    assert (w_scale, h_scale) == (480 / 250, 640 / 333)
    np.testing.assert_allclose(out["boxes"].numpy(), [[0, 0, 249 * w_scale, 332 * h_scale]], rtol=1e-6)
    assert (out["pixel_values"][:, :, 480:] == 0).all()
    assert torch.equal(transform.example(dataset[1])["pixel_values"], out["pixel_values"])  # deterministic


def test_wrong_image_size_is_reported(coco):
    row = dict(coco[1])
    row["width"] += 1
    with pytest.raises(DataValidationError, match="but the annotations say"):
        CocoResizePad().example(row)
