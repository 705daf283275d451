"""Metric reports: JSON round trip and markdown tables."""

import json
import math

import numpy as np
import pytest

from ait_hf.evaluation import format_metrics_markdown, write_metrics_report


def test_flat_metrics_json_and_markdown(tmp_path):
    metrics = {"d1": 0.93456789, "abs_rel": np.float32(0.125), "num_images": 654, "silog": math.nan}
    json_path = tmp_path / "out" / "metrics.json"
    md_path = tmp_path / "out" / "metrics.md"
    markdown = write_metrics_report(metrics, json_path, md_path, title="NYUv2 depth")
    assert json.loads(json_path.read_text()) == {
        "d1": 0.93456789,
        "abs_rel": 0.125,
        "num_images": 654,
        "silog": None,
    }
    assert md_path.read_text() == markdown
    assert markdown == (
        "# NYUv2 depth\n"
        "\n"
        "| d1 | abs_rel | num_images | silog |\n"
        "|---|---|---|---|\n"
        "| 0.9346 | 0.1250 | 654 | nan |\n"
    )


def test_sectioned_metrics(tmp_path):
    metrics = {
        "bbox": {"AP": 0.5, "AP50": 0.75},
        "segm": {"AP": -1.0},
        "run": {"model": "ait-swinv2b", "images_per_second": 3.14159},
    }
    markdown = format_metrics_markdown(metrics, float_format="{:.2f}")
    assert markdown == (
        "## bbox\n\n| AP | AP50 |\n|---|---|\n| 0.50 | 0.75 |\n\n"
        "## segm\n\n| AP |\n|---|\n| -1.00 |\n\n"
        "## run\n\n| model | images_per_second |\n|---|---|\n| ait-swinv2b | 3.14 |\n"
    )
    json_path = tmp_path / "metrics.json"
    write_metrics_report(metrics, json_path=json_path)
    assert json.loads(json_path.read_text()) == metrics


def test_mixed_sections_are_rejected():
    with pytest.raises(ValueError, match="mix sections"):
        format_metrics_markdown({"bbox": {"AP": 0.5}, "num_images": 3})
