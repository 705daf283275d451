"""Stage 1: train an AiT VQ-VAE tokenizer (depth maps or box-cropped instance masks) with the Trainer.

Examples::

    # depth tokenizer, the original recipe (NYUv2 in the BTS/GLPDepth layout)
    python -m training.stage1 --preset ait_depth_vqvae --nyu-root data/nyu_depth_v2 --output-dir runs/vqvae_depth
    # mask tokenizer from box-cropped COCO masks (python -m ait_hf.data.box_masks ...) or annotation files
    python -m training.stage1 --preset ait_insseg_vqvae --box-masks-train data/prepared/maskcoco_train \
        --box-masks-eval data/coco/annotations/instances_val2017.json --output-dir runs/vqvae_mask
    # several processes: the same command under torchrun / accelerate launch

The EMA codebook is updated inside the model's forward in train mode. Depth training masks half of the
input's 16x16 patches (the target stays whole). Validation reconstructs whole held-out maps (depth: the full
480x640 test frames) and reports the reconstruction loss with depth metrics (depth) or mask IoU (masks). The
final tokenizer is saved with ``save_pretrained`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ait_hf.configuration_ait import AiTVQVAEConfig
from ait_hf.data import (
    BoxMaskTransform,
    DepthVQVAETransform,
    VQVAECollator,
    build_box_cropped_masks,
    load_box_cropped_masks,
    load_coco_instances,
    load_nyu_depth_v2,
)
from ait_hf.evaluation import make_depth_compute_metrics
from ait_hf.modeling_ait_vqvae import AiTVQVAE

from .common import (
    add_common_arguments,
    preset_from_args,
    resolve_resume,
    run_script,
    setup_logging,
    training_arguments,
)
from .common import world_size as launch_world_size
from .data import SampleIdCollator, SeededExamples, StepBatchSampler, per_process_batch_sizes
from .optim import make_lr_lambda
from .trainer import AiTTrainer

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ model
def build_vqvae_config(model_spec: dict[str, Any]) -> AiTVQVAEConfig:
    """The tokenizer config of a stage-1 preset's ``model`` entry."""
    if "original_stage_config" in model_spec:
        return AiTVQVAEConfig.from_original_stage_config(dict(model_spec["original_stage_config"]))
    if "config" in model_spec:
        return AiTVQVAEConfig(**model_spec["config"])
    raise ValueError(
        f"a stage-1 preset's model needs 'original_stage_config' or 'config', got {sorted(model_spec)}"
    )


