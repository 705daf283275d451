"""Reproducible training data: every draw of every sample is a pure function of (seed, pass, index).

Why not the Trainer's own sampler: a killed run must resume with the same data order AND the same random
augmentation, and a run on N processes must see the same global batches as a run on one. Both hold when

* the order is a function of the global step (`StepBatchSampler`: per task, an endless stream of seeded
  permutations, cut into global batches; each process takes its own slice of every global batch), and
* the augmentation of a sample uses a generator seeded from (seed, task, pass, index) (`SeededExamples`),
  not the process-wide RNG that the model's dropout and sequence noise also draw from.

Multi-task batches hold every task of the run in every step (the original multi-task runner): each process
gets ``per_process_batch[task]`` samples of each task, and the collator returns ``{"task_batches": {task:
batch}}``. One-task runs get the task's batch dict directly. Every batch also carries ``sample_ids`` (for
reporting non-finite losses); the trainer removes them before calling the model.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from ait_hf.data.validation import BadSampleWarning, DataValidationError

logger = logging.getLogger(__name__)

Key = tuple[str, int, int]  # (task, pass over the task's data, index in the task's data)
SAMPLE_ID_FIELDS = ("file_name", "image_id", "annotation_id")
CATCH = (OSError, ValueError, SyntaxError, RuntimeError)  # as ait_hf.data.SkipBadSamples


def mix_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across processes and Python runs, unlike `hash`)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seed_transform(transform: Any, generator: torch.Generator) -> None:
    """Point a data-layer transform (or a `Compose` of them) at `generator` for the next example.

    The ait_hf.data transforms draw every random number from their ``generator`` attribute. The depth
    transform's CutDepth fires on every ``cutdepth_every``-th sample a transform object sees (a per-worker
    counter in the original); here its counter is drawn from the generator instead, which keeps the rate
    (1 in ``cutdepth_every``) and makes it independent of how samples are spread over workers.
    """
    for inner in getattr(transform, "transforms", None) or [transform]:
        if hasattr(inner, "generator"):
            inner.generator = generator
        every = getattr(inner, "cutdepth_every", 0)
        if every and hasattr(inner, "count"):
            inner.count = int(torch.randint(every, (), generator=generator))


class SeededExamples(torch.utils.data.Dataset):
    """Raw rows of one or more tasks, transformed with a generator seeded per draw.

    Args:
        tasks: task -> (rows, transform); rows is any indexable data set (e.g. a `datasets.Dataset` from the
            ait_hf.data loaders), transform a data-layer transform with an ``example(row)`` method.
        seed: run seed.
        on_error: "skip" replaces a sample whose loading or transform fails by the next index (deterministic,
            as `ait_hf.data.SkipBadSamples`) and warns with a `BadSampleWarning`; "raise" re-raises.
        max_consecutive: after this many failures in a row the data set is declared broken.

    Items are ``(task, pass, index)`` keys from `StepBatchSampler`, or plain ints for a one-task evaluation
    set (pass 0). Each example gets ``task`` and ``sample_id`` (index and the row's file name or COCO id).
    """

    def __init__(
        self,
        tasks: Mapping[str, tuple[Sequence[Any], Any]],
        seed: int = 0,
        on_error: str = "skip",
        max_consecutive: int = 50,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not tasks:
            raise ValueError("SeededExamples needs at least one task")
        self.tasks = dict(tasks)
        self.seed = seed
        self.on_error = on_error
        self.max_consecutive = max_consecutive
        self.sizes = {task: len(rows) for task, (rows, _) in self.tasks.items()}
        for task, size in self.sizes.items():
            if size == 0:
                raise DataValidationError(f"the {task} data set is empty")
        self.skipped = 0

    @property
    def task(self) -> str | None:
        """The task of a one-task data set."""
        return next(iter(self.tasks)) if len(self.tasks) == 1 else None

    def __len__(self) -> int:
        return sum(self.sizes.values())

    def __getitem__(self, key: Key | int) -> dict[str, Any]:
        if isinstance(key, (tuple, list)):
            task, draw, index = key
        else:
            task, draw, index = self.task, 0, int(key)
            if task is None:
                raise TypeError("a multi-task SeededExamples is indexed by (task, pass, index) keys")
        rows, transform = self.tasks[task]
        size = self.sizes[task]
        for attempt in range(self.max_consecutive if self.on_error == "skip" else 1):
            current = (index + attempt) % size
            generator = torch.Generator().manual_seed(mix_seed(self.seed, task, draw, current))
            try:
                row = rows[current]
                seed_transform(transform, generator)
                example = dict(transform.example(row) if hasattr(transform, "example") else transform(row))
            except CATCH as error:
                if self.on_error == "raise":
                    raise
                self.skipped += 1
                message = (
                    f"skipped bad {task} sample at index {current} ({type(error).__name__}: {error}); "
                    f"{self.skipped} skipped so far in this process"
                )
                logger.warning(message)
                warnings.warn(
                    BadSampleWarning(message, self.skipped, {type(error).__name__: 1}), stacklevel=2
                )
                continue
            example.setdefault("task", task)
            example["sample_id"] = _sample_id(task, current, row)
            return example
        raise DataValidationError(
            f"{self.max_consecutive} consecutive {task} samples starting at index {index} failed to load; "
            "the data set looks broken"
        )


def _sample_id(task: str, index: int, row: Any) -> str:
    name = ""
    if isinstance(row, Mapping):
        for field in SAMPLE_ID_FIELDS:
            if row.get(field) is not None:
                name = f" {field}={row[field]}"
                break
    return f"{task}[{index}]{name}"


class StepBatchSampler(torch.utils.data.Sampler[list[Key]]):
    """Per-process batches whose global composition depends only on (seed, global batch number).

    For each task, sample ``k`` of its stream is ``perm_p[k mod N]`` with ``p = k // N`` and ``perm_p`` a
    permutation seeded by (seed, task, p). Global batch ``b`` of a task is stream samples
    ``[b * G, (b + 1) * G)`` with ``G = per_process_batch * num_replicas``; process ``r`` takes the ``r``-th
    slice of ``per_process_batch``. So any number of processes sees the same global batches, and epoch ``e``
    (``set_epoch``) is batches ``[e * batches_per_epoch, (e + 1) * batches_per_epoch)``.

    Args:
        sizes: examples per task.
        per_process_batch: samples per task in each per-process batch.
        batches_per_epoch: default: the largest task's full global batches.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        per_process_batch: Mapping[str, int],
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        batches_per_epoch: int | None = None,
    ) -> None:
        if set(sizes) != set(per_process_batch):
            raise ValueError(
                f"tasks differ: sizes {sorted(sizes)} vs batch sizes {sorted(per_process_batch)}"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.sizes = dict(sizes)
        self.batch = {task: int(size) for task, size in per_process_batch.items()}
        for task, size in self.batch.items():
            if size < 1:
                raise ValueError(f"per-process batch size of {task} must be >= 1, got {size}")
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.batches_per_epoch = batches_per_epoch or max(
            1, max(self.sizes[t] // (self.batch[t] * num_replicas) for t in self.sizes)
        )
        self.epoch = 0
        self._permutations: dict[tuple[str, int], torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _stream(self, task: str, start: int, count: int) -> list[Key]:
        size = self.sizes[task]
        keys = []
        for k in range(start, start + count):
            draw, position = divmod(k, size)
            perm = self._permutations.get((task, draw))
            if perm is None:
                if len(self._permutations) > 64:  # keep the cache small
                    self._permutations.clear()
                generator = torch.Generator().manual_seed(mix_seed(self.seed, "order", task, draw))
                perm = torch.randperm(size, generator=generator)
                self._permutations[(task, draw)] = perm
            keys.append((task, draw, int(perm[position])))
        return keys

    def batch_keys(self, global_batch: int) -> list[Key]:
        """This process's keys of global batch number `global_batch`."""
        keys: list[Key] = []
        for task, size in self.batch.items():
            start = global_batch * size * self.num_replicas + self.rank * size
            keys.extend(self._stream(task, start, size))
        return keys

    def __iter__(self) -> Iterator[list[Key]]:
        first = self.epoch * self.batches_per_epoch
        for global_batch in range(first, first + self.batches_per_epoch):
            yield self.batch_keys(global_batch)


class SampleIdCollator:
    """Collate with the data-layer collator of each task; keep the sample ids beside the batch.

    One task: that task's batch dict plus ``sample_ids``. Several tasks (``multi_task=True``):
    ``{"task_batches": {task: batch}}`` in the order of ``collators``.
    """

    def __init__(
        self, collators: Mapping[str, Callable[[list[dict]], dict]], multi_task: bool = False
    ) -> None:
        self.collators = dict(collators)
        self.multi_task = multi_task

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        by_task: dict[str, list[dict[str, Any]]] = {}
        for example in examples:
            by_task.setdefault(example["task"], []).append(example)
        unknown = set(by_task) - set(self.collators)
        if unknown:
            raise DataValidationError(
                f"no collator for task(s) {sorted(unknown)}; have {sorted(self.collators)}"
            )
        batches = {}
        for task in self.collators:
            if task not in by_task:
                continue
            group = by_task[task]
            batch = self.collators[task](group)
            batch["sample_ids"] = [example["sample_id"] for example in group]
            batches[task] = batch
        if self.multi_task:
            return {"task_batches": batches}
        if len(batches) != 1:
            raise DataValidationError(f"a one-task batch holds tasks {sorted(batches)}")
        return next(iter(batches.values()))


class EpochDataLoader(DataLoader):
    """A DataLoader whose ``set_epoch`` reaches its `StepBatchSampler` (the Trainer calls it every epoch)."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)


def per_process_batch_sizes(
    total_batch_sizes: Mapping[str, int], num_processes: int, gradient_accumulation_steps: int = 1
) -> dict[str, int]:
    """Per-process (micro-)batch size of each task from the preset's total batch size over all processes."""
    sizes = {}
    for task, total in total_batch_sizes.items():
        divisor = num_processes * gradient_accumulation_steps
        if total % divisor:
            raise ValueError(
                f"{task}: total batch size {total} is not divisible by {num_processes} process(es) x "
                f"{gradient_accumulation_steps} accumulation step(s); change tasks.{task}.total_batch_size "
                "(or training.total_batch_size), the number of processes or --gradient-accumulation-steps"
            )
        sizes[task] = total // divisor
    return sizes
