"""NYU Depth V2 in the BTS / GLPDepth layout the original AiT trains on, as a memory-mapped `datasets.Dataset`.

Layout (``root`` is the ``nyu_depth_v2`` folder)::

    root/<scene>/rgb_00045.jpg, root/<scene>/sync_depth_00045.png          train (24,231 pairs)
    root/official_splits/test/<scene>/rgb_00045.jpg, .../sync_depth_00045.png  test (654 pairs)

A list file names one pair per line, ``/<scene>/rgb_XXXXX.jpg /<scene>/sync_depth_XXXXX.png``, paths relative
to the split folder (a leading ``/`` is optional; a third column with the focal length, as in BTS lists, is
accepted). The original list files ship with this package. Where the training scenes sit in ``root/sync/``
(the BTS download) that folder is used automatically.

Depth PNGs are uint16 millimetres; they decode to float32 metres as ``mm / 1000`` and 0 (invalid) stays 0.

Build once on disk::

    python -m ait_hf.data.nyu --root data/nyu_depth_v2 --split train --output data/prepared/nyu_train
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image

from ._arrow import dataset_from_rows, file_signature, fingerprint_of, image_header_size, image_reference
from .validation import BadSampleLog, DataValidationError, OnError, apply_to_batch

NYU_SPLITS = ("train", "test")
NYU_DATASET_TAG = "ait_hf.nyu_depth_v2"
_PACKAGED_LISTS = {"train": "nyudepthv2_train.txt", "test": "nyudepthv2_test.txt"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")

NYU_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "depth": datasets.Image(),
        "scene": datasets.Value("string"),
        "file_name": datasets.Value("string"),
        "depth_file_name": datasets.Value("string"),
        "height": datasets.Value("int32"),
        "width": datasets.Value("int32"),
        "focal": datasets.Value("float32"),
    }
)


@dataclass(frozen=True)
class NYUPair:
    """One list-file entry: image and depth paths relative to the split folder."""

    image: str
    depth: str
    focal: float | None
    line_number: int

    @property
    def scene(self) -> str:
        parts = Path(self.image).parts
        return parts[-2] if len(parts) >= 2 else ""


def packaged_nyu_list_file(split: str) -> Path:
    """Path of the original list file for ``split`` ("train": 24,231 pairs, "test": 654 pairs)."""
    if split not in _PACKAGED_LISTS:
        raise ValueError(f"NYUv2 split must be one of {NYU_SPLITS}, got {split!r}")
    return Path(str(resources.files("ait_hf.data") / "filenames" / _PACKAGED_LISTS[split]))


def parse_nyu_list_file(list_file: str | os.PathLike, log: BadSampleLog | None = None) -> list[NYUPair]:
    """Parse a NYUv2 list file; a bad line raises (naming file and line) or is skipped through ``log``."""
    log = log or BadSampleLog(f"NYUv2 list {list_file}", "raise")
    path = Path(list_file)
    if not path.is_file():
        raise DataValidationError(f"NYUv2 list file {path} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            fields = line.split()
            where = f"{path}:{line_number}"
            if len(fields) not in (2, 3):
                log.report("unparsable_line", where, f"expected 'IMAGE DEPTH [FOCAL]', got {line!r}")
                continue
            image, depth = fields[0].lstrip("/"), fields[1].lstrip("/")
            if not image.lower().endswith((".jpg", ".jpeg", ".png")) or not depth.lower().endswith(".png"):
                log.report(
                    "unparsable_line", where, f"expected an image path and a depth .png path, got {line!r}"
                )
                continue
            focal = None
            if len(fields) == 3:
                try:
                    focal = float(fields[2])
                except ValueError:
                    log.report("unparsable_line", where, f"focal length {fields[2]!r} is not a number")
                    continue
            pairs.append(NYUPair(image, depth, focal, line_number))
    return pairs


def _split_folder(root: Path, split: str, pairs: Sequence[NYUPair]) -> Path:
    if split == "test":
        return root / "official_splits" / "test"
    # BTS downloads keep the training scenes in root/sync; GLPDepth/AiT put them directly in root.
    if pairs and not (root / pairs[0].image).exists() and (root / "sync" / pairs[0].image).exists():
        return root / "sync"
    return root


def _check_pair(folder: Path, pair: NYUPair, where: str, log: BadSampleLog) -> tuple[int, int] | None:
    image_path, depth_path = folder / pair.image, folder / pair.depth
    for kind, path in (("image", image_path), ("depth", depth_path)):
        if not path.is_file():
            log.report("missing_file", where, f"{kind} file {path} does not exist")
            return None
    try:
        width, height = image_header_size(image_path)
    except (OSError, SyntaxError, ValueError) as error:
        log.report("unreadable_image", where, f"cannot read image {image_path}: {error}")
        return None
    try:
        with PIL.Image.open(depth_path) as depth:
            depth_format, depth_mode, depth_size = depth.format, depth.mode, depth.size
    except (OSError, SyntaxError, ValueError) as error:
        log.report("unreadable_depth", where, f"cannot read depth PNG {depth_path}: {error}")
        return None
    if depth_format != "PNG" or depth_mode not in _SIXTEEN_BIT_MODES:
        log.report(
            "bad_depth_dtype",
            where,
            f"depth file {depth_path} is {depth_format} mode {depth_mode!r}; expected a 16-bit single-channel "
            "PNG of millimetres (uint16)",
        )
        return None
    if depth_size != (width, height):
        log.report(
            "size_mismatch",
            where,
            f"depth {depth_path} is {depth_size[0]}x{depth_size[1]} but image {image_path} is {width}x{height}",
        )
        return None
    return width, height


def load_nyu_depth_v2(
    root: str | os.PathLike,
    split: str = "train",
    list_file: str | os.PathLike | None = None,
    *,
    on_error: OnError = "raise",
    validate_files: bool = True,
    embed_files: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Load NYUv2 pairs as a memory-mapped `datasets.Dataset` with images decoded lazily.

    Args:
        root: the ``nyu_depth_v2`` folder (see the module docstring for the layout).
        split: "train" or "test"; picks the split folder and the packaged list file.
        list_file: a list file of your own instead of the packaged one.
        on_error: "raise" stops at the first bad entry with a message naming the file and line; "skip" leaves
            bad entries out and warns once with the count (`BadSampleWarning`). Bad entries: lines that do
            not parse, missing or unreadable files, depth that is not a 16-bit PNG, depth and image sizes
            that differ.
        validate_files: read every file header while loading (the checks above; a few seconds for 24k pairs).
            Without it only the list file is checked, and sizes are left as -1.
        embed_files: store the file bytes in the Arrow file (self-contained) instead of paths.
        cache_dir: `datasets` cache folder for the Arrow file.

    Returns:
        Columns ``image`` (PIL RGB), ``depth`` (float32 metres, HxW numpy array, 0 = invalid), ``scene``,
        ``file_name``, ``depth_file_name``, ``height``, ``width``, ``focal`` (None unless the list gives it).
        ``depth`` is decoded from the uint16 PNG by the data set's format transform (`NYUDepthDecode`); a
        later ``with_transform`` replaces it, so the ait_hf transforms accept the raw PNG too.
    """
    if split not in NYU_SPLITS:
        raise ValueError(f"NYUv2 split must be one of {NYU_SPLITS}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(f"NYUv2 root folder {root} does not exist")
    list_path = Path(list_file) if list_file is not None else packaged_nyu_list_file(split)
    log = BadSampleLog(f"NYUv2 {split} ({list_path})", on_error)
    pairs = parse_nyu_list_file(list_path, log)
    folder = _split_folder(root, split, pairs)

    rows = []
    for pair in pairs:
        where = f"{list_path}:{pair.line_number}"
        if validate_files:
            size = _check_pair(folder, pair, where, log)
            if size is None:
                continue
        else:
            size = (-1, -1)
        rows.append(
            {
                "image": image_reference(folder / pair.image, embed_files),
                "depth": image_reference(folder / pair.depth, embed_files),
                "scene": pair.scene,
                "file_name": pair.image,
                "depth_file_name": pair.depth,
                "height": size[1],
                "width": size[0],
                "focal": pair.focal,
            }
        )
    log.finish()
    if not rows:
        raise DataValidationError(f"no usable NYUv2 pairs in {list_path} under {folder}")
    fingerprint = fingerprint_of(
        "nyu",
        str(folder.resolve()),
        file_signature(list_path),
        validate_files,
        embed_files,
        on_error,
        len(rows),
    )
    dataset = dataset_from_rows(rows, NYU_FEATURES, fingerprint, cache_dir)
    dataset.info.description = json.dumps({"ait_hf": NYU_DATASET_TAG, "split": split})
    return dataset.with_transform(NYUDepthDecode())


def depth_to_metres(depth: Any) -> np.ndarray:
    """Float32 metres from a decoded depth value: a uint16 PNG image / array (mm), or metres already.

    uint16 millimetres are divided by 1000 in float32, exactly as the original pipeline does; 0 stays 0.
    """
    if isinstance(depth, PIL.Image.Image):
        if depth.mode not in _SIXTEEN_BIT_MODES:
            raise DataValidationError(f"depth image has mode {depth.mode!r}; expected 16-bit millimetres")
        depth = np.asarray(depth)
    array = np.asarray(depth)
    if array.dtype.kind in "ui":
        return array.astype(np.float32) / np.float32(1000.0)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    raise DataValidationError(
        f"depth array has dtype {array.dtype}; expected uint16 millimetres or float metres"
    )


class NYUDepthDecode:
    """Format transform: ``image`` to PIL RGB and ``depth`` (uint16 PNG) to float32 metres."""

    def _example(self, example: dict[str, Any]) -> dict[str, Any]:
        example = dict(example)
        if "image" in example and isinstance(example["image"], PIL.Image.Image):
            example["image"] = example["image"].convert("RGB")
        if "depth" in example and example["depth"] is not None:
            example["depth"] = depth_to_metres(example["depth"])
        return example

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return apply_to_batch(self._example, batch)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build the NYUv2 data set once and save it with `save_to_disk`."""
    parser = argparse.ArgumentParser(
        prog="python -m ait_hf.data.nyu", description="Build the NYU Depth V2 data set (Arrow) once on disk."
    )
    parser.add_argument("--root", required=True, help="the nyu_depth_v2 folder")
    parser.add_argument("--split", default="train", choices=NYU_SPLITS)
    parser.add_argument("--list-file", default=None, help="a list file instead of the packaged one")
    parser.add_argument("--output", required=True, help="folder to write the data set to")
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"))
    parser.add_argument("--embed-files", action="store_true", help="store image bytes instead of paths")
    parser.add_argument("--no-validate", action="store_true", help="skip reading file headers")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    dataset = load_nyu_depth_v2(
        args.root,
        args.split,
        args.list_file,
        on_error=args.on_error,
        validate_files=not args.no_validate,
        embed_files=args.embed_files,
        cache_dir=args.cache_dir,
    )
    # The depth decoding is a format transform, which save_to_disk cannot store: load_prepared_dataset
    # puts it back.
    dataset.with_format(None).save_to_disk(args.output)
    print(f"wrote {len(dataset)} NYUv2 {args.split} pairs to {args.output}")


if __name__ == "__main__":
    main()