def reconstruct(
    model: torch.nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eval-mode reconstruction of maps of ANY size that is a multiple of the downsampling ratio.

    `AiTVQVAE.forward` only accepts its configured square size, while the original validates the depth
    tokenizer on whole 480x640 frames (the network is fully convolutional). This runs the same encoder,
    nearest-code quantisation, decoder and losses as the model's forward in eval mode (no EMA update).
    Returns ``(loss, reconstruction_loss, reconstruction (B, 1, H, W))``.
    """
    vqvae: AiTVQVAE = getattr(model, "module", model)
    maps = pixel_values if pixel_values.dim() == 4 else pixel_values.unsqueeze(1)
    target = maps if labels is None else (labels if labels.dim() == 4 else labels.unsqueeze(1))
    ratio = vqvae.config.downsample_ratio
    if maps.shape[-2] % ratio or maps.shape[-1] % ratio:
        raise ValueError(
            f"maps of size {tuple(maps.shape[-2:])} are not a multiple of the {ratio}x downsampling"
        )
    maps = maps.to(vqvae.encoder[0].weight.dtype)
    latents = vqvae.encoder(vqvae.normalize(maps))
    b, c, h, w = latents.shape
    flat = latents.permute(0, 2, 3, 1).reshape(-1, c)
    quantized = vqvae.quantizer.embedding[vqvae.quantizer.nearest_codes(flat)]
    commitment = vqvae.config.commitment_cost * F.mse_loss(quantized, flat)
    decoded = vqvae.decoder(quantized.view(b, h, w, c).permute(0, 3, 1, 2))
    reconstruction_loss = vqvae.reconstruction_loss(decoded, vqvae.normalize(target.to(decoded.dtype)))
    return reconstruction_loss + commitment, reconstruction_loss, vqvae.denormalize(decoded)


def synchronize_codebook_updates(model: AiTVQVAE) -> None:
    """Make every process apply the EMA codebook update of the GLOBAL batch (a no-op in one process).

    The EMA step depends only on the code counts and code sums of the batch. In the original each process
    updates its own codebook from its own share (``broadcast_buffers=False``) and the first process's is
    saved, so the codebooks drift apart. Here the quantiser's inputs and assignments are gathered from all
    processes first, so all codebooks stay equal to the one-process run with the same global batch (and a
    resumed run restores every process exactly).
    """
    quantizer = model.quantizer
    update = quantizer.ema_update

    def ema_update_over_processes(flat_inputs: torch.Tensor, one_hot: torch.Tensor) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                gathered_inputs = [torch.empty_like(flat_inputs) for _ in range(world)]
                gathered_codes = [torch.empty_like(one_hot) for _ in range(world)]
                torch.distributed.all_gather(gathered_inputs, flat_inputs.contiguous())
                torch.distributed.all_gather(gathered_codes, one_hot.contiguous())
                flat_inputs, one_hot = torch.cat(gathered_inputs), torch.cat(gathered_codes)
        update(flat_inputs, one_hot)

    quantizer.ema_update = ema_update_over_processes


def vqvae_prediction_fn(model: torch.nn.Module, inputs: dict[str, Any]):
    loss, _, reconstruction = reconstruct(model, inputs["pixel_values"], inputs.get("labels"))
    return loss, reconstruction.squeeze(1), inputs["labels"].squeeze(1)


def make_mask_compute_metrics():
    """Batch-mode ``compute_metrics``: MSE and IoU of binarised (>= 0.5) reconstructed masks vs the targets."""
    sums = {"mse": 0.0, "iou": 0.0, "count": 0}

    def compute_metrics(eval_prediction: Any, compute_result: bool | None = None) -> dict[str, float]:
        pred = torch.as_tensor(np.asarray(eval_prediction.predictions), dtype=torch.float32)
        target = torch.as_tensor(np.asarray(eval_prediction.label_ids), dtype=torch.float32)
        valid = target.flatten(1).ge(0).all(1)  # rows padded with -100 by the Trainer's gathering
        pred, target = pred[valid].flatten(1), target[valid].flatten(1)
        sums["mse"] += float(((pred - target) ** 2).mean(1).sum())
        binary, truth = pred >= 0.5, target >= 0.5
        union = (binary | truth).sum(1).float()
        iou = torch.where(
            union > 0, (binary & truth).sum(1).float() / union.clamp(min=1), torch.ones_like(union)
        )
        sums["iou"] += float(iou.sum())
        sums["count"] += int(pred.shape[0])
        if compute_result is False:
            return {}
        count = max(sums["count"], 1)
        metrics = {"mask_mse": sums["mse"] / count, "mask_iou": sums["iou"] / count}
        sums.update(mse=0.0, iou=0.0, count=0)
        return metrics

    return compute_metrics


# ------------------------------------------------------------------------------------------------- data
def _box_mask_rows(source: str, mask_size: int, cache_dir: str | None, on_error: str):
    """Box-cropped masks from a prepared folder (``python -m ait_hf.data.box_masks``) or a COCO json."""
    path = Path(source)
    if path.is_dir():
        return load_box_cropped_masks(path)
    if path.suffix == ".json":
        coco = load_coco_instances(
            None, path, on_error=on_error, check_image_files=False, cache_dir=cache_dir
        )
        return build_box_cropped_masks(coco, mask_size=mask_size, cache_dir=cache_dir)
    raise ValueError(f"box masks source {source} is neither a prepared folder nor a COCO annotation .json")


def build_stage1_data(preset: dict[str, Any], args: argparse.Namespace, config: AiTVQVAEConfig):
    """(train rows, train transform, eval rows or None, eval transform) of a stage-1 preset."""
    data = preset["data"]
    if data["kind"] == "nyu_depth":
        if not args.nyu_root:
            raise ValueError(f"preset {preset['name']} trains on NYUv2: give --nyu-root")
        train_rows = load_nyu_depth_v2(
            args.nyu_root, "train", args.train_list, on_error=args.on_bad_sample, cache_dir=args.cache_dir
        )
        train_transform = DepthVQVAETransform(train=True, **_tuples(data["train_transform"]))
        eval_rows = None
        if not args.no_eval:
            eval_rows = load_nyu_depth_v2(
                args.nyu_root, "test", args.test_list, on_error=args.on_bad_sample, cache_dir=args.cache_dir
            )
        eval_transform = DepthVQVAETransform(train=False, **_tuples(data["eval_transform"]))
        return train_rows, train_transform, eval_rows, eval_transform
    if data["kind"] == "box_masks":
        if not args.box_masks_train:
            raise ValueError(f"preset {preset['name']} trains on box-cropped masks: give --box-masks-train")
        size = config.image_size
        train_rows = _box_mask_rows(args.box_masks_train, size, args.cache_dir, args.on_bad_sample)
        eval_rows = None
        if args.box_masks_eval and not args.no_eval:
            eval_rows = _box_mask_rows(args.box_masks_eval, size, args.cache_dir, args.on_bad_sample)
        return train_rows, BoxMaskTransform(), eval_rows, BoxMaskTransform()
    raise ValueError(f"unknown stage-1 data kind {data['kind']!r}; valid: 'nyu_depth', 'box_masks'")


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}


# ---------------------------------------------------------------------------------------------- optimiser
def stage1_optimizer_factory(optimizer: dict[str, Any]):
    kind = optimizer.get("type", "adam")
    lr, weight_decay = float(optimizer["lr"]), float(optimizer.get("weight_decay", 0.0))
    betas = tuple(optimizer.get("betas", (0.9, 0.999)))
    fused = bool(optimizer.get("fused", True))  # one kernel for all parameters (`training.optim`)

    def factory(model: torch.nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        if kind == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused)
        if kind == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused)
        raise ValueError(f"unknown stage-1 optimizer {kind!r}; valid: 'adam', 'adamw'")

    return factory


# ----------------------------------------------------------------------------------------------------- run
def build_trainer(args: argparse.Namespace, preset: dict[str, Any]) -> AiTTrainer:
    """Model, data, optimiser, schedule and `AiTTrainer` of a stage-1 run (see `main`)."""
    training = preset["training"]
    config = build_vqvae_config(preset["model"])
    if args.init_from:
        model = AiTVQVAE.from_pretrained(args.init_from)
    else:
        torch.manual_seed(int(training.get("seed", 0)))
        model = AiTVQVAE(config)
    num_processes = launch_world_size()
    if num_processes > 1:
        synchronize_codebook_updates(model)
    per_process = per_process_batch_sizes(
        {"vqvae": int(training["total_batch_size"])}, num_processes, args.gradient_accumulation_steps
    )["vqvae"]

    targs = training_arguments(
        args,
        training,
        per_process_batch=per_process,
        eval_batch_size=int(training.get("eval_batch_size", 1)),
        label_names=["labels"],
        has_eval=not args.no_eval,
    )
    with targs.main_process_first(desc="building the data sets"):
        train_rows, train_transform, eval_rows, eval_transform = build_stage1_data(preset, args, model.config)
    seed = int(training.get("seed", 0))
    train_dataset = SeededExamples(
        {"vqvae": (train_rows, train_transform)}, seed=seed, on_error=args.on_bad_sample
    )
    eval_dataset = (
        SeededExamples({"vqvae": (eval_rows, eval_transform)}, seed=seed, on_error=args.on_bad_sample)
        if eval_rows is not None
        else None
    )
    sizes = {"vqvae": len(train_rows)}

    def sampler_factory(num_replicas: int, rank: int) -> StepBatchSampler:
        return StepBatchSampler(sizes, {"vqvae": per_process}, num_replicas, rank, seed)

    if eval_dataset is None and targs.eval_strategy != "no":
        targs.eval_strategy = "no"
    if preset["data"]["kind"] == "nyu_depth":
        crop = {} if preset["data"].get("eval_crop") == "nyu" else {"eval_crop": None}
        compute_metrics = make_depth_compute_metrics(**crop)
    else:
        compute_metrics = make_mask_compute_metrics()
    base_lr = float(training["optimizer"]["lr"])
    collator = SampleIdCollator({"vqvae": VQVAECollator()})
    return AiTTrainer(
        model=model,
        args=targs,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        compute_metrics=compute_metrics if eval_dataset is not None else None,
        train_sampler_factory=sampler_factory,
        train_collator=collator,
        optimizer_factory=stage1_optimizer_factory(training["optimizer"]),
        lr_lambda_factory=lambda max_steps, per_epoch: make_lr_lambda(
            training.get("schedule", {}), base_lr, max_steps, per_epoch
        ),
        on_nonfinite_loss=args.on_nonfinite_loss,
        prediction_fn=vqvae_prediction_fn,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.stage1", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--nyu-root", help="NYUv2 folder (depth presets)")
    parser.add_argument("--train-list", help="NYUv2 training list file (default: the original's)")
    parser.add_argument("--test-list", help="NYUv2 test list file (default: the original's)")
    parser.add_argument(
        "--box-masks-train", help="prepared box-mask folder or COCO instances .json (mask presets)"
    )
    parser.add_argument("--box-masks-eval", help="the same for validation")
    parser.add_argument("--init-from", help="start from a saved tokenizer folder instead of random weights")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> AiTTrainer:
    setup_logging()
    args = parse_args(argv)
    preset = preset_from_args(args, stage=1)
    trainer = build_trainer(args, preset)
    trainer.train(resume_from_checkpoint=resolve_resume(args.resume, args.output_dir))
    trainer.save_model(args.output_dir)
    if trainer.eval_dataset is not None and not args.no_eval:
        trainer.evaluate()
    if trainer.is_world_process_zero():
        logger.info("stage-1 tokenizer saved to %s", args.output_dir)
    return trainer


if __name__ == "__main__":
    run_script(main)
