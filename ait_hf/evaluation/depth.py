"""NYUv2 depth metrics, computed the way the original AiT evaluation computes them.

Protocol (original `cropping_img` / `eval_depth` and the depth test path of the detector):

* predictions are clipped below at ``min_depth`` (the model's test path does ``clip(min=1e-3)``), then
  ``+inf`` becomes ``max_depth`` and ``nan`` becomes ``min_depth``; predictions above ``max_depth`` are
  NOT clipped (the original never does);
* a pixel is scored when ``min_depth < gt < max_depth`` (strict, in metres) and it lies inside the
  evaluation crop rows 45:471, columns 41:601 of a 480x640 image;
* the nine metrics are computed per image over its scored pixels, then averaged over images
  (not pooled over pixels).

Differences from the original, all deliberate and documented:

* sums are taken in float64 (the original uses float32 tensors), so values agree to float32 rounding;
* an image without any scored pixel would make the original's mean NaN; here it is skipped and counted
  in ``DepthMetrics.num_skipped_images`` (NYUv2's test set has none);
* the crop is only applied to images of ``crop_image_size`` (480x640 by default); other sizes are scored
  uncropped with a warning, because the NYU crop is given in 480x640 pixel coordinates. Pass
  ``crop_image_size=None`` to apply the crop rows/columns to any size (the original's literal slicing,
  clipped at the image border) or ``eval_crop=None`` to never crop.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEPTH_METRIC_NAMES",
    "NYU_EVAL_CROP",
    "NYU_EVAL_IMAGE_SIZE",
    "NYU_MAX_DEPTH",
    "NYU_MIN_DEPTH",
    "DepthMetrics",
    "compute_depth_metrics",
    "depth_metrics_per_image",
    "make_depth_compute_metrics",
]

DEPTH_METRIC_NAMES: tuple[str, ...] = (
    "d1",
    "d2",
    "d3",
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "silog",
)
NYU_MIN_DEPTH: float = 1e-3
NYU_MAX_DEPTH: float = 10.0
# (top, bottom, left, right), end-exclusive, in pixels of a 480x640 NYUv2 image (Eigen et al. crop).
NYU_EVAL_CROP: tuple[int, int, int, int] = (45, 471, 41, 601)
NYU_EVAL_IMAGE_SIZE: tuple[int, int] = (480, 640)

# Images scored per vectorised step: bounds the float64 temporaries (about 20 maps per image).
_IMAGES_PER_CHUNK = 16

ArrayLike = torch.Tensor | np.ndarray


def _as_image_batch(array: ArrayLike, name: str) -> torch.Tensor:
    """Return a float64 tensor of shape (N, H, W) from (H, W), (N, H, W) or (N, 1, H, W) input."""
    if isinstance(array, np.ndarray):
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float64))
    elif isinstance(array, torch.Tensor):
        tensor = array.detach()
        if tensor.device.type == "mps":  # MPS has no float64
            tensor = tensor.cpu()
        tensor = tensor.to(torch.float64)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(array).__name__}")
    if tensor.ndim == 2:
        tensor = tensor[None]
    elif tensor.ndim == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 3:
        raise ValueError(
            f"{name} must have shape (H, W), (N, H, W) or (N, 1, H, W); got {tuple(array.shape)}"
        )
    return tensor


def _crop_mask(
    height: int,
    width: int,
    eval_crop: Sequence[int] | None,
    crop_image_size: Sequence[int] | None,
    device: torch.device,
) -> tuple[torch.Tensor | None, bool]:
    """Boolean (H, W) mask of the evaluation crop, or None when no crop applies; second value: size mismatch."""
    if eval_crop is None:
        return None, False
    if crop_image_size is not None and (height, width) != tuple(crop_image_size):
        return None, True
    top, bottom, left, right = eval_crop
    mask = torch.zeros((height, width), dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask, False


def _per_image_chunk(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    crop: torch.Tensor | None,
    min_depth: float,
    max_depth: float,
) -> dict[str, torch.Tensor]:
    """Per-image metrics of one (n, H, W) chunk; images without scored pixels get NaN."""
    predictions = torch.nan_to_num(predictions, nan=min_depth, posinf=max_depth, neginf=min_depth)
    predictions = predictions.clamp_min(min_depth)
    valid = (targets > min_depth) & (targets < max_depth)
    if crop is not None:
        valid &= crop
    count = valid.sum(dim=(-2, -1)).to(torch.float64)
    # Outside `valid` both maps hold 1.0, so logs/ratios stay finite; those pixels are then zeroed.
    target = torch.where(valid, targets, torch.ones_like(targets))
    prediction = torch.where(valid, predictions, torch.ones_like(predictions))

    def mean(values: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, values, torch.zeros_like(values)).sum(dim=(-2, -1)) / count

    ratio = torch.maximum(target / prediction, prediction / target)
    diff = prediction - target
    log_diff = torch.log(prediction) - torch.log(target)
    mean_sq_log = mean(log_diff**2)
    return {
        "d1": mean((ratio < 1.25).to(torch.float64)),
        "d2": mean((ratio < 1.25**2).to(torch.float64)),
        "d3": mean((ratio < 1.25**3).to(torch.float64)),
        "abs_rel": mean(diff.abs() / target),
        "sq_rel": mean(diff**2 / target),
        "rmse": mean(diff**2).sqrt(),
        "rmse_log": mean_sq_log.sqrt(),
        "log10": mean((torch.log10(prediction) - torch.log10(target)).abs()),
        # Scale-invariant log error with lambda 0.5 and no x100 factor, as in the original.
        "silog": (mean_sq_log - 0.5 * mean(log_diff) ** 2).sqrt(),
        "num_valid_pixels": count,
    }


def depth_metrics_per_image(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    min_depth: float = NYU_MIN_DEPTH,
    max_depth: float = NYU_MAX_DEPTH,
    eval_crop: Sequence[int] | None = NYU_EVAL_CROP,
    crop_image_size: Sequence[int] | None = NYU_EVAL_IMAGE_SIZE,
) -> dict[str, np.ndarray]:
    """Score each image separately.

    Args:
        predictions: predicted depth in metres, (H, W), (N, H, W) or (N, 1, H, W), same size as `targets`.
        targets: ground-truth depth in metres; pixels outside (min_depth, max_depth) are ignored
            (so Trainer padding of -100 is ignored too).
        min_depth, max_depth: valid ground-truth range and the values that replace nan/inf predictions.
        eval_crop: (top, bottom, left, right) end-exclusive crop, or None for no crop.
        crop_image_size: (H, W) the crop is defined for; other sizes are scored uncropped with a
            warning. None applies the crop to every size.

    Returns:
        One float64 array of length N per metric in `DEPTH_METRIC_NAMES`, plus "num_valid_pixels".
        Images without any scored pixel hold NaN metrics and 0 valid pixels.
    """
    prediction_batch = _as_image_batch(predictions, "predictions")
    target_batch = _as_image_batch(targets, "targets")
    if prediction_batch.shape != target_batch.shape:
        raise ValueError(
            "predictions and targets must have the same (N, H, W) shape (resize predictions to the "
            f"ground-truth size first); got predictions {tuple(prediction_batch.shape)} and "
            f"targets {tuple(target_batch.shape)}"
        )
    if not min_depth < max_depth:
        raise ValueError(
            f"min_depth must be below max_depth; got min_depth={min_depth}, max_depth={max_depth}"
        )
    if eval_crop is not None and len(eval_crop) != 4:
        raise ValueError(f"eval_crop must be (top, bottom, left, right); got {eval_crop!r}")
    target_batch = target_batch.to(prediction_batch.device)
    height, width = prediction_batch.shape[-2:]
    crop, size_mismatch = _crop_mask(height, width, eval_crop, crop_image_size, prediction_batch.device)
    if size_mismatch:
        warnings.warn(
            f"depth maps are {height}x{width} but eval_crop {tuple(eval_crop)} is defined for "
            f"{tuple(crop_image_size)} images; scoring them without the crop. Pass crop_image_size=None to "
            "slice the crop at any size, or eval_crop=None to silence this.",
            stacklevel=2,
        )
    chunks = [
        _per_image_chunk(
            prediction_batch[start : start + _IMAGES_PER_CHUNK],
            target_batch[start : start + _IMAGES_PER_CHUNK],
            crop,
            min_depth,
            max_depth,
        )
        for start in range(0, prediction_batch.shape[0], _IMAGES_PER_CHUNK)
    ]
    names = (*DEPTH_METRIC_NAMES, "num_valid_pixels")
    if not chunks:
        return {name: np.zeros((0,), dtype=np.float64) for name in names}
    return {name: torch.cat([chunk[name] for chunk in chunks]).cpu().numpy() for name in names}


class DepthMetrics:
    """Accumulates per-image depth metrics over batches and averages them over images.

    Example:
        >>> metrics = DepthMetrics()
        >>> for pred, gt in batches:  # (N, H, W) metres
        ...     metrics.update(pred, gt)
        >>> metrics.compute()  # {"d1": ..., ..., "silog": ...}
    """

    def __init__(
        self,
        *,
        min_depth: float = NYU_MIN_DEPTH,
        max_depth: float = NYU_MAX_DEPTH,
        eval_crop: Sequence[int] | None = NYU_EVAL_CROP,
        crop_image_size: Sequence[int] | None = NYU_EVAL_IMAGE_SIZE,
    ) -> None:
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.eval_crop = None if eval_crop is None else tuple(eval_crop)
        self.crop_image_size = None if crop_image_size is None else tuple(crop_image_size)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._per_image: dict[str, list[np.ndarray]] = {name: [] for name in DEPTH_METRIC_NAMES}
        self._num_valid_pixels: list[np.ndarray] = []

    def update(self, predictions: ArrayLike, targets: ArrayLike) -> None:
        """Score a batch ((H, W), (N, H, W) or (N, 1, H, W), metres) and remember its per-image values."""
        per_image = depth_metrics_per_image(
            predictions,
            targets,
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            eval_crop=self.eval_crop,
            crop_image_size=self.crop_image_size,
        )
        for name in DEPTH_METRIC_NAMES:
            self._per_image[name].append(per_image[name])
        self._num_valid_pixels.append(per_image["num_valid_pixels"])

    @property
    def num_images(self) -> int:
        """Images seen, including skipped ones."""
        return int(sum(len(counts) for counts in self._num_valid_pixels))

    @property
    def num_skipped_images(self) -> int:
        """Images without any scored pixel; they are left out of the averages."""
        return int(sum(int((counts == 0).sum()) for counts in self._num_valid_pixels))

    def per_image(self) -> dict[str, np.ndarray]:
        """All per-image values seen so far (NaN for skipped images), plus "num_valid_pixels"."""
        values = {
            name: np.concatenate(chunks) if chunks else np.zeros((0,))
            for name, chunks in self._per_image.items()
        }
        values["num_valid_pixels"] = (
            np.concatenate(self._num_valid_pixels) if self._num_valid_pixels else np.zeros((0,))
        )
        return values

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images that have scored pixels (NaN when there are none)."""
        per_image = self.per_image()
        scored = per_image["num_valid_pixels"] > 0
        if not scored.any():
            warnings.warn(
                f"no depth image had a scored pixel ({self.num_images} images seen); metrics are NaN",
                stacklevel=2,
            )
            return dict.fromkeys(DEPTH_METRIC_NAMES, math.nan)
        return {name: float(per_image[name][scored].mean()) for name in DEPTH_METRIC_NAMES}


