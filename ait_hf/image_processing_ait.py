"""Image processor for AiT (torchvision backend) and the pieces both backends share.

AiT reads two kinds of input frames:

* depth estimation (NYUv2 protocol): the image is resized to a fixed `size` (480x640, the NYUv2 frame the
  original test protocol runs on) and rescaled to [0, 1]. The original NYUv2 loader feeds
  `ToTensor()` images, i.e. *no* mean/std normalisation (`depth_do_normalize=False`). Images of another
  aspect ratio are stretched to that frame, and `post_process_depth_estimation` resizes the prediction back
  to the original size, so the prediction always covers the whole image.
* object detection / instance segmentation (COCO protocol, mmdet test pipeline): keep-ratio resize with
  mmdet/mmcv rounding (`instance_size`, long side 640), normalisation with the ImageNet mean/std
  (mmdet `img_norm_cfg` in 0..255 units equals the ImageNet default mean/std after rescaling by 1/255),
  then zero padding at the bottom/right to `pad_size` (640x640) *after* normalisation.

Both produce equal-size tensors, so batches of differently sized images stack. Nothing about a call is
remembered: post-processing takes the original `(height, width)` of each image (`target_sizes`) and
recomputes the resize scale from it.

The PIL twin (`image_processing_pil_ait.py`) imports the shared mixin and helpers from this file, so
torchvision is imported optionally here.
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_transforms import group_images_by_shape, reorder_images
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PILImageResampling,
    SizeDict,
    is_pil_image,
    is_valid_image,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType
from transformers.utils.type_validators import image_size_validator

try:  # optional: the PIL twin imports this module and must work without torchvision
    from torchvision.transforms.v2 import functional as tvF
except ImportError:  # pragma: no cover - exercised only in environments without torchvision
    tvF = None


AIT_TASKS = ("depth", "instance_segmentation", "object_detection")
_TASK_ALIASES = {
    "depth": "depth",
    "depth_estimation": "depth",
    "instance_segmentation": "instance_segmentation",
    "insseg": "instance_segmentation",
    "object_detection": "object_detection",
    "detection": "object_detection",
    "det": "object_detection",
}


def resolve_task(task: str) -> str:
    """Return the canonical task name ("depth", "instance_segmentation" or "object_detection").

    Pipeline spellings ("depth-estimation", "object-detection", ...) and the original's short names
    ("det", "insseg") are accepted; anything else raises a ValueError that lists the valid names.
    """
    key = task.strip().lower().replace("-", "_") if isinstance(task, str) else None
    if key not in _TASK_ALIASES:
        raise ValueError(f"Unknown AiT task {task!r}; valid tasks are {', '.join(AIT_TASKS)}.")
    return _TASK_ALIASES[key]


class AiTImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    task (`str`, *optional*, defaults to `self.task`):
        Which preprocessing to apply: `"depth"` (fixed-size resize to `size`, rescale only) or
        `"instance_segmentation"` / `"object_detection"` (keep-ratio resize to `instance_size`, normalise,
        pad to `pad_size`).
    instance_size (`dict[str, int]`, *optional*, defaults to `{"shortest_edge": 640, "longest_edge": 640}`):
        mmdet `Resize(img_scale=(longest_edge, shortest_edge), keep_ratio=True)`: the image is scaled by
        `min(longest_edge / long_side, shortest_edge / short_side)` and each side is rounded with
        `int(side * scale + 0.5)`.
    depth_do_normalize (`bool`, *optional*, defaults to `False`):
        Whether depth inputs are normalised with `image_mean`/`image_std` after rescaling. The original
        NYUv2 pipeline does not normalise.
    """

    task: str
    instance_size: Annotated[dict[str, int] | None, image_size_validator()]
    depth_do_normalize: bool | None


