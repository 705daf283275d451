"""Tokenizer upper bounds: encode the ground truth with a VQ-VAE, decode it again and score the result.

What a task solver can reach is limited by its tokenizer: a perfect solver would emit exactly the codes of
the ground truth. These functions measure that limit with the task's own metrics.

Depth (NYUv2 metrics, `DepthMetrics`), two modes:

* ``"full_frame"`` (default) is the original's VQ-VAE evaluation (``vae/train_depth_vqvae_dist.py``): the
  whole 480x640 test depth map, invalid zeros included, goes through the convolutional tokenizer at once
  (a 15x20 code grid for the released 480x480 tokenizer, which is fully convolutional), and the
  reconstruction is scored on the NYU evaluation crop.
* ``"windows"`` mirrors what the solver decodes at test time: square ``image_size`` windows slid over the
  width (and optionally flipped), each encoded/decoded on its own, overlaps averaged; the windows and flips
  are placed exactly as the model's test-time augmentation places them.

Deliberate difference from the original: the original VQ-VAE evaluation does not clip reconstructions,
so a non-positive value would make its log metrics NaN; `DepthMetrics` clips predictions at ``min_depth``
(1e-3 m), as the solver's test path does.

Instance masks (COCO mask AP of pasted reconstructions, every object scored 1.0 with its ground-truth
class), two protocols:

* ``"original"`` (default) follows the original's mask VQ-VAE evaluation (``vae/utils/eval_coco.py``):
  every annotation of the file (crowd ones included), its box rounded to integer pixels with Python's
  ``round`` (boxes under 2 pixels wide or high are skipped), the binary mask cropped to that box, resized
  bilinearly to the tokenizer's size and binarised, encoded and decoded, resized back to the box,
  thresholded at 0.5 and pasted into an empty image. The original resizes with OpenCV; `F.interpolate`
  (bilinear, half-pixel centres, no antialiasing) computes the same interpolation in floating point, so a
  pixel can differ where OpenCV's fixed-point result lies exactly at the 0.5 threshold. Boxes are clipped
  to the image (the original assumes they lie inside it).
* ``"solver"`` measures the limit of the solver's own pipeline: the objects the solver trains on (not
  crowd, box inside the image, width and height >= 1), masks cropped with the RoI-align rule of the
  solver's targets (`ait_hf.data.crop_and_resize_masks`) and reconstructions pasted with the solver's
  paste (`paste_masks_in_image`, threshold 0.5) using the float ground-truth boxes.

A tokenizer is any object with ``encode(maps) -> codes`` and ``decode(codes) -> maps`` and a ``config``
with ``image_size`` (an `AiTVQVAE`); the full-frame depth mode additionally uses the convolutional
modules of an `AiTVQVAE` (``encoder``, ``quantizer``, ``decoder``) when they are present, because
``encode`` only accepts maps of the configured square size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO

from ..data.box_masks import crop_and_resize_masks
from ..image_processing_ait import paste_masks_in_image
from .coco import COCO_MAX_DETECTIONS, CocoInstanceEvaluator, load_coco_ground_truth
from .depth import DepthMetrics

__all__ = [
    "DEPTH_UPPER_BOUND_MODES",
    "MASK_UPPER_BOUND_PROTOCOLS",
    "depth_tokenizer_upper_bound",
    "mask_tokenizer_upper_bound",
    "reconstruct_box_masks",
    "reconstruct_depth",
    "window_offsets",
]

DEPTH_UPPER_BOUND_MODES: tuple[str, ...] = ("full_frame", "windows")
MASK_UPPER_BOUND_PROTOCOLS: tuple[str, ...] = ("original", "solver")
DepthMode = Literal["full_frame", "windows"]
MaskProtocol = Literal["original", "solver"]


def _tokenizer_device_dtype(tokenizer: Any) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a tokenizer's parameters (CPU float32 for parameter-free fakes)."""
    parameters = getattr(tokenizer, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            if parameter.is_floating_point():
                return parameter.device, parameter.dtype
    return torch.device("cpu"), torch.float32


def _image_size(tokenizer: Any) -> int:
    config = getattr(tokenizer, "config", None)
    size = getattr(config, "image_size", None)
    if not isinstance(size, int):
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) needs a config with an integer image_size"
        )
    return size


def _is_convolutional_vqvae(tokenizer: Any) -> bool:
    return all(
        hasattr(tokenizer, name) for name in ("encoder", "decoder", "quantizer", "normalize", "denormalize")
    )


def _as_depth_batch(depth: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(depth) if isinstance(depth, np.ndarray) else depth)
    if tensor.ndim == 2:
        tensor = tensor[None]
    elif tensor.ndim == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 3:
        raise ValueError(
            f"depth maps must have shape (H, W), (B, H, W) or (B, 1, H, W); got {tuple(tensor.shape)}"
        )
    return tensor


