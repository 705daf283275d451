"""Tiny AiT checkpoints for the Hugging Face integration tests (pipelines, remote code, Hub, CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from test_modeling import tiny_config

from ait_hf import AiTForDepthAndInstanceSegmentation, save_for_remote_code

# tiny_config's encoder grid (4 x 4 cells of 32 pixels) takes instance inputs up to 128 pixels
TINY_IMAGE_SIZE = 128


def tiny_solver(tasks: tuple[str, ...] = ("depth", "instance_segmentation"), seed: int = 0):
    """A randomly initialised tiny solver whose outputs vary with the image and whose depth is positive."""
    torch.manual_seed(seed)
    model = AiTForDepthAndInstanceSegmentation(tiny_config(tasks=list(tasks), image_size=TINY_IMAGE_SIZE))
    with torch.no_grad():  # larger embeddings so that greedy tokens vary with the image (as tiny_model does)
        model.decoder.token_embeddings.normal_(0, 1.0)
        model.decoder.position_embeddings.normal_(0, 1.0)
        if model.depth_tokenizer is not None:  # shift the random depth decoder to positive metres
            model.depth_tokenizer.decoder[-1].bias.add_(3.0)
    return model.eval()


def save_tiny_solver(directory: Path, tasks: tuple[str, ...] = ("depth", "instance_segmentation")) -> Path:
    """Save a tiny solver with its image processor and remote code, as a converted checkpoint would be."""
    save_for_remote_code(directory, tiny_solver(tasks))
    return directory


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
