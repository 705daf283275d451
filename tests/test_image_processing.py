"""Tests of the AiT image processors (torchvision and PIL backends): preprocessing as the original's
test pipelines, post-processing against hand-computed results and the original's reference outputs,
bad inputs, serialisation and the transformers pipelines."""

import json
import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.utils import ModelOutput

from ait_hf.image_processing_ait import (
    AIT_TASKS,
    AiTImageProcessor,
    get_keep_ratio_resize_size,
    get_keep_ratio_scale_factor,
    paste_masks_in_image,
    resolve_task,
)
from ait_hf.image_processing_pil_ait import AiTImageProcessorPil

BACKENDS = [AiTImageProcessor, AiTImageProcessorPil]
INSTANCE_TASKS = ["instance_segmentation", "object_detection"]
# mmdet img_norm_cfg of every original config (0..255 units)
MMDET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
MMDET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass
class FakeAiTOutput(ModelOutput):
    predicted_depth: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    pred_scores: torch.Tensor | None = None
    pred_labels: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def smooth_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A natural-looking (low-frequency) image: random values upsampled."""
    coarse = torch.from_numpy(np.random.default_rng(seed).uniform(0, 255, (1, 3, 8, 8)).astype(np.float32))
    fine = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 255)
    return Image.fromarray(fine[0].permute(1, 2, 0).round().to(torch.uint8).numpy())


# ------------------------------------------------------------------------------------------ tasks / config
def test_resolve_task_aliases_and_error():
    assert resolve_task("depth-estimation") == "depth"
    assert resolve_task("Object-Detection") == "object_detection"
    assert resolve_task("insseg") == "instance_segmentation"
    with pytest.raises(ValueError, match="depth, instance_segmentation, object_detection"):
        resolve_task("panoptic")


@pytest.mark.parametrize("cls", BACKENDS)
def test_wrong_task_raises_listing_valid_tasks(cls):
    with pytest.raises(ValueError, match="valid tasks are depth, instance_segmentation, object_detection"):
        cls(task="segmentation")
    with pytest.raises(ValueError, match="valid tasks are"):
        cls()(random_image(8, 8), task="semantic")


@pytest.mark.parametrize("cls", BACKENDS)
def test_default_task_comes_from_config_and_is_overridable(cls):
    image = random_image(300, 400)
    assert cls(task="object_detection")(image, return_tensors="pt").pixel_values.shape == (1, 3, 640, 640)
    assert cls(task="depth")(image, return_tensors="pt").pixel_values.shape == (1, 3, 480, 640)
    processor = cls(task="depth")
    assert processor(image, task="instance_segmentation", return_tensors="pt").pixel_values.shape == (
        1,
        3,
        640,
        640,
    )
    assert processor.task == "depth"  # a per-call task is not remembered


# ------------------------------------------------------------------------------------------ depth input
@pytest.mark.parametrize("cls", BACKENDS)
def test_depth_input_is_totensor_of_the_nyu_frame(cls):
    """The original NYUv2 loader gives `ToTensor()` images (x / 255), without mean/std."""
    array = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pixel_values = cls()(Image.fromarray(array), task="depth", return_tensors="pt").pixel_values
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(pixel_values[0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", BACKENDS)
def test_depth_other_aspect_ratios_are_resized_to_the_frame(cls):
    constant = Image.new("RGB", (123, 77), (51, 102, 255))
    pixel_values = cls()([constant, random_image(500, 300)], task="depth", return_tensors="pt").pixel_values
    assert pixel_values.shape == (2, 3, 480, 640)
    torch.testing.assert_close(pixel_values[0, 0], torch.full((480, 640), 0.2), rtol=0, atol=1e-5)
    torch.testing.assert_close(pixel_values[0, 2], torch.full((480, 640), 1.0), rtol=0, atol=1e-5)
    assert 0.0 <= pixel_values.min() and pixel_values.max() <= 1.0


def test_depth_normalisation_can_be_enabled():
    image = Image.new("RGB", (640, 480), (124, 116, 104))
    pixel_values = AiTImageProcessor(depth_do_normalize=True)(image, return_tensors="pt").pixel_values
    expected = (np.array([124, 116, 104], np.float32) / 255 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    torch.testing.assert_close(
        pixel_values[0, :, 0, 0], torch.tensor(expected, dtype=torch.float32), rtol=0, atol=1e-5
    )


# ------------------------------------------------------------------------------------ instance input
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((480, 600), (512, 640)),  # the reference img_meta of the insseg/det fixtures
        ((450, 600), (480, 640)),  # the joint fixture
        ((427, 640), (427, 640)),  # typical COCO image: unchanged
        ((1000, 1333), (480, 640)),  # 1000 * 640 / 1333 = 480.12 -> 480
        ((333, 500), (426, 640)),  # 333 * 1.28 = 426.24 -> 426
        ((500, 333), (640, 426)),
        ((1, 1), (640, 640)),
        ((1, 5000), (1, 640)),  # 0.128 + 0.5 -> 0, clamped to one row
    ],
)
def test_keep_ratio_size_follows_mmcv_rounding(size, expected):
    assert get_keep_ratio_resize_size(*size, longest_edge=640, shortest_edge=640) == expected


def test_keep_ratio_scale_factor_equals_the_reference_img_meta(fixtures_dir):
    for case, key in [("insseg", "img_meta"), ("det", "img_meta"), ("joint", "insseg_img_meta")]:
        meta = json.loads((fixtures_dir / case / "config.json").read_text())["inputs"][key]
        height, width = meta["ori_shape"][:2]
        assert get_keep_ratio_resize_size(height, width, 640, 640) == tuple(meta["img_shape"][:2])
        width_scale, height_scale = get_keep_ratio_scale_factor(height, width, 640, 640)
        assert [width_scale, height_scale] * 2 == meta["scale_factor"]["value"]


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("task", INSTANCE_TASKS)
def test_instance_input_is_mmdet_normalised_and_zero_padded(cls, task):
    image = Image.new("RGB", (300, 240), (10, 200, 30))  # -> 512 x 640 inside a 640 x 640 canvas
    pixel_values = cls()(image, task=task, return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 640, 640)
    inside = (np.array([10, 200, 30], np.float32) - MMDET_MEAN) / MMDET_STD
    expected = torch.zeros(3, 640, 640)
    expected[:, :512, :] = torch.from_numpy(inside)[:, None, None]
    torch.testing.assert_close(pixel_values[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", BACKENDS)
def test_instance_resize_is_half_pixel_bilinear_without_antialiasing_rounded_to_8_bits(cls):
    """Hand-computed cv2 INTER_LINEAR: a 2x2 image [0, 255] per row, upscaled 320x; column x samples
    source coordinate (x + 0.5) / 320 - 0.5 clamped to [0, 1]; the 8-bit result is rounded."""
    array = np.zeros((2, 2, 3), dtype=np.uint8)
    array[:, 1] = 255
    pixel_values = cls(do_normalize=False, do_rescale=False)(
        Image.fromarray(array), task="object_detection", return_tensors="pt"
    ).pixel_values
    source = np.clip((np.arange(640) + 0.5) / 320 - 0.5, 0, 1)
    expected = np.floor(255 * source + 0.5)
    np.testing.assert_array_equal(pixel_values[0, 0, 0].numpy(), expected)
    np.testing.assert_array_equal(pixel_values[0, 1, :, 639].numpy(), np.full(640, 255.0))
    np.testing.assert_array_equal(pixel_values[0, 2, 639].numpy(), expected)  # every row is the same ramp


@pytest.mark.parametrize("cls", BACKENDS)
def test_instance_resize_agrees_with_cv2_within_one_level(cls):
    """mmcv resizes with cv2 INTER_LINEAR, whose fixed-point arithmetic differs from exact bilinear by at
    most one 8-bit level; only checked where OpenCV is installed (it is not a dependency)."""
    cv2 = pytest.importorskip("cv2")
    array = np.asarray(random_image(300, 457, seed=3))
    pixel_values = cls()(Image.fromarray(array), task="object_detection", return_tensors="pt").pixel_values
    resized = cv2.resize(array, (640, 420), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    expected = ((resized - MMDET_MEAN) / MMDET_STD).transpose(2, 0, 1)
    difference = np.abs(pixel_values[0, :, :420].numpy() - expected)
    assert difference.max() <= 1.0 / MMDET_STD.min() + 1e-4
    assert (difference > 1e-4).mean() < 0.2
    assert pixel_values[0, :, 420:].abs().max() == 0


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("task", AIT_TASKS)
def test_batches_of_different_sizes_stack(cls, task):
    images = [random_image(300, 457), random_image(700, 500, seed=1), random_image(64, 64, seed=2)]
    pixel_values = cls()(images, task=task, return_tensors="pt").pixel_values
    expected_frame = (480, 640) if task == "depth" else (640, 640)
    assert pixel_values.shape == (3, 3, *expected_frame)
    assert pixel_values.dtype == torch.float32


@pytest.mark.parametrize("task", AIT_TASKS)
def test_backends_agree(task):
    images = [smooth_image(300, 457), random_image(700, 500, seed=1), smooth_image(480, 640, seed=2)]
    torchvision_values = AiTImageProcessor()(images, task=task, return_tensors="pt").pixel_values
    pil_values = AiTImageProcessorPil()(images, task=task, return_tensors="pt").pixel_values
    torch.testing.assert_close(torchvision_values, pil_values, rtol=0, atol=2e-2)
    if task != "depth":  # same interpolation code path: equal up to float rounding
        torch.testing.assert_close(torchvision_values, pil_values, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("cls", BACKENDS)
def test_grayscale_palette_rgba_and_la_become_rgb(cls):
    processor = cls(task="depth")
    gray = Image.new("L", (640, 480), 51)
    palette = Image.new("RGB", (640, 480), (255, 0, 51)).convert("P")
    transparent = Image.new("RGBA", (640, 480), (0, 0, 0, 0))  # composited on white
    gray_alpha = Image.new("LA", (640, 480), (0, 255))
    values = processor([gray, palette, transparent, gray_alpha], return_tensors="pt").pixel_values
    torch.testing.assert_close(values[0], torch.full((3, 480, 640), 0.2), rtol=0, atol=1e-5)
    torch.testing.assert_close(values[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.2]), rtol=0, atol=1e-5)
    torch.testing.assert_close(values[2], torch.ones(3, 480, 640), rtol=0, atol=1e-5)
    torch.testing.assert_close(values[3], torch.zeros(3, 480, 640), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", BACKENDS)
def test_sixteen_bit_inputs_are_scaled_not_clipped(cls):
    processor = cls(task="depth")
    sixteen = np.full((480, 640), 32896, dtype=np.uint16)  # 32896 / 257 = 128
    pil_sixteen = Image.fromarray(sixteen)
    assert pil_sixteen.mode.startswith("I;16")
    rgb_sixteen = np.full((480, 640, 3), 65535, dtype=np.uint16)
    values = processor([pil_sixteen, sixteen, rgb_sixteen], return_tensors="pt").pixel_values
    torch.testing.assert_close(values[0], torch.full((3, 480, 640), 128 / 255), rtol=0, atol=1e-5)
    torch.testing.assert_close(values[1], torch.full((3, 480, 640), 128 / 255), rtol=0, atol=1e-5)
    torch.testing.assert_close(values[2], torch.ones(3, 480, 640), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", BACKENDS)
def test_arrays_tensors_bool_and_2d_inputs(cls):
    processor = cls(task="depth")
    array = np.full((480, 640, 3), 51, dtype=np.uint8)
    tensor_chw = torch.full((3, 480, 640), 51, dtype=torch.uint8)
    gray_2d = np.full((480, 640), 51, dtype=np.uint8)
    boolean = np.ones((480, 640), dtype=bool)
    int64 = torch.full((480, 640, 3), 51, dtype=torch.int64)
    values = processor([array, tensor_chw, gray_2d, boolean, int64], return_tensors="pt").pixel_values
    for index in (0, 1, 2, 4):
        torch.testing.assert_close(values[index], torch.full((3, 480, 640), 0.2), rtol=0, atol=1e-5)
    torch.testing.assert_close(values[3], torch.ones(3, 480, 640), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("task", AIT_TASKS)
def test_one_pixel_images_work(cls, task):
    pil = Image.new("RGB", (1, 1), (255, 0, 0))
    array = np.array([[[255, 0, 0]]], dtype=np.uint8)
    values = cls()(pil, task=task, return_tensors="pt").pixel_values
    from_array = cls()(array, task=task, input_data_format="channels_last", return_tensors="pt").pixel_values
    torch.testing.assert_close(values, from_array)
    frame = (480, 640) if task == "depth" else (640, 640)
    assert values.shape == (1, 3, *frame)
    # a 1x1 image fills the whole resized area (640x640: no padding left)
    assert torch.allclose(values[0, 0], values[0, 0, 0, 0])


@pytest.mark.parametrize("cls", BACKENDS)
def test_large_and_elongated_images_work(cls):
    large = np.zeros((3000, 4000, 3), dtype=np.uint8)
    values = cls()(large, task="object_detection", return_tensors="pt").pixel_values
    assert values.shape == (1, 3, 640, 640)
    elongated = Image.new("RGB", (5000, 1), (0, 0, 0))
    values = cls()(elongated, task="object_detection", return_tensors="pt").pixel_values
    expected_inside = torch.from_numpy(-MMDET_MEAN / MMDET_STD)
    torch.testing.assert_close(values[0, :, 0, 0], expected_inside)
    assert values[0, :, 1:].abs().max() == 0  # a single resized row, the rest is padding


@pytest.mark.parametrize("cls", BACKENDS)
def test_bad_inputs_raise_clear_errors(cls):
    processor = cls()
    with pytest.raises(ValueError, match="empty list of images"):
        processor([])
    with pytest.raises(ValueError, match="empty list of images"):
        processor([[]])
    with pytest.raises(ValueError, match="is None"):
        processor(None)
    with pytest.raises(ValueError, match="empty batch"):
        processor(np.zeros((0, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="Image 0 is empty"):
        processor(np.zeros((0, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        processor(np.zeros((1, 1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="unsupported type int"):
        processor([random_image(4, 4), 3])
    with pytest.raises(ValueError, match="expected 0..255"):
        processor(np.full((8, 8, 3), -5, dtype=np.int32))
    with pytest.raises(ValueError, match="does not fit the padding canvas"):
        cls(instance_size={"longest_edge": 800})(random_image(8, 8), task="object_detection")
    with pytest.raises(ValueError, match="longest_edge"):
        cls(instance_size={"shortest_edge": 800})


# ------------------------------------------------------------------------------------- serialisation
@pytest.mark.parametrize("cls", BACKENDS)
def test_save_load_round_trip(cls, tmp_path):
    processor = cls(
        task="object_detection", instance_size={"longest_edge": 512}, pad_size={"height": 512, "width": 512}
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "AiTImageProcessor"
    assert saved["task"] == "object_detection"
    assert saved["instance_size"] == {"longest_edge": 512}
    for loader in BACKENDS:  # either backend reads the other's file
        reloaded = loader.from_pretrained(tmp_path)
        assert reloaded.to_dict() == processor.to_dict()
        image = random_image(300, 200)
        torch.testing.assert_close(
            reloaded(image, return_tensors="pt").pixel_values,
            processor(image, return_tensors="pt").pixel_values,
            rtol=0,
            atol=1e-4,
        )
        assert reloaded(image, return_tensors="pt").pixel_values.shape == (1, 3, 512, 512)


def test_auto_image_processor_picks_either_backend(tmp_path):
    """The registration the package performs: {"torchvision": AiTImageProcessor, "pil": AiTImageProcessorPil}."""
    from transformers import AutoImageProcessor

    from ait_hf.configuration_ait import AiTConfig

    AutoImageProcessor.register(
        AiTConfig,
        image_processor_classes={"torchvision": AiTImageProcessor, "pil": AiTImageProcessorPil},
        exist_ok=True,
    )
    AiTImageProcessor(task="instance_segmentation").save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is AiTImageProcessor
    pil = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    assert type(pil) is AiTImageProcessorPil
    assert pil.task == "instance_segmentation"


# ------------------------------------------------------------------------------ depth post-processing
@pytest.mark.parametrize("cls", BACKENDS)
def test_depth_post_processing_resizes_to_target_size(cls):
    """A depth ramp d(y, x) = x + 2 y at 480x640, halved to 240x320: bilinear with half-pixel centres
    samples source column 2x + 0.5 and row 2y + 0.5, i.e. d = 2x + 0.5 + 2 (2y + 0.5)."""
    rows, cols = torch.meshgrid(torch.arange(480.0), torch.arange(640.0), indexing="ij")
    ramp = cols + 2 * rows
    outputs = FakeAiTOutput(predicted_depth=torch.stack([ramp, ramp + 1]))
    results = cls().post_process_depth_estimation(outputs, target_sizes=[(240, 320), (480, 640)])
    rows_t, cols_t = torch.meshgrid(torch.arange(240.0), torch.arange(320.0), indexing="ij")
    torch.testing.assert_close(
        results[0]["predicted_depth"], 2 * cols_t + 0.5 + 2 * (2 * rows_t + 0.5), rtol=0, atol=1e-4
    )
    assert torch.equal(results[1]["predicted_depth"], ramp + 1)  # same size: unchanged
    unresized = cls().post_process_depth_estimation(SimpleNamespace(predicted_depth=ramp[None, None]))
    assert torch.equal(unresized[0]["predicted_depth"], ramp)
    upscaled = cls().post_process_depth_estimation(outputs, target_sizes=torch.tensor([[960, 1280], [1, 1]]))
    assert upscaled[0]["predicted_depth"].shape == (960, 1280)
    assert upscaled[1]["predicted_depth"].shape == (1, 1)


def test_depth_post_processing_errors():
    processor = AiTImageProcessor()
    outputs = FakeAiTOutput(predicted_depth=torch.zeros(2, 480, 640))
    with pytest.raises(ValueError, match="2 predictions"):
        processor.post_process_depth_estimation(outputs, target_sizes=[(480, 640)])
    with pytest.raises(ValueError, match="no `predicted_depth`"):
        processor.post_process_depth_estimation(FakeAiTOutput())
    with pytest.raises(ValueError, match="positive"):
        processor.post_process_depth_estimation(outputs, target_sizes=[(480, 640), (0, 4)])


# ------------------------------------------------------------------------------------ mask pasting
def test_paste_identity_box_copies_the_mask():
    """A 64x64 mask into a 64x64 box at (20, 10): pixel centre x + 0.5 maps exactly onto texel x - 20."""
    mask = (torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    pasted = paste_masks_in_image(mask, torch.tensor([[20.0, 10.0, 84.0, 74.0]]), (100, 120), threshold=None)
    expected = torch.zeros(1, 100, 120)
    expected[0, 10:74, 20:84] = mask[0]
    torch.testing.assert_close(pasted, expected, rtol=0, atol=1e-6)
    binary = paste_masks_in_image(mask, torch.tensor([[20.0, 10.0, 84.0, 74.0]]), (100, 120))
    assert binary.dtype == torch.bool and torch.equal(binary, expected > 0.5)


def test_paste_half_size_box_averages_two_by_two_texels():
    """A 64x64 mask into a 32x32 box: each pixel samples texel coordinate 2k + 0.5, the mean of 2x2 texels."""
    mask = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1))
    pasted = paste_masks_in_image(mask, torch.tensor([[8.0, 4.0, 40.0, 36.0]]), (50, 60), threshold=None)
    expected = torch.zeros(1, 50, 60)
    expected[0, 4:36, 8:40] = F.avg_pool2d(mask[None], 2)[0, 0]
    torch.testing.assert_close(pasted, expected, rtol=0, atol=1e-6)


def test_paste_restrict_to_box_and_degenerate_boxes():
    mask = torch.ones(2, 64, 64)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 20.0], [30.0, 10.0, 10.0, 20.0]])  # second box is reversed
    whole = paste_masks_in_image(mask, boxes, (40, 40))
    inside = paste_masks_in_image(mask, boxes, (40, 40), restrict_to_box=True)
    assert torch.equal(whole[0], inside[0])  # well-formed box: both paths agree
    expected = torch.zeros(40, 40, dtype=torch.bool)
    expected[10:20, 10:30] = True
    assert torch.equal(inside[0], expected)
    assert not inside[1].any()  # reversed box: nothing inside [floor(x0) - 1, ceil(x1) + 1)
    assert torch.equal(whole[1], expected)  # whole-image path: the mask is pasted flipped (original GPU path)
    assert paste_masks_in_image(torch.zeros(0, 64, 64), torch.zeros(0, 4), (5, 6)).shape == (0, 5, 6)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        paste_masks_in_image(mask, boxes[:1], (40, 40))


@pytest.mark.parametrize(("case", "prefix"), [("insseg", ""), ("joint", "insseg_")])
def test_paste_equals_the_original_reference(fixtures_dir, case, prefix):
    """`det_masks` are the original's pasted masks (whole-image path) of `mask_probs` with `det_bboxes`,
    including reversed boxes of the randomly initialised model; chunking must not change them."""
    reference = np.load(fixtures_dir / case / "reference.npz")
    masks = torch.from_numpy(reference[prefix + "mask_probs"])
    boxes = torch.from_numpy(reference[prefix + "det_bboxes"][:, :4])
    expected = torch.from_numpy(reference[prefix + "det_masks"])
    assert torch.equal(paste_masks_in_image(masks, boxes, tuple(expected.shape[1:])), expected)
    assert torch.equal(
        paste_masks_in_image(masks, boxes, tuple(expected.shape[1:]), max_chunk_pixels=1), expected
    )


# --------------------------------------------------------------------------- detection post-processing
@pytest.mark.parametrize("cls", BACKENDS)
def test_object_detection_post_processing_hand_computed(cls):
    """Original 480x600 -> scale 640 / 600 = 1.0666667 (float32), canvas box (64, 32, 320, 256) -> (60, 30, 300, 240)."""
    outputs = FakeAiTOutput(
        pred_boxes=torch.tensor(
            [[[64.0, 32.0, 320.0, 256.0], [0.0, 0.0, 10.0, 10.0], [600.0, 500.0, 660.0, 620.0]]]
        ),
        pred_scores=torch.tensor([[0.9, 0.5, 0.7]]),
        pred_labels=torch.tensor([[3, 4, 5]]),
    )
    result = cls().post_process_object_detection(
        outputs, threshold=0.5, target_sizes=torch.IntTensor([[480, 600]])
    )[0]
    torch.testing.assert_close(result["scores"], torch.tensor([0.9, 0.7]))  # 0.5 is not > 0.5 (DETR's rule)
    assert result["labels"].tolist() == [3, 5]
    torch.testing.assert_close(
        result["boxes"],
        torch.tensor([[60.0, 30.0, 300.0, 240.0], [562.5, 468.75, 618.75, 581.25]]),
        rtol=0,
        atol=1e-4,
    )
    clipped = cls().post_process_object_detection(outputs, 0.5, [(480, 600)], clip_boxes=True)[0]
    torch.testing.assert_close(
        clipped["boxes"][1], torch.tensor([562.5, 468.75, 600.0, 480.0]), rtol=0, atol=1e-4
    )
    canvas = cls().post_process_object_detection(outputs, threshold=0.0)[0]
    assert torch.equal(canvas["boxes"], outputs.pred_boxes[0])


@pytest.mark.parametrize(
    ("case", "tokens_key", "boxes_key"),
    [
        ("det", "pp_tokens", "pp_bboxes"),
        ("det", "pred_tokens", "det_bboxes"),
        ("insseg", "pred_tokens", "det_bboxes"),
    ],
)
def test_box_rescaling_equals_the_original_reference(fixtures_dir, case, tokens_key, boxes_key):
    """Boxes token * 640 / 2000 (the model's canvas boxes) divided by mmdet's float32 scale factor."""
    reference = np.load(fixtures_dir / case / "reference.npz")
    meta = json.loads((fixtures_dir / case / "config.json").read_text())["inputs"]["img_meta"]
    object_length = 5 if case == "det" else 21
    tokens = torch.from_numpy(reference[tokens_key]).reshape(-1, object_length)[:, :4]
    canvas_boxes = tokens * 640 / 2000
    expected = torch.from_numpy(reference[boxes_key][:, :4])
    outputs = FakeAiTOutput(
        pred_boxes=canvas_boxes[None],
        pred_scores=torch.ones(1, len(tokens)),
        pred_labels=torch.zeros(1, len(tokens)),
    )
    result = AiTImageProcessor().post_process_object_detection(outputs, 0.0, [tuple(meta["ori_shape"][:2])])[
        0
    ]
    assert torch.equal(result["boxes"], expected)


# ------------------------------------------------------------------- instance segmentation post-processing
def _instance_outputs() -> FakeAiTOutput:
    """Original 240x320 -> scale exactly 2 (480x640 inside the canvas). Three queries, full masks:
    query 0 = B: score 0.6, label 2, original box (52, 10, 116, 74), half of it lies under A;
    query 1 = A: score 0.9, label 7, original box (20, 10, 84, 74);
    query 2 = C: score 0.3 (below the threshold)."""
    return FakeAiTOutput(
        pred_boxes=torch.tensor(
            [[[104.0, 20.0, 232.0, 148.0], [40.0, 20.0, 168.0, 148.0], [0.0, 0.0, 50.0, 50.0]]]
        ),
        pred_scores=torch.tensor([[0.6, 0.9, 0.3]]),
        pred_labels=torch.tensor([[2, 7, 9]]),
        pred_masks=torch.ones(1, 3, 64, 64),
    )


@pytest.mark.parametrize("cls", BACKENDS)
def test_instance_segmentation_map_hand_computed(cls):
    outputs = _instance_outputs()
    a_mask = torch.zeros(240, 320, dtype=torch.bool)
    a_mask[10:74, 20:84] = True
    b_mask = torch.zeros(240, 320, dtype=torch.bool)
    b_mask[10:74, 52:116] = True

    # B is half hidden: 0.5 visible <= 0.8 -> left out of the map
    result = cls().post_process_instance_segmentation(outputs, threshold=0.5, target_sizes=[(240, 320)])[0]
    expected = torch.full((240, 320), -1, dtype=torch.int64)
    expected[a_mask] = 0
    assert torch.equal(result["segmentation"], expected)
    assert [(s["id"], s["label_id"]) for s in result["segments_info"]] == [(0, 7)]
    assert result["segments_info"][0]["score"] == pytest.approx(0.9)
    assert result["segments_info"][0]["bbox"] == pytest.approx([20.0, 10.0, 84.0, 74.0])

    # with a lower overlap threshold B is kept on its visible part; ids follow decreasing score
    result = cls().post_process_instance_segmentation(
        outputs, threshold=0.5, overlap_mask_area_threshold=0.3, target_sizes=[(240, 320)]
    )[0]
    expected[b_mask & ~a_mask] = 1
    assert torch.equal(result["segmentation"], expected)
    assert [(s["id"], s["label_id"]) for s in result["segments_info"]] == [(0, 7), (1, 2)]

    # binary maps keep the full, overlapping masks
    result = cls().post_process_instance_segmentation(
        outputs, threshold=0.5, target_sizes=[(240, 320)], return_binary_maps=True
    )[0]
    assert torch.equal(result["segmentation"], torch.stack([a_mask, b_mask]))
    assert [s["label_id"] for s in result["segments_info"]] == [7, 2]


def test_instance_segmentation_empty_canvas_and_errors():
    processor = AiTImageProcessor()
    outputs = _instance_outputs()
    nothing = processor.post_process_instance_segmentation(
        outputs, threshold=0.95, target_sizes=[(240, 320)]
    )[0]
    assert nothing["segments_info"] == [] and torch.equal(nothing["segmentation"], torch.full((240, 320), -1))
    empty_maps = processor.post_process_instance_segmentation(
        outputs, threshold=0.95, target_sizes=[(240, 320)], return_binary_maps=True
    )[0]
    assert empty_maps["segmentation"].shape == (0, 240, 320)
    canvas = processor.post_process_instance_segmentation(outputs, threshold=0.5)[0]  # model-input pixels
    assert canvas["segmentation"].shape == (640, 640)
    assert (canvas["segmentation"] == 0).sum() == 128 * 128
    zero_masks = FakeAiTOutput(**{**outputs, "pred_masks": torch.zeros(1, 3, 64, 64)})
    assert (
        processor.post_process_instance_segmentation(zero_masks, target_sizes=[(240, 320)])[0][
            "segments_info"
        ]
        == []
    )
    detection_only = FakeAiTOutput(
        pred_boxes=outputs.pred_boxes, pred_scores=outputs.pred_scores, pred_labels=outputs.pred_labels
    )
    with pytest.raises(ValueError, match="no `pred_masks`"):
        processor.post_process_instance_segmentation(detection_only)
    with pytest.raises(ValueError, match="one \\(height, width\\) per image"):
        processor.post_process_instance_segmentation(outputs, target_sizes=[(240, 320), (1, 1)])


# ------------------------------------------------------------------------------------------- pipelines
@pytest.fixture(scope="module")
def fake_model():
    """A minimal PreTrainedModel with the AiT output contract (no AiT code involved)."""
    from transformers import PreTrainedConfig, PreTrainedModel

    class FakeConfig(PreTrainedConfig):
        model_type = "fake_ait_for_processor_tests"

    class FakeModel(PreTrainedModel):
        config_class = FakeConfig

        def __init__(self, config):
            super().__init__(config)
            self.scale = torch.nn.Parameter(torch.ones(1))
            self.post_init()

        def forward(self, pixel_values, **kwargs):
            batch, _, height, _ = pixel_values.shape
            if height == 480:  # depth frame: depth = mean intensity
                return FakeAiTOutput(predicted_depth=pixel_values.mean(1) * self.scale)
            boxes = torch.tensor([[[64.0, 32.0, 320.0, 256.0]]]).repeat(batch, 1, 1)
            return FakeAiTOutput(
                pred_boxes=boxes,
                pred_scores=torch.full((batch, 1), 0.95),
                pred_labels=torch.ones(batch, 1, dtype=torch.long),
                pred_masks=torch.ones(batch, 1, 64, 64),
            )

    return FakeModel(FakeConfig(id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})).eval()


@pytest.mark.parametrize("cls", BACKENDS)
def test_pipelines(cls, fake_model):
    from transformers import pipeline

    array = np.full((240, 320, 3), 51, dtype=np.uint8)  # resize scale exactly 2 for the instance tasks
    array[:, 160:] = 102
    image = Image.fromarray(array)
    depth = pipeline("depth-estimation", model=fake_model, image_processor=cls(task="depth"))(image)
    assert depth["predicted_depth"].shape == (240, 320)  # the fake depth is the mean intensity
    torch.testing.assert_close(
        depth["predicted_depth"][:, :150], torch.full((240, 150), 0.2), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        depth["predicted_depth"][:, 170:], torch.full((240, 150), 0.4), rtol=0, atol=1e-5
    )
    assert depth["depth"].size == (320, 240)

    detections = pipeline("object-detection", model=fake_model, image_processor=cls(task="object_detection"))(
        image
    )
    assert detections == [
        {
            "score": pytest.approx(0.95),
            "label": "dog",
            "box": {"xmin": 32, "ymin": 16, "xmax": 160, "ymax": 128},
        }
    ]

    segments = pipeline(
        "image-segmentation", model=fake_model, image_processor=cls(task="instance_segmentation")
    )(image, subtask="instance", threshold=0.5)
    assert len(segments) == 1 and segments[0]["label"] == "dog"
    mask = np.asarray(segments[0]["mask"]) > 0
    expected = np.zeros((240, 320), dtype=bool)
    expected[16:128, 32:160] = True
    np.testing.assert_array_equal(mask, expected)


def test_remote_code_loading_from_a_flat_directory(tmp_path):
    """Both backends load with `trust_remote_code` from a flat folder holding only the two processor files
    (runs in a subprocess so the dynamic-module cache lives in tmp_path)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "ait_hf"
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    for name in ("image_processing_ait.py", "image_processing_pil_ait.py"):
        shutil.copy(package / name, checkpoint / name)
    config = AiTImageProcessor(task="object_detection").to_dict()
    config["auto_map"] = {
        "AutoImageProcessor": {
            "torchvision": "image_processing_ait.AiTImageProcessor",
            "pil": "image_processing_pil_ait.AiTImageProcessorPil",
        }
    }
    (checkpoint / "preprocessor_config.json").write_text(json.dumps(config))
    script = (
        "import sys\n"
        "from PIL import Image\n"
        "from transformers import AutoImageProcessor\n"
        "for backend in ('torchvision', 'pil'):\n"
        "    processor = AutoImageProcessor.from_pretrained(sys.argv[1], trust_remote_code=True, backend=backend)\n"
        "    values = processor(Image.new('RGB', (300, 200)), return_tensors='pt').pixel_values\n"
        "    print(type(processor).__name__, processor.task, tuple(values.shape))\n"
    )
    environment = {
        **os.environ,
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": "",
    }
    completed = subprocess.run(
        [sys.executable, "-c", script, str(checkpoint)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "AiTImageProcessor object_detection (1, 3, 640, 640)",
        "AiTImageProcessorPil object_detection (1, 3, 640, 640)",
    ]


@pytest.mark.parametrize("cls", BACKENDS)
def test_the_task_travels_with_the_pixel_values(cls, tmp_path):
    """`model(**processor(images))` runs the head the preprocessing was made for, and a pipeline that loads
    the processor (`_from_pipeline`) gets its own task instead of the saved default."""
    processor = cls(task="depth")
    assert processor(random_image(8, 8), return_tensors="pt")["task"] == "depth"
    assert processor(random_image(8, 8), task="det", return_tensors="pt")["task"] == "object_detection"
    processor.save_pretrained(tmp_path)
    for pipeline_task, task in [
        ("depth-estimation", "depth"),
        ("image-segmentation", "instance_segmentation"),
        ("object-detection", "object_detection"),
        ("image-classification", "depth"),  # not an AiT pipeline: the saved task
    ]:
        assert cls.from_pretrained(tmp_path, _from_pipeline=pipeline_task).task == task
    assert cls.from_pretrained(tmp_path).task == "depth"
    assert cls.from_pretrained(tmp_path, _from_pipeline="object-detection", task="depth").task == "depth"