def compute_depth_metrics(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    min_depth: float = NYU_MIN_DEPTH,
    max_depth: float = NYU_MAX_DEPTH,
    eval_crop: Sequence[int] | None = NYU_EVAL_CROP,
    crop_image_size: Sequence[int] | None = NYU_EVAL_IMAGE_SIZE,
) -> dict[str, float]:
    """Depth metrics of one batch, averaged over its images (see `depth_metrics_per_image` for arguments)."""
    metrics = DepthMetrics(
        min_depth=min_depth, max_depth=max_depth, eval_crop=eval_crop, crop_image_size=crop_image_size
    )
    metrics.update(predictions, targets)
    return metrics.compute()


def _select(value: Any, index: int, name: str) -> Any:
    """Pick element `index` when the Trainer hands over a tuple/list of arrays."""
    if isinstance(value, (tuple, list)):
        if not -len(value) <= index < len(value):
            raise ValueError(f"EvalPrediction.{name} has {len(value)} entries; index {index} is out of range")
        return value[index]
    return value


def make_depth_compute_metrics(
    *,
    prediction_index: int = 0,
    label_index: int = 0,
    metric_prefix: str = "",
    **metric_kwargs: Any,
) -> Callable[..., dict[str, float]]:
    """Build a `compute_metrics` for `transformers.Trainer` that returns NYUv2 depth metrics.

    The returned callable takes an `EvalPrediction` whose predictions and label_ids are depth maps in
    metres shaped (N, H, W) (or tuples of arrays; `prediction_index` / `label_index` pick one). It works
    with `batch_eval_metrics=True` too: then it accumulates per batch and returns the averages when the
    Trainer passes `compute_result=True` (an empty dict before that). Padding the Trainer adds (-100) is
    not a valid depth and is ignored. `metric_kwargs` go to `DepthMetrics`.
    """
    accumulator = DepthMetrics(**metric_kwargs)

    def compute_metrics(eval_prediction: Any, compute_result: bool | None = None) -> dict[str, float]:
        predictions = _select(eval_prediction.predictions, prediction_index, "predictions")
        labels = _select(eval_prediction.label_ids, label_index, "label_ids")
        accumulator.update(predictions, labels)
        if compute_result is False:
            return {}
        metrics = accumulator.compute()
        accumulator.reset()
        return {f"{metric_prefix}{name}": value for name, value in metrics.items()}

    return compute_metrics
