"""Augmentations of the original AiT pipelines, as callables for ``Dataset.with_transform`` and collators.

Every transform maps a ``with_transform`` batch (a dict of lists) to a batch of model-ready examples; call
``transform.example(row)`` for a single row. Randomness comes from torch's RNG (seeded per DataLoader worker)
or from the ``generator`` you pass, so runs are reproducible.

* `NYUDepthTrainTransform` / `NYUDepthEvalTransform`: task-solver depth (``nyudepthv2`` of the original).
* `DepthVQVAETransform`: depth VQ-VAE pre-training input (masked depth) and target (whole depth).
* `LargeScaleJitter` / `CocoResizePad`: the mmdet COCO pipelines of the original configs (train / test).
* `BoxMaskTransform`: box-cropped masks for the mask VQ-VAE.

COCO geometry uses ``torchvision.transforms.v2.functional`` on ``tv_tensors`` (boxes and masks follow the
image); NYUv2 flips and crops need no interpolation and are numpy views. The random parameters are drawn as
mmdet / albumentations draw them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import PIL.Image
import torch
import torchvision.transforms.v2.functional as F
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode

from .coco import coco_object_masks
from .nyu import depth_to_metres
from .photometric import PhotometricDistortion, coin, randint, uniform
from .validation import DataValidationError, apply_to_batch

# mmdet's img_norm_cfg of the original configs (RGB, 0..255 input).
COCO_IMAGE_MEAN = (123.675, 116.28, 103.53)
COCO_IMAGE_STD = (58.395, 57.12, 57.375)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DetectionTask = Literal["object_detection", "instance_segmentation"]


class Compose:
    """Chain batch transforms: ``Compose([a, b])(batch) == b(a(batch))``."""

    def __init__(self, transforms: Sequence[Callable[[dict[str, list]], dict[str, list]]]):
        self.transforms = list(transforms)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        for transform in self.transforms:
            batch = transform(batch)
        return batch


class _ExampleTransform:
    """Base: batch call = per-example call over the rows of a ``with_transform`` batch."""

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return apply_to_batch(self.example, batch)


def _rgb_array(image: Any) -> np.ndarray:
    if isinstance(image, PIL.Image.Image):
        return np.array(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise DataValidationError(
            f"expected an RGB image (PIL or uint8 HxWx3), got {array.dtype} {array.shape}"
        )
    return np.array(array)


def _to_pixel_values(
    image: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1] (``ToTensor``), then ``(x - mean) / std`` if given."""
    pixels = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    if mean is not None or std is not None:
        mean_array = np.asarray(mean if mean is not None else (0.0,) * 3, dtype=np.float32)[:, None, None]
        std_array = np.asarray(std if std is not None else (1.0,) * 3, dtype=np.float32)[:, None, None]
        pixels = (pixels - mean_array) / std_array
    return torch.from_numpy(np.ascontiguousarray(pixels))


