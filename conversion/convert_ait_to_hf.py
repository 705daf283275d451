"""Convert an original AiT checkpoint (task solver or stage-1 tokenizer) into a Hugging Face directory.

    python conversion/convert_ait_to_hf.py --checkpoint ait_depth_swinv2b.pth \
        --original-config swinv2b_480reso_depthonly --output-dir ait-depth-swinv2b

`--original-config` is an original config `.py` file (parsed, never executed), a preset name (the original
config file stems), or a fixture-style `config.json`. The checkpoint is read with
`torch.load(weights_only=True)`; conversion refuses to write anything when a key is unmapped, missing or
of the wrong shape.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from ait_hf.configuration_ait import AiTConfig, AiTVQVAEConfig
from ait_hf.hub import PIPELINE_TASKS, add_remote_code, image_processor_for_config, push_folder_to_hub
from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
from ait_hf.modeling_ait_vqvae import AiTVQVAE, load_original_state_dict
from ait_hf.original_checkpoints import convert_original_solver_state_dict
from ait_hf.original_presets import ORIGINAL_SOLVER_CONFIGS, ORIGINAL_TOKENIZER_CONFIGS

_BINARY_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_UNARY_OPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


class _Opaque:
    """Stands for an imported name: may appear in parts of the config we do not read, never evaluated."""

    def __init__(self, name: str) -> None:
        self.name = name


def read_python_config(path: str | Path) -> dict[str, Any]:
    """Variables of an original config file, evaluated from literals and arithmetic only (never executed).

    Allowed: assignments to names, imports (recorded, not run), docstrings; expressions made of literals,
    names, lists/tuples/dicts, `dict(...)` calls and arithmetic. Anything else is refused with its line.
    """
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    env: dict[str, Any] = {}

    def refuse(node: ast.AST, what: str) -> None:
        raise ValueError(
            f"{path}:{getattr(node, 'lineno', '?')}: {what} is not allowed in a config (only literal assignments and arithmetic)"
        )

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            refuse(node, f"undefined name {node.id!r}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                refuse(node, "dict unpacking")
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            left, right = value(node.left), value(node.right)
            if isinstance(left, _Opaque) or isinstance(right, _Opaque):
                return _Opaque("expression")
            return _BINARY_OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return _UNARY_OPS[type(node.op)](value(node.operand))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and not node.args
        ):
            return {kw.arg: value(kw.value) for kw in node.keywords if kw.arg is not None}
        if isinstance(node, ast.Attribute):
            base = value(node.value)
            if isinstance(base, _Opaque):
                return _Opaque(f"{base.name}.{node.attr}")
        refuse(node, f"expression {ast.dump(node)[:60]}")

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            result = value(stmt.value)
            for target in stmt.targets:
                env[target.id] = result
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                env[(alias.asname or alias.name).split(".")[0]] = _Opaque(alias.name)
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        ):
            continue
        else:
            refuse(stmt, type(stmt).__name__)
    return env


def _check_no_opaque(obj: Any, where: str) -> None:
    if isinstance(obj, _Opaque):
        raise ValueError(f"{where} uses the imported name {obj.name!r}; only literals are supported there")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_no_opaque(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_no_opaque(v, f"{where}[{i}]")


def resolve_original_config(spec: str) -> tuple[str, dict[str, Any]]:
    """('solver' | 'tokenizer', original model dict) from a preset name, a `.py` config or a `config.json`."""
    if spec in ORIGINAL_SOLVER_CONFIGS:
        return "solver", ORIGINAL_SOLVER_CONFIGS[spec]
    if spec in ORIGINAL_TOKENIZER_CONFIGS:
        return "tokenizer", ORIGINAL_TOKENIZER_CONFIGS[spec]
    path = Path(spec)
    if not path.exists():
        valid = sorted(ORIGINAL_SOLVER_CONFIGS) + sorted(ORIGINAL_TOKENIZER_CONFIGS)
        raise ValueError(
            f"--original-config {spec!r} is neither an existing file nor a preset; presets: {valid}"
        )
    if path.suffix == ".py":
        env = read_python_config(path)
        if "model" not in env:
            raise ValueError(f"{path} defines no 'model' dict")
        _check_no_opaque(env["model"], f"{path}: model")
        model = env["model"]
        return ("solver" if model.get("type") == "AiT" else "tokenizer"), model
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if "model" in data:
            return "solver", data["model"]
        if "vae_stage_model" in data:
            return "tokenizer", data["vae_stage_model"]
        raise ValueError(f"{path} has neither a 'model' nor a 'vae_stage_model' entry")
    raise ValueError(f"--original-config {path} must be a .py or .json file or a preset name")


def _complete_state_dict(checkpoint: str, derived_buffers: str | None) -> dict[str, torch.Tensor]:
    state_dict = load_original_state_dict(checkpoint)
    if derived_buffers:
        import numpy as np

        arrays = np.load(derived_buffers, allow_pickle=False)
        config = Path(derived_buffers).with_name("config.json")
        mapping = (
            json.loads(config.read_text())["checkpoint"]["keys_stored_in_derived_buffers_npz"]
            if config.exists()
            else {}
        )
        for key, name in mapping.items():
            state_dict[key] = torch.from_numpy(arrays[name])
    return state_dict


def convert(
    checkpoint: str,
    original_config: str,
    output_dir: str,
    vqvae_checkpoints: list[str] | None = None,
    derived_buffers: str | None = None,
    push_to_hub: str | None = None,
) -> AiTForDepthAndInstanceSegmentation | AiTVQVAE:
    """Convert and write `output_dir` (written to a temporary folder first, moved into place on success)."""
    kind, model_cfg = resolve_original_config(original_config)
    state_dict = _complete_state_dict(checkpoint, derived_buffers)
    if kind == "tokenizer":
        model = AiTVQVAE.from_original_checkpoint(
            state_dict, AiTVQVAEConfig.from_original_stage_config(model_cfg)
        )
    else:
        for spec in vqvae_checkpoints or []:
            head, _, path = spec.rpartition("=")
            prefix = {"depth": "depth_head.vqvae.", "mask": "insseg_head.vqvae.", "": None}.get(head)
            if prefix is None:
                raise ValueError(f"--vqvae-checkpoint {spec!r}: write depth=PATH or mask=PATH")
            for key, value in load_original_state_dict(path).items():
                key = prefix + key.removeprefix("module.")
                if key in state_dict and not torch.equal(state_dict[key], value):
                    raise ValueError(f"{path}: {key} differs from the tokenizer weights inside {checkpoint}")
                state_dict[key] = value
        model = AiTForDepthAndInstanceSegmentation(AiTConfig.from_original_config(model_cfg))
        model.load_state_dict(convert_original_solver_state_dict(state_dict, model))
    model.eval()
    out = Path(output_dir)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        model.save_pretrained(tmp)
        _save_extras(model, tmp, original_config, checkpoint)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    if push_to_hub:  # the whole folder: model.push_to_hub alone would leave out the processor, card and code
        push_folder_to_hub(out, push_to_hub, commit_message=f"Convert {Path(checkpoint).name}")
    return model


def _save_extras(model: torch.nn.Module, directory: str, original_config: str, checkpoint: str) -> None:
    """Image processor (solvers; its `task` is the model's first task), model card and remote code."""
    if isinstance(model, AiTForDepthAndInstanceSegmentation):
        image_processor_for_config(model.config).save_pretrained(directory)
    Path(directory, "README.md").write_text(model_card(original_config, model, checkpoint))
    add_remote_code(directory)


# ------------------------------------------------------------------------------------------ model cards
MODEL_CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"
_TASK_PIPELINES = {task: pipeline for pipeline, task in PIPELINE_TASKS.items()}
_TASK_DATASETS = {"depth": "nyu_depth_v2", "instance_segmentation": "coco", "object_detection": "coco"}
_TASK_METRICS = {
    "depth": ["delta1", "abs_rel", "rmse"],
    "instance_segmentation": ["box_ap", "mask_ap"],
    "object_detection": ["box_ap"],
}


def model_card_name(original_config: str) -> str:
    """The released configuration a conversion comes from: the preset name or the config file's stem."""
    return Path(original_config).stem


def model_card(original_config: str, model: torch.nn.Module, checkpoint: str) -> str:
    """`model_cards/<configuration>.md` for the released checkpoints, else a short generated card."""
    card = MODEL_CARDS_DIR / f"{model_card_name(original_config)}.md"
    if card.is_file():
        return card.read_text()
    return _generic_model_card(model, Path(checkpoint).name, original_config)


def _generic_model_card(model: torch.nn.Module, checkpoint_name: str, original_config: str) -> str:
    """Card of a checkpoint that is not one of the released ones (own training, fixtures): metadata + caveats."""
    if isinstance(model, AiTForDepthAndInstanceSegmentation):
        tasks = list(model.config.tasks)
        pipeline_tag = f"pipeline_tag: {_TASK_PIPELINES[tasks[0]]}\n"
        datasets = sorted({_TASK_DATASETS[t] for t in tasks})
        metrics = [m for t in tasks for m in _TASK_METRICS[t]]
        what = f"an AiT task solver for {', '.join(t.replace('_', ' ') for t in tasks)}"
    else:
        tasks, pipeline_tag, metrics = [], "", []
        datasets = ["nyu_depth_v2" if model.config.tokenizer_type == "depth" else "coco"]
        what = f"an AiT VQ-VAE tokenizer for {model.config.tokenizer_type} maps"
    lines = "".join(f"  - {name}\n" for name in datasets)
    metric_lines = (
        ("metrics:\n" + "".join(f"  - {name}\n" for name in dict.fromkeys(metrics))) if metrics else ""
    )
    return (
        f"---\nlibrary_name: transformers\n{pipeline_tag}license: unknown\ntags:\n  - ait\n  - custom_code\n"
        f"datasets:\n{lines}{metric_lines}---\n\n"
        f"# AiT checkpoint converted from `{checkpoint_name}`\n\n"
        f"This folder holds {what}, converted with ait-hf from `{checkpoint_name}` (configuration "
        f"`{original_config}`). It is not one of the released original checkpoints, so no results are reported "
        "here; evaluate it before use.\n\n"
        "Load it with `import ait_hf` and the transformers Auto classes or pipelines, or with "
        "`trust_remote_code=True` (the folder carries the modelling code).\n\n"
        "## Licence\n\nThe original AiT repository (SwinTransformer/AiT) carries no licence; weights derived from "
        "its checkpoints inherit that unknown status (`license: unknown`). Check the terms of the weights you "
        "converted before sharing them.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", required=True, help="original .pth file (solver or stage-1 tokenizer)"
    )
    parser.add_argument(
        "--original-config", required=True, help="original config .py, preset name or config.json"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--vqvae-checkpoint", action="append", help="depth=PATH or mask=PATH stage-1 tokenizer file"
    )
    parser.add_argument(
        "--derived-buffers", help="npz of derived buffers omitted from the checkpoint (fixtures)"
    )
    parser.add_argument("--push-to-hub", help="repository id to push the converted model to")
    args = parser.parse_args(argv)
    try:
        convert(
            args.checkpoint,
            args.original_config,
            args.output_dir,
            args.vqvae_checkpoint,
            args.derived_buffers,
            args.push_to_hub,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
