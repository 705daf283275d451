"""Hugging Face integration helpers: Auto-class registration, processor settings derived from a model config,
self-contained ("remote code") checkpoint folders, pipeline task names and Hub upload of a whole folder.

Nothing here ships with a checkpoint: the files that do (configuration, modeling, image processing) are
copied next to the weights by `add_remote_code`, which follows their relative imports exactly as the
transformers remote-code loader does.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .configuration_ait import AiTConfig, AiTVQVAEConfig
from .image_processing_ait import AiTImageProcessor
from .image_processing_pil_ait import AiTImageProcessorPil
from .modeling_ait import AiTForDepthAndInstanceSegmentation, AiTModel
from .modeling_ait_vqvae import AiTVQVAE

PACKAGE_DIR = Path(__file__).resolve().parent

# transformers pipeline task -> the AiT task that serves it
PIPELINE_TASKS: dict[str, str] = {
    "depth-estimation": "depth",
    "image-segmentation": "instance_segmentation",
    "object-detection": "object_detection",
}

# Auto classes that load the task solver; every one maps to the same class (one model, several heads)
SOLVER_AUTO_CLASSES = (
    "AutoModelForDepthEstimation",
    "AutoModelForInstanceSegmentation",
    "AutoModelForImageSegmentation",  # what pipeline("image-segmentation") loads
    "AutoModelForObjectDetection",
)
SOLVER_AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_ait.AiTConfig",
    "AutoModel": "modeling_ait.AiTModel",
    **{name: "modeling_ait.AiTForDepthAndInstanceSegmentation" for name in SOLVER_AUTO_CLASSES},
}
TOKENIZER_AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_ait.AiTVQVAEConfig",
    "AutoModel": "modeling_ait_vqvae.AiTVQVAE",
}
PROCESSOR_AUTO_MAP: dict[str, Any] = {
    "AutoImageProcessor": {
        "torchvision": "image_processing_ait.AiTImageProcessor",
        "pil": "image_processing_pil_ait.AiTImageProcessorPil",
    }
}
# the modules named in the auto maps; their relative imports are followed to get every shipped file
REMOTE_CODE_ENTRY_FILES = (
    "configuration_ait.py",
    "modeling_ait.py",
    "modeling_ait_vqvae.py",
    "image_processing_ait.py",
    "image_processing_pil_ait.py",
)


def register_auto_classes() -> None:
    """Register the AiT config, models and image processors with the transformers Auto classes (idempotent)."""
    import transformers

    transformers.AutoConfig.register(AiTConfig.model_type, AiTConfig, exist_ok=True)
    transformers.AutoConfig.register(AiTVQVAEConfig.model_type, AiTVQVAEConfig, exist_ok=True)
    transformers.AutoModel.register(AiTConfig, AiTModel, exist_ok=True)
    transformers.AutoModel.register(AiTVQVAEConfig, AiTVQVAE, exist_ok=True)
    for name in SOLVER_AUTO_CLASSES:
        getattr(transformers, name).register(AiTConfig, AiTForDepthAndInstanceSegmentation, exist_ok=True)
    transformers.AutoImageProcessor.register(
        AiTConfig,
        image_processor_classes={"torchvision": AiTImageProcessor, "pil": AiTImageProcessorPil},
        exist_ok=True,
    )


# ------------------------------------------------------------------------------------------ tasks
def model_task_for(config: AiTConfig, task: str) -> str:
    """The model head that serves `task` ("depth", "instance_segmentation" or "object_detection").

    Object detection is served by the instance segmentation head when the model has no detection head (its
    object sequences carry the same boxes, labels and scores). A task the checkpoint cannot serve raises a
    ValueError naming the tasks it has.
    """
    if task in config.tasks:
        return task
    if task == "object_detection" and "instance_segmentation" in config.tasks:
        return "instance_segmentation"
    raise ValueError(
        f"this AiT checkpoint has no {task!r} head; it was trained for {list(config.tasks)}. Use a checkpoint "
        f"trained for {task!r} or one of its own tasks."
    )


def image_processor_for_config(
    config: AiTConfig, task: str | None = None, backend: str = "torchvision"
) -> AiTImageProcessor | AiTImageProcessorPil:
    """An image processor whose input frames fit `config` (default task: `config.tasks[0]`).

    Depth: `depth_tokenizer.image_size` pixels high and 4/3 as wide (480x640 for the released models, the
    NYUv2 frame; the model slides its square window over the width). Detection / instance segmentation: keep-ratio
    resize and padding to `config.image_size` (640 for the released models).
    """
    if backend not in ("torchvision", "pil"):
        raise ValueError(f"backend must be 'torchvision' or 'pil', got {backend!r}")
    kwargs: dict[str, Any] = {"task": task or config.tasks[0]}
    if config.depth_tokenizer is not None:
        side = config.depth_tokenizer.image_size
        kwargs["size"] = {"height": side, "width": side * 4 // 3}
    if {"instance_segmentation", "object_detection"} & set(config.tasks):
        side = config.image_size
        kwargs["instance_size"] = {"shortest_edge": side, "longest_edge": side}
        kwargs["pad_size"] = {"height": side, "width": side}
    cls = AiTImageProcessor if backend == "torchvision" else AiTImageProcessorPil
    return cls(**kwargs)


# ------------------------------------------------------------------------------------- remote code
def remote_code_files() -> list[Path]:
    """Every package file a self-contained checkpoint needs: the auto-map modules and, recursively, the
    modules they import relatively (found with the same parser the transformers remote-code loader uses).

    Raises if one of them imports the package absolutely (`ait_hf...`), which the flat folder would break.
    """
    from transformers.dynamic_module_utils import get_relative_import_files

    files: set[Path] = set()
    for name in REMOTE_CODE_ENTRY_FILES:
        entry = PACKAGE_DIR / name
        files.add(entry)
        files.update(Path(f).resolve() for f in get_relative_import_files(entry))
    for path in sorted(files):
        if path.parent != PACKAGE_DIR:
            raise RuntimeError(f"{path} is outside {PACKAGE_DIR}; shipped modules must sit side by side")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import ait_hf", "from ait_hf")):
                raise RuntimeError(
                    f"{path.name}:{number} imports the ait_hf package absolutely ({stripped!r}); files that ship "
                    "with a checkpoint may only use relative imports"
                )
    return sorted(files)


def _update_json(path: Path, update: dict[str, Any]) -> None:
    data = json.loads(path.read_text())
    data.update(update)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def add_remote_code(directory: str | os.PathLike) -> list[str]:
    """Make a saved AiT folder loadable without `ait_hf` (`trust_remote_code=True`).

    Adds `auto_map` to `config.json` (solver or tokenizer) and to `preprocessor_config.json` when present,
    and copies the modules the auto maps name (with their relative imports). Returns the copied file names.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json; save the model first")
    model_type = json.loads(config_path.read_text()).get("model_type")
    auto_maps = {AiTConfig.model_type: SOLVER_AUTO_MAP, AiTVQVAEConfig.model_type: TOKENIZER_AUTO_MAP}
    if model_type not in auto_maps:
        raise ValueError(
            f"{config_path}: model_type {model_type!r} is not an AiT model ('ait' or 'ait_vqvae')"
        )
    _update_json(config_path, {"auto_map": auto_maps[model_type]})
    processor_path = directory / "preprocessor_config.json"
    if processor_path.is_file():
        _update_json(processor_path, {"auto_map": PROCESSOR_AUTO_MAP})
    copied = []
    for source in remote_code_files():
        shutil.copyfile(source, directory / source.name)
        copied.append(source.name)
    return copied