def _normalise(
    pixels: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    if mean is None and std is None:
        return pixels
    return F.normalize(pixels, mean=list(mean or (0.0,) * 3), std=list(std or (1.0,) * 3))


# ---------------------------------------------------------------------------------------------- depth


def _random_crop_offsets(
    height: int, width: int, crop: tuple[int, int], generator: torch.Generator | None
) -> tuple[int, int]:
    crop_h, crop_w = crop
    if crop_h > height or crop_w > width:
        raise DataValidationError(f"cannot crop {crop_h}x{crop_w} from a {height}x{width} sample")
    # albumentations' RandomCrop: top, then left, uniformly over all valid offsets.
    return randint(generator, 0, height - crop_h + 1), randint(generator, 0, width - crop_w + 1)


class NYUDepthTrainTransform(_ExampleTransform):
    """Task-solver training augmentation of NYUv2, as the original ``nyudepthv2`` training set does.

    In order: on every ``cutdepth_every``-th sample that this transform object sees (counted per process, as
    the original's per-worker counter), a vertical stripe of the depth map is pasted into all three image
    channels; horizontal flip (p=0.5); random ``crop_size`` crop; brightness/contrast, gamma and
    hue/saturation/value jitter (`PhotometricDistortion`) on the image only. The stripe starts at
    ``int(a * W)`` and is ``int(max((W - a * W) * b * 0.75, 1))`` wide (a, b uniform); like the original it
    holds the depth in millimetres cast to uint8, i.e. modulo 256.

    Output: ``pixel_values`` float32 (3, h, w) in [0, 1] (the original uses ``ToTensor`` and no mean/std;
    pass ``image_mean``/``image_std``, e.g. `IMAGENET_MEAN`/`IMAGENET_STD`, to normalise),
    ``depth_labels`` float32 (h, w) metres with 0 = invalid, and ``task`` = "depth".
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (480, 480),
        flip_p: float = 0.5,
        cutdepth_every: int = 4,
        cutdepth_width_ratio: float = 0.75,
        photometric: PhotometricDistortion | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ):
        self.crop_size = tuple(crop_size)
        self.flip_p = flip_p
        self.cutdepth_every = cutdepth_every
        self.cutdepth_width_ratio = cutdepth_width_ratio
        self.photometric = photometric if photometric is not None else PhotometricDistortion()
        self.image_mean, self.image_std = image_mean, image_std
        self.generator = generator
        self.count = 0

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        image = _rgb_array(example["image"])
        depth = depth_to_metres(example["depth"])
        if image.shape[:2] != depth.shape:
            raise DataValidationError(
                f"image {image.shape[:2]} and depth {depth.shape} sizes differ ({example.get('file_name')})"
            )
        height, width = depth.shape
        if self.cutdepth_every and self.count % self.cutdepth_every == 0:
            a, b = uniform(self.generator, 0, 1), uniform(self.generator, 0, 1)
            left = int(a * width)
            stripe = int(max((width - a * width) * b * self.cutdepth_width_ratio, 1))
            millimetres = np.rint(depth[:, left : left + stripe].astype(np.float64) * 1000.0).astype(np.int64)
            image[:, left : left + stripe, :] = (millimetres % 256).astype(np.uint8)[..., None]
        self.count += 1

        # Flip and crop are numpy views here (no interpolation, nothing to keep in step but two arrays):
        # one copy at the end instead of one per torchvision call, which matters on few CPU cores.
        if coin(self.generator, self.flip_p):
            image, depth = image[:, ::-1], depth[:, ::-1]
        top, left = _random_crop_offsets(height, width, self.crop_size, self.generator)
        crop_h, crop_w = self.crop_size
        image = image[top : top + crop_h, left : left + crop_w]
        depth = depth[top : top + crop_h, left : left + crop_w]
        image = self.photometric(np.ascontiguousarray(image), self.generator)
        return {
            "pixel_values": _to_pixel_values(image, self.image_mean, self.image_std),
            "depth_labels": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)),
            "task": "depth",
        }


class NYUDepthEvalTransform(_ExampleTransform):
    """Test-time NYUv2 input: no augmentation, the full frame (480x640; the model tiles it into windows)."""

    def __init__(self, image_mean: Sequence[float] | None = None, image_std: Sequence[float] | None = None):
        self.image_mean, self.image_std = image_mean, image_std

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        image = _rgb_array(example["image"])
        depth = depth_to_metres(example["depth"])
        return {
            "pixel_values": _to_pixel_values(image, self.image_mean, self.image_std),
            "depth_labels": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)),
            "task": "depth",
        }


def patch_mask(
    height: int, width: int, ratio: float, patch_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A (height, width) float mask with ``ceil(ratio * #patches)`` random patch_size patches set to 0."""
    if height % patch_size or width % patch_size:
        raise ValueError(f"{height}x{width} is not a multiple of the {patch_size}px mask patch")
    rows, cols = height // patch_size, width // patch_size
    count = math.ceil(rows * cols * ratio)
    keep = torch.ones(rows * cols)
    keep[torch.randperm(rows * cols, generator=generator)[:count]] = 0.0
    return keep.view(rows, cols).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)


