"""Evaluate an AiT model folder on NYUv2 (depth) or COCO (box / mask AP), batched, with throughput.

Command line (``ait-hf eval`` delegates here)::

    python -m ait_hf.evaluation.runner --model DIR --task depth --data data/nyu_depth_v2 --output out/
    python -m ait_hf.evaluation.runner --model DIR --task instance_segmentation --data data/coco --output out/
    python -m ait_hf.evaluation.runner --tokenizer DIR --task depth --data data/nyu_depth_v2   # upper bound

Protocols (those of the original evaluation):

* depth: NYUv2 test frames (480x640) as ``ToTensor`` pixels (no mean/std), the model's test-time
  augmentation (sliding windows over the width and flips; ``--no-tta`` keeps the windows and drops the
  flips, since the windows are needed to cover the frame), predictions clipped at 1e-3 m, metrics on the NYU
  evaluation crop, averaged over images. Frames of another size than the model's depth frame go through
  the image processor's resize, and the prediction is resized back to the ground truth bilinearly.
* COCO: the image processor's keep-ratio resize (longest side 640) and padding; every predicted object is
  kept (no score threshold); boxes are divided by the resize factor (mmdet ``rescale=True``, float32 factor)
  back to original pixels, unclipped; box-local masks are pasted at the original image size with those
  boxes and binarised at 0.5; labels become category ids; COCOeval with mmdet's ``maxDets`` (100, 300,
  1000) for "bbox" and (instance segmentation) "segm".

Decoding is greedy when the model's ``sampling_top_p`` is 0 (the depth models) and then does not depend on
the batch size. The released instance segmentation configurations sample with ``top_p = 0.3``: their
results depend on ``--seed`` and on the batch size (``--top-p 0`` evaluates them greedily).

The metric accumulation (`ait_hf.evaluation.model_metrics`) is also usable inside `transformers.Trainer`:
`make_prediction_fn` gives a ``(model, inputs) -> (loss, predictions, labels)`` evaluation step (for a Trainer
whose ``prediction_step`` calls it, as ``training.trainer.AiTTrainer`` does) and `make_compute_metrics` the
matching ``compute_metrics`` (with or without ``batch_eval_metrics``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import NYUDepthEvalTransform, load_coco_instances, load_nyu_depth_v2, load_prepared_dataset
from ..data.nyu import depth_to_metres
from ..data.validation import DataValidationError
from .coco import COCO_MAX_DETECTIONS, MMDET_MAX_DETECTIONS, load_coco_ground_truth
from .model_metrics import (
    EVAL_TASKS,
    CocoMetricAccumulator,
    DepthMetricAccumulator,
    EvaluationError,
    _size_value,
    canonical_task,
    make_compute_metrics,
    make_prediction_fn,
)
from .report import format_metrics_markdown, write_metrics_report
from .upper_bounds import (
    DEPTH_UPPER_BOUND_MODES,
    MASK_UPPER_BOUND_PROTOCOLS,
    depth_tokenizer_upper_bound,
    mask_tokenizer_upper_bound,
)

__all__ = [
    "EVAL_TASKS",
    "CocoMetricAccumulator",
    "DepthMetricAccumulator",
    "EvaluationError",
    "EvaluationResult",
    "build_parser",
    "canonical_task",
    "evaluate_coco",
    "evaluate_depth",
    "load_model_and_processor",
    "load_tokenizer",
    "main",
    "make_compute_metrics",
    "make_prediction_fn",
    "run_evaluation",
]

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_DETECTIONS = {"mmdet": MMDET_MAX_DETECTIONS, "coco": COCO_MAX_DETECTIONS}


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


# ================================================================================================ loading
def _read_config(directory: Path, what: str) -> dict[str, Any]:
    if not directory.is_dir():
        raise EvaluationError(f"{what} {directory}: no such directory")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise EvaluationError(
            f"{what} {directory} has no config.json (pass a folder written by save_pretrained)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(config, dict) or config.get("model_type") not in ("ait", "ait_vqvae"):
        found = config.get("model_type") if isinstance(config, dict) else None
        raise EvaluationError(
            f"{config_path} has model_type {found!r}; expected 'ait' (solver) or 'ait_vqvae'"
        )
    return config


def load_model_and_processor(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """An AiT task solver (eval mode, on `device`) and its image processor from a saved folder.

    The folder's ``preprocessor_config.json`` is used when present, else a processor derived from the model
    config (`image_processor_for_config`).
    """
    from ..hub import image_processor_for_config
    from ..image_processing_ait import AiTImageProcessor
    from ..modeling_ait import AiTForDepthAndInstanceSegmentation

    directory = Path(model_dir)
    if _read_config(directory, "--model")["model_type"] != "ait":
        raise EvaluationError(f"--model {directory} holds a VQ-VAE tokenizer; pass it with --tokenizer")
    try:
        model = AiTForDepthAndInstanceSegmentation.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"--model {directory}: cannot load the model: {error}") from error
    model.to(device).eval()
    if (directory / "preprocessor_config.json").is_file():
        processor = AiTImageProcessor.from_pretrained(directory)
    else:
        processor = image_processor_for_config(model.config)
    return model, processor


def load_tokenizer(directory: str | Path, task: str, device: str | torch.device = "cpu") -> Any:
    """The tokenizer of `task` from a VQ-VAE folder, or the one inside a solver folder."""
    from ..modeling_ait import AiTForDepthAndInstanceSegmentation
    from ..modeling_ait_vqvae import AiTVQVAE

    task = canonical_task(task)
    if task == "object_detection":
        raise EvaluationError(
            "object detection has no tokenizer; upper bounds are for depth or instance masks"
        )
    directory = Path(directory)
    model_type = _read_config(directory, "--tokenizer")["model_type"]
    try:
        if model_type == "ait":
            solver = AiTForDepthAndInstanceSegmentation.from_pretrained(directory)
            tokenizer = solver.depth_tokenizer if task == "depth" else solver.mask_tokenizer
            if tokenizer is None:
                raise EvaluationError(f"--tokenizer {directory}: this solver has no {task} tokenizer")
        else:
            tokenizer = AiTVQVAE.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"--tokenizer {directory}: cannot load it: {error}") from error
    expected = "depth" if task == "depth" else "mask"
    if tokenizer.config.tokenizer_type != expected:
        raise EvaluationError(
            f"--tokenizer {directory} is a {tokenizer.config.tokenizer_type!r} tokenizer; task {task!r} needs a "
            f"{expected!r} tokenizer"
        )
    return tokenizer.to(device).eval()


def _tokenizer_of(model: Any, task: str) -> Any:
    tokenizer = model.depth_tokenizer if task == "depth" else model.mask_tokenizer
    if tokenizer is None or task == "object_detection":
        raise EvaluationError(f"this model has no tokenizer for {task!r}")
    return tokenizer


# ============================================================================================ data / loop
class _Rows(torch.utils.data.Dataset):
    """Rows of a `datasets.Dataset` turned into model inputs by `prepare` (runs in DataLoader workers)."""

    def __init__(self, rows: Any, prepare: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.rows, self.prepare = rows, prepare

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.prepare(self.rows[int(index)])


class DepthExamplePreparer:
    """NYUv2 row -> ``pixel_values`` (3, h, w) of the model's depth frame, ``depth_labels`` (H, W) metres.

    Frames already at the processor's depth size are converted exactly as the original (``ToTensor``:
    uint8 / 255); others are resized by the image processor.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.frame = (int(_size_value(processor.size, "height")), int(_size_value(processor.size, "width")))
        normalise = bool(getattr(processor, "depth_do_normalize", False))
        self.exact = NYUDepthEvalTransform(
            processor.image_mean if normalise else None, processor.image_std if normalise else None
        )

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        image = row["image"].convert("RGB")
        depth = torch.from_numpy(np.ascontiguousarray(depth_to_metres(row["depth"]), dtype=np.float32))
        if (image.height, image.width) == self.frame:
            pixel_values = self.exact.example({"image": image, "depth": depth.numpy()})["pixel_values"]
        else:
            pixel_values = self.processor(image, task="depth", return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixel_values, "depth_labels": depth}