def get_keep_ratio_resize_size(
    height: int, width: int, longest_edge: int, shortest_edge: int | None = None
) -> tuple[int, int]:
    """Output `(height, width)` of mmcv's keep-ratio rescale (`mmcv.imrescale`), as mmdet's test `Resize`.

    The scale is `min(longest_edge / max(h, w), shortest_edge / min(h, w))` and each side becomes
    `int(side * scale + 0.5)`. Sides are clamped to at least 1 pixel (mmcv would produce an empty image for
    extremely elongated inputs; we keep one row/column instead).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"Image size must be positive, got (height, width)=({height}, {width}).")
    scale = longest_edge / max(height, width)
    if shortest_edge is not None:
        scale = min(scale, shortest_edge / min(height, width))
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


def get_keep_ratio_scale_factor(
    height: int, width: int, longest_edge: int, shortest_edge: int | None = None
) -> tuple[float, float]:
    """`(width_scale, height_scale)` of the keep-ratio resize, rounded to float32 like mmdet's `scale_factor`.

    mmdet stores `[new_w / w, new_h / h, new_w / w, new_h / h]` as a float32 array and divides predicted
    boxes by it (`rescale=True`); using the same float32 values gives the same boxes bit for bit.
    """
    new_height, new_width = get_keep_ratio_resize_size(height, width, longest_edge, shortest_edge)
    return float(np.float32(new_width / width)), float(np.float32(new_height / height))


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    threshold: float | None = 0.5,
    restrict_to_box: bool = False,
    max_chunk_pixels: int = 1 << 24,
) -> torch.Tensor:
    """Paste box-local masks into an image of `image_size = (height, width)`.

    Reproduces the original's paste (mmdet/detectron2 `_do_paste_mask`): every image pixel centre
    `(x + 0.5, y + 0.5)` is mapped into the box, `((x + 0.5 - x0) / (x1 - x0)) * 2 - 1`, and the mask is
    sampled there with `grid_sample` (bilinear, zero padding, `align_corners=False`); infinite coordinates of
    zero-size boxes are set to 0 as the original does. The default samples the whole image, which is the
    original's GPU path (and the reference outputs); `restrict_to_box=True` keeps only the pixels of
    `[floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1, ceil(y1) + 1)`, which is its CPU path (`skip_empty=True`).
    The two agree for well-formed boxes and mask probabilities in [0, 1].

    Hand-written because torchvision's `paste_masks_in_image` (in `torchvision.models.detection.roi_heads`)
    rounds boxes to integers and resizes with `interpolate`, which gives different pixels; the grid is built
    with the original's exact float operations (not `affine_grid`) so threshold decisions match bit for bit.

    Args:
        masks: `(N, h, w)` mask probabilities (box-local, e.g. 64x64).
        boxes: `(N, 4)` boxes `x1, y1, x2, y2` in pixels of the target image.
        image_size: `(height, width)` of the target image.
        threshold: masks are binarised with `>= threshold` (the original uses 0.5); `None` returns the
            sampled probabilities.
        restrict_to_box: only paste inside the box +- 1 pixel (see above).
        max_chunk_pixels: memory bound; masks are pasted in chunks of at most this many output pixels.

    Returns:
        `(N, height, width)` bool tensor (or float32 probabilities when `threshold is None`).
    """
    if masks.ndim != 3:
        raise ValueError(f"`masks` must have shape (N, h, w), got {tuple(masks.shape)}.")
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape[0] != masks.shape[0]:
        raise ValueError(
            f"`boxes` must have shape (N, 4) with N = {masks.shape[0]} (number of masks), got {tuple(boxes.shape)}."
        )
    img_h, img_w = int(image_size[0]), int(image_size[1])
    if img_h <= 0 or img_w <= 0:
        raise ValueError(f"`image_size` must be a positive (height, width), got {tuple(image_size)}.")
    device = masks.device
    num_masks = masks.shape[0]
    out_dtype = torch.bool if threshold is not None else torch.float32
    pasted = torch.zeros((num_masks, img_h, img_w), dtype=out_dtype, device=device)
    if num_masks == 0:
        return pasted

    masks = masks.to(torch.float32)[:, None]
    boxes = boxes.to(device=device, dtype=torch.float32)
    pixel_y = torch.arange(img_h, device=device).to(torch.float32) + 0.5
    pixel_x = torch.arange(img_w, device=device).to(torch.float32) + 0.5
    chunk = max(1, max_chunk_pixels // (img_h * img_w))
    for start in range(0, num_masks, chunk):
        box = boxes[start : start + chunk]
        n = box.shape[0]
        x0, y0, x1, y1 = torch.split(box, 1, dim=1)  # each (n, 1)
        grid_x = (pixel_x - x0) / (x1 - x0) * 2 - 1  # (n, W)
        grid_y = (pixel_y - y0) / (y1 - y0) * 2 - 1  # (n, H)
        grid_x = torch.where(torch.isinf(grid_x), torch.zeros_like(grid_x), grid_x)
        grid_y = torch.where(torch.isinf(grid_y), torch.zeros_like(grid_y), grid_y)
        grid = torch.stack(
            [grid_x[:, None, :].expand(n, img_h, img_w), grid_y[:, :, None].expand(n, img_h, img_w)], dim=3
        )
        probs = F.grid_sample(masks[start : start + chunk], grid, mode="bilinear", align_corners=False)[:, 0]
        if restrict_to_box:
            cols = torch.arange(img_w, device=device)
            rows = torch.arange(img_h, device=device)
            col_lo = (x0.floor() - 1).clamp(min=0)
            col_hi = (x1.ceil() + 1).clamp(max=img_w)
            row_lo = (y0.floor() - 1).clamp(min=0)
            row_hi = (y1.ceil() + 1).clamp(max=img_h)
            inside_cols = (cols >= col_lo) & (cols < col_hi)  # (n, W)
            inside_rows = (rows >= row_lo) & (rows < row_hi)  # (n, H)
            probs = probs * (inside_rows[:, :, None] & inside_cols[:, None, :])
        pasted[start : start + chunk] = probs >= threshold if threshold is not None else probs
    return pasted


def _standardize_input_image(image: Any, index: int) -> Any:
    """Bring one raw input to a form the transformers backends convert correctly to RGB.

    * PIL 16/32-bit integer grayscale (`I;16*`, `I`) would be clipped at 255 by `Image.convert("RGB")`:
      it becomes a float32 array scaled to 0..255 (`value / 257`). `F` (float) images become float32 arrays.
      Other modes (palette, `LA`, `RGBA`, `CMYK`, `1`, ...) are left to the backend's RGB conversion, which
      composites transparency on white.
    * arrays/tensors: `uint16` is scaled to 0..255 floats, other integer types must be within 0..255 (or
      0..65535, then scaled like 16-bit), `bool` becomes 0/255, floats become float32 (0..255 assumed, as
      everywhere in transformers when `do_rescale=True`).
    """
    if is_pil_image(image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"Image {index} is empty (size {image.size}).")
        if image.mode.startswith("I;16") or image.mode == "I":
            array = np.asarray(image).astype(np.float32)
            if array.min() < 0 or array.max() > 65535:
                raise ValueError(
                    f"Image {index}: 32-bit integer PIL image (mode {image.mode!r}) has values outside 0..65535."
                )
            return array / 257.0
        if image.mode == "F":
            return np.asarray(image, dtype=np.float32)
        return image

    if not is_valid_image(image):
        raise TypeError(
            f"Image {index} has unsupported type {type(image).__name__}; pass PIL images, numpy arrays or torch "
            "tensors (or paths/URLs)."
        )
    if image.ndim not in (2, 3):
        raise ValueError(
            f"Image {index} must have 2 (H, W) or 3 ((H, W, C) or (C, H, W)) dimensions, got shape {tuple(image.shape)}."
        )
    if min(image.shape) == 0:
        raise ValueError(f"Image {index} is empty (shape {tuple(image.shape)}).")

    is_tensor = isinstance(image, torch.Tensor)
    if image.dtype in (torch.uint8, np.uint8):
        return image
    if image.dtype in (torch.bool, np.bool_):
        return image.to(torch.uint8) * 255 if is_tensor else image.astype(np.uint8) * 255
    is_floating = image.is_floating_point() if is_tensor else np.issubdtype(image.dtype, np.floating)
    if is_floating:
        return image.to(torch.float32) if is_tensor else image.astype(np.float32)
    # other integer types
    as_float = image.to(torch.float32) if is_tensor else image.astype(np.float32)
    low, high = float(as_float.min()), float(as_float.max())
    if image.dtype in (torch.uint16, np.uint16) or (low >= 0 and 255 < high <= 65535):
        return as_float / 257.0
    if low >= 0 and high <= 255:
        return as_float
    raise ValueError(
        f"Image {index} of dtype {image.dtype} has values in [{low}, {high}]; expected 0..255 (8-bit) or 0..65535 "
        "(16-bit)."
    )


def _flatten_image_inputs(images: Any) -> list[Any]:
    """Flatten a single image or path, a list (one level of nesting allowed) or a 4-D batch to a list."""
    if images is None:
        raise ValueError("No images were passed to the AiT image processor (`images` is None).")
    if isinstance(images, str):  # a path or URL, fetched by the backend
        return [images]
    if is_valid_image(images):
        if is_pil_image(images) or images.ndim in (2, 3):
            return [images]
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError("The AiT image processor received an empty batch of images.")
            return list(images)
        raise ValueError(
            f"Expected an image with 2 or 3 dimensions or a batch with 4, got shape {tuple(images.shape)}."
        )
    if isinstance(images, (list, tuple)):
        flat = []
        for item in images:
            if isinstance(item, (list, tuple)):
                flat.extend(item)
            elif is_valid_image(item) and not is_pil_image(item) and item.ndim == 4:
                flat.extend(list(item))
            else:
                flat.append(item)
        if not flat:
            raise ValueError(
                "The AiT image processor received an empty list of images; pass at least one image."
            )
        return flat
    raise TypeError(
        f"Unsupported `images` of type {type(images).__name__}; pass a PIL image, numpy array, torch tensor, "
        "path/URL, or a list of them."
    )


def _output_field(outputs: Any, name: str, required: bool = True) -> Any:
    """Read `name` from a ModelOutput, a mapping or any object with attributes."""
    value = outputs.get(name) if isinstance(outputs, Mapping) else getattr(outputs, name, None)
    if value is None and required:
        raise ValueError(f"The model outputs have no `{name}`; got {type(outputs).__name__}.")
    return value


def _normalize_target_sizes(target_sizes: Any, batch_size: int) -> list[tuple[int, int] | None]:
    """Turn `target_sizes` (None, (B, 2) tensor/array or list of (h, w)) into a list of int pairs."""
    if target_sizes is None:
        return [None] * batch_size
    if isinstance(target_sizes, (torch.Tensor, np.ndarray)):
        target_sizes = target_sizes.tolist()
    if len(target_sizes) != batch_size:
        raise ValueError(
            f"Got {len(target_sizes)} target sizes for a batch of {batch_size} predictions; pass one "
            "(height, width) per image."
        )
    sizes = []
    for size in target_sizes:
        if isinstance(size, torch.Tensor):
            size = size.tolist()
        if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
            raise ValueError(f"Each target size must be a positive (height, width), got {size}.")
        sizes.append((int(size[0]), int(size[1])))
    return sizes


def _as_size_dict(value: Any, name: str) -> SizeDict | None:
    if value is None or isinstance(value, SizeDict):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"`{name}` must be a dict, got {value!r}.")
    return SizeDict(**value)


# transformers pipeline task -> AiT task (pipelines name themselves to the components they load)
PIPELINE_TASKS = {
    "depth-estimation": "depth",
    "image-segmentation": "instance_segmentation",
    "object-detection": "object_detection",
}


class AiTImageProcessorMixin:
    """Configuration defaults, input handling and post-processing shared by both AiT image processors."""

    valid_kwargs = AiTImageProcessorKwargs
    model_input_names = ["pixel_values"]

    task = "depth"
    do_convert_rgb = True
    do_resize = True
    size = {"height": 480, "width": 640}
    instance_size = {"shortest_edge": 640, "longest_edge": 640}
    resample = PILImageResampling.BILINEAR
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    depth_do_normalize = False
    do_pad = True
    pad_size = {"height": 640, "width": 640}
    default_to_square = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        """As `ImageProcessingMixin.from_pretrained`; when a pipeline loads the processor (it passes
        `_from_pipeline`), the pipeline's task replaces the saved default `task`, so one multi-task checkpoint
        serves the depth, segmentation and detection pipelines. An explicit `task=` still wins."""
        pipeline_task = PIPELINE_TASKS.get(kwargs.get("_from_pipeline"))
        if pipeline_task is not None and kwargs.get("task") is None:
            kwargs["task"] = pipeline_task
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # ----------------------------------------------------------------------------------- preprocessing
    def _preprocess_image_like_inputs(self, images: Any, *args: Any, **kwargs: Any) -> BatchFeature:
        """Preprocess, then add the (canonical) `task` to the outputs: `model(**processor(images))` runs the
        head this preprocessing was made for, also inside pipelines, which call the model without a task."""
        outputs = super()._preprocess_image_like_inputs(images, *args, **kwargs)
        outputs["task"] = kwargs["task"]
        return outputs

    def _standardize_kwargs(self, task: str | None = None, instance_size: Any = None, **kwargs) -> dict:
        kwargs = super()._standardize_kwargs(**kwargs)
        kwargs["task"] = resolve_task(task) if task is not None else None
        instance_size = _as_size_dict(instance_size, "instance_size")
        if instance_size is not None and not instance_size.longest_edge:
            raise ValueError(
                f"`instance_size` needs a 'longest_edge' (and optionally 'shortest_edge'), got {dict(instance_size)}."
            )
        kwargs["instance_size"] = instance_size
        return kwargs

    def _prepare_images_structure(self, images: Any, expected_ndims: int = 3) -> list[Any]:
        """Flatten the inputs and make 16-bit/float/bool inputs safe for RGB conversion (see helpers)."""
        images = [
            self.fetch_images(image) if isinstance(image, str) else image
            for image in _flatten_image_inputs(images)
        ]
        return [_standardize_input_image(image, i) for i, image in enumerate(images)]

    def _instance_resize_size(self, height: int, width: int, instance_size: SizeDict) -> tuple[int, int]:
        return get_keep_ratio_resize_size(
            height, width, instance_size.longest_edge, instance_size.shortest_edge
        )

    def _check_fits_canvas(self, new_size: tuple[int, int], pad_size: SizeDict | None, do_pad: bool) -> None:
        if (
            do_pad
            and pad_size is not None
            and (new_size[0] > pad_size.height or new_size[1] > pad_size.width)
        ):
            raise ValueError(
                f"The resized image {new_size} does not fit the padding canvas ({pad_size.height}, {pad_size.width}); "
                "make `instance_size` no larger than `pad_size`."
            )

    # --------------------------------------------------------------------------------- post-processing
    def _input_scale(self, size: tuple[int, int]) -> tuple[float, float]:
        """`(width_scale, height_scale)` the instance preprocessing applied to an image of original `size`."""
        if not self.do_resize:
            return 1.0, 1.0
        instance_size = _as_size_dict(self.instance_size, "instance_size")
        return get_keep_ratio_scale_factor(
            size[0], size[1], instance_size.longest_edge, instance_size.shortest_edge
        )

    def _canvas_size(self) -> tuple[int, int]:
        pad_size = _as_size_dict(self.pad_size, "pad_size")
        if pad_size is None or not pad_size.height or not pad_size.width:
            raise ValueError(
                "Without `target_sizes` the masks are pasted into the `pad_size` canvas, which is unset."
            )
        return pad_size.height, pad_size.width

    def _boxes_to_original(
        self, boxes: torch.Tensor, size: tuple[int, int] | None, clip_boxes: bool
    ) -> torch.Tensor:
        """Model-input (canvas) boxes -> boxes in the original image (mmdet `rescale=True`)."""
        boxes = boxes.to(torch.float32)
        if size is None:
            return boxes
        width_scale, height_scale = self._input_scale(size)
        scale = torch.tensor([width_scale, height_scale, width_scale, height_scale], device=boxes.device)
        boxes = boxes / scale
        if clip_boxes:
            limits = torch.tensor(
                [size[1], size[0], size[1], size[0]], dtype=boxes.dtype, device=boxes.device
            )
            boxes = torch.minimum(boxes.clamp(min=0), limits)
        return boxes

    def post_process_depth_estimation(
        self,
        outputs: Any,
        target_sizes: TensorType | list[tuple[int, int]] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Resize `outputs.predicted_depth` (metres, model-input frame) to each original image size.

        Args:
            outputs: model output with `predicted_depth` of shape `(batch, height, width)`.
            target_sizes: `(height, width)` of each original image (list of pairs or a `(batch, 2)` tensor);
                `None` keeps the model-input frame.

        Returns:
            One `{"predicted_depth": (height, width) tensor}` per image, as `pipeline("depth-estimation")`
            expects. Resizing is bilinear (bicubic would overshoot at depth discontinuities and can produce
            negative depth); sizes that already match are returned unchanged.
        """
        predicted_depth = _output_field(outputs, "predicted_depth")
        if predicted_depth.ndim == 4 and predicted_depth.shape[1] == 1:
            predicted_depth = predicted_depth[:, 0]
        if predicted_depth.ndim != 3:
            raise ValueError(
                f"`predicted_depth` must have shape (batch, height, width), got {tuple(predicted_depth.shape)}."
            )
        sizes = _normalize_target_sizes(target_sizes, predicted_depth.shape[0])
        results = []
        for depth, size in zip(predicted_depth, sizes):
            if size is not None and tuple(depth.shape) != size:
                depth = F.interpolate(depth[None, None], size=size, mode="bilinear", align_corners=False)[
                    0, 0
                ]
            results.append({"predicted_depth": depth})
        return results

    def post_process_object_detection(
        self,
        outputs: Any,
        threshold: float = 0.5,
        target_sizes: TensorType | list[tuple[int, int]] | None = None,
        clip_boxes: bool = False,
    ) -> list[dict[str, torch.Tensor]]:
        """Boxes of the original images, in DETR's format.

        Args:
            outputs: model output with `pred_boxes` `(batch, queries, 4)` x1y1x2y2 in model-input pixels,
                `pred_scores` `(batch, queries)` and `pred_labels` `(batch, queries)`.
            threshold: keep predictions with `score > threshold` (DETR's rule).
            target_sizes: original `(height, width)` per image; the boxes are divided by the keep-ratio resize
                factor recomputed from it (mmdet `rescale=True`). `None` keeps model-input pixels.
            clip_boxes: clip boxes to the image. The original does not clip (its COCO numbers use unclipped
                boxes), hence the default.

        Returns:
            One `{"scores", "labels", "boxes"}` dict per image, boxes x1y1x2y2 in original pixels.
        """
        boxes = _output_field(outputs, "pred_boxes")
        scores = _output_field(outputs, "pred_scores")
        labels = _output_field(outputs, "pred_labels")
        sizes = _normalize_target_sizes(target_sizes, boxes.shape[0])
        results = []
        for image_boxes, image_scores, image_labels, size in zip(boxes, scores, labels, sizes):
            keep = image_scores > threshold
            image_boxes = self._boxes_to_original(image_boxes, size, clip_boxes)
            results.append(
                {"scores": image_scores[keep], "labels": image_labels[keep], "boxes": image_boxes[keep]}
            )
        return results

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        target_sizes: TensorType | list[tuple[int, int]] | None = None,
        return_binary_maps: bool = False,
        clip_boxes: bool = False,
    ) -> list[dict[str, Any]]:
        """Instance masks of the original images, in Mask2Former's format.

        The box-local masks are pasted into each original image with the boxes scaled back by the resize
        factor (`paste_masks_in_image`, the original's whole-image paste) and binarised with
        `prob >= mask_threshold` (the original uses 0.5).

        Args:
            outputs: model output with `pred_boxes`, `pred_scores`, `pred_labels` and `pred_masks`
                `(batch, queries, h, w)` box-local mask probabilities.
            threshold: keep instances with `score >= threshold` (Mask2Former's rule).
            mask_threshold: binarisation threshold of the pasted mask probabilities.
            overlap_mask_area_threshold: for the single-channel `segmentation` map, instances are drawn from the
                highest score down and a pixel belongs to the first instance that claims it; an instance whose
                still-visible area is not more than this fraction of its own mask area is left out of the map
                (MaskFormer's overlap rule). Not used when `return_binary_maps=True`.
            target_sizes: original `(height, width)` per image; `None` pastes into the `pad_size` canvas in
                model-input pixels.
            return_binary_maps: return `(num_instances, height, width)` bool masks (overlaps kept; what COCO
                evaluation needs) instead of the single-channel map; with no instance it is an empty
                `(0, height, width)` tensor.
            clip_boxes: clip the reported `bbox` to the image (masks are always pasted with unclipped boxes).

        Returns:
            One dict per image: `segmentation` (`(height, width)` int64 map of segment ids, -1 = no instance;
            or the binary maps) and `segments_info`, a list of `{"id", "label_id", "was_fused", "score",
            "bbox"}` (bbox x1y1x2y2 in original pixels), ordered by decreasing score.
        """
        boxes = _output_field(outputs, "pred_boxes")
        scores = _output_field(outputs, "pred_scores")
        labels = _output_field(outputs, "pred_labels")
        masks = _output_field(outputs, "pred_masks", required=False)
        if masks is None:
            raise ValueError(
                "The model outputs have no `pred_masks` (a detection-only run); use `post_process_object_detection` "
                "or run the model with task='instance_segmentation'."
            )
        sizes = _normalize_target_sizes(target_sizes, boxes.shape[0])
        results = []
        for image_boxes, image_scores, image_labels, image_masks, size in zip(
            boxes, scores, labels, masks, sizes
        ):
            image_size = size if size is not None else self._canvas_size()
            original_boxes = self._boxes_to_original(image_boxes, size, clip_boxes=False)
            kept = torch.nonzero(image_scores >= threshold).flatten()
            kept = kept[torch.argsort(image_scores[kept], descending=True, stable=True)]
            binary = paste_masks_in_image(
                image_masks[kept], original_boxes[kept], image_size, threshold=mask_threshold
            )
            reported_boxes = (
                self._boxes_to_original(image_boxes[kept], size, clip_boxes=True)
                if clip_boxes
                else original_boxes[kept]
            )
            mask_areas = binary.flatten(1).sum(1)

            segments, instance_maps = [], []
            segmentation = torch.full(image_size, -1, dtype=torch.int64, device=binary.device)
            for position, query in enumerate(kept.tolist()):
                if mask_areas[position] == 0:
                    continue
                mask = binary[position]
                if not return_binary_maps:
                    visible = mask & (segmentation == -1)
                    if not (visible.sum() / mask_areas[position]).item() > overlap_mask_area_threshold:
                        continue
                    segmentation[visible] = len(segments)
                instance_maps.append(mask)
                segments.append(
                    {
                        "id": len(segments),
                        "label_id": int(image_labels[query]),
                        "was_fused": False,
                        "score": float(image_scores[query]),
                        "bbox": [float(v) for v in reported_boxes[position]],
                    }
                )
            if return_binary_maps:
                segmentation = (
                    torch.stack(instance_maps)
                    if instance_maps
                    else torch.zeros((0, *image_size), dtype=torch.bool, device=binary.device)
                )
            results.append({"segmentation": segmentation, "segments_info": segments})
        return results