class DepthVQVAETransform(_ExampleTransform):
    """Depth VQ-VAE pre-training sample, as the original ``vae/dataset/nyudepthv2.py``.

    Training: crop the valid area x in [41, 601) (``boundary_crop`` = x_min, y_min, x_max, y_max), horizontal
    flip (p=0.5), random ``crop_size`` crop, then mask augmentation: ``ceil(mask_ratio * #patches)`` random
    ``mask_patch_size`` patches of the INPUT are set to 0 while the target stays whole.
    Evaluation (``train=False``): the whole frame, unmasked.

    Output: ``pixel_values`` (masked input) and ``labels`` (target), float32 (1, h, w) metres.
    """

    def __init__(
        self,
        train: bool = True,
        boundary_crop: tuple[int, int, int, int] | None = (41, 0, 601, 480),
        crop_size: tuple[int, int] = (480, 480),
        flip_p: float = 0.5,
        mask_ratio: float = 0.5,
        mask_patch_size: int = 16,
        generator: torch.Generator | None = None,
    ):
        self.train = train
        self.boundary_crop = boundary_crop
        self.crop_size = tuple(crop_size)
        self.flip_p = flip_p
        self.mask_ratio = mask_ratio
        self.mask_patch_size = mask_patch_size
        self.generator = generator

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        depth = depth_to_metres(example["depth"])
        if not self.train:
            whole = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]
            return {"pixel_values": whole, "labels": whole.clone()}
        # Crops and flip as numpy views, one copy at the end (see NYUDepthTrainTransform).
        if self.boundary_crop is not None:
            x_min, y_min, x_max, y_max = self.boundary_crop
            if x_max > depth.shape[1] or y_max > depth.shape[0]:
                raise DataValidationError(
                    f"boundary crop {self.boundary_crop} exceeds the {depth.shape[0]}x{depth.shape[1]} depth map"
                )
            depth = depth[y_min:y_max, x_min:x_max]
        if coin(self.generator, self.flip_p):
            depth = depth[:, ::-1]
        top, left = _random_crop_offsets(depth.shape[0], depth.shape[1], self.crop_size, self.generator)
        crop_h, crop_w = self.crop_size
        target = torch.from_numpy(np.ascontiguousarray(depth[top : top + crop_h, left : left + crop_w]))[None]
        masked = target
        if self.mask_ratio > 0:
            masked = target * patch_mask(
                crop_h, crop_w, self.mask_ratio, self.mask_patch_size, self.generator
            )
        return {"pixel_values": masked, "labels": target}


# ----------------------------------------------------------------------------------------------- COCO


def training_object_indices(example: dict[str, Any]) -> list[int]:
    """Objects mmdet trains on: not crowd, box overlapping the image, area > 0, width and height >= 1."""
    objects = example["objects"]
    height, width = int(example["height"]), int(example["width"])
    keep = []
    for index, (x, y, w, h) in enumerate(objects["bbox_xywh"]):
        if objects["iscrowd"][index]:
            continue
        overlap_w = max(0.0, min(x + w, width) - max(x, 0.0))
        overlap_h = max(0.0, min(y + h, height) - max(y, 0.0))
        if overlap_w * overlap_h == 0 or objects["area"][index] <= 0 or w < 1 or h < 1:
            continue
        keep.append(index)
    return keep


