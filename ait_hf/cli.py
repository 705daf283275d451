"""`ait-hf` command line: predict with a saved AiT model, convert original checkpoints, evaluate.

    ait-hf predict photo.jpg more/*.png --model ait-depth-swinv2b --out predictions/
    ait-hf predict street.jpg --model ait-joint-swinv2b --task instance --threshold 0.4
    ait-hf convert --checkpoint ait_depth_swinv2b_ar.pth --original-config swinv2b_480reso_depthonly --output-dir out/
    ait-hf eval --model ait-depth-swinv2b --data nyu_depth_v2/ --task depth

`predict` writes, per image, `<name>_depth.png` (colourised, near = bright) and `<name>_depth.npy` (float32
metres, original image size) for depth, or `<name>_instances.png` / `<name>_detections.png` (mask / box
overlay) with a `.json` list of the kept objects.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CLI_TASKS = {"depth": "depth", "instance": "instance_segmentation", "detection": "object_detection"}
# The tiny model trained on synthetic rooms that ships with the package (see its README.md): used without --model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Anchor colours of the viridis colour map (public domain, van der Walt & Smith), far -> near; interpolated
# linearly below so that colourising a depth map needs no plotting library.
_DEPTH_COLOURS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32
)


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


# ------------------------------------------------------------------------------------------ loading
def _read_config(directory: Path) -> dict[str, Any]:
    if not directory.exists():
        raise CLIError(f"--model {directory}: no such directory")
    if not directory.is_dir():
        raise CLIError(f"--model {directory}: not a directory (pass the folder written by save_pretrained)")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CLIError(f"--model {directory} is not an AiT model directory: it has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CLIError(f"{config_path} is not valid JSON: {err}") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type == "ait_vqvae":
        raise CLIError(
            f"--model {directory} holds an AiT VQ-VAE tokenizer (model_type 'ait_vqvae'), not a task solver; "
            "predictions need a solver (model_type 'ait')"
        )
    if model_type != "ait":
        raise CLIError(
            f"--model {directory} is not an AiT model directory: {config_path} has model_type {model_type!r}, "
            "expected 'ait'"
        )
    return config


def load_model_and_processor(model_dir: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """Load an AiT task solver and its image processor from a folder, with CLI-friendly errors."""
    from transformers.utils import logging as transformers_logging

    from . import AiTForDepthAndInstanceSegmentation, AiTImageProcessor, image_processor_for_config

    directory = Path(model_dir)
    _read_config(directory)
    bars_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # the per-weight loading bar is noise on a command line
    try:
        model = AiTForDepthAndInstanceSegmentation.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise CLIError(f"--model {directory}: cannot load the model: {err}") from err
    finally:
        if bars_enabled:
            transformers_logging.enable_progress_bar()
    model.to(device).eval()
    if (directory / "preprocessor_config.json").is_file():
        processor = AiTImageProcessor.from_pretrained(directory)
    else:  # folders saved with model.save_pretrained only
        processor = image_processor_for_config(model.config)
    return model, processor


def expand_image_paths(inputs: Sequence[str]) -> list[Path]:
    """Files as given; directories are replaced by the image files they hold (sorted, not recursive)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(
                    f"{path}: the directory holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise CLIError(f"{path}: no such file or directory")
    return paths


def read_image(path: Path) -> Any:
    """Open and fully decode an image (first frame), raising CLIError that names the file on failure."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except Image.DecompressionBombError as err:
        raise CLIError(f"{path}: the image is larger than PIL's safety limit ({err})") from err
    except UnidentifiedImageError as err:
        raise CLIError(f"{path}: not an image file PIL can read") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated / corrupt data
        raise CLIError(f"{path}: cannot decode the image ({err})") from err


def display_rgb(image: Any) -> Any:
    """An 8-bit RGB version of `image` for drawing overlays (16-bit and float images rescaled, transparency
    composited on white like the image processor does)."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        array = np.clip(np.asarray(image, dtype=np.float32) / 257.0, 0, 255)
        return Image.fromarray(array.round().astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float32))
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


