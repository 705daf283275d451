"""Stage 2: train the AiT task solver (`AiTForDepthAndInstanceSegmentation`) with the Trainer.

Examples::

    # depth (NYUv2), the original recipe, from the SimMIM SwinV2 backbone and the stage-1 depth tokenizer
    python -m training.stage2 --preset swinv2b_480reso_depthonly --nyu-root data/nyu_depth_v2 \
        --backbone-checkpoint swin_v2_base_densesimmim.pth --depth-tokenizer runs/vqvae_depth \
        --output-dir runs/ait_depth
    # instance segmentation from the converted detection model, as the original's load_from
    python -m training.stage2 --preset swinv2b_640reso_inssegonly --coco-root data/coco \
        --load-from converted/ait_det_swinv2b --mask-tokenizer runs/vqvae_mask --output-dir runs/ait_insseg
    # several processes / machines: the same command under torchrun or accelerate launch

Starting points: random weights; ``--backbone-checkpoint`` (an original SwinV2 checkpoint such as the SimMIM
one, or a converted HF folder whose backbone is taken); ``--load-from`` (a converted HF task-solver folder,
loaded non-strictly like the original's ``load_from``: tensors whose name and shape match are copied, the rest
is reported); the frozen stage-1 tokenizers from ``--depth-tokenizer`` / ``--mask-tokenizer`` (a stage-1 output
folder or an original ``vqvae_*.pt``). The per-process batch size is the preset's total batch size divided by
the number of processes (and accumulation steps).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ait_hf.configuration_ait import AiTConfig, AiTVQVAEConfig
from ait_hf.data import (
    CocoResizePad,
    DepthCollator,
    DetectionCollator,
    LargeScaleJitter,
    NYUDepthEvalTransform,
    NYUDepthTrainTransform,
    load_coco_instances,
    load_nyu_depth_v2,
)
from ait_hf.evaluation import CocoInstanceEvaluator, make_depth_compute_metrics
from ait_hf.image_processing_ait import paste_masks_in_image
from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
from ait_hf.modeling_ait_backbone import convert_original_backbone_state_dict
from ait_hf.modeling_ait_vqvae import AiTVQVAE, load_original_state_dict

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
from .optim import build_layer_decay_adamw, make_lr_lambda
from .trainer import AiTTrainer

logger = logging.getLogger(__name__)

OBJECT_TASKS = ("object_detection", "instance_segmentation")
_TOKENIZER_FIELDS = ("image_size", "downsample_ratio", "num_embeddings", "embedding_dim", "hidden_size",
                     "num_resnet_blocks", "normalize_inputs")  # fmt: skip


# ------------------------------------------------------------------------------------------------ model
def build_solver_config(model_spec: dict[str, Any]) -> AiTConfig:
    """The solver config of a stage-2 preset's ``model`` entry (``original_preset`` or ``config``)."""
    if "original_preset" in model_spec:
        config = AiTConfig.from_original_preset(model_spec["original_preset"])
        for key, value in model_spec.get("overrides", {}).items():
            setattr(config, key, value)
        return config
    if "config" in model_spec:
        return AiTConfig(**model_spec["config"])
    raise ValueError(
        f"a stage-2 preset's model needs 'original_preset' or 'config', got {sorted(model_spec)}"
    )


def _state_dict_of(path: str) -> dict[str, torch.Tensor]:
    """Tensors of an HF folder (``model.safetensors``, sharded or not) or of an original checkpoint file."""
    folder = Path(path)
    if folder.is_dir():
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ValueError(f"{path} has no .safetensors weights (is it a save_pretrained folder?)")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(str(file)))
        return state
    if not folder.is_file():
        raise ValueError(f"{path}: no such file or folder")
    return load_original_state_dict(str(folder))