@torch.no_grad()
def _full_frame_round_trip(tokenizer: Any, maps: torch.Tensor) -> torch.Tensor:
    """Encode and decode (B, H, W) maps of any size the convolutional tokenizer can tile exactly."""
    if not _is_convolutional_vqvae(tokenizer):
        return tokenizer.decode(tokenizer.encode(maps))
    ratio = tokenizer.config.downsample_ratio
    height, width = maps.shape[-2:]
    if height % ratio or width % ratio:
        raise ValueError(
            f"full-frame reconstruction needs a size that is a multiple of the tokenizer's downsample ratio "
            f"{ratio}; got {height}x{width}"
        )
    # AiTVQVAE.encode/decode accept only the configured square size; the original evaluates the whole frame,
    # which its convolutional encoder/decoder allow, so the same modules are composed here for any size.
    latents = tokenizer.encoder(tokenizer.normalize(maps[:, None]))
    batch, channels, rows, cols = latents.shape
    codes = tokenizer.quantizer.nearest_codes(latents.permute(0, 2, 3, 1).reshape(-1, channels))
    quantized = tokenizer.quantizer.embedding[codes].view(batch, rows, cols, -1).permute(0, 3, 1, 2)
    return tokenizer.denormalize(tokenizer.decoder(quantized)).squeeze(1)


def window_offsets(width: int, window: int, num_windows: int) -> list[int]:
    """Left offsets of the square windows the solver slides over a frame of `width` (its TTA placement)."""
    if width < window:
        raise ValueError(f"a frame {width} pixels wide is narrower than the {window}-pixel window")
    if width == window:
        return [0]
    count = max(num_windows, math.ceil(width / window))
    step = (width - window) // (count - 1)
    return [index * step for index in range(count)]


@torch.no_grad()
def reconstruct_depth(
    tokenizer: Any,
    depth: torch.Tensor | np.ndarray,
    *,
    mode: DepthMode = "full_frame",
    num_windows: int = 2,
    flip: bool = False,
) -> torch.Tensor:
    """Depth maps (B, H, W) in metres after a round trip through the tokenizer (see the module docstring).

    Args:
        tokenizer: the depth tokenizer (`AiTVQVAE` or any object with ``encode``/``decode``).
        depth: ground truth (H, W), (B, H, W) or (B, 1, H, W) in metres; invalid pixels (0) are encoded as
            they are, as the original does.
        mode: "full_frame" (the original VQ-VAE evaluation) or "windows" (the solver's sliding windows).
        num_windows, flip: windows mode only: the solver's ``depth_tta_windows`` and whether flipped windows
            are averaged in (``depth_tta_flip`` with test-time augmentation on).

    Returns:
        float32 (B, H, W) reconstruction on the input's device.
    """
    if mode not in DEPTH_UPPER_BOUND_MODES:
        raise ValueError(f"mode must be one of {DEPTH_UPPER_BOUND_MODES}, got {mode!r}")
    maps = _as_depth_batch(depth)
    input_device = maps.device
    device, dtype = _tokenizer_device_dtype(tokenizer)
    maps = maps.to(device=device, dtype=dtype)
    if mode == "full_frame":
        return _full_frame_round_trip(tokenizer, maps).float().to(input_device)

    window = _image_size(tokenizer)
    batch, height, width = maps.shape
    if height != window:
        raise ValueError(
            f"windows mode needs depth maps {window} pixels high (the tokenizer's image_size); got {height}x{width}"
        )
    offsets = window_offsets(width, window, num_windows)
    crops = torch.cat([maps[..., offset : offset + window] for offset in offsets])
    if flip:
        crops = torch.cat([crops, crops.flip(-1)])
    reconstructed = tokenizer.decode(tokenizer.encode(crops)).float()
    if flip:
        half = reconstructed.shape[0] // 2
        reconstructed = (reconstructed[:half] + reconstructed[half:].flip(-1)) / 2
    total = reconstructed.new_zeros((batch, height, width))
    count = reconstructed.new_zeros((1, 1, width))
    for index, offset in enumerate(offsets):
        total[..., offset : offset + window] += reconstructed[index * batch : (index + 1) * batch]
        count[..., offset : offset + window] += 1
    return (total / count).to(input_device)


def _same_shape_batches(
    depth_maps: Iterable[torch.Tensor | np.ndarray], batch_size: int
) -> Iterator[torch.Tensor]:
    """Consecutive maps of equal shape stacked into batches of at most `batch_size`."""
    pending: list[torch.Tensor] = []
    for depth in depth_maps:
        tensor = torch.as_tensor(
            np.asarray(depth, dtype=np.float32) if isinstance(depth, np.ndarray) else depth
        )
        tensor = tensor.float()
        if tensor.ndim == 3 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 2:
            raise ValueError(f"each depth map must have shape (H, W); got {tuple(tensor.shape)}")
        if pending and (len(pending) == batch_size or pending[0].shape != tensor.shape):
            yield torch.stack(pending)
            pending = []
        pending.append(tensor)
    if pending:
        yield torch.stack(pending)