def save_for_remote_code(
    directory: str | os.PathLike,
    model: AiTForDepthAndInstanceSegmentation | AiTVQVAE,
    image_processor: AiTImageProcessor | AiTImageProcessorPil | None = None,
    **save_kwargs: Any,
) -> Path:
    """Save `model` (and an image processor for solvers) as a self-contained checkpoint folder.

    The folder loads with or without `ait_hf` installed: with the package, through the registered Auto classes;
    without it, with `trust_remote_code=True`. For a task solver without `image_processor`, one matching the
    config is written (`image_processor_for_config`). `save_kwargs` go to `model.save_pretrained`.
    """
    directory = Path(directory)
    model.save_pretrained(directory, **save_kwargs)
    if isinstance(model, AiTForDepthAndInstanceSegmentation):
        (image_processor or image_processor_for_config(model.config)).save_pretrained(directory)
    elif image_processor is not None:
        raise ValueError("an AiT VQ-VAE tokenizer has no image processor; pass image_processor=None")
    add_remote_code(directory)
    return directory


def push_folder_to_hub(
    directory: str | os.PathLike,
    repo_id: str,
    token: str | bool | None = None,
    private: bool | None = None,
    commit_message: str = "Upload AiT checkpoint",
    ignore_patterns: Iterable[str] | None = None,
) -> str:
    """Create `repo_id` if needed and upload the whole folder (weights, configs, code, README) in one commit.

    `model.push_to_hub` alone would upload neither the image processor nor the model card written beside the
    weights. Returns the commit URL.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    info = api.upload_folder(
        folder_path=str(directory),
        repo_id=repo_id,
        commit_message=commit_message,
        ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
    )
    return str(getattr(info, "commit_url", info))


__all__ = [
    "PIPELINE_TASKS",
    "PROCESSOR_AUTO_MAP",
    "SOLVER_AUTO_MAP",
    "TOKENIZER_AUTO_MAP",
    "add_remote_code",
    "image_processor_for_config",
    "model_task_for",
    "push_folder_to_hub",
    "register_auto_classes",
    "remote_code_files",
    "save_for_remote_code",
]
