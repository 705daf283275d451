"""COCO instances loader on generated data: fields, label mapping, masks equal to pycocotools, bad input."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from datasets.table import MemoryMappedTable
from pycocotools.coco import COCO

from ait_hf.data import (
    BadSampleWarning,
    DataValidationError,
    coco_category_ids,
    coco_id2label,
    coco_object_masks,
    decode_coco_segmentation,
    load_coco_instances,
)
from ait_hf.data.synthetic import make_synthetic_coco


def _load(paths, cache, **kwargs):
    return load_coco_instances(paths["image_dir"], paths["annotation_file"], cache_dir=cache, **kwargs)


def test_rows_fields_and_label_mapping(synthetic_coco, hf_cache):
    dataset = _load(synthetic_coco, hf_cache)
    raw = json.loads(synthetic_coco["annotation_file"].read_text())
    assert len(dataset) == len(raw["images"])  # the image without annotations is kept
    category_ids = sorted(c["id"] for c in raw["categories"])
    assert len(category_ids) == 80 and category_ids[-1] == 90  # COCO ids have gaps
    assert coco_category_ids(dataset) == category_ids
    names = {c["id"]: c["name"] for c in raw["categories"]}
    assert coco_id2label(dataset) == {label: names[cid] for label, cid in enumerate(category_ids)}
    annotations = {a["id"]: a for a in raw["annotations"]}
    for row, image in zip(dataset, raw["images"]):
        assert row["image_id"] == image["id"] and row["file_name"] == image["file_name"]
        assert isinstance(row["image"], PIL.Image.Image) and row["image"].size == (
            image["width"],
            image["height"],
        )
        objects = row["objects"]
        assert objects["id"] == [a["id"] for a in raw["annotations"] if a["image_id"] == image["id"]]
        for k, annotation_id in enumerate(objects["id"]):
            annotation = annotations[annotation_id]
            x, y, w, h = annotation["bbox"]
            assert objects["bbox_xywh"][k] == [x, y, w, h]
            np.testing.assert_array_equal(
                np.float32(objects["bbox"][k]), np.array([x, y, x + w, y + h], dtype=np.float32)
            )
            assert objects["category_id"][k] == annotation["category_id"]
            assert objects["label"][k] == category_ids.index(annotation["category_id"])
            assert objects["iscrowd"][k] == bool(annotation["iscrowd"])
            assert objects["area"][k] == annotation["area"]
            assert json.loads(objects["segmentation"][k]) == annotation["segmentation"]


def test_masks_equal_pycocotools_ann_to_mask_for_every_segmentation_form(synthetic_coco, hf_cache):
    dataset = _load(synthetic_coco, hf_cache)
    coco = COCO(str(synthetic_coco["annotation_file"]))
    forms = set()
    for row in dataset:
        masks = coco_object_masks(row)
        assert masks.dtype == np.uint8 and masks.shape == (
            len(row["objects"]["id"]),
            row["height"],
            row["width"],
        )
        for k, annotation_id in enumerate(row["objects"]["id"]):
            annotation = coco.anns[annotation_id]
            expected = coco.annToMask(annotation)
            np.testing.assert_array_equal(masks[k], expected)
            segmentation = annotation["segmentation"]
            np.testing.assert_array_equal(
                decode_coco_segmentation(segmentation, row["height"], row["width"]), expected
            )
            if isinstance(segmentation, list):
                forms.add("multi_polygon" if len(segmentation) > 1 else "polygon")
            else:
                forms.add("rle" if isinstance(segmentation["counts"], list) else "compressed_rle")
            if annotation["iscrowd"]:
                forms.add("crowd")
        some = coco_object_masks(row, indices=[0]) if row["objects"]["id"] else None
        if some is not None:
            np.testing.assert_array_equal(some[0], masks[0])
    # The synthetic data has every form the loader must read.
    assert {"polygon", "rle", "compressed_rle", "crowd"} <= forms


def test_images_without_annotations_kept_for_evaluation_and_skippable_for_training(synthetic_coco, hf_cache):
    everything = _load(synthetic_coco, hf_cache)
    empty = [row["image_id"] for row in everything if not row["objects"]["id"]]
    assert len(empty) == 1
    training = _load(synthetic_coco, hf_cache, filter_empty=True)
    assert len(training) == len(everything) - 1
    assert empty[0] not in training["image_id"]
    smallest = min(min(row["height"], row["width"]) for row in everything)
    assert len(_load(synthetic_coco, hf_cache, min_image_size=smallest + 1)) < len(everything)


def test_annotation_only_loading_without_images(synthetic_coco, hf_cache):
    dataset = load_coco_instances(
        None, synthetic_coco["annotation_file"], check_image_files=False, cache_dir=hf_cache
    )
    assert dataset[0]["image"] is None
    assert coco_object_masks(dataset[0]).shape[0] == len(dataset[0]["objects"]["id"])
    with pytest.raises(DataValidationError, match="image_dir is required"):
        load_coco_instances(None, synthetic_coco["annotation_file"])


def test_two_thousand_images_are_memory_mapped_and_decoded_lazily(tmp_path):
    paths = make_synthetic_coco(tmp_path / "coco", "train", num_images=2000, height=(20, 32), width=(20, 32), seed=1,
                                max_objects=2)  # fmt: skip
    dataset = load_coco_instances(paths["image_dir"], paths["annotation_file"], cache_dir=tmp_path / "cache")
    assert len(dataset) == 2000
    assert isinstance(dataset.data, MemoryMappedTable)
    arrow_file = Path(dataset.cache_files[0]["filename"])
    assert arrow_file.is_file()
    # Only paths are stored: nothing decoded, and the Arrow file is far smaller than the image files.
    stored = dataset.data.column("image").to_pylist()
    assert all(value["bytes"] is None for value in stored)
    image_bytes = sum(f.stat().st_size for f in paths["image_dir"].iterdir())
    assert arrow_file.stat().st_size < image_bytes / 2
    # Decoding happens on access, one row at a time.
    last = dataset[1999]["image"]
    assert isinstance(last, PIL.Image.Image)
    assert last.size == PIL.Image.open(paths["image_dir"] / dataset[1999]["file_name"]).size


# ---------------------------------------------------------------------------------------------- bad input


def _both_ways(paths, cache, match, reason, check=None, **kwargs):
    with pytest.raises(DataValidationError, match=match):
        _load(paths, cache, **kwargs)
    with pytest.warns(BadSampleWarning) as record:
        dataset = _load(paths, cache, on_error="skip", **kwargs)
    warning = [w.message for w in record if isinstance(w.message, BadSampleWarning)][0]
    assert warning.count == 1 and warning.reasons == {reason: 1}
    if check is not None:
        check(dataset)
    return dataset


def _first_annotation(paths):
    return json.loads(paths["annotation_file"].read_text())["annotations"][0]


def _object_ids(dataset):
    return {i for row in dataset for i in row["objects"]["id"]}


def _set_first_annotation(edit_json, paths, **changes):
    def edit(data):
        data["annotations"][0].update(changes)

    edit_json(paths["annotation_file"], edit)


def test_unknown_category_id(coco_copy, hf_cache, edit_json):
    _set_first_annotation(edit_json, coco_copy, category_id=12)  # 12 is one of COCO's unused ids
    _both_ways(coco_copy, hf_cache, "annotation id 1: category_id 12 is not in 'categories'", "unknown_category",
               check=lambda d: 1 not in _object_ids(d))  # fmt: skip


def test_degenerate_box(coco_copy, hf_cache, edit_json):
    box = _first_annotation(coco_copy)["bbox"]
    _set_first_annotation(edit_json, coco_copy, bbox=[box[0], box[1], 0.0, box[3]])
    _both_ways(
        coco_copy, hf_cache, r"annotation id 1: .*bbox .* has zero or negative width/height", "degenerate_box"
    )


def test_box_with_nan(coco_copy, hf_cache, edit_json):
    box = _first_annotation(coco_copy)["bbox"]
    _set_first_annotation(edit_json, coco_copy, bbox=[box[0], box[1], None, box[3]])
    _both_ways(coco_copy, hf_cache, "has non-numeric or non-finite values", "degenerate_box")


def test_box_outside_image(coco_copy, hf_cache, edit_json):
    _set_first_annotation(edit_json, coco_copy, bbox=[5000.0, 10.0, 20.0, 20.0])
    _both_ways(
        coco_copy, hf_cache, r"bbox \[5000.0, 10.0, 20.0, 20.0\] lies outside the", "box_outside_image"
    )


@pytest.mark.parametrize(
    ("segmentation", "match"),
    [
        ([], "segmentation is an empty list of polygons"),
        ([[1.0, 2.0, 3.0, 4.0]], "polygon 0 has 4 coordinates"),
    ],
)
def test_empty_polygons(coco_copy, hf_cache, edit_json, segmentation, match):
    _set_first_annotation(edit_json, coco_copy, segmentation=segmentation)
    _both_ways(coco_copy, hf_cache, match, "empty_polygon")


def _rle_annotation(paths):
    data = json.loads(paths["annotation_file"].read_text())
    return next(a for a in data["annotations"] if isinstance(a["segmentation"], dict) and not a["iscrowd"])


@pytest.mark.parametrize("form", ["uncompressed_sum", "compressed_garbage", "size"])
def test_invalid_rle(coco_copy, hf_cache, edit_json, form):
    target = _rle_annotation(coco_copy)

    def edit(data):
        annotation = next(a for a in data["annotations"] if a["id"] == target["id"])
        height, width = annotation["segmentation"]["size"]
        if form == "uncompressed_sum":
            annotation["segmentation"] = {"size": [height, width], "counts": [10, 5, 7]}
        elif form == "compressed_garbage":
            annotation["segmentation"] = {"size": [height, width], "counts": "\x7f\x7f not an rle"}
        else:
            annotation["segmentation"]["size"] = [height + 1, width]

    edit_json(coco_copy["annotation_file"], edit)
    match = {
        "uncompressed_sum": "RLE run lengths add up to 22, not height",
        "compressed_garbage": "compressed RLE 'counts' is malformed",
        "size": "does not match the image size",
    }[form]
    _both_ways(coco_copy, hf_cache, rf"annotation id {target['id']}: .*{match}", "invalid_rle",
               check=lambda d: target["id"] not in _object_ids(d))  # fmt: skip


def test_annotation_whose_image_id_has_no_image(coco_copy, hf_cache, edit_json):
    _set_first_annotation(edit_json, coco_copy, image_id=999999)
    _both_ways(
        coco_copy,
        hf_cache,
        "annotation id 1: image_id 999999 has no entry in 'images'",
        "image_id_without_image",
    )


def test_missing_image_file(coco_copy, hf_cache):
    first = json.loads(coco_copy["annotation_file"].read_text())["images"][0]
    (coco_copy["image_dir"] / first["file_name"]).unlink()
    dataset = _both_ways(coco_copy, hf_cache, rf"image id {first['id']}: image file .*{first['file_name']} does not exist",
                         "missing_image")  # fmt: skip
    assert first["id"] not in dataset["image_id"]


def test_unreadable_image_file(coco_copy, hf_cache):
    first = json.loads(coco_copy["annotation_file"].read_text())["images"][0]
    (coco_copy["image_dir"] / first["file_name"]).write_bytes(b"\xff\xd8 broken")
    # Not checked by default (an existence check only), found with verify_images.
    assert len(_load(coco_copy, hf_cache)) == 6
    _both_ways(
        coco_copy,
        hf_cache,
        rf"cannot read image .*{first['file_name']}",
        "unreadable_image",
        verify_images=True,
    )


def test_image_size_differs_from_json(coco_copy, hf_cache, edit_json):
    def edit(data):
        data["images"][1]["width"] += 3

    edit_json(coco_copy["annotation_file"], edit)

    # The RLE object of image 1 no longer matches the declared size either: keep only the size check here.
    def drop_rle(data):
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != data["images"][1]["id"]]

    edit_json(coco_copy["annotation_file"], drop_rle)
    _both_ways(coco_copy, hf_cache, r"is \d+x\d+ but the json says", "size_mismatch", verify_images=True)


def test_broken_annotation_files(tmp_path, synthetic_coco):
    with pytest.raises(DataValidationError, match="annotation file .*missing.json does not exist"):
        load_coco_instances(synthetic_coco["image_dir"], tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataValidationError, match="broken.json is not valid JSON"):
        load_coco_instances(synthetic_coco["image_dir"], broken)
    broken.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataValidationError, match="has no 'categories' list"):
        load_coco_instances(synthetic_coco["image_dir"], broken)
    broken.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}] * 2})
    )
    with pytest.raises(DataValidationError, match="category id 1 appears twice"):
        load_coco_instances(synthetic_coco["image_dir"], broken)
    with pytest.raises(DataValidationError, match="image folder .*nowhere does not exist"):
        load_coco_instances(tmp_path / "nowhere", synthetic_coco["annotation_file"])


def test_decoding_an_object_without_segmentation_is_a_clear_error():
    with pytest.raises(DataValidationError, match="has no segmentation"):
        decode_coco_segmentation("null", 4, 4)
