"""Generate the small synthetic sample images shipped in `ait_hf/samples/` (used by `ait-hf predict` examples
and tests). Deterministic: `python tests/make_sample_images.py` rewrites the same pixels.

* `indoor.png` (160x120 RGB): a room-like scene, floor and walls in perspective with a box and a lamp;
* `objects.png` (160x120 RGB): coloured discs and rectangles on a textured table;
* `gray16.png` (80x60, 16-bit grayscale): a smooth depth-like ramp, a non-RGB input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "ait_hf" / "samples"


def _indoor(height: int = 120, width: int = 160) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    horizon = 0.45 * height
    wall = rows < horizon
    # back wall: warm beige, darker towards the corners; floor: wood-like bands converging to the horizon
    shade = 1 - 0.35 * np.abs(cols / width - 0.5)
    image[wall] = (np.array([214, 196, 168], np.float32) * shade[wall, None]).reshape(-1, 3)
    depth = (rows[~wall] - horizon + 1) / (height - horizon)
    bands = 0.85 + 0.15 * np.sin((cols[~wall] - width / 2) / depth * 0.35)
    image[~wall] = np.array([150, 102, 60], np.float32) * (0.55 + 0.45 * depth)[:, None] * bands[:, None]
    # a box standing on the floor and a lamp on the wall
    image[70:100, 95:135] = [60, 90, 150]
    image[70:76, 95:135] = [90, 120, 180]
    lamp = (rows - 25) ** 2 + (cols - 40) ** 2 < 64
    image[lamp] = [255, 240, 190]
    return np.clip(image, 0, 255).round().astype(np.uint8)


def _objects(height: int = 120, width: int = 160) -> np.ndarray:
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    image = np.array([200, 190, 175], np.float32) + texture
    for (cy, cx, radius), colour in zip(
        [(40, 40, 18), (80, 110, 22), (30, 125, 12)], [[220, 40, 40], [40, 160, 60], [240, 200, 30]]
    ):
        image[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = colour
    image[75:110, 20:70] = [50, 70, 200]
    return np.clip(image, 0, 255).round().astype(np.uint8)


def _gray16(height: int = 60, width: int = 80) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    ramp = 0.5 + 0.3 * np.sin(cols / width * np.pi) + 0.2 * rows / height
    return np.clip(ramp * 65535, 0, 65535).round().astype(np.uint16)


def sample_images() -> dict[str, Image.Image]:
    """File name -> image of every shipped sample."""
    return {
        "indoor.png": Image.fromarray(_indoor()),
        "objects.png": Image.fromarray(_objects()),
        "gray16.png": Image.fromarray(_gray16()),
    }


def main() -> None:
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for name, image in sample_images().items():
        image.save(SAMPLES_DIR / name, optimize=True)
        print(SAMPLES_DIR / name, image.mode, image.size)


if __name__ == "__main__":
    main()
