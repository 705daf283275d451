"""Colour augmentation of the original NYUv2 pipeline: albumentations' RandomBrightnessContrast, RandomGamma and
HueSaturationValue with their default limits, each applied with probability 0.5.

albumentations (and OpenCV, which it needs) is not a dependency of this package, so the three operations are
written here with the same parameter ranges and formulas, as lookup tables on uint8 RGB:

* brightness/contrast: ``clip(x * alpha + beta * 255)``, alpha in 1 +- 0.2, beta in +- 0.2;
* gamma: ``(x / 255) ** g * 255``, g in [0.8, 1.2];
* hue/saturation/value: shift H by +-20 OpenCV units (+-40 degrees), S by +-30 and V by +-20 (of 255), in HSV.

Values are truncated to uint8 like the original's lookup tables. The HSV round trip uses Pillow's converter
instead of OpenCV's, so single pixel values may differ by a unit; the distribution of the augmentation is
the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch


def uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    """A float drawn uniformly from [low, high) with torch's (per-DataLoader-worker seeded) RNG."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def randint(generator: torch.Generator | None, low: int, high: int) -> int:
    """An integer drawn uniformly from [low, high)."""
    return int(torch.randint(low, high, (), generator=generator))


def coin(generator: torch.Generator | None, probability: float) -> bool:
    """True with the given probability."""
    return float(torch.rand((), generator=generator)) < probability


def _apply_lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.clip(table, 0, 255).astype(np.uint8)[image]


def adjust_brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``x * alpha + beta * 255``, clipped and truncated to uint8 (brightness scaled by the maximum value)."""
    table = np.arange(256, dtype=np.float32) * np.float32(alpha) + np.float32(beta * 255.0)
    return _apply_lut(image, table)


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``(x / 255) ** gamma * 255`` truncated to uint8."""
    table = (np.arange(256, dtype=np.float64) / 255.0) ** gamma * 255.0
    return _apply_lut(image, table)


def shift_hue_saturation_value(image: np.ndarray, hue: float, saturation: float, value: float) -> np.ndarray:
    """Shift hue (OpenCV units: 180 per turn), saturation and value (0..255) of a uint8 RGB image."""
    if hue == 0 and saturation == 0 and value == 0:
        return image
    hsv = np.array(PIL.Image.fromarray(image).convert("HSV"))
    # Pillow's hue has 256 units per turn, OpenCV's 180.
    hue_table = np.mod(np.arange(256, dtype=np.float64) + hue * 256.0 / 180.0, 256.0)
    hsv[..., 0] = hue_table.astype(np.uint8)[hsv[..., 0]]
    hsv[..., 1] = _apply_lut(hsv[..., 1], np.arange(256, dtype=np.float64) + saturation)
    hsv[..., 2] = _apply_lut(hsv[..., 2], np.arange(256, dtype=np.float64) + value)
    return np.array(PIL.Image.fromarray(hsv, mode="HSV").convert("RGB"))


@dataclass
class PhotometricDistortion:
    """The original's colour augmentation (albumentations defaults), applied in its order."""

    brightness_limit: float = 0.2
    contrast_limit: float = 0.2
    brightness_contrast_p: float = 0.5
    gamma_limit: tuple[float, float] = (80.0, 120.0)
    gamma_p: float = 0.5
    hue_shift_limit: float = 20.0
    saturation_shift_limit: float = 30.0
    value_shift_limit: float = 20.0
    hue_saturation_value_p: float = 0.5

    def __call__(self, image: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
        """Augment a uint8 (H, W, 3) RGB image."""
        if coin(generator, self.brightness_contrast_p):
            alpha = 1.0 + uniform(generator, -self.contrast_limit, self.contrast_limit)
            beta = uniform(generator, -self.brightness_limit, self.brightness_limit)
            image = adjust_brightness_contrast(image, alpha, beta)
        if coin(generator, self.gamma_p):
            image = adjust_gamma(image, uniform(generator, *self.gamma_limit) / 100.0)
        if coin(generator, self.hue_saturation_value_p):
            hue = uniform(generator, -self.hue_shift_limit, self.hue_shift_limit)
            saturation = uniform(generator, -self.saturation_shift_limit, self.saturation_shift_limit)
            value = uniform(generator, -self.value_shift_limit, self.value_shift_limit)
            image = shift_hue_saturation_value(image, hue, saturation, value)
        return image