def depth_tokenizer_upper_bound(
    tokenizer: Any,
    depth_maps: Iterable[torch.Tensor | np.ndarray],
    *,
    mode: DepthMode = "full_frame",
    num_windows: int = 2,
    flip: bool = False,
    batch_size: int = 4,
    progress: Any = None,
    **metric_kwargs: Any,
) -> dict[str, float]:
    """NYUv2 depth metrics of the tokenizer's reconstructions of ground-truth depth maps.

    Args:
        tokenizer: the depth tokenizer.
        depth_maps: ground-truth maps (H, W) in metres, e.g. the ``depth`` column of `load_nyu_depth_v2`.
        mode, num_windows, flip: see `reconstruct_depth`.
        batch_size: maps per tokenizer call (consecutive maps of equal size are batched).
        progress: optional tqdm-like object; ``update(n)`` is called with the maps done.
        metric_kwargs: passed to `DepthMetrics` (``eval_crop``, ``min_depth``, ...).

    Returns:
        The metrics of `DEPTH_METRIC_NAMES` averaged over images, plus ``num_images``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    metrics = DepthMetrics(**metric_kwargs)
    for batch in _same_shape_batches(depth_maps, batch_size):
        reconstruction = reconstruct_depth(tokenizer, batch, mode=mode, num_windows=num_windows, flip=flip)
        metrics.update(reconstruction.cpu(), batch)
        if progress is not None:
            progress.update(batch.shape[0])
    return {**metrics.compute(), "num_images": metrics.num_images}


# ----------------------------------------------------------------------------------------- instance masks


@torch.no_grad()
def reconstruct_box_masks(tokenizer: Any, masks: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Box-local masks (N, S, S) in [0, 1] after a round trip through the mask tokenizer (float32, CPU).

    `S` must be the tokenizer's ``image_size``; the result is the de-normalised decoder output (mask
    probabilities, not clipped), as the original evaluation thresholds it.
    """
    size = _image_size(tokenizer)
    if masks.ndim != 3 or tuple(masks.shape[-2:]) != (size, size):
        raise ValueError(f"masks must have shape (N, {size}, {size}); got {tuple(masks.shape)}")
    device, dtype = _tokenizer_device_dtype(tokenizer)
    outputs = []
    for start in range(0, masks.shape[0], batch_size):
        chunk = masks[start : start + batch_size].to(device=device, dtype=dtype)
        outputs.append(tokenizer.decode(tokenizer.encode(chunk)).float().cpu())
    if not outputs:
        return torch.zeros((0, size, size))
    return torch.cat(outputs)


def _rounded_box(annotation: Mapping[str, Any], height: int, width: int) -> tuple[int, int, int, int]:
    """The original's integer box: Python ``round`` of x, y, x + w, y + h, clipped to the image."""
    x, y, w, h = annotation["bbox"]
    x1, y1, x2, y2 = round(x), round(y), round(x + w), round(y + h)
    return max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)


def _resize(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of one (h, w) map with half-pixel centres (OpenCV's INTER_LINEAR geometry)."""
    return F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False, antialias=False)[
        0, 0
    ]


class _ImageObjects:
    """The objects of one image waiting for their reconstruction."""

    def __init__(self, image_id: int, height: int, width: int) -> None:
        self.image_id = image_id
        self.height, self.width = height, width
        self.crops: list[torch.Tensor] = []
        self.boxes: list[list[float]] = []  # x1, y1, x2, y2 (integers for the original protocol)
        self.labels: list[int] = []


def _collect_objects(
    coco: COCO, image_id: int, protocol: str, size: int, label_of: Mapping[int, int]
) -> _ImageObjects:
    info = coco.imgs[image_id]
    height, width = int(info["height"]), int(info["width"])
    objects = _ImageObjects(image_id, height, width)
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    if protocol == "original":
        for annotation in annotations:
            x1, y1, x2, y2 = _rounded_box(annotation, height, width)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            mask = torch.from_numpy(coco.annToMask(annotation)[y1:y2, x1:x2].astype(np.float32))
            objects.crops.append((_resize(mask, (size, size)) >= 0.5).float())
            objects.boxes.append([x1, y1, x2, y2])
            objects.labels.append(label_of[annotation["category_id"]])
        return objects
    kept = []
    for annotation in annotations:
        x, y, w, h = annotation["bbox"]
        overlap = max(0.0, min(x + w, width) - max(x, 0.0)) * max(0.0, min(y + h, height) - max(y, 0.0))
        if annotation.get("iscrowd", 0) or overlap == 0 or annotation.get("area", 1) <= 0 or w < 1 or h < 1:
            continue
        kept.append(annotation)
    if kept:
        masks = torch.from_numpy(np.stack([coco.annToMask(annotation) for annotation in kept]))
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in kept], dtype=torch.float64).float()  # fmt: skip
        objects.crops.extend(crop_and_resize_masks(masks, boxes, size, binarize=True))
        objects.boxes.extend(boxes.tolist())
        objects.labels.extend(label_of[a["category_id"]] for a in kept)
    return objects


