"""COCO box/mask AP through pycocotools on tiny synthetic ground truth with hand-derived expectations.

A single object matched at IoU u gives precision 1 at every recall for each threshold t <= u and
nothing above, so AP = (number of thresholds 0.50, 0.55, ..., 0.95 that u passes) / 10.
"""

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from ait_hf.evaluation import (
    COCO_MAX_DETECTIONS,
    MMDET_MAX_DETECTIONS,
    CocoInstanceEvaluator,
    coco_category_ids,
    coco_stat_names,
    evaluate_coco_instances,
    instances_to_coco_results,
    load_coco_ground_truth,
)

HEIGHT, WIDTH = 200, 240
# Listed out of order and non-contiguous on purpose: contiguous labels follow the SORTED ids [1, 3, 7].
CATEGORIES = [{"id": 7, "name": "seven"}, {"id": 1, "name": "one"}, {"id": 3, "name": "three"}]


def _box_mask(x1, y1, x2, y2, height=HEIGHT, width=WIDTH):
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _annotation(annotation_id, image_id, category_id, x1, y1, x2, y2, height=HEIGHT, width=WIDTH):
    rle = mask_utils.encode(np.asfortranarray(_box_mask(x1, y1, x2, y2, height, width).astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
        "segmentation": rle,
    }


@pytest.fixture
def ground_truth_file(tmp_path):
    """Image 1: a 100x100 'three' (large). Image 2: a 100x100 'three' far from a 20x20 'one' (small)."""
    dataset = {
        "images": [{"id": 1, "height": HEIGHT, "width": WIDTH}, {"id": 2, "height": HEIGHT, "width": WIDTH}],
        "categories": CATEGORIES,
        "annotations": [
            _annotation(1, 1, 3, 0, 0, 100, 100),
            _annotation(2, 2, 3, 0, 0, 100, 100),
            _annotation(3, 2, 1, 200, 150, 220, 170),
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(dataset))
    return path


def _prediction(boxes, scores, labels, with_masks=True):
    prediction = {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
    }
    if with_masks:
        prediction["masks"] = (
            np.stack([_box_mask(*map(int, box)) for box in boxes])
            if len(boxes)
            else (np.zeros((0, HEIGHT, WIDTH), dtype=bool))
        )
    return prediction


def _perfect_predictions():
    # Contiguous labels: 0 -> id 1, 1 -> id 3, 2 -> id 7.
    return {
        1: _prediction([[0, 0, 100, 100]], [0.9], [1]),
        2: _prediction([[0, 0, 100, 100], [200, 150, 220, 170]], [0.8, 0.7], [1, 0]),
    }


def test_category_mapping_follows_sorted_ids(ground_truth_file):
    coco = load_coco_ground_truth(ground_truth_file)
    assert coco_category_ids(coco) == [1, 3, 7]
    boxes, masks = instances_to_coco_results(
        5, _prediction([[10, 20, 40, 60]], [0.5], [2]), [1, 3, 7], image_size=(HEIGHT, WIDTH)
    )
    assert boxes == [{"image_id": 5, "category_id": 7, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5}]
    assert "bbox" not in masks[0]  # so pycocotools takes the mask's own area for the area ranges
    assert mask_utils.area(masks[0]["segmentation"]) == 30 * 40
    assert isinstance(masks[0]["segmentation"]["counts"], str)


def test_perfect_detections_give_ap_one(ground_truth_file):
    metrics = evaluate_coco_instances(
        ground_truth_file, _perfect_predictions(), max_detections=COCO_MAX_DETECTIONS, nested=True
    )
    assert set(metrics) == {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        stats = metrics[iou_type]
        assert list(stats) == [
            "AP",
            "AP50",
            "AP75",
            "APs",
            "APm",
            "APl",
            "AR1",
            "AR10",
            "AR100",
            "ARs",
            "ARm",
            "ARl",
        ]
        for name in ("AP", "AP50", "AP75", "APs", "APl", "AR10", "AR100", "ARs", "ARl"):
            assert stats[name] == pytest.approx(1.0), (iou_type, name)
        # No ground truth of medium size (32^2 < area < 96^2): pycocotools reports -1.
        assert stats["APm"] == -1.0 and stats["ARm"] == -1.0
        # AR1 is averaged over categories: 'three' has 2 objects in 2 images -> 1 each; 'one' has 1.
        assert stats["AR1"] == pytest.approx(1.0)


def test_shifted_box_and_mask(ground_truth_file):
    # Shift the image-1 box right by 10: overlap 90 x 100 = 9000, union 2 * 10000 - 9000 = 11000,
    # IoU 9/11 = 0.818 passes 0.50 ... 0.80 (7 of 10 thresholds). Masks are the same rectangles.
    predictions = {1: _prediction([[10, 0, 110, 100]], [0.9], [1])}
    metrics = evaluate_coco_instances(ground_truth_file, predictions, max_detections=COCO_MAX_DETECTIONS)
    for iou_type in ("bbox", "segm"):
        assert metrics[f"{iou_type}_AP"] == pytest.approx(0.7)
        assert metrics[f"{iou_type}_AP50"] == pytest.approx(1.0)
        assert metrics[f"{iou_type}_AP75"] == pytest.approx(1.0)
        assert metrics[f"{iou_type}_APl"] == pytest.approx(0.7)
        assert metrics[f"{iou_type}_AR100"] == pytest.approx(0.7)
        assert metrics[f"{iou_type}_APs"] == -1.0  # image 2 (with the small object) was not evaluated

    # Shift by 30 instead: IoU 7000 / 13000 = 0.538 passes 0.50 only.
    predictions = {1: _prediction([[30, 0, 130, 100]], [0.9], [1], with_masks=False)}
    metrics = evaluate_coco_instances(ground_truth_file, predictions, iou_types=("bbox",))
    assert metrics["bbox_AP"] == pytest.approx(0.1)
    assert metrics["bbox_AP50"] == pytest.approx(1.0) and metrics["bbox_AP75"] == 0.0


@pytest.mark.parametrize("perfect_first", [True, False])
def test_score_order_of_a_good_and_a_poor_detection(ground_truth_file, perfect_first):
    # Images 1 and 2 each hold one 'three'. Image 1 gets a perfect box, image 2 the IoU 9/11 box.
    # Thresholds <= 0.80 (7 of 10): both match, precision 1 at every recall -> AP_t = 1.
    # Thresholds > 0.80 (3 of 10): recall stops at 1/2, so only the 51 recall points 0.00 ... 0.50 score.
    #   perfect box ranked first: precision there is 1        -> AP_t = 51 / 101
    #   poor box ranked first: interpolated precision is 1/2  -> AP_t = 25.5 / 101
    # The small 'one' of image 2 stays undetected: category 'one' has AP 0.
    perfect_score, poor_score = (0.9, 0.6) if perfect_first else (0.6, 0.9)
    predictions = {
        1: _prediction([[0, 0, 100, 100]], [perfect_score], [1], with_masks=False),
        2: _prediction([[10, 0, 110, 100]], [poor_score], [1], with_masks=False),
    }
    metrics = evaluate_coco_instances(ground_truth_file, predictions, iou_types=("bbox",))
    high_threshold_ap = (51 if perfect_first else 25.5) / 101
    three_ap = (7 * 1.0 + 3 * high_threshold_ap) / 10
    assert metrics["bbox_AP"] == pytest.approx((three_ap + 0.0) / 2)
    assert metrics["bbox_APl"] == pytest.approx(three_ap)  # only 'three' has large objects
    assert metrics["bbox_APs"] == 0.0  # only 'one' has small objects


def test_label_mapping_decides_the_match(ground_truth_file):
    # Label 1 is category 3 ('three'), the ground truth's class; label 2 (id 7) has no ground truth.
    right = evaluate_coco_instances(ground_truth_file, {1: _prediction([[0, 0, 100, 100]], [0.9], [1])})
    wrong = evaluate_coco_instances(ground_truth_file, {1: _prediction([[0, 0, 100, 100]], [0.9], [2])})
    assert right["bbox_AP"] == pytest.approx(1.0) and right["segm_AP"] == pytest.approx(1.0)
    assert wrong["bbox_AP"] == 0.0 and wrong["segm_AP"] == 0.0


def test_images_without_predictions_and_empty_results(ground_truth_file):
    perfect = _perfect_predictions()
    # Image 2 seen with no detection: 'three' recall 1/2 at precision 1 -> 51/101; 'one' -> 0.
    evaluator = CocoInstanceEvaluator(ground_truth_file, iou_types=("bbox",))
    evaluator.update([perfect[1], _prediction([], [], [], with_masks=False)], image_ids=[1, 2])
    assert evaluator.num_images == 2 and evaluator.num_detections == 1
    assert evaluator.compute()["bbox_AP"] == pytest.approx((51 / 101 + 0.0) / 2)
    # Only image 1 seen: by default only it is scored ...
    only_first = evaluate_coco_instances(ground_truth_file, {1: perfect[1]}, iou_types=("bbox",))
    assert only_first["bbox_AP"] == pytest.approx(1.0)
    # ... unless every annotated image must count.
    all_images = evaluate_coco_instances(
        ground_truth_file, {1: perfect[1]}, iou_types=("bbox",), restrict_to_seen_images=False
    )
    assert all_images["bbox_AP"] == pytest.approx((51 / 101 + 0.0) / 2)
    # No detection anywhere: pycocotools' loadRes would raise; we score an empty result set.
    empty = {1: _prediction([], [], []), 2: _prediction([], [], [])}
    with pytest.warns(UserWarning, match="no (bbox|segm) detections"):
        metrics = evaluate_coco_instances(ground_truth_file, empty, nested=True)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == 0.0 and metrics[iou_type]["ARl"] == 0.0
        assert metrics[iou_type]["APm"] == -1.0


def test_mmdet_max_detections(ground_truth_file):
    # Image 1: 100 higher-scored false boxes of class 'three' away from the object, then the perfect box.
    false_boxes = [
        [110 + (i % 10) * 12, (i // 10) * 10, 120 + (i % 10) * 12, 8 + (i // 10) * 10] for i in range(100)
    ]
    boxes = [*false_boxes, [0, 0, 100, 100]]
    scores = [0.9] * 100 + [0.1]
    predictions = {1: _prediction(boxes, scores, [1] * 101, with_masks=False)}
    coco_style = evaluate_coco_instances(
        ground_truth_file, predictions, iou_types=("bbox",), max_detections=COCO_MAX_DETECTIONS, nested=True
    )["bbox"]
    mmdet_style = evaluate_coco_instances(
        ground_truth_file, predictions, iou_types=("bbox",), max_detections=MMDET_MAX_DETECTIONS, nested=True
    )["bbox"]
    assert coco_stat_names(MMDET_MAX_DETECTIONS)[6:9] == ("AR100", "AR300", "AR1000")
    # At 100 detections the true box is cut: nothing found.
    assert coco_style["AP"] == 0.0 and coco_style["AP50"] == 0.0 and coco_style["AR100"] == 0.0
    # pycocotools reads "AP" at 100 detections even with mmdet's limits, the rest at 1000: the true box is
    # found 101st, so precision is 1/101 at recall 1 (and interpolated below it).
    assert mmdet_style["AP"] == 0.0
    assert mmdet_style["AP50"] == pytest.approx(1 / 101)
    assert mmdet_style["AR100"] == 0.0 and mmdet_style["AR300"] == pytest.approx(1.0)


def test_torch_inputs_and_rle_masks(ground_truth_file):
    mask = _box_mask(0, 0, 100, 100)
    rle = mask_utils.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
    predictions = [
        {
            "image_id": torch.tensor(1),
            "boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
            "masks": [rle],
        }
    ]
    metrics = evaluate_coco_instances(ground_truth_file, predictions)
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["segm_AP"] == pytest.approx(1.0)
    uint8_masks = [{**predictions[0], "masks": torch.from_numpy(mask[None].astype(np.uint8))}]
    assert evaluate_coco_instances(ground_truth_file, uint8_masks)["segm_AP"] == pytest.approx(1.0)


def test_bad_predictions_raise_clear_errors(ground_truth_file):
    evaluator = CocoInstanceEvaluator(ground_truth_file)
    good = _prediction([[0, 0, 100, 100]], [0.9], [1])
    with pytest.raises(ValueError, match="image id 9 is not in the ground-truth"):
        evaluator.update({9: good})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        evaluator.update({1: _prediction([[0, 0, 100, 100]], [0.9], [3])})
    with pytest.raises(ValueError, match=r"masks must have shape \(1, 200, 240\)"):
        evaluator.update({1: {**good, "masks": np.zeros((1, 100, 100), dtype=bool)}})
    with pytest.raises(ValueError, match="binary"):
        evaluator.update({1: {**good, "masks": np.full((1, HEIGHT, WIDTH), 0.7)}})
    with pytest.raises(ValueError, match="needs 'masks'"):
        evaluator.update({1: {key: value for key, value in good.items() if key != "masks"}})
    with pytest.raises(ValueError, match="same length"):
        evaluator.update({1: {**good, "scores": np.array([0.9, 0.8])}})
    assert evaluator.num_images == 0  # failed calls leave no trace
    evaluator.update({1: good})
    with pytest.raises(ValueError, match="given twice"):
        evaluator.update({1: good})
    with pytest.raises(ValueError, match="no image was given"):
        CocoInstanceEvaluator(ground_truth_file).compute()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_coco_ground_truth(ground_truth_file.parent / "missing.json")
    with pytest.raises(ValueError, match="iou_types"):
        CocoInstanceEvaluator(ground_truth_file, iou_types=("keypoints",))
    with pytest.raises(ValueError, match="including 100"):
        CocoInstanceEvaluator(ground_truth_file, max_detections=(10, 20, 50))


def test_boundary_ap_with_faster_coco_eval(tmp_path):
    pytest.importorskip("faster_coco_eval")
    # 30x30 image: diagonal 42.4 px, dilation round(0.02 * 42.4) = 1, so boundaries are 1 px rings
    # (pixels of the mask within one erosion step, the image border counting as outside).
    # Ground truth rows 5:25, cols 5:25 (20x20); prediction rows 5:25, cols 5:26 (20x21).
    #   mask IoU 400 / 420 = 0.952 -> passes all ten thresholds (segm AP 1)
    #   rings: 76 and 78 px; shared: top and bottom rows, cols 5..24 (2 x 20) + left col, rows 6..23 (18)
    #   = 58; boundary IoU 58 / (76 + 78 - 58) = 0.604 -> min(0.952, 0.604) passes 0.50, 0.55, 0.60
    dataset = {
        "images": [{"id": 1, "height": 30, "width": 30}],
        "categories": [{"id": 1, "name": "square"}],
        "annotations": [_annotation(1, 1, 1, 5, 5, 25, 25, height=30, width=30)],
    }
    mask = _box_mask(5, 5, 26, 25, height=30, width=30)
    prediction = {"boxes": [[5.0, 5.0, 26.0, 25.0]], "scores": [0.9], "labels": [0], "masks": mask[None]}
    metrics = evaluate_coco_instances(
        dataset,
        {1: prediction},
        iou_types=("segm", "boundary"),
        max_detections=COCO_MAX_DETECTIONS,
        nested=True,
    )
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["boundary"]["AP"] == pytest.approx(0.3)
    assert metrics["boundary"]["AP50"] == pytest.approx(1.0) and metrics["boundary"]["AP75"] == 0.0
    perfect = {
        **prediction,
        "boxes": [[5.0, 5.0, 25.0, 25.0]],
        "masks": _box_mask(5, 5, 25, 25, 30, 30)[None],
    }
    assert evaluate_coco_instances(dataset, {1: perfect}, iou_types=("boundary",))[
        "boundary_AP"
    ] == pytest.approx(1.0)
