"""Image processor for AiT, PIL/NumPy backend (works without torchvision).

Same configuration, outputs and post-processing as `AiTImageProcessor` (they are shared through
`AiTImageProcessorMixin`); only the image operations differ:

* depth: PIL's bilinear resize (antialiased, like the torchvision twin's `antialias=True`) on float32
  channels, so 8-bit rounding does not enter;
* detection / instance segmentation: the keep-ratio resize uses `torch.nn.functional.interpolate`
  (bilinear, no antialiasing) instead of PIL, because PIL always antialiases when shrinking while the
  original (mmcv / cv2 `INTER_LINEAR`) does not; both backends therefore give the same pixels.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import ChannelDimension, PILImageResampling, SizeDict
from transformers.processing_utils import Unpack
from transformers.utils import TensorType

from .image_processing_ait import AiTImageProcessorKwargs, AiTImageProcessorMixin

_TORCH_INTERPOLATION = {
    PILImageResampling.NEAREST: "nearest",
    PILImageResampling.BILINEAR: "bilinear",
    PILImageResampling.BICUBIC: "bicubic",
}


def _resize_channels_pil(image: np.ndarray, height: int, width: int, resample: Any) -> np.ndarray:
    """Resize a (C, H, W) array channel by channel as float32 PIL images (mode "F")."""
    resample = PILImageResampling(resample) if resample is not None else PILImageResampling.BILINEAR
    channels = [
        np.asarray(
            Image.fromarray(channel.astype(np.float32), mode="F").resize((width, height), resample=resample)
        )
        for channel in image
    ]
    return np.stack(channels, axis=0)


def _resize_like_cv2(image: np.ndarray, height: int, width: int, resample: Any) -> np.ndarray:
    """Resize a (C, H, W) float array without antialiasing (half-pixel centres), as cv2/mmcv do."""
    resample = PILImageResampling(resample) if resample is not None else PILImageResampling.BILINEAR
    if resample not in _TORCH_INTERPOLATION:
        raise ValueError(
            f"Resampling {resample!r} is not supported for the instance tasks; use one of "
            f"{[r.name for r in _TORCH_INTERPOLATION]}."
        )
    mode = _TORCH_INTERPOLATION[resample]
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    align = None if mode == "nearest" else False
    resized = F.interpolate(tensor, size=(height, width), mode=mode, align_corners=align, antialias=False)
    return resized[0].numpy()


class AiTImageProcessorPil(AiTImageProcessorMixin, PilBackend):
    r"""
    AiT image processor (PIL backend): same behaviour and configuration as [`AiTImageProcessor`], without
    torchvision. See that class for the two preprocessing paths (`task="depth"` and the instance tasks).
    """

    def __init__(self, **kwargs: Unpack[AiTImageProcessorKwargs]):
        super().__init__(**kwargs)

    def process_image(
        self,
        image: Any,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs,
    ) -> np.ndarray:
        """Convert one input to a (C, H, W) array; 2-D (grayscale) arrays are handled here because the PIL
        backend's RGB conversion cannot infer a channel axis for them."""
        if not isinstance(image, Image.Image) and image.ndim == 2:
            image = np.asarray(image.numpy() if isinstance(image, torch.Tensor) else image)[None]
            image = np.repeat(image, 3, axis=0) if do_convert_rgb else image
            input_data_format = ChannelDimension.FIRST
        return super().process_image(
            image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format, **kwargs
        )

    def _preprocess(
        self,
        images: list[np.ndarray],
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
        return_tensors: str | TensorType | None,
        **kwargs,
    ) -> BatchFeature:
        is_depth = task == "depth"
        processed = []
        for image in images:
            is_uint8 = image.dtype == np.uint8
            image = image.astype(np.float32)
            if do_resize and is_depth:
                image = _resize_channels_pil(image, size.height, size.width, resample)
            elif do_resize:
                new_size = self._instance_resize_size(image.shape[-2], image.shape[-1], instance_size)
                self._check_fits_canvas(new_size, pad_size, do_pad)
                image = _resize_like_cv2(image, new_size[0], new_size[1], resample)
                if is_uint8:  # mmcv resizes 8-bit images into 8-bit images
                    image = np.clip(np.round(image), 0, 255)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if depth_do_normalize if is_depth else do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image.astype(np.float32))
        if do_pad and not is_depth:
            processed = self.pad(processed, pad_size=pad_size)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


__all__ = ["AiTImageProcessorPil"]