def _paste(objects: _ImageObjects, reconstructions: torch.Tensor, protocol: str) -> np.ndarray:
    height, width = objects.height, objects.width
    if protocol == "solver":
        boxes = torch.tensor(objects.boxes, dtype=torch.float32).reshape(-1, 4)
        return paste_masks_in_image(reconstructions, boxes, (height, width), threshold=0.5).numpy()
    pasted = np.zeros((len(objects.boxes), height, width), dtype=bool)
    for index, (x1, y1, x2, y2) in enumerate(objects.boxes):
        resized = _resize(reconstructions[index], (int(y2 - y1), int(x2 - x1)))
        pasted[index, int(y1) : int(y2), int(x1) : int(x2)] = (resized >= 0.5).numpy()
    return pasted


def mask_tokenizer_upper_bound(
    tokenizer: Any,
    ground_truth: str | Any,
    *,
    protocol: MaskProtocol = "original",
    image_ids: Sequence[int] | None = None,
    iou_types: Sequence[str] = ("segm",),
    max_detections: Sequence[int] = COCO_MAX_DETECTIONS,
    batch_size: int = 512,
    progress: Any = None,
) -> dict[str, float]:
    """COCO mask AP of ground-truth masks reconstructed by the mask tokenizer (see the module docstring).

    Args:
        tokenizer: the mask tokenizer (`AiTVQVAE` with 64x64 maps for the released one).
        ground_truth: COCO instances annotations (path, dict or pycocotools `COCO`).
        protocol: "original" (the original's VQ-VAE evaluation) or "solver" (the solver's crop and paste).
        image_ids: images to score (default: all of the file, as the original).
        iou_types: "segm" and/or "boundary" (the original reports both; "boundary" needs faster-coco-eval).
        max_detections: COCOeval ``maxDets``; pycocotools' default (1, 10, 100), which the original uses.
        batch_size: objects per tokenizer call.
        progress: optional tqdm-like object; ``update(n)`` is called with the images done.

    Returns:
        ``{"segm_AP": ..., ..., "num_images": N, "num_objects": M}``.
    """
    if protocol not in MASK_UPPER_BOUND_PROTOCOLS:
        raise ValueError(f"protocol must be one of {MASK_UPPER_BOUND_PROTOCOLS}, got {protocol!r}")
    if "bbox" in iou_types:
        raise ValueError("the mask upper bound scores masks only; iou_types may hold 'segm' and 'boundary'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    coco = load_coco_ground_truth(ground_truth)
    evaluator = CocoInstanceEvaluator(coco, iou_types=tuple(iou_types), max_detections=max_detections)
    label_of = {category_id: label for label, category_id in enumerate(evaluator.category_ids)}
    size = _image_size(tokenizer)
    ids = sorted(coco.getImgIds()) if image_ids is None else [int(i) for i in image_ids]
    unknown = [image_id for image_id in ids if image_id not in coco.imgs]
    if unknown:
        raise ValueError(f"image ids {unknown[:5]} are not in the ground-truth annotations")

    pending: list[_ImageObjects] = []
    num_objects = 0

    def flush() -> None:
        nonlocal num_objects
        crops = [crop for objects in pending for crop in objects.crops]
        reconstructions = (
            reconstruct_box_masks(tokenizer, torch.stack(crops), batch_size)
            if crops
            else torch.zeros((0, size, size))
        )
        start = 0
        predictions = {}
        for objects in pending:
            count = len(objects.crops)
            masks = _paste(objects, reconstructions[start : start + count], protocol)
            start += count
            predictions[objects.image_id] = {
                "boxes": np.asarray(objects.boxes, dtype=np.float64).reshape(-1, 4),
                "scores": np.ones(count),
                "labels": np.asarray(objects.labels, dtype=np.int64),
                "masks": masks,
            }
        evaluator.update(predictions)
        num_objects += len(crops)
        if progress is not None:
            progress.update(len(pending))
        pending.clear()

    pending_objects = 0
    for image_id in ids:
        objects = _collect_objects(coco, image_id, protocol, size, label_of)
        pending.append(objects)
        pending_objects += len(objects.crops)
        if pending_objects >= batch_size:
            flush()
            pending_objects = 0
    if pending:
        flush()
    return {**evaluator.compute(), "num_images": evaluator.num_images, "num_objects": num_objects}