class CocoExamplePreparer:
    """COCO row -> ``pixel_values`` from the image processor, ``image_id`` and ``original_size`` (H, W)."""

    def __init__(self, processor: Any, task: str) -> None:
        self.processor, self.task = processor, task

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("image") is None:
            raise DataValidationError(f"COCO image {row.get('image_id')} has no image file")
        image = row["image"].convert("RGB")
        size = (int(row["height"]), int(row["width"]))
        if (image.height, image.width) != size:
            raise DataValidationError(
                f"COCO image {row.get('file_name')} (id {row['image_id']}) is {image.width}x{image.height} but the "
                f"annotations say {size[1]}x{size[0]}"
            )
        pixel_values = self.processor(image, task=self.task, return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixel_values, "image_id": int(row["image_id"]), "original_size": size}


def collate_examples(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``pixel_values``; keep per-image labels and metadata as lists (COCO keys as the collators name them)."""
    batch: dict[str, Any] = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "depth_labels" in examples[0]:
        labels = [e["depth_labels"] for e in examples]
        same = len({tuple(label.shape) for label in labels}) == 1
        batch["depth_labels"] = torch.stack(labels) if same else labels
    if "image_id" in examples[0]:
        batch["image_ids"] = [e["image_id"] for e in examples]
        batch["original_sizes"] = [e["original_size"] for e in examples]
    return batch


@dataclass
class EvaluationResult:
    """Metrics of one evaluation run and its timing (images/s end to end and of the model forward alone)."""

    metrics: dict[str, float]
    num_images: int
    seconds: float
    model_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else math.nan

    @property
    def model_images_per_second(self) -> float:
        return self.num_images / self.model_seconds if self.model_seconds > 0 else math.nan

    def run_info(self) -> dict[str, Any]:
        return {
            **self.settings,
            "num_images": self.num_images,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "model_images_per_second": self.model_images_per_second,
        }


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision not in PRECISIONS:
        raise EvaluationError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _sampling_top_p(model: Any, top_p: float | None):
    """Temporarily override the model's nucleus-sampling mass (None keeps the config's)."""
    if top_p is None:
        yield
        return
    previous = model.config.sampling_top_p
    model.config.sampling_top_p = float(top_p)
    try:
        yield
    finally:
        model.config.sampling_top_p = previous


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, dynamic_ncols=True)


def _run_loop(
    model: Any,
    examples: torch.utils.data.Dataset,
    forward: Callable[[torch.Tensor], Any],
    consume: Callable[[Any, dict[str, Any]], None],
    *,
    batch_size: int,
    num_workers: int,
    precision: str,
    progress: bool,
    desc: str,
) -> tuple[int, float, float]:
    """Batches through `forward` (timed alone) and `consume`; returns (images, total seconds, model seconds)."""
    if batch_size < 1:
        raise EvaluationError(f"batch size must be at least 1, got {batch_size}")
    device = _device_of(model)
    loader = torch.utils.data.DataLoader(
        examples, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_examples
    )
    count, model_seconds = 0, 0.0
    start = time.perf_counter()
    with _progress_bar(len(examples), progress, desc) as bar, torch.inference_mode():
        for batch in loader:
            pixel_values = batch["pixel_values"].to(device, non_blocking=True)
            _synchronize(device)
            forward_start = time.perf_counter()
            with _autocast(device, precision):
                output = forward(pixel_values)
            _synchronize(device)
            model_seconds += time.perf_counter() - forward_start
            consume(output, batch)
            count += pixel_values.shape[0]
            bar.update(pixel_values.shape[0])
    return count, time.perf_counter() - start, model_seconds


def _limited(rows: Any, limit: int | None) -> Any:
    if limit is None or limit >= len(rows):
        return rows
    if limit < 1:
        raise EvaluationError(f"limit must be at least 1, got {limit}")
    return rows.select(range(limit))


def evaluate_depth(
    model: Any,
    dataset: Any,
    *,
    processor: Any = None,
    batch_size: int = 1,
    test_time_augmentation: bool = True,
    num_workers: int = 0,
    limit: int | None = None,
    precision: str = "fp32",
    top_p: float | None = None,
    seed: int | None = 0,
    progress: bool = True,
    metric_kwargs: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """NYUv2 depth metrics of `model` on `dataset` (rows with ``image`` and ``depth``, e.g. `load_nyu_depth_v2`).

    See the module docstring for the protocol. `processor` defaults to one derived from the model config.
    `seed` seeds the sampling generator (used only when ``top_p > 0``).
    """
    from ..hub import image_processor_for_config

    if "depth" not in model.config.tasks:
        raise EvaluationError(f"this model has no depth head (tasks: {model.config.tasks})")
    processor = processor if processor is not None else image_processor_for_config(model.config, "depth")
    rows = _limited(dataset, limit)
    accumulator = DepthMetricAccumulator(**dict(metric_kwargs or {}))
    device = _device_of(model)
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None

    def forward(pixel_values: torch.Tensor) -> Any:
        return model(
            pixel_values, task="depth", test_time_augmentation=test_time_augmentation, generator=generator
        )

    def consume(output: Any, batch: dict[str, Any]) -> None:
        accumulator.update(output.predicted_depth.float(), batch["depth_labels"])

    with _sampling_top_p(model, top_p):
        count, seconds, model_seconds = _run_loop(
            model, _Rows(rows, DepthExamplePreparer(processor)), forward, consume, batch_size=batch_size,
            num_workers=num_workers, precision=precision, progress=progress, desc="depth",
        )  # fmt: skip
        effective_top_p = model.config.sampling_top_p
    settings = {
        "task": "depth",
        "batch_size": batch_size,
        "device": str(device),
        "precision": precision,
        "test_time_augmentation": test_time_augmentation,
        "top_p": effective_top_p,
        "seed": seed,
    }
    return EvaluationResult(accumulator.compute(), count, seconds, model_seconds, settings)


def evaluate_coco(
    model: Any,
    dataset: Any,
    ground_truth: Any,
    *,
    task: str = "instance_segmentation",
    processor: Any = None,
    batch_size: int = 1,
    num_workers: int = 0,
    limit: int | None = None,
    precision: str = "fp32",
    top_p: float | None = None,
    seed: int | None = 0,
    max_detections: Sequence[int] = MMDET_MAX_DETECTIONS,
    progress: bool = True,
) -> EvaluationResult:
    """COCO box (and mask) AP of `model` on `dataset` (rows with ``image``, ``image_id``, ``height``,
    ``width``, e.g. `load_coco_instances`) against `ground_truth` (the annotation file).

    See the module docstring for the protocol. With ``top_p > 0`` the generator is seeded with `seed`.
    """
    from ..hub import image_processor_for_config, model_task_for

    task = canonical_task(task)
    try:
        head = model_task_for(model.config, task)
    except ValueError as error:
        raise EvaluationError(str(error)) from error
    processor = processor if processor is not None else image_processor_for_config(model.config, task)
    accumulator = CocoMetricAccumulator.from_processor(
        ground_truth, task, processor, max_detections=max_detections
    )
    if model.config.num_classes > len(accumulator.category_ids):
        raise EvaluationError(
            f"the model predicts {model.config.num_classes} classes but the annotations have only "
            f"{len(accumulator.category_ids)} categories"
        )
    columns = [
        name for name in ("image", "image_id", "file_name", "height", "width") if name in dataset.column_names
    ]
    rows = _limited(dataset.select_columns(columns), limit)
    device = _device_of(model)
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None

    def forward(pixel_values: torch.Tensor) -> Any:
        return model(pixel_values, task=head, generator=generator)

    def consume(output: Any, batch: dict[str, Any]) -> None:
        accumulator.update(
            batch["image_ids"],
            batch["original_sizes"],
            output.pred_boxes,
            output.pred_scores,
            output.pred_labels,
            output.pred_masks if accumulator.with_masks else None,
        )

    with _sampling_top_p(model, top_p):
        count, seconds, model_seconds = _run_loop(
            model, _Rows(rows, CocoExamplePreparer(processor, task)), forward, consume, batch_size=batch_size,
            num_workers=num_workers, precision=precision, progress=progress, desc=task,
        )  # fmt: skip
        effective_top_p = model.config.sampling_top_p
    settings = {
        "task": task,
        "model_head": head,
        "batch_size": batch_size,
        "device": str(device),
        "precision": precision,
        "top_p": effective_top_p,
        "seed": seed,
    }
    return EvaluationResult(accumulator.compute(), count, seconds, model_seconds, settings)


# ================================================================================================ datasets
def _is_prepared(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _load_nyu(data: Path, split: str, list_file: str | None, cache_dir: str | None, on_error: str) -> Any:
    if _is_prepared(data):
        return load_prepared_dataset(data)
    return load_nyu_depth_v2(data, split, list_file, on_error=on_error, cache_dir=cache_dir)


def _coco_paths(
    data: Path | None, split: str, image_dir: str | None, annotations: str | None
) -> tuple[Path | None, Path | None]:
    image_path = Path(image_dir) if image_dir else (data / f"{split}2017" if data is not None else None)
    annotation_path = (
        Path(annotations)
        if annotations
        else (data / "annotations" / f"instances_{split}2017.json" if data is not None else None)
    )
    return image_path, annotation_path


def _load_coco(
    data: Path | None,
    split: str,
    image_dir: str | None,
    annotations: str | None,
    cache_dir: str | None,
    on_error: str,
) -> tuple[Any, Path]:
    if data is not None and _is_prepared(data):
        dataset = load_prepared_dataset(data)
        info = json.loads(dataset.info.description or "{}")
        annotation_path = Path(annotations) if annotations else Path(info.get("annotation_file", ""))
        if not annotation_path.is_file():
            raise EvaluationError(
                f"--data {data}: pass --annotations (the prepared data set names none that exists)"
            )
        return dataset, annotation_path
    image_path, annotation_path = _coco_paths(data, split, image_dir, annotations)
    if image_path is None or annotation_path is None:
        raise EvaluationError(
            "COCO evaluation needs --data ROOT (with --split) or --image-dir and --annotations"
        )
    dataset = load_coco_instances(image_path, annotation_path, on_error=on_error, cache_dir=cache_dir)
    return dataset, annotation_path


# ============================================================================================ orchestration
def run_evaluation(
    task: str,
    *,
    model_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    upper_bound: bool = False,
    data: str | Path | None = None,
    split: str | None = None,
    list_file: str | None = None,
    image_dir: str | None = None,
    annotations: str | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    limit: int | None = None,
    test_time_augmentation: bool = True,
    device: str | None = None,
    precision: str = "fp32",
    top_p: float | None = None,
    seed: int | None = 0,
    max_detections: str = "mmdet",
    upper_bound_mode: str = "full_frame",
    mask_protocol: str = "original",
    boundary: bool = False,
    cache_dir: str | None = None,
    on_error: str = "raise",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Everything the command line does, as a function: returns the sectioned metrics.

    Sections: "depth" or "bbox" / "segm" (model metrics), "depth_tokenizer_upper_bound" or
    "mask_tokenizer_upper_bound" (tokenizer from `tokenizer_dir`, or the model's own with `upper_bound`),
    and "run" (settings, image counts, seconds and images/s).
    """
    task = canonical_task(task)
    if model_dir is None and tokenizer_dir is None:
        raise EvaluationError("pass --model (a task solver folder) and/or --tokenizer (a VQ-VAE folder)")
    if upper_bound and model_dir is None:
        raise EvaluationError("--upper-bound uses the model's own tokenizer; pass --model")
    if max_detections not in MAX_DETECTIONS:
        raise EvaluationError(
            f"max detections must be one of {sorted(MAX_DETECTIONS)}, got {max_detections!r}"
        )
    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {batch_size}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    data_path = Path(data) if data is not None else None
    if data_path is not None and not data_path.exists():
        raise EvaluationError(f"--data {data_path}: no such file or directory")
    split = split or ("test" if task == "depth" else "val")
    sections: dict[str, dict[str, Any]] = {}
    run: dict[str, Any] = {"task": task, "data": str(data_path) if data_path else None, "split": split}

    model = processor = None
    if model_dir is not None:
        model, processor = load_model_and_processor(model_dir, device)
        run["model"] = str(model_dir)
    tokenizer = None
    if tokenizer_dir is not None:
        tokenizer = load_tokenizer(tokenizer_dir, task, device)
        run["tokenizer"] = str(tokenizer_dir)
    elif upper_bound:
        tokenizer = _tokenizer_of(model, task)
        run["tokenizer"] = f"{model_dir} (the model's own)"

    try:
        if task == "depth":
            if data_path is None:
                raise EvaluationError("depth evaluation needs --data (the nyu_depth_v2 folder)")
            dataset = _load_nyu(data_path, split, list_file, cache_dir, on_error)
            if model is not None:
                result = evaluate_depth(
                    model, dataset, processor=processor, batch_size=batch_size,
                    test_time_augmentation=test_time_augmentation, num_workers=num_workers, limit=limit,
                    precision=precision, top_p=top_p, seed=seed, progress=progress,
                )  # fmt: skip
                sections["depth"] = result.metrics
                run.update(result.run_info())
            if tokenizer is not None:
                rows = _limited(dataset, limit)
                num_windows = model.config.depth_tta_windows if model is not None else 2
                flip = (
                    bool(model.config.depth_tta_flip and test_time_augmentation)
                    if model is not None
                    else False
                )
                start = time.perf_counter()
                depth_maps = (depth_to_metres(row["depth"]) for row in rows.select_columns(["depth"]))
                with _progress_bar(len(rows), progress, "depth tokenizer") as bar, torch.inference_mode():
                    try:
                        bound = depth_tokenizer_upper_bound(
                            tokenizer, depth_maps, mode=upper_bound_mode, num_windows=num_windows, flip=flip,
                            batch_size=batch_size, progress=bar,
                        )  # fmt: skip
                    except ValueError as error:  # shapes the tokenizer / mode cannot take
                        raise EvaluationError(f"depth tokenizer upper bound: {error}") from error
                sections["depth_tokenizer_upper_bound"] = {
                    k: v for k, v in bound.items() if k != "num_images"
                }
                run.update(
                    _upper_bound_run(bound["num_images"], time.perf_counter() - start, upper_bound_mode)
                )
        else:
            annotation_path = None
            if model is not None:
                dataset, annotation_path = _load_coco(
                    data_path, split, image_dir, annotations, cache_dir, on_error
                )
                result = evaluate_coco(
                    model, dataset, annotation_path, task=task, processor=processor, batch_size=batch_size,
                    num_workers=num_workers, limit=limit, precision=precision, top_p=top_p, seed=seed,
                    max_detections=MAX_DETECTIONS[max_detections], progress=progress,
                )  # fmt: skip
                for iou_type in ("bbox", "segm"):
                    prefix = f"{iou_type}_"
                    part = {k[len(prefix) :]: v for k, v in result.metrics.items() if k.startswith(prefix)}
                    if part:
                        sections[iou_type] = part
                run.update(result.run_info())
            if tokenizer is not None:
                if task != "instance_segmentation":
                    raise EvaluationError("the mask tokenizer upper bound is for task instance_segmentation")
                if annotation_path is None:
                    _, annotation_path = _coco_paths(data_path, split, image_dir, annotations)
                if annotation_path is None or not annotation_path.is_file():
                    raise EvaluationError(f"COCO annotation file {annotation_path} does not exist")
                try:
                    ground_truth = load_coco_ground_truth(annotation_path)
                except ValueError as error:
                    raise EvaluationError(str(error)) from error
                image_ids = list(ground_truth.imgs)[:limit] if limit is not None else None  # file order
                iou_types = ("segm", "boundary") if boundary else ("segm",)
                start = time.perf_counter()
                total = len(image_ids) if image_ids is not None else len(ground_truth.imgs)
                with _progress_bar(total, progress, "mask tokenizer") as bar, torch.inference_mode():
                    bound = mask_tokenizer_upper_bound(
                        tokenizer, ground_truth, protocol=mask_protocol, image_ids=image_ids,
                        iou_types=iou_types, progress=bar,
                    )  # fmt: skip
                for iou_type in iou_types:
                    prefix = f"{iou_type}_"
                    sections[f"mask_tokenizer_upper_bound_{iou_type}"] = {
                        k[len(prefix) :]: v for k, v in bound.items() if k.startswith(prefix)
                    }
                run["upper_bound_num_objects"] = bound["num_objects"]
                run.update(_upper_bound_run(bound["num_images"], time.perf_counter() - start, mask_protocol))
    except (DataValidationError, FileNotFoundError) as error:
        raise EvaluationError(str(error)) from error
    sections["run"] = run
    return sections


