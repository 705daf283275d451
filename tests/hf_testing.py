"""Tiny AiT checkpoints and helpers for the Hugging Face integration tests (pipelines, remote code, Hub, CLI)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from test_modeling import tiny_config
from transformers import pipeline

from ait_hf import (
    AiTForDepthAndInstanceSegmentation,
    AiTImageProcessor,
    model_task_for,
    save_for_remote_code,
)

# Prepended to child-process scripts: makes `ait_hf` unimportable (it is pip-installed in editable mode here),
# so that only the code shipped in a checkpoint folder can be used.
BLOCK_AIT_HF = """
import importlib.abc
import sys


class BlockAitHf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ait_hf" or name.startswith("ait_hf."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, BlockAitHf())
try:
    import ait_hf  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("ait_hf is importable: the test would prove nothing")
"""

# tiny_config's encoder grid (4 x 4 cells of 32 pixels) takes instance inputs up to 128 pixels
TINY_IMAGE_SIZE = 128
TINY_KINDS = {
    "joint": ("depth", "instance_segmentation"),
    "depth": ("depth",),
    "insseg": ("instance_segmentation",),
    "det": ("object_detection",),
}


def tiny_solver(tasks: tuple[str, ...] = ("depth", "instance_segmentation"), seed: int = 0):
    """A randomly initialised tiny solver whose box corners differ, whose depth is positive and whose
    instance masks are mostly on, so that every pipeline has something to return."""
    torch.manual_seed(seed)
    model = AiTForDepthAndInstanceSegmentation(tiny_config(tasks=list(tasks), image_size=TINY_IMAGE_SIZE))
    with torch.no_grad():
        # large token and position embeddings: greedy tokens vary along the sequence, so box corners differ
        model.decoder.token_embeddings.normal_(0, 1.0)
        model.decoder.position_embeddings.normal_(0, 3.0)
        if model.depth_tokenizer is not None:  # shift the random depth decoder to positive metres
            model.depth_tokenizer.decoder[-1].bias.add_(3.0)
        if model.mask_tokenizer is not None:  # and the mask decoder to mostly-on masks (visible instances)
            model.mask_tokenizer.decoder[-1].bias.add_(1.0)
    return model.eval()


def one_cpu_thread():
    """Generator for a module fixture: run on one torch thread, then restore. Tiny models spend their time in
    thread hand-offs; on a busy 2-core machine one thread makes these tests about three times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny_solver(directory: Path, tasks: tuple[str, ...] = ("depth", "instance_segmentation")) -> Path:
    """Save a tiny solver with its image processor and remote code, as a converted checkpoint would be."""
    save_for_remote_code(directory, tiny_solver(tasks))
    return directory


def save_tiny_solvers(root: Path) -> dict[str, Path]:
    """One saved tiny solver per kind: joint (depth + instances), depth, instance segmentation, detection."""
    return {kind: save_tiny_solver(root / kind, tasks) for kind, tasks in TINY_KINDS.items()}


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def batch_images() -> list[Image.Image]:
    """Five RGB images of different sizes and aspect ratios (a batch of 4 plus a remainder)."""
    sizes = [(60, 80), (30, 90), (100, 40), (33, 33), (70, 50)]
    return [random_image(height, width, seed) for seed, (height, width) in enumerate(sizes)]


def odd_images() -> dict[str, Image.Image]:
    """40x50 images in the non-RGB modes users pass: grayscale, RGBA, 16-bit grayscale, palette."""
    return {
        "gray": Image.new("L", (50, 40), 120),
        "rgba": Image.fromarray(
            np.random.default_rng(0).integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA"
        ),
        "16-bit": Image.fromarray(np.full((40, 50), 40000, dtype=np.uint16)),
        "palette": random_image(40, 50).convert("P"),
    }


def task_routing_available() -> bool:
    """Whether the image processor hands its task to the model and the model takes a batch's task list
    (the processor/model change requested in the issue-4 report); joint-model pipelines need it."""
    outputs = AiTImageProcessor(task="depth", size={"height": 8, "width": 8})(np.zeros((4, 4, 3), np.uint8))
    return "task" in outputs and hasattr(AiTForDepthAndInstanceSegmentation, "_resolve_task")


@functools.cache
def load_solver(model_dir: Path):
    """(model, image processor) of a saved folder, loaded once per test session."""
    model = AiTForDepthAndInstanceSegmentation.from_pretrained(model_dir).eval()
    return model, AiTImageProcessor.from_pretrained(model_dir)


@functools.cache
def cached_pipeline(task: str, model_dir: Path, **kwargs):
    """One pipeline per (task, folder, options) for the session: loading dominates the run time."""
    return pipeline(task, model=str(model_dir), **kwargs)


def direct_prediction(model_dir: Path, task: str, image: Image.Image, threshold: float = 0.5) -> dict:
    """What a pipeline should return, computed without it: processor -> model(task) -> post-processing
    (instance maps with the pipeline's default overlap threshold, 0.5)."""
    model, processor = load_solver(model_dir)
    pixel_values = processor(image, task=task, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        outputs = model(pixel_values, task=model_task_for(model.config, task))
    size = [(image.height, image.width)]
    if task == "depth":
        return processor.post_process_depth_estimation(outputs, target_sizes=size)[0]
    if task == "object_detection":
        return processor.post_process_object_detection(outputs, threshold, target_sizes=size)[0]
    return processor.post_process_instance_segmentation(
        outputs, threshold=threshold, overlap_mask_area_threshold=0.5, target_sizes=size
    )[0]
