"""Build memory-mapped Arrow data sets from a generator with an explicit, input-derived cache fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import PIL.Image

# Bump when the row layout written by a loader changes, so that stale cache files are not reused.
ROW_FORMAT_VERSION = "ait_hf.data/1"


def file_signature(path: str | os.PathLike) -> dict[str, Any]:
    """Path, size and modification time: enough to notice an edited annotation or list file."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint_of(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (plus the row format version)."""
    payload = json.dumps([ROW_FORMAT_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:40]


def _yield_rows(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from rows


def dataset_from_rows(
    rows: list[dict[str, Any]] | Callable[[], Iterator[dict[str, Any]]],
    features: datasets.Features,
    fingerprint: str,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Write rows once to an Arrow cache file and return the memory-mapped data set.

    The fingerprint is given explicitly (derived from the inputs by the caller) so that `datasets` neither
    hashes the rows nor reuses a cache file written from different inputs.
    """
    if callable(rows):
        generator, gen_kwargs = rows, None
    else:
        generator, gen_kwargs = _yield_rows, {"rows": rows}
    return datasets.Dataset.from_generator(
        generator,
        features=features,
        gen_kwargs=gen_kwargs,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        fingerprint=fingerprint,
    )


def image_reference(path: Path, embed: bool) -> dict[str, Any]:
    """The value of a `datasets.Image` column: a path to decode lazily, or the file's bytes when embedded.

    Embedded values carry no path: `datasets` drops the bytes of a value whose path is an existing file.
    """
    if embed:
        return {"path": None, "bytes": path.read_bytes()}
    return {"path": str(path), "bytes": None}


def image_header_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the file header, after EXIF rotation (as `datasets.Image` decodes it)."""
    with PIL.Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(PIL.Image.ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):
            width, height = height, width
    return width, height
