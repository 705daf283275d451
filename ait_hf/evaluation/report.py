"""Write evaluation metrics as JSON and as a markdown table, for the CLI, model cards and notes.

Metrics are either flat ``{name: value}`` (one table) or sectioned ``{section: {name: value}}`` (one
table per section, e.g. "depth", "bbox", "segm", "run"). Each table has one header row of metric names
and one row of values, the layout the original prints and papers use.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["format_metrics_markdown", "write_metrics_report"]


def _json_safe(value: Any) -> Any:
    """Plain JSON values: numpy/torch scalars become Python numbers, NaN/inf become null (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format_value(value: Any, float_format: str) -> str:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return float_format.format(value) if math.isfinite(value) else str(value)
    return str(value).replace("|", "\\|")


def _table(metrics: Mapping[str, Any], float_format: str) -> list[str]:
    names = [str(name).replace("|", "\\|") for name in metrics]
    values = [_format_value(value, float_format) for value in metrics.values()]
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names), "| " + " | ".join(values) + " |"]


def _is_sectioned(metrics: Mapping[str, Any]) -> bool:
    return bool(metrics) and all(isinstance(value, Mapping) for value in metrics.values())


def format_metrics_markdown(
    metrics: Mapping[str, Any], *, title: str | None = None, float_format: str = "{:.4f}"
) -> str:
    """Markdown for flat or sectioned metrics (see module docstring); floats use `float_format`."""
    lines: list[str] = []
    if title:
        lines += [f"# {title}", ""]
    if not metrics:
        lines.append("(no metrics)")
    elif _is_sectioned(metrics):
        for section, section_metrics in metrics.items():
            lines += [f"## {section}", ""]
            lines += _table(section_metrics, float_format) if section_metrics else ["(no metrics)"]
            lines.append("")
    else:
        mixed = [key for key, value in metrics.items() if isinstance(value, Mapping)]
        if mixed:
            raise ValueError(f"metrics mix sections and plain values; sections: {mixed}")
        lines += _table(metrics, float_format)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_metrics_report(
    metrics: Mapping[str, Any],
    json_path: str | os.PathLike | None = None,
    md_path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    float_format: str = "{:.4f}",
) -> str:
    """Write `metrics` to `json_path` (full precision, NaN as null) and/or `md_path`; return the markdown.

    Parent folders are created. Values may be Python or numpy/torch scalars, strings or ints.
    """
    markdown = format_metrics_markdown(metrics, title=title, float_format=float_format)
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(
            json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
    if md_path is not None:
        md_path = Path(md_path)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown, encoding="utf-8")
    return markdown
