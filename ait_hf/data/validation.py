"""Bad-input handling shared by the loaders: raise a clear error, or skip with a warning and a final count.

Every loader takes ``on_error="raise" | "skip"``. With ``"raise"`` the first bad item stops loading with a
:class:`DataValidationError` that names the file, the field and the value. With ``"skip"`` bad items are
left out, and once loading is done ONE :class:`BadSampleWarning` reports how many were skipped and why
(never silently). :class:`SkipBadSamples` does the same at training time for samples that only fail when
they are decoded (for example a truncated JPEG whose header was fine).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


class DataValidationError(ValueError):
    """A data file or annotation that cannot be used; the message names the file, field and value."""


class BadSampleWarning(UserWarning):
    """Summary of the items a loader skipped: ``count`` in total and ``reasons`` (reason -> count)."""

    def __init__(self, message: str, count: int = 0, reasons: dict[str, int] | None = None):
        super().__init__(message)
        self.count = count
        self.reasons = dict(reasons or {})


class BadSampleLog:
    """Collects bad items of one loading run and applies the ``on_error`` policy.

    ``report(reason, where, detail)`` raises in ``"raise"`` mode; in ``"skip"`` mode it records the item.
    ``finish()`` emits the final summary warning (once) when anything was skipped.
    """

    def __init__(self, source: str, on_error: OnError = "raise", max_examples: int = 5):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.source = source
        self.on_error = on_error
        self.max_examples = max_examples
        self.reasons: Counter[str] = Counter()
        self.examples: list[str] = []

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def report(self, reason: str, where: str, detail: str) -> None:
        message = f"{where}: {detail}"
        if self.on_error == "raise":
            raise DataValidationError(f"{message} (pass on_error='skip' to skip such samples with a count)")
        self.reasons[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(message)

    def finish(self) -> None:
        if not self.reasons:
            return
        by_reason = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.reasons.items()))
        examples = "\n  ".join(self.examples)
        message = f"{self.source}: skipped {self.count} bad item(s) ({by_reason}). First ones:\n  {examples}"
        logger.warning(message)
        warnings.warn(BadSampleWarning(message, self.count, dict(self.reasons)), stacklevel=3)


class SkipBadSamples(torch.utils.data.Dataset):
    """Map-style dataset wrapper that replaces samples failing to load by the next good one.

    Wraps any indexable dataset (for example ``load_coco_instances(...).with_transform(...)``). With
    ``on_error="skip"``, a sample whose loading or transform raises is replaced by the following index
    (deterministic, like mmdet's retry but without randomness), a warning names the index and error, and
    ``skipped`` counts them (per process: DataLoader workers each keep their own count and warn on their
    own). After ``max_consecutive`` failures in a row it raises, so a broken data set cannot loop forever.
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        on_error: OnError = "skip",
        max_consecutive: int = 50,
        catch: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, RuntimeError),
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.dataset = dataset
        self.on_error = on_error
        self.max_consecutive = max_consecutive
        self.catch = catch
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if self.on_error == "raise":
            return self.dataset[index]
        n = len(self.dataset)
        for attempt in range(self.max_consecutive):
            current = (index + attempt) % n
            try:
                return self.dataset[current]
            except self.catch as error:
                self.skipped += 1
                message = (
                    f"skipped bad sample at index {current} ({type(error).__name__}: {error}); "
                    f"{self.skipped} skipped so far in this process"
                )
                logger.warning(message)
                warnings.warn(
                    BadSampleWarning(message, self.skipped, {type(error).__name__: 1}), stacklevel=2
                )
        raise DataValidationError(
            f"{self.max_consecutive} consecutive samples starting at index {index} failed to load; "
            "the data set looks broken"
        )


def apply_to_batch(example_fn: Callable[[dict[str, Any]], dict[str, Any]], batch: dict[str, list]) -> dict:
    """Run a per-example function over a ``with_transform`` batch (dict of lists) and re-batch the result."""
    keys = list(batch)
    size = len(batch[keys[0]]) if keys else 0
    outputs = [example_fn({key: batch[key][i] for key in keys}) for i in range(size)]
    if not outputs:
        return {}
    return {key: [output[key] for output in outputs] for key in outputs[0]}