def _select(items: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    """Index boxes / masks and keep their tv_tensor type (plain indexing returns a plain tensor)."""
    if items is None:
        return None
    selected = items[keep]
    return tv_tensors.wrap(selected, like=items) if isinstance(items, tv_tensors.TVTensor) else selected


def _keep_ratio_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """mmcv ``rescale_size`` for a square target ``(scale, scale)``: longer side to ``scale``, rounded."""
    factor = min(scale / max(height, width), scale / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


class _CocoTransform(_ExampleTransform):
    def __init__(
        self,
        task: DetectionTask,
        output_size: int,
        image_mean: Sequence[float] | None,
        image_std: Sequence[float] | None,
        antialias: bool,
        generator: torch.Generator | None,
    ):
        if task not in ("object_detection", "instance_segmentation"):
            raise ValueError(f"task must be 'object_detection' or 'instance_segmentation', got {task!r}")
        self.task = task
        self.output_size = output_size
        self.image_mean, self.image_std = image_mean, image_std
        self.antialias = antialias
        self.generator = generator

    @property
    def with_masks(self) -> bool:
        return self.task == "instance_segmentation"

    def _load(
        self, example: dict[str, Any]
    ) -> tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor, Any]:
        image = example["image"]
        if image is None:
            raise DataValidationError(
                f"COCO image {example.get('image_id')} has no image (annotation-only data set)"
            )
        pixels = F.pil_to_tensor(image.convert("RGB")) if isinstance(image, PIL.Image.Image) else image
        height, width = int(example["height"]), int(example["width"])
        if tuple(pixels.shape[-2:]) != (height, width):
            raise DataValidationError(
                f"COCO image {example.get('file_name')} is {pixels.shape[-1]}x{pixels.shape[-2]} but the "
                f"annotations say {width}x{height}"
            )
        indices = training_object_indices(example)
        boxes = torch.tensor([example["objects"]["bbox"][i] for i in indices], dtype=torch.float32).reshape(
            -1, 4
        )
        labels = torch.tensor([example["objects"]["label"][i] for i in indices], dtype=torch.int64)
        boxes = tv_tensors.BoundingBoxes(
            boxes, format="XYXY", canvas_size=(height, width), clamping_mode=None
        )
        masks = None
        if self.with_masks:
            masks = tv_tensors.Mask(torch.from_numpy(coco_object_masks(example, indices)))
        return pixels, boxes, labels, masks

    def _resize(self, pixels, boxes, masks, size: tuple[int, int]):
        pixels = F.resize(
            pixels, list(size), interpolation=InterpolationMode.BILINEAR, antialias=self.antialias
        )
        boxes = F.clamp_bounding_boxes(F.resize(boxes, list(size)), clamping_mode="hard")
        if masks is not None:
            masks = F.resize(masks, list(size), interpolation=InterpolationMode.NEAREST)
        return pixels, boxes, masks

    def _finish(self, pixels, boxes, labels, masks) -> dict[str, Any]:
        """Normalise, pad bottom/right to the output size with 0 (after normalisation, as mmdet's Pad)."""
        height, width = pixels.shape[-2:]
        pixel_values = _normalise(pixels.float(), self.image_mean, self.image_std)
        padding = [0, 0, self.output_size - width, self.output_size - height]
        output = {
            "pixel_values": F.pad(pixel_values, padding, fill=0.0).contiguous(),
            "boxes": boxes.as_subclass(torch.Tensor).contiguous(),
            "class_labels": labels,
            "task": self.task,
        }
        if masks is not None:
            output["masks"] = (
                F.pad(masks, padding, fill=0).as_subclass(torch.Tensor).to(torch.uint8).contiguous()
            )
        return output


class LargeScaleJitter(_CocoTransform):
    """The original's COCO training pipeline (mmdet large-scale jitter), boxes, labels and masks kept together.

    Objects mmdet trains on (`training_object_indices`); keep-ratio resize so that the longer side is
    ``int(640 * r)``, r uniform in ``scale_range`` (bilinear, without antialiasing like OpenCV; masks nearest);
    random ``output_size`` crop (boxes shifted and clipped, objects whose clipped box is empty dropped, empty
    crops allowed); objects with width or height <= ``min_box_size`` dropped; horizontal flip (p=0.5);
    normalise with ``image_mean``/``image_std`` (on 0..255 RGB); pad bottom/right to ``output_size`` with 0.

    mmdet discards a sample whose objects are all removed by the size filter and draws another image; here
    the augmentation of the same image is drawn again (up to ``max_retries`` times) so that one row stays one
    sample.

    Output: ``pixel_values`` float32 (3, S, S), ``boxes`` float32 (N, 4) xyxy in those pixels,
    ``class_labels`` int64 (N,), ``masks`` uint8 (N, S, S) for instance segmentation, and ``task``.
    """

    def __init__(
        self,
        task: DetectionTask = "instance_segmentation",
        output_size: int = 640,
        scale_range: tuple[float, float] = (0.1, 3.0),
        min_box_size: float = 1e-2,
        flip_p: float = 0.5,
        image_mean: Sequence[float] | None = COCO_IMAGE_MEAN,
        image_std: Sequence[float] | None = COCO_IMAGE_STD,
        antialias: bool = False,
        max_retries: int = 10,
        generator: torch.Generator | None = None,
    ):
        super().__init__(task, output_size, image_mean, image_std, antialias, generator)
        self.scale_range = scale_range
        self.min_box_size = min_box_size
        self.flip_p = flip_p
        self.max_retries = max_retries

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        loaded = self._load(example)
        for _ in range(self.max_retries):
            result = self._augment(*loaded)
            if result is not None:
                return result
        # Every draw lost all objects to the size filter: keep the last draw without objects.
        pixels, boxes, labels, masks = loaded
        keep = torch.zeros(len(labels), dtype=torch.bool)
        return self._augment(pixels, _select(boxes, keep), labels[keep], _select(masks, keep))

    def _augment(self, pixels, boxes, labels, masks) -> dict[str, Any] | None:
        height, width = pixels.shape[-2:]
        ratio = uniform(self.generator, *self.scale_range)
        scale = int(self.output_size * ratio)
        pixels, boxes, masks = self._resize(pixels, boxes, masks, _keep_ratio_size(height, width, scale))

        height, width = pixels.shape[-2:]
        crop_h, crop_w = min(self.output_size, height), min(self.output_size, width)
        top = randint(self.generator, 0, height - crop_h + 1)
        left = randint(self.generator, 0, width - crop_w + 1)
        pixels = F.crop(pixels, top, left, crop_h, crop_w)
        boxes = F.clamp_bounding_boxes(F.crop(boxes, top, left, crop_h, crop_w), clamping_mode="hard")
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, labels, masks = _select(boxes, keep), labels[keep], _select(masks, keep)
        if masks is not None:
            masks = F.crop(masks, top, left, crop_h, crop_w)

        if len(labels):
            widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            keep = (widths > self.min_box_size) & (heights > self.min_box_size)
            if not keep.any():
                return None
            boxes, labels, masks = _select(boxes, keep), labels[keep], _select(masks, keep)

        if coin(self.generator, self.flip_p):
            pixels, boxes = F.horizontal_flip(pixels), F.horizontal_flip(boxes)
            masks = F.horizontal_flip(masks) if masks is not None else None
        return self._finish(pixels, boxes, labels, masks)


class CocoResizePad(_CocoTransform):
    """The original's COCO test pipeline: keep-ratio resize of the longer side to ``output_size``, normalise,
    pad bottom/right to ``output_size``. Targets (the objects mmdet trains on) follow the image.

    Besides the outputs of `LargeScaleJitter` it returns ``image_id``, ``original_size`` (H, W),
    ``image_size`` (h, w after resizing, before padding) and ``scale_factor`` (w_scale, h_scale) to map
    predictions back to the original image.
    """

    def __init__(
        self,
        task: DetectionTask = "instance_segmentation",
        output_size: int = 640,
        image_mean: Sequence[float] | None = COCO_IMAGE_MEAN,
        image_std: Sequence[float] | None = COCO_IMAGE_STD,
        antialias: bool = False,
    ):
        super().__init__(task, output_size, image_mean, image_std, antialias, None)

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        pixels, boxes, labels, masks = self._load(example)
        height, width = pixels.shape[-2:]
        size = _keep_ratio_size(height, width, self.output_size)
        pixels, boxes, masks = self._resize(pixels, boxes, masks, size)
        output = self._finish(pixels, boxes, labels, masks)
        output.update(
            image_id=int(example["image_id"]),
            original_size=(int(height), int(width)),
            image_size=size,
            scale_factor=(size[1] / width, size[0] / height),
        )
        return output


class BoxMaskTransform(_ExampleTransform):
    """Mask VQ-VAE sample from a box-cropped mask row: ``pixel_values`` = ``labels`` = float32 (1, S, S) in {0, 1}."""

    def example(self, example: dict[str, Any]) -> dict[str, Any]:
        mask = example["mask"]
        array = np.asarray(mask.convert("L") if isinstance(mask, PIL.Image.Image) else mask)
        values = torch.from_numpy((array > 0).astype(np.float32))[None]
        return {"pixel_values": values, "labels": values.clone()}
