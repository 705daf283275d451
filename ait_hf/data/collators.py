"""Collators that turn transformed examples into the model's batch dicts, and one-task-per-batch sampling.

Batch contract (exactly these keys):

* depth: ``pixel_values`` float32 (B, 3, H, W), ``depth_labels`` float32 (B, H, W) metres (0 = invalid),
  ``task`` = "depth";
* detection / instance segmentation: ``pixel_values`` float32 (B, 3, S, S), ``object_targets`` (B dicts
  with ``boxes`` float32 (N, 4) xyxy in input pixels, ``class_labels`` int64 (N,), and for instance
  segmentation ``masks`` uint8 (N, S, S)), ``task``;
* VQ-VAE pre-training: ``pixel_values`` and ``labels``, float32 (B, 1, H, W).

For joint training, `MultiTaskDataset` puts the task data sets side by side, `MultiTaskBatchSampler` draws
the task of every batch by weight (all indices of a batch come from that task), and `MultiTaskCollator`
hands each batch to that task's collator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from .validation import DataValidationError

DEPTH_TASK = "depth"
DETECTION_TASKS = ("object_detection", "instance_segmentation")


def _check_task(examples: Sequence[dict[str, Any]], task: str) -> None:
    for example in examples:
        if example.get("task", task) != task:
            raise DataValidationError(f"a {task} collator got an example of task {example.get('task')!r}")


class DepthCollator:
    """Depth batch: stacks ``pixel_values`` and ``depth_labels`` of examples from the NYUv2 transforms."""

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        _check_task(examples, DEPTH_TASK)
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]).float(),
            "depth_labels": torch.stack([e["depth_labels"] for e in examples]).float(),
            "task": DEPTH_TASK,
        }


class DetectionCollator:
    """Detection or instance segmentation batch from `LargeScaleJitter` / `CocoResizePad` examples.

    With ``return_metadata=True`` (evaluation) it adds ``image_ids``, ``original_sizes``, ``image_sizes``
    and ``scale_factors`` when the examples carry them; leave it off for batches fed to the model.
    """

    def __init__(self, task: str = "instance_segmentation", return_metadata: bool = False):
        if task not in DETECTION_TASKS:
            raise ValueError(f"task must be one of {DETECTION_TASKS}, got {task!r}")
        self.task = task
        self.return_metadata = return_metadata

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        _check_task(examples, self.task)
        targets = []
        for example in examples:
            target = {
                "boxes": torch.as_tensor(example["boxes"], dtype=torch.float32).reshape(-1, 4),
                "class_labels": torch.as_tensor(example["class_labels"], dtype=torch.int64).reshape(-1),
            }
            if self.task == "instance_segmentation":
                if "masks" not in example:
                    raise DataValidationError(
                        "instance segmentation examples need 'masks' (use that task's transform)"
                    )
                target["masks"] = torch.as_tensor(example["masks"]).to(torch.uint8)
            targets.append(target)
        batch = {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]).float(),
            "object_targets": targets,
            "task": self.task,
        }
        if self.return_metadata:
            for key, batch_key in (
                ("image_id", "image_ids"),
                ("original_size", "original_sizes"),
                ("image_size", "image_sizes"),
                ("scale_factor", "scale_factors"),
            ):
                if all(key in e for e in examples):
                    batch[batch_key] = [e[key] for e in examples]
        return batch


class VQVAECollator:
    """VQ-VAE pre-training batch (depth or box-cropped masks): stacks ``pixel_values`` and ``labels``."""

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]).float(),
            "labels": torch.stack([e["labels"] for e in examples]).float(),
        }


class MultiTaskDataset(torch.utils.data.Dataset):
    """Task data sets side by side; global index = offset of the task + index within it.

    Each item is the task data set's (transformed) example with ``task`` set.
    """

    def __init__(self, datasets: Mapping[str, Sequence[dict[str, Any]]]):
        if not datasets:
            raise ValueError("MultiTaskDataset needs at least one task data set")
        self.datasets = dict(datasets)
        self.tasks = list(self.datasets)
        self.sizes = {task: len(dataset) for task, dataset in self.datasets.items()}
        self.offsets = {}
        offset = 0
        for task in self.tasks:
            self.offsets[task] = offset
            offset += self.sizes[task]
        self.total = offset

    def __len__(self) -> int:
        return self.total

    def locate(self, index: int) -> tuple[str, int]:
        """(task, index within the task's data set) of a global index."""
        if not 0 <= index < self.total:
            raise IndexError(f"index {index} out of range for {self.total} examples")
        for task in reversed(self.tasks):
            if index >= self.offsets[task]:
                return task, index - self.offsets[task]
        raise IndexError(index)  # unreachable

    def __getitem__(self, index: int) -> dict[str, Any]:
        task, local = self.locate(index)
        example = dict(self.datasets[task][local])
        example.setdefault("task", task)
        return example


class MultiTaskBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of ONE task each; the task of every batch is drawn by weight.

    Args:
        sizes: examples per task, in the order of `MultiTaskDataset` (use ``dataset.sizes``).
        batch_size: per-process batch size, one int or one per task.
        weights: relative sampling weight per task; by default the number of batches each task has, so that
            an epoch sees every task's data about once.
        num_batches: batches per epoch (default: the sum over tasks of full batches).
        seed: with the epoch (``set_epoch``), fixes the order; every process draws the same task sequence.
        num_replicas, rank: distributed training; each process takes its own slice of the task's indices,
            and all processes train the same task at the same step.

    Within a task the indices follow a shuffled order, reshuffled when it cannot fill another batch.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        batch_size: int | Mapping[str, int],
        weights: Mapping[str, float] | None = None,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.tasks = list(sizes)
        self.sizes = dict(sizes)
        self.batch_sizes = {
            task: int(batch_size[task] if isinstance(batch_size, Mapping) else batch_size)
            for task in self.tasks
        }
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.num_replicas, self.rank = num_replicas, rank
        global_batches = {
            task: self.sizes[task] // (self.batch_sizes[task] * num_replicas) for task in self.tasks
        }
        for task in self.tasks:
            if self.sizes[task] < self.batch_sizes[task] * num_replicas:
                raise ValueError(
                    f"task {task!r} has {self.sizes[task]} examples, fewer than one global batch "
                    f"({self.batch_sizes[task]} x {num_replicas})"
                )
        weights = dict(weights) if weights is not None else {t: float(global_batches[t]) for t in self.tasks}
        unknown = set(weights) - set(self.tasks)
        if unknown:
            raise ValueError(f"weights name unknown tasks {sorted(unknown)}; tasks are {self.tasks}")
        self.weights = torch.tensor([float(weights.get(t, 0.0)) for t in self.tasks], dtype=torch.float64)
        if (
            (self.weights < 0).any()
            or not math.isfinite(float(self.weights.sum()))
            or self.weights.sum() <= 0
        ):
            raise ValueError(f"task weights must be non-negative with a positive sum, got {weights}")
        self.num_batches = num_batches if num_batches is not None else sum(global_batches.values())
        self.seed = seed
        self.epoch = 0
        self.offsets = {}
        offset = 0
        for task in self.tasks:
            self.offsets[task] = offset
            offset += self.sizes[task]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        orders = {task: torch.empty(0, dtype=torch.int64) for task in self.tasks}
        positions = dict.fromkeys(self.tasks, 0)
        choices = torch.multinomial(self.weights, self.num_batches, replacement=True, generator=generator)
        for choice in choices.tolist():
            task = self.tasks[choice]
            size = self.batch_sizes[task]
            needed = size * self.num_replicas
            if positions[task] + needed > len(orders[task]):
                # Like drop_last: the remainder of an order that cannot fill a batch is left out.
                orders[task] = torch.randperm(self.sizes[task], generator=generator)
                positions[task] = 0
            start = positions[task] + self.rank * size
            local = orders[task][start : start + size]
            positions[task] += needed
            yield (local + self.offsets[task]).tolist()


class MultiTaskCollator:
    """Collate a one-task batch with that task's collator (a mixed batch is an error)."""

    def __init__(self, collators: Mapping[str, Callable[[Sequence[dict[str, Any]]], dict[str, Any]]]):
        self.collators = dict(collators)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        tasks = {example.get("task") for example in examples}
        if len(tasks) != 1:
            raise DataValidationError(f"a multi-task batch must hold one task, got {sorted(map(str, tasks))}")
        task = tasks.pop()
        if task not in self.collators:
            raise DataValidationError(f"no collator for task {task!r}; have {sorted(self.collators)}")
        return self.collators[task](examples)