def load_tokenizer(model: AiTForDepthAndInstanceSegmentation, kind: str, source: str) -> None:
    """Copy a stage-1 tokenizer (HF folder or original ``vqvae_*.pt``) into the solver's frozen tokenizer."""
    target: AiTVQVAE | None = getattr(model, f"{kind}_tokenizer")
    if target is None:
        raise ValueError(
            f"--{kind}-tokenizer given but the model has no {kind} tokenizer (tasks {model.config.tasks})"
        )
    if Path(source).is_dir():
        source_config = AiTVQVAEConfig.from_pretrained(source)
        mismatched = [
            f"{field}: {getattr(source_config, field)} vs {getattr(target.config, field)}"
            for field in _TOKENIZER_FIELDS
            if getattr(source_config, field) != getattr(target.config, field)
        ]
        if source_config.normalize_inputs and source_config.max_value != target.config.max_value:
            mismatched.append(f"max_value: {source_config.max_value} vs {target.config.max_value}")
        if mismatched:
            raise ValueError(
                f"tokenizer {source} does not fit the model's {kind} tokenizer: {'; '.join(mismatched)}"
            )
        state = AiTVQVAE.from_pretrained(source).state_dict()
    else:
        state = AiTVQVAE.from_original_checkpoint(source, target.config).state_dict()
    target.load_state_dict(state)
    target.requires_grad_(False)
    logger.info("loaded the %s tokenizer from %s", kind, source)


def load_backbone(model: AiTForDepthAndInstanceSegmentation, source: str) -> None:
    """Backbone weights from an HF solver folder (``model.backbone.*``) or an original SwinV2 checkpoint.

    Original checkpoints (e.g. SimMIM pretraining) may carry other keys (a decoder, a mask token) and derived
    buffers of another window size: only SwinV2 backbone tensors are converted (the position-bias MLP is
    continuous, so nothing needs resizing); keys left over on either side are reported.
    """
    state = _state_dict_of(source)
    prefix = "model.backbone."
    if any(key.startswith(prefix) for key in state):
        converted = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        ignored: list[str] = []
    else:
        converted, ignored = {}, []
        for key, value in state.items():
            local = key
            for strip in ("module.", "backbone.", "encoder."):
                local = local[len(strip) :] if local.startswith(strip) else local
            if local.endswith(("relative_coords_table", "relative_position_index", "attn_mask")):
                continue  # derived buffers: recomputed by our module for its own window sizes
            try:
                converted.update(convert_original_backbone_state_dict({local: value}))
            except ValueError:
                ignored.append(key)
    _load_non_strict(model.model.backbone, converted, f"backbone from {source}", ignored)


def load_from(model: AiTForDepthAndInstanceSegmentation, source: str) -> None:
    """The original's ``load_from``: copy every tensor of a converted solver whose name and shape match.

    The tokenizers are not taken from it (they come from the stage-1 runs); what is left out is reported.
    """
    state = {
        k: v
        for k, v in _state_dict_of(source).items()
        if not k.startswith(("depth_tokenizer.", "mask_tokenizer."))
    }
    if not any(k.startswith(("model.", "decoder.")) for k in state):
        raise ValueError(
            f"--load-from {source}: not a converted AiT solver (convert original checkpoints with "
            "python -m conversion.convert_ait_to_hf first)"
        )
    own = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(("depth_tokenizer.", "mask_tokenizer."))
    }
    _load_non_strict(model, state, f"--load-from {source}", [], expected=own)


def _load_non_strict(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    ignored: list[str],
    expected: dict[str, torch.Tensor] | None = None,
) -> None:
    expected = module.state_dict() if expected is None else expected
    usable = {k: v for k, v in state.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)}
    shape_mismatch = sorted(k for k in state if k in expected and k not in usable)
    unexpected = sorted(set(state) - set(expected)) + ignored
    missing = sorted(set(expected) - set(usable))
    module.load_state_dict(usable, strict=False)
    logger.info("%s: loaded %d tensors", what, len(usable))
    if shape_mismatch:
        logger.warning(
            "%s: %d tensors of another shape left out: %s", what, len(shape_mismatch), shape_mismatch[:20]
        )
    if missing:
        logger.warning(
            "%s: %d tensors not in the checkpoint (kept as initialised): %s", what, len(missing), missing[:20]
        )
    if unexpected:
        logger.warning("%s: %d checkpoint tensors not used: %s", what, len(unexpected), unexpected[:20])
    if not usable:
        raise ValueError(f"{what}: no tensor of the checkpoint fits the model")


