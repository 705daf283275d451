"""`AiTTrainer`: the transformers `Trainer` with what AiT training needs on top.

* Data: batches from `training.data.StepBatchSampler` (same global batches for any number of processes, exact
  resume), not the Trainer's sampler.
* Optimiser and schedule from the preset (`training.optim`), through `create_optimizer` / `create_scheduler`.
* Randomness of the model (dropout, drop path, Pix2Seq sequence noise) re-seeded at every optimiser step from
  (seed, step, process), so a resumed run draws what the uninterrupted run drew.
* Non-finite losses: detected on every process before the backward pass, reported with the step and the
  batch's sample ids (log + ``nonfinite_losses.jsonl``); the step is skipped (no weight update) or the run
  stops (`NonFiniteLossError`), never applied.
* Joint multi-task batches (``{"task_batches": {task: batch}}``): one forward per task, each loss normalised by
  its own supervised-token count inside the model (over all processes), summed, as the original runner.
* Logging of the model's named loss terms (``depth_ce``, ``instance_segmentation_mask_ce``, ...) next to the loss.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from .data import EpochDataLoader, mix_seed

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A NaN/inf loss; the message names the step and the sample ids of the batch."""


class StepSeedCallback(TrainerCallback):
    """Re-seed torch, numpy and `random` from (seed, global step, process) at the start of every step."""

    def __init__(self, seed: int, process_index: int) -> None:
        self.seed = seed
        self.process_index = process_index

    def on_step_begin(self, args, state, control, **kwargs):
        seed = mix_seed(self.seed, "step", state.global_step, self.process_index)
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (2**32))