def _upper_bound_run(num_images: int, seconds: float, mode: str) -> dict[str, Any]:
    return {
        "upper_bound_mode": mode,
        "upper_bound_num_images": num_images,
        "upper_bound_seconds": seconds,
        "upper_bound_images_per_second": num_images / seconds if seconds > 0 else math.nan,
    }


def format_report(sections: Mapping[str, Mapping[str, Any]], title: str | None = None) -> str:
    """Markdown: one metrics table per section, then the "run" section as a setting/value table."""
    metrics = {name: values for name, values in sections.items() if name != "run"}
    markdown = format_metrics_markdown(metrics, title=title) if metrics else (f"# {title}\n" if title else "")
    run = sections.get("run")
    if run:
        lines = ["", "## run", "", "| setting | value |", "|---|---|"]
        for key, value in run.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            shown = shown.replace("|", "\\|")
            lines.append(f"| {key} | {shown} |")
        markdown = markdown.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    return markdown


def throughput_line(run: Mapping[str, Any]) -> str:
    """One printed line with the evaluation throughput of a run section."""
    parts = []
    if "images_per_second" in run:
        parts.append(
            f"evaluated {run['num_images']} images in {run['seconds']:.2f} s: {run['images_per_second']:.2f} "
            f"images/s end to end, {run['model_images_per_second']:.2f} images/s model forward "
            f"(batch size {run['batch_size']}, {run['device']}, {run['precision']})"
        )
    if "upper_bound_images_per_second" in run:
        parts.append(
            f"tokenizer upper bound: {run['upper_bound_num_images']} images in {run['upper_bound_seconds']:.2f} s: "
            f"{run['upper_bound_images_per_second']:.2f} images/s"
        )
    return "\n".join(parts)