def build_model(preset: dict[str, Any], args: argparse.Namespace) -> AiTForDepthAndInstanceSegmentation:
    config = build_solver_config(preset["model"])
    torch.manual_seed(int(preset["training"].get("seed", 0)))
    model = AiTForDepthAndInstanceSegmentation(config)
    init = preset.get("init") or {}
    if args.backbone_checkpoint:
        load_backbone(model, args.backbone_checkpoint)
    elif init.get("backbone"):
        logger.warning(
            "the original starts from the backbone %s; without --backbone-checkpoint the backbone is random",
            init["backbone"],
        )
    if args.load_from:
        load_from(model, args.load_from)
    elif init.get("load_from"):
        logger.warning(
            "the original starts from %s (--load-from); training from the initialisation above",
            init["load_from"],
        )
    for kind in ("depth", "mask"):
        source = getattr(args, f"{kind}_tokenizer")
        if source:
            load_tokenizer(model, kind, source)
        elif getattr(model, f"{kind}_tokenizer") is not None:
            logger.warning(
                "no --%s-tokenizer: the frozen %s tokenizer keeps its random weights (the original uses %s)",
                kind, kind, init.get(f"{kind}_tokenizer"),
            )  # fmt: skip
    for tokenizer in (model.depth_tokenizer, model.mask_tokenizer):
        if tokenizer is not None:  # frozen whatever the loading path did
            tokenizer.requires_grad_(False)
    return model


# ------------------------------------------------------------------------------------------------- data
def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}


def _coco_paths(root: str, split: str) -> tuple[Path, Path]:
    base = Path(root)
    return base / f"{split}2017", base / "annotations" / f"instances_{split}2017.json"


def build_task_data(task: str, spec: dict[str, Any], args: argparse.Namespace):
    """(train rows, train transform, eval rows or None, eval transform, eval annotation file) of one task."""
    if task == "depth":
        if not args.nyu_root:
            raise ValueError("the depth task trains on NYUv2: give --nyu-root")
        train = load_nyu_depth_v2(
            args.nyu_root, "train", args.train_list, on_error=args.on_bad_sample, cache_dir=args.cache_dir
        )
        evaluation = None
        if not args.no_eval:
            evaluation = load_nyu_depth_v2(
                args.nyu_root, "test", args.test_list, on_error=args.on_bad_sample, cache_dir=args.cache_dir
            )
        return (
            train,
            NYUDepthTrainTransform(**_tuples(spec.get("train_transform", {}))),
            evaluation,
            NYUDepthEvalTransform(**_tuples(spec.get("eval_transform", {}))),
            None,
        )
    if task in OBJECT_TASKS:
        if not args.coco_root:
            raise ValueError(f"the {task} task trains on COCO: give --coco-root")
        images, annotations = _coco_paths(args.coco_root, args.coco_train_split)
        train = load_coco_instances(
            images,
            annotations,
            on_error=args.on_bad_sample,
            filter_empty=True,
            min_image_size=32,
            cache_dir=args.cache_dir,
        )
        evaluation, eval_annotations = None, None
        if not args.no_eval:
            images, eval_annotations = _coco_paths(args.coco_root, args.coco_eval_split)
            evaluation = load_coco_instances(
                images, eval_annotations, on_error=args.on_bad_sample, cache_dir=args.cache_dir
            )
        return (
            train,
            LargeScaleJitter(task=task, **_tuples(spec.get("train_transform", {}))),
            evaluation,
            CocoResizePad(task=task, **_tuples(spec.get("eval_transform", {}))),
            eval_annotations,
        )
    raise ValueError(f"unknown task {task!r}")


# ------------------------------------------------------------------------------------------- evaluation
def make_prediction_fn(tasks_spec: dict[str, Any]):
    """Depth evaluation: decode the depth of the whole frame (sliding windows, flips when the preset says so)."""

    def prediction_fn(model: torch.nn.Module, inputs: dict[str, Any]):
        task = inputs.get("task", "depth")
        if task != "depth":
            raise ValueError(f"per-batch evaluation is for depth; {task} is evaluated with COCO AP")
        tta = bool(tasks_spec["depth"].get("test_time_augmentation", True))
        output = model(pixel_values=inputs["pixel_values"], task="depth", test_time_augmentation=tta)
        return None, output.predicted_depth, inputs["depth_labels"]

    return prediction_fn