# ------------------------------------------------------------------------------------------ drawing
def colourise_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 colours, normalised per image, near = bright yellow, far = dark blue.

    Constant maps get the near colour; non-finite values are black.
    """
    depth = np.asarray(depth, dtype=np.float32)
    finite = np.isfinite(depth)
    if not finite.any():
        return np.zeros((*depth.shape, 3), dtype=np.uint8)
    low, high = float(depth[finite].min()), float(depth[finite].max())
    nearness = 1 - (depth - low) / (high - low) if high > low else np.ones_like(depth)
    position = np.clip(np.nan_to_num(nearness), 0, 1) * (len(_DEPTH_COLOURS) - 1)
    index = np.minimum(position.astype(np.int64), len(_DEPTH_COLOURS) - 2)
    fraction = (position - index)[..., None]
    colours = _DEPTH_COLOURS[index] * (1 - fraction) + _DEPTH_COLOURS[index + 1] * fraction
    colours[~finite] = 0
    return colours.round().astype(np.uint8)


def instance_colour(index: int) -> tuple[int, int, int]:
    """Distinct colours for successive instances (hues spaced by the golden ratio)."""
    red, green, blue = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_objects(image: Any, objects: list[dict[str, Any]], masks: Any = None) -> Any:
    """Overlay masks (blended) and boxes with `label score` captions on an RGB image."""
    from PIL import ImageDraw

    canvas = np.asarray(image, dtype=np.float32).copy()
    if masks is not None:
        for index, mask in enumerate(masks):
            canvas[mask] = 0.55 * canvas[mask] + 0.45 * np.array(instance_colour(index), dtype=np.float32)
    from PIL import Image

    result = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(result)
    for index, obj in enumerate(objects):
        x1, y1, x2, y2 = obj["box"]
        colour = instance_colour(index)
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=colour, width=2)
        draw.text((min(x1, x2) + 3, min(y1, y2) + 2), f"{obj['label']} {obj['score']:.2f}", fill=colour)
    return result


# ------------------------------------------------------------------------------------------ predict
def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output name per input: the file stem, suffixed with a counter when two inputs share it."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _object_records(result: dict[str, Any], id2label: dict[int, str], instance: bool) -> list[dict[str, Any]]:
    if instance:
        return [
            {
                "label": id2label.get(segment["label_id"], str(segment["label_id"])),
                "label_id": segment["label_id"],
                "score": segment["score"],
                "box": segment["bbox"],
                "mask_area": int(mask.sum()),
            }
            for segment, mask in zip(result["segments_info"], result["segmentation"])
        ]
    return [
        {
            "label": id2label.get(int(label), str(int(label))),
            "label_id": int(label),
            "score": float(score),
            "box": [float(v) for v in box],
        }
        for score, label, box in zip(result["scores"], result["labels"], result["boxes"])
    ]


def predict(
    images: Sequence[str],
    model_dir: str | Path,
    task: str | None = None,
    out_dir: str | Path = "ait_predictions",
    threshold: float = 0.5,
    batch_size: int = 1,
    device: str = "cpu",
    progress: bool = True,
    seed: int = 0,
    test_time_augmentation: bool = False,
) -> dict[str, list[Path]]:
    """Run `model_dir` on image files and write the output files; returns `{input path: [written files]}`.

    Images that cannot be read are reported on stderr and skipped; the caller sees them missing from the
    result. Raises CLIError for a bad model folder, an unknown or unsupported task and bad options. `seed`
    seeds the nucleus sampling of models that sample (the released instance models); `test_time_augmentation`
    adds the original depth evaluation's flips.
    """
    import torch
    from tqdm.auto import tqdm

    from . import model_task_for

    if batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0.0 <= threshold <= 1.0:
        raise CLIError(f"--threshold must be within [0, 1], got {threshold}")
    if task is not None and task not in CLI_TASKS:
        raise CLIError(f"--task must be one of {', '.join(CLI_TASKS)}, got {task!r}")
    paths = expand_image_paths(images)
    if not paths:
        raise CLIError("no input images")
    model, processor = load_model_and_processor(model_dir, device)
    ait_task = CLI_TASKS[task] if task else model.config.tasks[0]
    try:
        head = model_task_for(model.config, ait_task)
    except ValueError as err:
        raise CLIError(f"--model {model_dir}: {err}") from err
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = dict(zip(paths, _unique_stems(paths)))
    written: dict[str, list[Path]] = {}
    generator = torch.Generator(device).manual_seed(seed)
    options = {"test_time_augmentation": test_time_augmentation} if ait_task == "depth" else {}

    with tqdm(total=len(paths), unit="image", disable=not progress or len(paths) < 2) as bar:
        for start in range(0, len(paths), batch_size):
            batch = []
            for path in paths[start : start + batch_size]:
                try:
                    batch.append((path, read_image(path)))
                except CLIError as err:
                    print(f"ait-hf: skipped {err}", file=sys.stderr)
                    bar.update(1)
            if not batch:
                continue
            pil_images = [image for _, image in batch]
            sizes = [(image.height, image.width) for image in pil_images]
            inputs = processor(pil_images, task=ait_task, return_tensors="pt")
            with torch.inference_mode():
                outputs = model(inputs["pixel_values"].to(device), task=head, generator=generator, **options)
            if ait_task == "depth":
                results = processor.post_process_depth_estimation(outputs, target_sizes=sizes)
            elif ait_task == "instance_segmentation":
                results = processor.post_process_instance_segmentation(
                    outputs, threshold=threshold, target_sizes=sizes, return_binary_maps=True
                )
            else:
                results = processor.post_process_object_detection(
                    outputs, threshold=threshold, target_sizes=sizes
                )
            for (path, image), result in zip(batch, results):
                written[str(path)] = _write_result(out / stems[path], ait_task, image, result, id2label)
                bar.update(1)
    return written


def _write_result(
    base: Path, task: str, image: Any, result: dict[str, Any], id2label: dict[int, str]
) -> list[Path]:
    from PIL import Image

    if task == "depth":
        depth = result["predicted_depth"].float().cpu().numpy()
        npy, png = base.with_name(base.name + "_depth.npy"), base.with_name(base.name + "_depth.png")
        np.save(npy, depth.astype(np.float32))
        Image.fromarray(colourise_depth(depth)).save(png)
        return [png, npy]
    instance = task == "instance_segmentation"
    records = _object_records(result, id2label, instance)
    masks = result["segmentation"].cpu().numpy().astype(bool) if instance else None
    suffix = "_instances" if instance else "_detections"
    png, js = base.with_name(base.name + suffix + ".png"), base.with_name(base.name + suffix + ".json")
    draw_objects(display_rgb(image), records, masks).save(png)
    js.write_text(json.dumps(records, indent=2) + "\n")
    return [png, js]


# ------------------------------------------------------------------------------------------ convert
def conversion_script() -> Path:
    """The conversion script of a source checkout (conversion/ is not part of the installed package)."""
    return Path(__file__).resolve().parent.parent / "conversion" / "convert_ait_to_hf.py"


def convert(argv: Sequence[str]) -> int:
    """Run the conversion script's `main(argv)`.

    The script is executed with `runpy` rather than imported: `ait_hf` must not depend on `conversion/`
    (DESIGN.md layering), the script stays the one place that defines the conversion options, and it is only
    present in a source checkout, which this reports clearly instead of failing with an ImportError.
    """
    import runpy

    script = conversion_script()
    if not script.is_file():
        raise CLIError(
            f"`ait-hf convert` needs the conversion script of a source checkout ({script} is missing); clone the "
            "ait-hf repository and install it with `pip install -e .`, then rerun"
        )
    namespace = runpy.run_path(str(script), run_name="ait_hf_convert")
    return int(namespace["main"](list(argv)) or 0)


# ------------------------------------------------------------------------------------------ eval
def evaluate(argv: Sequence[str]) -> int:
    """Run the evaluation runner (`ait_hf.evaluation.runner`, NYUv2 depth / COCO AP) with `argv`."""
    from .evaluation.runner import main as run_evaluation

    return run_evaluation(list(argv), prog="ait-hf eval")


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ait-hf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{predict,convert,eval}")

    p = commands.add_parser("predict", help="predict depth, instances or boxes for image files")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument(
        "--model",
        help="AiT model folder (saved with save_pretrained or by the conversion script); default: the bundled "
        "tiny model trained on synthetic rooms (ait_hf/default_model, a demo, not a NYUv2/COCO model)",
    )
    p.add_argument("--task", choices=sorted(CLI_TASKS), help="default: the model's first task")
    p.add_argument("--out", default="ait_predictions", help="output folder (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum object score (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default: %(default)s)")
    p.add_argument("--tta", action="store_true", help="depth: also average horizontally flipped predictions")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling of instance models (default: 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    commands.add_parser(
        "convert",
        help="convert an original AiT checkpoint (arguments of conversion/convert_ait_to_hf.py)",
        add_help=False,
    )

    commands.add_parser(
        "eval",
        help="evaluate a model on NYUv2 (depth) or COCO (box / mask AP); see `ait-hf eval --help`",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit status (0 ok, 1 some inputs failed, 2 usage errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "convert":  # every further argument belongs to the conversion script
            return convert(argv[1:])
        if argv and argv[0] == "eval":  # and to the evaluation runner
            return evaluate(argv[1:])
        args = build_parser().parse_args(argv)
        device = args.device
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.model is None:
            if not (DEFAULT_MODEL_DIR / "config.json").is_file():
                raise CLIError(
                    "--model is required: pass an AiT model folder (converted with `ait-hf convert` or saved "
                    f"by training); the bundled default model ({DEFAULT_MODEL_DIR}) is not installed"
                )
            args.model = str(DEFAULT_MODEL_DIR)
        paths = expand_image_paths(args.images)
        written = predict(
            args.images,
            args.model,
            args.task,
            args.out,
            args.threshold,
            args.batch_size,
            device,
            not args.quiet,
            args.seed,
            args.tta,
        )
    except CLIError as err:
        print(f"ait-hf: error: {err}", file=sys.stderr)
        return 2
    for source, files in written.items():
        print(f"{source} -> {', '.join(str(f) for f in files)}")
    failed = len(paths) - len(written)
    if failed:
        print(f"ait-hf: {failed} of {len(paths)} images could not be read (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