class AiTImageProcessor(AiTImageProcessorMixin, TorchvisionBackend):
    r"""
    AiT image processor (torchvision backend). One processor serves the three AiT tasks; `task` (config
    default, overridable per call: `processor(images, task="object_detection")`) picks the preprocessing:

    * `"depth"`: resize to `size` (default 480x640, the NYUv2 frame; other aspect ratios are stretched to it
      and `post_process_depth_estimation` resizes the depth back, so it covers the whole image), bilinear with
      antialiasing, rescale by 1/255, no mean/std (as the original NYUv2 loader).
    * `"instance_segmentation"` / `"object_detection"`: mmdet test pipeline: keep-ratio resize to
      `instance_size` with mmcv rounding (bilinear, no antialiasing, rounded back to 8 bits for 8-bit inputs
      as cv2 does; cv2's fixed-point arithmetic can differ from this exact bilinear by one 8-bit level in a
      few pixels, and COCO images whose long side is already 640 are not resized at all), ImageNet
      mean/std, zero padding to `pad_size` (640x640) at the bottom/right.

    Pipelines call the processor without `task`, so a checkpoint's `preprocessor_config.json` sets the task
    its pipeline should use.
    """

    def __init__(self, **kwargs: Unpack[AiTImageProcessorKwargs]):
        super().__init__(**kwargs)

    def _preprocess(
        self,
        images: list[torch.Tensor],
        task: str,
        do_resize: bool,
        size: SizeDict,
        instance_size: SizeDict,
        resample: Any,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        depth_do_normalize: bool,
        image_mean: float | Sequence[float] | None,
        image_std: float | Sequence[float] | None,
        do_pad: bool,
        pad_size: SizeDict | None,
        disable_grouping: bool | None,
        return_tensors: str | TensorType | None,
        **kwargs,
    ) -> BatchFeature:
        if tvF is None:
            raise ImportError("AiTImageProcessor needs torchvision; use AiTImageProcessorPil without it.")
        is_depth = task == "depth"
        grouped_images, grouped_index = group_images_by_shape(images, disable_grouping=disable_grouping)
        processed_groups = {}
        for shape, stacked in grouped_images.items():
            is_uint8 = stacked.dtype == torch.uint8
            stacked = stacked.to(torch.float32)
            if do_resize and is_depth:
                stacked = self.resize(stacked, size, resample=resample, antialias=True)
            elif do_resize:
                new_size = self._instance_resize_size(stacked.shape[-2], stacked.shape[-1], instance_size)
                self._check_fits_canvas(new_size, pad_size, do_pad)
                stacked = self.resize(
                    stacked,
                    SizeDict(height=new_size[0], width=new_size[1]),
                    resample=resample,
                    antialias=False,
                )
                if is_uint8:  # mmcv resizes 8-bit images into 8-bit images
                    stacked = stacked.round().clamp(0, 255)
            stacked = self.rescale_and_normalize(
                stacked,
                do_rescale,
                rescale_factor,
                depth_do_normalize if is_depth else do_normalize,
                image_mean,
                image_std,
            )
            processed_groups[shape] = stacked
        processed = reorder_images(processed_groups, grouped_index)
        if do_pad and not is_depth:
            processed = self.pad(processed, pad_size=pad_size, disable_grouping=disable_grouping)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


__all__ = [
    "AIT_TASKS",
    "AiTImageProcessor",
    "get_keep_ratio_resize_size",
    "paste_masks_in_image",
    "resolve_task",
]