def make_coco_evaluator(task: str, annotation_file: Path, batch_size: int, num_workers: int):
    """COCO box (and mask) AP of the model's decoded objects over the evaluation set, via pycocotools.

    Every process decodes its share of the images; the first one scores them all.
    """
    collator = DetectionCollator(task, return_metadata=True)
    iou_types = ("bbox", "segm") if task == "instance_segmentation" else ("bbox",)

    def evaluate(trainer: AiTTrainer, dataset: SeededExamples, prefix: str) -> dict[str, float]:
        from accelerate.utils import gather_object

        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        rank, world = trainer.args.process_index, trainer.args.world_size
        subset = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
        loader = torch.utils.data.DataLoader(
            subset, batch_size=batch_size, collate_fn=collator, num_workers=num_workers
        )
        results = []
        with torch.no_grad():
            for batch in loader:
                output = model(pixel_values=batch["pixel_values"].to(trainer.args.device), task=task)
                for i, image_id in enumerate(batch["image_ids"]):
                    w_scale, h_scale = batch["scale_factors"][i]
                    scale = torch.tensor([w_scale, h_scale, w_scale, h_scale], dtype=torch.float32)
                    boxes = output.pred_boxes[i].float().cpu() / scale
                    prediction = {
                        "boxes": boxes,
                        "scores": output.pred_scores[i].float().cpu(),
                        "labels": output.pred_labels[i].cpu(),
                    }
                    if task == "instance_segmentation":
                        prediction["masks"] = paste_masks_in_image(
                            output.pred_masks[i].float().cpu(),
                            boxes,
                            tuple(batch["original_sizes"][i]),
                            threshold=0.5,
                        )
                    results.append((int(image_id), prediction))
        if world > 1:
            results = gather_object(results)
        model.train(was_training)
        if not trainer.is_world_process_zero():
            return {}
        evaluator = CocoInstanceEvaluator(annotation_file, iou_types=iou_types)
        evaluator.update(dict(results))
        return {f"{prefix}_{name}": value for name, value in evaluator.compute().items()}

    return evaluate


