"""NYUv2 depth metrics against values worked out by hand on tiny maps."""

import math
import warnings

import numpy as np
import pytest
import torch

from ait_hf.evaluation import (
    DEPTH_METRIC_NAMES,
    NYU_EVAL_CROP,
    DepthMetrics,
    compute_depth_metrics,
    depth_metrics_per_image,
    make_depth_compute_metrics,
)


def _log_metrics(log_ratios):
    """rmse_log, log10 and silog from the per-pixel natural-log ratios ln(pred / gt)."""
    n = len(log_ratios)
    mean_sq = sum(value * value for value in log_ratios) / n
    mean = sum(log_ratios) / n
    return {
        "rmse_log": math.sqrt(mean_sq),
        "log10": sum(abs(value) / math.log(10) for value in log_ratios) / n,
        "silog": math.sqrt(mean_sq - 0.5 * mean * mean),
    }


def test_single_image_matches_hand_computation():
    # Ratios pred/gt: 1, 1.2, 1.5, 1.9 -> below 1.25: 2 pixels, below 1.5625: 3, below 1.953125: 4.
    gt = np.array([[2.0, 1.0], [4.0, 1.0]])
    pred = np.array([[2.0, 1.2], [6.0, 1.9]])
    metrics = compute_depth_metrics(pred, gt, eval_crop=None)
    expected = {
        "d1": 2 / 4,
        "d2": 3 / 4,
        "d3": 4 / 4,
        # |pred - gt| / gt = 0, 0.2, 0.5, 0.9
        "abs_rel": (0 + 0.2 + 0.5 + 0.9) / 4,
        # (pred - gt)^2 / gt = 0, 0.04, 4 / 4, 0.81
        "sq_rel": (0 + 0.04 + 1.0 + 0.81) / 4,
        "rmse": math.sqrt((0 + 0.04 + 4.0 + 0.81) / 4),
        **_log_metrics([0.0, math.log(1.2), math.log(1.5), math.log(1.9)]),
    }
    assert set(metrics) == set(DEPTH_METRIC_NAMES)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_invalid_ground_truth_pixels_are_ignored():
    # Only the two pixels with gt strictly inside (1e-3, 10) count; predictions elsewhere are garbage.
    gt = np.array([[2.0, 0.0, 1e-3, 10.0], [np.nan, -100.0, 4.0, 12.0]])
    pred = np.array([[3.0, 0.0, np.nan, -5.0], [7.0, 1e9, 4.0, np.inf]])
    metrics = compute_depth_metrics(pred, gt, eval_crop=None)
    # Valid pixels: (gt 2, pred 3) and (gt 4, pred 4).
    assert metrics["d1"] == pytest.approx(1 / 2)
    assert metrics["abs_rel"] == pytest.approx((0.5 + 0.0) / 2)
    assert metrics["rmse"] == pytest.approx(math.sqrt((1.0 + 0.0) / 2))
    per_image = depth_metrics_per_image(pred, gt, eval_crop=None)
    assert per_image["num_valid_pixels"].tolist() == [2.0]


def test_non_finite_and_out_of_range_predictions():
    # +inf -> max_depth (10); nan and -inf -> min_depth (1e-3); negatives clip to 1e-3; 20 stays 20.
    gt = np.full((1, 5), 5.0)
    pred = np.array([[np.inf, np.nan, -np.inf, -3.0, 20.0]])
    metrics = compute_depth_metrics(pred, gt, eval_crop=None)
    replaced = [10.0, 1e-3, 1e-3, 1e-3, 20.0]
    assert metrics["abs_rel"] == pytest.approx(sum(abs(p - 5.0) / 5.0 for p in replaced) / 5, rel=1e-12)
    assert metrics["rmse"] == pytest.approx(math.sqrt(sum((p - 5.0) ** 2 for p in replaced) / 5), rel=1e-12)
    assert metrics["d3"] == 0.0
    assert all(math.isfinite(value) for value in metrics.values())


def test_nyu_crop_on_480x640():
    top, bottom, left, right = NYU_EVAL_CROP
    assert (top, bottom, left, right) == (45, 471, 41, 601)
    gt = np.full((480, 640), 2.0)
    pred = np.full((480, 640), 100.0)  # wrong everywhere outside the crop
    pred[top:bottom, left:right] = 2.0
    perfect = compute_depth_metrics(pred, gt)
    assert perfect["abs_rel"] == 0.0 and perfect["d1"] == 1.0 and perfect["rmse"] == 0.0
    # One wrong pixel on the crop's first row/column: it counts, once, among 426 * 560 pixels.
    pred[top, left] = 3.0
    metrics = compute_depth_metrics(pred, gt)
    count = (bottom - top) * (right - left)
    assert count == 426 * 560
    assert metrics["abs_rel"] == pytest.approx(0.5 / count, rel=1e-12)
    assert metrics["d1"] == pytest.approx((count - 1) / count, rel=1e-12)
    # The last row/column inside the crop count, the first ones outside do not.
    pred[top, left] = 2.0
    pred[bottom - 1, right - 1] = 3.0
    assert compute_depth_metrics(pred, gt)["abs_rel"] == pytest.approx(0.5 / count, rel=1e-12)
    assert depth_metrics_per_image(pred, gt)["num_valid_pixels"].tolist() == [count]
    assert depth_metrics_per_image(pred, gt, eval_crop=None)["num_valid_pixels"].tolist() == [480 * 640]