# ============================================================================================ command line
def build_parser(prog: str = "python -m ait_hf.evaluation.runner") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate an AiT model (and/or a tokenizer's upper bound) on NYUv2 depth or COCO.",
    )
    parser.add_argument("--model", help="AiT task solver folder (save_pretrained / conversion output)")
    parser.add_argument(
        "--tokenizer",
        help="VQ-VAE folder (or a solver folder) whose upper bound to measure on the ground truth",
    )
    parser.add_argument(
        "--upper-bound", action="store_true", help="also measure the upper bound of --model's own tokenizer"
    )
    parser.add_argument(
        "--task",
        required=True,
        help="depth | instance_segmentation | object_detection (or instance, detection)",
    )
    parser.add_argument(
        "--data",
        help="nyu_depth_v2 folder, COCO root (with {split}2017/ and annotations/), or a prepared data set",
    )
    parser.add_argument("--split", help="NYUv2: test (default) or train; COCO: val (default), train, ...")
    parser.add_argument("--list-file", help="NYUv2 pairs to evaluate (default: the packaged official list)")
    parser.add_argument("--image-dir", help="COCO image folder (instead of --data ROOT/{split}2017)")
    parser.add_argument("--annotations", help="COCO instances json (instead of --data ROOT/annotations/...)")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="images per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader workers (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, help="evaluate the first N images only")
    parser.add_argument(
        "--no-tta", action="store_true", help="depth: no flip test-time augmentation (the windows stay)"
    )
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32", help="autocast precision")
    parser.add_argument("--top-p", type=float, help="override the model's nucleus sampling mass (0 = greedy)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the sampling generator (default: %(default)s)"
    )
    parser.add_argument(
        "--max-detections", choices=sorted(MAX_DETECTIONS), default="mmdet",
        help="COCOeval maxDets: mmdet (100, 300, 1000; the original) or coco (1, 10, 100)",
    )  # fmt: skip
    parser.add_argument(
        "--upper-bound-mode", choices=DEPTH_UPPER_BOUND_MODES, default="full_frame",
        help="depth tokenizer: whole frame (the original VQ-VAE evaluation) or the solver's windows",
    )  # fmt: skip
    parser.add_argument(
        "--mask-protocol", choices=MASK_UPPER_BOUND_PROTOCOLS, default="original",
        help="mask tokenizer: the original VQ-VAE evaluation's crop/paste, or the solver's",
    )  # fmt: skip
    parser.add_argument("--boundary", action="store_true", help="mask tokenizer: also boundary AP")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad data entries")
    parser.add_argument("--cache-dir", help="datasets cache folder for the Arrow files")
    parser.add_argument("--output", help="folder for metrics.json and metrics.md")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m ait_hf.evaluation.runner") -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 usage or data errors)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # argparse exits on --help (0) and usage errors (2)
        return int(exit_.code or 0)
    try:
        sections = run_evaluation(
            args.task,
            model_dir=args.model,
            tokenizer_dir=args.tokenizer,
            upper_bound=args.upper_bound,
            data=args.data,
            split=args.split,
            list_file=args.list_file,
            image_dir=args.image_dir,
            annotations=args.annotations,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            limit=args.limit,
            test_time_augmentation=not args.no_tta,
            device=args.device,
            precision=args.precision,
            top_p=args.top_p,
            seed=args.seed,
            max_detections=args.max_detections,
            upper_bound_mode=args.upper_bound_mode,
            mask_protocol=args.mask_protocol,
            boundary=args.boundary,
            cache_dir=args.cache_dir,
            on_error=args.on_error,
            progress=not args.quiet,
        )
    except EvaluationError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    names = [Path(p).name for p in (args.model, args.tokenizer) if p]
    title = f"{' + '.join(names)} on {Path(args.data).name if args.data else args.annotations} ({args.task})"
    markdown = format_report(sections, title)
    if args.output:
        output = Path(args.output)
        write_metrics_report(sections, json_path=output / "metrics.json")
        (output / "metrics.md").write_text(markdown, encoding="utf-8")
    print(markdown, end="")
    print(throughput_line(sections["run"]))
    if args.output:
        print(f"wrote {output / 'metrics.json'} and {output / 'metrics.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
