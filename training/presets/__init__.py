"""Training presets: one module per original configuration, plus ``tiny_*`` presets for tests and demos.

A preset is a plain dict ``PRESET`` in ``training/presets/<name>.py``:

* ``stage``: 1 (VQ-VAE tokenizer) or 2 (task solver);
* ``original``: the original config file it reproduces (``None`` for tiny presets);
* ``model``: ``{"original_preset": name}`` (the original solver config, `AiTConfig.from_original_preset`),
  ``{"original_stage_config": {...}}`` (an original stage-1 ``model`` dict) or ``{"config": {...}}`` (config
  keyword arguments);
* stage 1: ``data`` (``kind`` and transform arguments); stage 2: ``init`` (where the original starts from)
  and ``tasks`` (per task: total batch size over all processes, eval batch size, transform arguments);
* ``training``: optimiser, schedule, steps, clipping, mixed precision, evaluation / checkpoint / logging
  intervals, as the original config sets them.

`load_preset(name, overrides)` returns a deep copy with ``key.sub=value`` overrides applied (values are
Python literals; a key that does not exist is an error listing the valid keys, unless written ``+key=value``).
"""

from __future__ import annotations

import ast
import copy
import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any

# The original configs' no-decay names (substrings of original parameter names), shared by every solver preset.
ORIGINAL_NO_DECAY_NAMES = [
    "relative_position_bias_table", "rpe_mlp", "logit_scale",
    "det_embed", "voc_embed", "enc_embed", "dec_embed", "mask_embed",
]  # fmt: skip


def list_presets() -> list[str]:
    """Names of every preset module in this package."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and not info.ispkg
    )


def load_preset(name: str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The preset ``name`` (a deep copy) with ``key.sub=value`` overrides applied."""
    valid = list_presets()
    if name not in valid:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(valid)}")
    module = importlib.import_module(f"{__name__}.{name}")
    preset = copy.deepcopy(module.PRESET)
    preset["name"] = name
    for override in overrides:
        apply_override(preset, override)
    return preset


def parse_value(text: str) -> Any:
    """A Python literal (number, bool, None, list, dict, quoted string), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return text


def apply_override(preset: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` (existing key) or ``+a.b.c=value`` (new key) override in place."""
    if "=" not in override:
        raise ValueError(f"override {override!r} must look like key.sub=value")
    key, text = override.split("=", 1)
    add = key.startswith("+")
    parts = key.lstrip("+").strip().split(".")
    node: Any = preset
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:depth]) or "the preset"
            keys = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"override {override!r}: {where} has no key {part!r}; valid keys: {keys}")
        if node[part] is None and add:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if not isinstance(node, dict):
        raise ValueError(f"override {override!r}: {'.'.join(parts[:-1])} is not a mapping")
    if last not in node and not add:
        where = ".".join(parts[:-1]) or "the preset"
        raise ValueError(
            f"override {override!r}: {where} has no key {last!r}; valid keys: {sorted(node)} "
            "(write +key=value to add a key)"
        )
    node[last] = parse_value(text)