def test_crop_for_other_sizes():
    gt = np.full((6, 8), 2.0)
    pred = np.full((6, 8), 2.0)
    pred[0, 0] = 4.0
    # Default: the NYU crop is for 480x640 only; a 6x8 map is scored uncropped, with a warning.
    with pytest.warns(UserWarning, match="without the crop"):
        metrics = compute_depth_metrics(pred, gt)
    assert metrics["abs_rel"] == pytest.approx(1.0 / 48)
    # An explicit crop applied at any size (rows 1:5, cols 2:7) leaves pixel (0, 0) out.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cropped = depth_metrics_per_image(pred, gt, eval_crop=(1, 5, 2, 7), crop_image_size=None)
    assert cropped["num_valid_pixels"].tolist() == [4 * 5]
    assert cropped["abs_rel"].tolist() == [0.0]


def test_average_over_images_not_pixels():
    # Image A: one valid pixel, ratio 2 (abs_rel 1, d1 0). Image B: three perfect pixels.
    gt = np.array([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 0.0]]])
    pred = np.array([[[2.0, 5.0], [5.0, 5.0]], [[1.0, 2.0], [3.0, 9.0]]])
    metrics = compute_depth_metrics(pred, gt, eval_crop=None)
    assert metrics["abs_rel"] == pytest.approx((1.0 + 0.0) / 2)  # pooled over pixels: 1/4
    assert metrics["d1"] == pytest.approx((0.0 + 1.0) / 2)  # pooled over pixels: 3/4
    per_image = depth_metrics_per_image(pred, gt, eval_crop=None)
    assert per_image["abs_rel"].tolist() == [1.0, 0.0]
    assert per_image["num_valid_pixels"].tolist() == [1.0, 3.0]


def test_accumulator_batches_types_and_skipped_images():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 9.5, size=(5, 6, 7))
    pred = gt * rng.uniform(0.7, 1.4, size=gt.shape)
    gt[2] = 0.0  # no valid pixel: skipped, not NaN-poisoning the mean
    accumulator = DepthMetrics(eval_crop=None)
    accumulator.update(torch.from_numpy(pred[:2]).float(), torch.from_numpy(gt[:2]).float())
    accumulator.update(pred[2:3, None], gt[2:3, None])  # (N, 1, H, W) numpy
    accumulator.update(pred[3], gt[3])  # (H, W)
    accumulator.update(pred[4:], gt[4:])
    assert accumulator.num_images == 5 and accumulator.num_skipped_images == 1
    batched = accumulator.compute()
    per_image = depth_metrics_per_image(pred[[0, 1, 3, 4]], gt[[0, 1, 3, 4]], eval_crop=None)
    for name in DEPTH_METRIC_NAMES:
        assert batched[name] == pytest.approx(per_image[name].mean(), rel=1e-6), name
    assert np.isnan(accumulator.per_image()["abs_rel"][2])
    accumulator.reset()
    accumulator.update(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.warns(UserWarning, match="no depth image had a scored pixel"):
        assert all(math.isnan(value) for value in accumulator.compute().values())


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same"):
        compute_depth_metrics(np.ones((2, 4, 4)), np.ones((2, 4, 5)), eval_crop=None)
    with pytest.raises(ValueError, match="shape"):
        compute_depth_metrics(np.ones((4,)), np.ones((4,)), eval_crop=None)
    with pytest.raises(TypeError):
        compute_depth_metrics([[1.0]], [[1.0]], eval_crop=None)


class _EvalPrediction:
    """The two attributes `compute_metrics` reads from transformers' EvalPrediction."""

    def __init__(self, predictions, label_ids):
        self.predictions = predictions
        self.label_ids = label_ids


def test_trainer_compute_metrics_one_shot_and_batched():
    gt = np.array([[[1.0, 2.0], [4.0, -100.0]], [[1.0, 1.0], [1.0, 1.0]]])  # -100: Trainer padding
    pred = np.array([[[1.5, 2.0], [4.0, -100.0]], [[1.0, 1.0], [1.0, 1.0]]])
    expected = compute_depth_metrics(pred, gt, eval_crop=None)
    assert expected["abs_rel"] == pytest.approx((0.5 / 3 + 0.0) / 2)

    compute_metrics = make_depth_compute_metrics(eval_crop=None, metric_prefix="depth_")
    one_shot = compute_metrics(_EvalPrediction((pred, np.zeros(3)), gt))
    assert one_shot == {f"depth_{name}": value for name, value in expected.items()}

    batched = make_depth_compute_metrics(eval_crop=None, prediction_index=1)
    assert batched(_EvalPrediction((None, torch.from_numpy(pred[:1])), torch.from_numpy(gt[:1])), False) == {}
    final = batched(_EvalPrediction((None, torch.from_numpy(pred[1:])), torch.from_numpy(gt[1:])), True)
    assert final == pytest.approx(expected)
    # State is cleared after a result, so the next evaluation starts fresh.
    again = batched(_EvalPrediction((None, pred[1:]), gt[1:]), compute_result=True)
    assert again["abs_rel"] == 0.0