class SkipNonFiniteStepCallback(TrainerCallback):
    """Drop the gradients of an optimiser step that saw a non-finite loss, so the optimiser leaves the weights
    (and its moments) untouched: torch optimisers skip parameters whose ``grad`` is None.

    With fp16 loss scaling the grad scaler already skips steps with non-finite gradients (and lowers its
    scale), so the gradients are left to it.
    """

    def __init__(self, trainer: AiTTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        trainer = self.trainer
        if not trainer._nonfinite_in_step:
            return
        trainer._nonfinite_in_step = False
        if getattr(trainer.accelerator, "scaler", None) is not None:
            return
        for param in trainer.model.parameters():
            param.grad = None


class AiTTrainer(Trainer):
    """Trainer for the AiT tokenizers (stage 1) and task solver (stage 2); see the module docstring.

    Args (besides the `Trainer`'s):
        train_sampler_factory: ``(num_processes, rank) -> StepBatchSampler`` for the training data.
        train_collator: collates training examples (`training.data.SampleIdCollator`).
        optimizer_factory: ``model -> torch optimiser``.
        lr_lambda_factory: ``(max_steps, steps_per_epoch) -> (step -> multiplier)``.
        on_nonfinite_loss: "skip" (default) or "raise".
        max_consecutive_nonfinite: "skip" gives up (raises) after this many non-finite steps in a row.
        prediction_fn: ``(model, inputs) -> (loss | None, predictions, labels)`` for evaluation.
        custom_evaluators: task -> ``(trainer, dataset, metric_key_prefix) -> metrics``, for tasks whose
            evaluation is not a per-batch `compute_metrics` (COCO AP).
    """

    def __init__(
        self,
        *args: Any,
        train_sampler_factory: Callable[[int, int], torch.utils.data.Sampler],
        train_collator: Callable[[list], dict],
        optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer],
        lr_lambda_factory: Callable[[int, int], Callable[[int], float]],
        on_nonfinite_loss: str = "skip",
        max_consecutive_nonfinite: int = 10,
        prediction_fn: Callable | None = None,
        custom_evaluators: dict[str, Callable] | None = None,
        **kwargs: Any,
    ) -> None:
        if on_nonfinite_loss not in ("skip", "raise"):
            raise ValueError(f"on_nonfinite_loss must be 'skip' or 'raise', got {on_nonfinite_loss!r}")
        super().__init__(*args, **kwargs)
        self.train_sampler_factory = train_sampler_factory
        self.train_collator = train_collator
        self.optimizer_factory = optimizer_factory
        self.lr_lambda_factory = lr_lambda_factory
        self.on_nonfinite_loss = on_nonfinite_loss
        self.max_consecutive_nonfinite = max_consecutive_nonfinite
        self.prediction_fn = prediction_fn
        self.custom_evaluators = dict(custom_evaluators or {})
        # The AiT models take no loss kwargs: the Trainer must divide by the accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._nonfinite_in_step = False
        self._consecutive_nonfinite = 0
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)
        self._steps_per_epoch: int | None = None
        self.add_callback(StepSeedCallback(self.args.seed, self.args.process_index))
        self.add_callback(SkipNonFiniteStepCallback(self))

    # ------------------------------------------------------------------------------------------ data
    def get_train_dataloader(self) -> EpochDataLoader:
        """Per-process batches from the `StepBatchSampler` (not re-sharded by accelerate)."""
        if self.train_dataset is None:
            raise ValueError("AiTTrainer: training requires a train_dataset")
        sampler = self.train_sampler_factory(self.args.world_size, self.args.process_index)
        self._steps_per_epoch = max(1, len(sampler) // self.args.gradient_accumulation_steps)
        workers = self.args.dataloader_num_workers
        return EpochDataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.train_collator,
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
            # one set of workers for the whole run, not a new fork every epoch (small data sets have short ones)
            persistent_workers=workers > 0,
        )

    # ------------------------------------------------------------------------------- optimisation
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            # FSDP prepares the model first and passes it here: build the groups over its parameters.
            self.optimizer = self.optimizer_factory(model if model is not None else self.model)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            optimizer = optimizer if optimizer is not None else self.optimizer
            lr_lambda = self.lr_lambda_factory(num_training_steps, self._steps_per_epoch)
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------------------------------ loss
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        if "task_batches" in inputs:
            total, terms, sample_ids, outputs = None, {}, [], {}
            for task, batch in inputs["task_batches"].items():
                batch = dict(batch)
                sample_ids.extend(batch.pop("sample_ids", []))
                output = model(**batch)
                total = output.loss if total is None else total + output.loss
                terms[f"{task}_loss"] = output.loss.detach()
                for name, value in (output.loss_terms or {}).items():
                    terms[f"{task}_{name}"] = value.detach()
                outputs[task] = output
            loss = total
        else:
            inputs = dict(inputs)
            sample_ids = inputs.pop("sample_ids", [])
            outputs = model(**inputs)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
            terms = _named_terms(outputs, inputs.get("task"))
        if model.training:
            self._check_finite(loss, sample_ids, inputs)
            for name, value in terms.items():
                if torch.is_tensor(value) and value.numel() == 1:
                    self._term_sums[name] += float(value)
                    self._term_counts[name] += 1
        return (loss, outputs) if return_outputs else loss

    def _check_finite(self, loss: torch.Tensor, sample_ids: list, inputs: dict[str, Any]) -> None:
        """Agree over all processes whether this batch's loss is finite; report and skip / stop if not."""
        local_bad = not bool(torch.isfinite(loss.detach()).all())
        flag = torch.tensor([1.0 if local_bad else 0.0], device=loss.device)
        if (
            self.args.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            torch.distributed.all_reduce(flag)
        if float(flag) == 0:
            return
        step = self.state.global_step + 1
        if local_bad:
            task = inputs.get("task") or sorted(inputs.get("task_batches", {}))
            record = {
                "step": step,
                "epoch": self.state.epoch,
                "process": self.args.process_index,
                "loss": float(loss.detach().float()),
                "task": task,
                "sample_ids": list(sample_ids),
            }
            logger.error(
                "non-finite loss %s at step %d (process %d, task %s); samples: %s",
                record["loss"], step, record["process"], task, ", ".join(map(str, sample_ids)),
            )  # fmt: skip
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(
                os.path.join(self.args.output_dir, "nonfinite_losses.jsonl"), "a", encoding="utf-8"
            ) as f:
                f.write(json.dumps(record) + "\n")
        self._consecutive_nonfinite += 1
        if self.on_nonfinite_loss == "raise" or self._consecutive_nonfinite > self.max_consecutive_nonfinite:
            why = (
                "on_nonfinite_loss='raise'"
                if self.on_nonfinite_loss == "raise"
                else f"{self._consecutive_nonfinite} non-finite steps in a row"
            )
            raise NonFiniteLossError(
                f"non-finite loss at step {step} ({why}); sample ids on this process: {list(sample_ids)}; "
                f"see {os.path.join(self.args.output_dir, 'nonfinite_losses.jsonl')}"
            )
        self._nonfinite_in_step = True

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not self._nonfinite_in_step:
            self._consecutive_nonfinite = 0
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_counts:
            for name, total in self._term_sums.items():
                logs[name] = round(total / max(self._term_counts[name], 1), 6)
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------ evaluation
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if self.prediction_fn is None:
            inputs = {k: v for k, v in inputs.items() if k != "sample_ids"}
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        model.eval()
        with torch.no_grad():
            loss, predictions, labels = self.prediction_fn(model, inputs)
        if loss is not None:
            loss = loss.detach().mean()
        return loss, (None if prediction_loss_only else predictions), labels

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):  # the Trainer names the entries of a dict of evaluation sets
            dataset = self.eval_dataset[dataset]
        task = getattr(dataset, "task", None)
        if task in self.custom_evaluators:
            metrics = self.custom_evaluators[task](self, dataset, metric_key_prefix)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)


def _named_terms(outputs: Any, task: str | None) -> dict[str, torch.Tensor]:
    """Named loss terms of a model output, prefixed with the task (VQ-VAE: reconstruction / commitment)."""
    terms: dict[str, torch.Tensor] = {}
    loss_terms = (
        getattr(outputs, "loss_terms", None) if not isinstance(outputs, dict) else outputs.get("loss_terms")
    )
    if loss_terms:
        prefix = f"{task}_" if task else ""
        terms.update({f"{prefix}{name}": value.detach() for name, value in loss_terms.items()})
    for name in ("reconstruction_loss", "commitment_loss", "perplexity"):
        value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
        if value is not None:
            terms[name] = value.detach()
    return terms
