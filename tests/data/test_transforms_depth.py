"""NYUv2 task-solver and depth VQ-VAE transforms: geometry kept in step, the stripe, colour jitter, masking."""

import math

import numpy as np
import PIL.Image
import pytest
import torch

from ait_hf.data import (
    DataValidationError,
    DepthVQVAETransform,
    NYUDepthEvalTransform,
    NYUDepthTrainTransform,
    PhotometricDistortion,
    load_nyu_depth_v2,
    patch_mask,
)
from ait_hf.data.photometric import adjust_brightness_contrast, adjust_gamma, shift_hue_saturation_value

NO_COLOUR = PhotometricDistortion(brightness_contrast_p=0.0, gamma_p=0.0, hue_saturation_value_p=0.0)


def _coordinate_sample(height=480, width=640):
    """Image and depth that both encode the column: image = (x % 256, x // 256, 7), depth = (x + 1) mm."""
    x = np.broadcast_to(np.arange(width), (height, width))
    image = np.stack([x % 256, x // 256, np.full_like(x, 7)], axis=-1).astype(np.uint8)
    depth = (x + 1).astype(np.uint16)
    return {"image": PIL.Image.fromarray(image), "depth": PIL.Image.fromarray(depth)}


def test_train_output_contract(synthetic_nyu, hf_cache):
    dataset = load_nyu_depth_v2(
        synthetic_nyu["root"], "train", synthetic_nyu["train_list"], cache_dir=hf_cache
    )
    transformed = dataset.with_transform(NYUDepthTrainTransform(generator=torch.Generator().manual_seed(0)))
    example = transformed[0]
    assert set(example) == {"pixel_values", "depth_labels", "task"}
    assert example["task"] == "depth"
    assert example["pixel_values"].shape == (3, 480, 480) and example["pixel_values"].dtype == torch.float32
    assert 0.0 <= example["pixel_values"].min() and example["pixel_values"].max() <= 1.0
    assert example["depth_labels"].shape == (480, 480) and example["depth_labels"].dtype == torch.float32
    assert (example["depth_labels"] == 0).any() and example["depth_labels"].max() < 10.0
    normalised = NYUDepthTrainTransform(image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
    assert normalised.example(dataset[0])["pixel_values"].min() < 0


def test_flip_and_crop_keep_image_and_depth_aligned():
    transform = NYUDepthTrainTransform(
        cutdepth_every=0, photometric=NO_COLOUR, generator=torch.Generator().manual_seed(3)
    )
    sample = _coordinate_sample()
    lefts, flips = set(), set()
    for _ in range(24):
        out = transform.example(sample)
        image = np.rint(out["pixel_values"].numpy() * 255).astype(np.int64)
        column_from_image = image[0] + 256 * image[1]
        column_from_depth = np.rint(out["depth_labels"].numpy() * 1000).astype(np.int64) - 1
        np.testing.assert_array_equal(column_from_image, column_from_depth)
        row = column_from_depth[0]
        flips.add(bool(row[0] > row[-1]))
        lefts.add(int(row.min()))
        assert row.max() - row.min() == 479 and (column_from_depth == row).all()
    assert flips == {True, False}
    assert min(lefts) >= 0 and max(lefts) <= 160 and len(lefts) > 15


def test_depth_stripe_every_fourth_sample():
    width, height = 640, 480
    generator = torch.Generator().manual_seed(5)
    transform = NYUDepthTrainTransform(
        crop_size=(height, width), flip_p=0.0, photometric=NO_COLOUR, generator=generator
    )
    depth_mm = np.broadcast_to(np.arange(width) * 37 + 300, (height, width)).astype(np.uint16)
    image = np.full((height, width, 3), 7, dtype=np.uint8)
    sample = {"image": PIL.Image.fromarray(image), "depth": PIL.Image.fromarray(depth_mm)}
    for count in range(9):
        replay = generator.get_state()
        out = transform.example(sample)
        pixels = (out["pixel_values"] * 255).round().to(torch.uint8)
        changed = (pixels != 7).any(0).any(0).nonzero().flatten()
        if count % 4:
            assert changed.numel() == 0
            continue
        # The stripe: [int(a W), + int(max((W - a W) b 0.75, 1))), holding millimetres modulo 256 in all channels.
        replayed = torch.Generator()
        replayed.set_state(replay)
        a, b = float(torch.rand((), generator=replayed)), float(torch.rand((), generator=replayed))
        left = int(a * width)
        stripe = int(max((width - a * width) * b * 0.75, 1))
        expected = torch.from_numpy(depth_mm[:, left : left + stripe].astype(np.int64) % 256).to(torch.uint8)
        for channel in range(3):
            assert torch.equal(pixels[channel, :, left : left + stripe], expected)
        outside = torch.ones(width, dtype=torch.bool)
        outside[left : left + stripe] = False
        assert (pixels[:, :, outside] == 7).all()
        assert torch.equal(out["depth_labels"], torch.from_numpy(depth_mm.astype(np.float32)) / 1000.0)


def test_colour_operations():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(adjust_brightness_contrast(values, 1.0, 0.0), values)
    np.testing.assert_array_equal(
        adjust_brightness_contrast(values, 1.0, 0.2), np.minimum(values.astype(int) + 51, 255)
    )
    np.testing.assert_array_equal(
        adjust_brightness_contrast(values, 1.2, 0.0), np.minimum(values * 1.2, 255).astype(np.uint8)
    )
    np.testing.assert_array_equal(adjust_gamma(values, 1.0), values)
    assert (adjust_gamma(values, 1.2).astype(int) <= values).all() and adjust_gamma(values, 1.2)[
        -1, -1
    ] == 255
    grey = np.full((4, 4, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(shift_hue_saturation_value(grey, 0, 0, 20), grey + 20)
    red = np.zeros((2, 2, 3), dtype=np.uint8)
    red[..., 0] = 255
    green = shift_hue_saturation_value(red, 60, 0, 0)  # 60 OpenCV hue units = 120 degrees
    assert green[0, 0, 1] == 255 and green[0, 0, 0] <= 6 and green[0, 0, 2] <= 6
    identity = PhotometricDistortion(brightness_limit=0, contrast_limit=0, brightness_contrast_p=1, gamma_limit=(100, 100),
                                     gamma_p=1, hue_shift_limit=0, saturation_shift_limit=0, value_shift_limit=0,
                                     hue_saturation_value_p=1)  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(identity(image), image)
    changed = [
        not np.array_equal(PhotometricDistortion()(image, torch.Generator().manual_seed(s)), image)
        for s in range(20)
    ]
    assert 10 <= sum(changed) < 20  # each of the three applies with p = 0.5


def test_eval_transform_is_the_plain_full_frame(synthetic_nyu, hf_cache):
    dataset = load_nyu_depth_v2(synthetic_nyu["root"], "test", synthetic_nyu["test_list"], cache_dir=hf_cache)
    row = dataset[0]
    out = NYUDepthEvalTransform().example(row)
    assert out["pixel_values"].shape == (3, 480, 640)
    expected = torch.from_numpy(np.array(row["image"])).permute(2, 0, 1).float() / 255.0
    assert torch.equal(out["pixel_values"], expected)
    assert torch.equal(out["depth_labels"], torch.from_numpy(row["depth"]))
    # A later with_transform replaces the depth decoding: the transforms read the raw uint16 PNG as well.
    raw = dataset.with_transform(NYUDepthEvalTransform())[0]
    assert torch.equal(raw["depth_labels"], out["depth_labels"])


def test_depth_vqvae_training_sample():
    transform = DepthVQVAETransform(generator=torch.Generator().manual_seed(0))
    sample = _coordinate_sample()
    flips = set()
    for _ in range(12):
        out = transform.example(sample)
        assert set(out) == {"pixel_values", "labels"}
        assert out["labels"].shape == out["pixel_values"].shape == (1, 480, 480)
        assert out["labels"].dtype == torch.float32
        target, masked = out["labels"].numpy()[0], out["pixel_values"].numpy()[0]
        columns = np.rint(target[0] * 1000).astype(np.int64) - 1
        assert columns.min() >= 41 and columns.max() <= 600  # inside the valid area x in [41, 601)
        flips.add(bool(columns[0] > columns[-1]))
        patches = masked.reshape(30, 16, 30, 16).transpose(0, 2, 1, 3).reshape(900, 256)
        blank = (patches == 0).all(1)
        assert blank.sum() == math.ceil(900 * 0.5)
        assert (patches[~blank] != 0).all()
        np.testing.assert_array_equal(masked[masked != 0], target[masked != 0])  # the target stays whole
        assert (target > 0).all()
    assert flips == {True, False}
    evaluation = DepthVQVAETransform(train=False).example(sample)
    assert evaluation["pixel_values"].shape == (1, 480, 640)
    assert torch.equal(evaluation["pixel_values"], evaluation["labels"])


def test_patch_mask_and_bad_sizes():
    mask = patch_mask(32, 48, 0.25, 16, torch.Generator().manual_seed(0))
    assert mask.shape == (32, 48) and (mask == 0).sum() == 2 * 256
    with pytest.raises(ValueError, match="not a multiple"):
        patch_mask(30, 48, 0.5, 16)
    small = {
        "image": PIL.Image.new("RGB", (100, 80)),
        "depth": PIL.Image.fromarray(np.ones((80, 100), np.uint16)),
    }
    with pytest.raises(DataValidationError, match="cannot crop 480x480 from a 80x100 sample"):
        NYUDepthTrainTransform().example(small)
    with pytest.raises(DataValidationError, match="boundary crop"):
        DepthVQVAETransform().example(small)
    mismatched = {
        "image": PIL.Image.new("RGB", (100, 80)),
        "depth": PIL.Image.fromarray(np.ones((8, 10), np.uint16)),
    }
    with pytest.raises(DataValidationError, match="sizes differ"):
        NYUDepthTrainTransform().example(mismatched)