# ----------------------------------------------------------------------------------------------------- run
def build_trainer(args: argparse.Namespace, preset: dict[str, Any]) -> AiTTrainer:
    """Model, data, optimiser, schedule and `AiTTrainer` of a stage-2 run (see `main`)."""
    training = preset["training"]
    tasks_spec: dict[str, Any] = preset["tasks"]
    model = build_model(preset, args)
    missing = [task for task in tasks_spec if task not in model.config.tasks]
    if missing:
        raise ValueError(
            f"preset tasks {missing} have no head in the model (its tasks: {model.config.tasks})"
        )
    num_processes = launch_world_size()
    per_process = per_process_batch_sizes(
        {task: int(spec["total_batch_size"]) for task, spec in tasks_spec.items()},
        num_processes,
        args.gradient_accumulation_steps,
    )
    has_depth_eval = "depth" in tasks_spec
    targs = training_arguments(
        args,
        training,
        per_process_batch=sum(per_process.values()),
        eval_batch_size=int(tasks_spec.get("depth", {}).get("eval_batch_size", 1)),
        label_names=["depth_labels"] if has_depth_eval else ["object_targets"],
        has_eval=not args.no_eval,
    )
    seed = int(training.get("seed", 0))
    train_parts, eval_sets, evaluators = {}, {}, {}
    with targs.main_process_first(desc="building the data sets"):
        for task, spec in tasks_spec.items():
            train_rows, train_transform, eval_rows, eval_transform, annotations = build_task_data(
                task, spec, args
            )
            train_parts[task] = (train_rows, train_transform)
            if eval_rows is not None:
                eval_sets[task] = SeededExamples(
                    {task: (eval_rows, eval_transform)}, seed, args.on_bad_sample
                )
                if task in OBJECT_TASKS:
                    evaluators[task] = make_coco_evaluator(
                        task, annotations, int(spec.get("eval_batch_size", 1)), targs.dataloader_num_workers
                    )
    train_dataset = SeededExamples(train_parts, seed, args.on_bad_sample)
    multi_task = len(tasks_spec) > 1
    train_collator = SampleIdCollator(
        {task: DepthCollator() if task == "depth" else DetectionCollator(task) for task in tasks_spec},
        multi_task=multi_task,
    )

    def sampler_factory(num_replicas: int, rank: int) -> StepBatchSampler:
        return StepBatchSampler(train_dataset.sizes, per_process, num_replicas, rank, seed)

    optimizer_spec = training["optimizer"]
    if optimizer_spec.get("type", "adamw_layer_decay") != "adamw_layer_decay":
        raise ValueError(
            f"stage-2 optimizer type must be 'adamw_layer_decay', got {optimizer_spec['type']!r}"
        )
    depths = list(model.config.backbone_config["depths"])

    def optimizer_factory(module: torch.nn.Module) -> torch.optim.Optimizer:
        return build_layer_decay_adamw(
            module,
            lr=float(optimizer_spec["lr"]),
            weight_decay=float(optimizer_spec.get("weight_decay", 0.05)),
            layer_decay_rate=float(optimizer_spec.get("layer_decay_rate", 1.0)),
            depths=depths,
            no_decay_names=optimizer_spec.get("no_decay_names", ()),
            betas=tuple(optimizer_spec.get("betas", (0.9, 0.999))),
            fused=bool(optimizer_spec.get("fused", True)),
        )

    eval_dataset: Any = None
    if eval_sets:
        eval_dataset = next(iter(eval_sets.values())) if len(eval_sets) == 1 else eval_sets
    else:
        targs.eval_strategy = "no"
    compute_metrics = None
    if has_depth_eval and "depth" in eval_sets:
        crop = {} if model.config.depth_tokenizer.image_size == 480 else {"eval_crop": None}
        compute_metrics = make_depth_compute_metrics(**crop)
    base_lr = float(optimizer_spec["lr"])
    return AiTTrainer(
        model=model,
        args=targs,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=SampleIdCollator({"depth": DepthCollator()}) if has_depth_eval else None,
        compute_metrics=compute_metrics,
        train_sampler_factory=sampler_factory,
        train_collator=train_collator,
        optimizer_factory=optimizer_factory,
        lr_lambda_factory=lambda max_steps, per_epoch: make_lr_lambda(
            training.get("schedule", {}), base_lr, max_steps, per_epoch
        ),
        on_nonfinite_loss=args.on_nonfinite_loss,
        prediction_fn=make_prediction_fn(tasks_spec) if has_depth_eval else None,
        custom_evaluators=evaluators,
    )


def save_final(trainer: AiTTrainer, output_dir: str) -> None:
    """The trained solver as an HF folder, with an image processor for its first task."""
    trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        try:
            from ait_hf import image_processor_for_config

            image_processor_for_config(trainer.model.config).save_pretrained(output_dir)
        except ImportError:  # an older ait_hf without the hub helpers
            logger.warning("no image processor saved (ait_hf.image_processor_for_config is unavailable)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.stage2", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--nyu-root", help="NYUv2 folder (depth)")
    parser.add_argument("--train-list", help="NYUv2 training list file (default: the original's)")
    parser.add_argument("--test-list", help="NYUv2 test list file (default: the original's)")
    parser.add_argument(
        "--coco-root", help="COCO folder with {split}2017/ and annotations/ (detection, masks)"
    )
    parser.add_argument("--coco-train-split", default="train")
    parser.add_argument("--coco-eval-split", default="val")
    parser.add_argument("--backbone-checkpoint", help="original SwinV2 checkpoint or HF solver folder")
    parser.add_argument("--load-from", help="converted HF task-solver folder to start from (non-strict)")
    parser.add_argument("--depth-tokenizer", help="stage-1 depth tokenizer folder or original vqvae_depth.pt")
    parser.add_argument("--mask-tokenizer", help="stage-1 mask tokenizer folder or original vqvae_insseg.pt")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> AiTTrainer:
    setup_logging()
    args = parse_args(argv)
    preset = preset_from_args(args, stage=2)
    trainer = build_trainer(args, preset)
    trainer.train(resume_from_checkpoint=resolve_resume(args.resume, args.output_dir))
    save_final(trainer, args.output_dir)
    if trainer.is_world_process_zero():
        logger.info("stage-2 solver saved to %s", os.path.abspath(args.output_dir))
    return trainer


if __name__ == "__main__":
    run_script(main)
