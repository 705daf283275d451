"""Collators produce exactly the model's batch contract; the multi-task sampler yields one task per batch."""

import pytest
import torch
from torch.utils.data import DataLoader

from ait_hf.data import (
    CocoResizePad,
    DataValidationError,
    DepthCollator,
    DepthVQVAETransform,
    DetectionCollator,
    LargeScaleJitter,
    MultiTaskBatchSampler,
    MultiTaskCollator,
    MultiTaskDataset,
    NYUDepthTrainTransform,
    VQVAECollator,
    load_coco_instances,
    load_nyu_depth_v2,
)


@pytest.fixture(scope="module")
def nyu(synthetic_nyu, tmp_path_factory):
    return load_nyu_depth_v2(
        synthetic_nyu["root"],
        "train",
        synthetic_nyu["train_list"],
        cache_dir=tmp_path_factory.mktemp("cache"),
    )


@pytest.fixture(scope="module")
def coco(synthetic_coco, tmp_path_factory):
    return load_coco_instances(
        synthetic_coco["image_dir"],
        synthetic_coco["annotation_file"],
        cache_dir=tmp_path_factory.mktemp("cache"),
    )


def test_depth_batch(nyu):
    data = nyu.with_transform(NYUDepthTrainTransform())
    batch = DepthCollator()([data[i] for i in range(3)])
    assert set(batch) == {"pixel_values", "depth_labels", "task"}
    assert batch["task"] == "depth"
    assert batch["pixel_values"].shape == (3, 3, 480, 480) and batch["pixel_values"].dtype == torch.float32
    assert batch["depth_labels"].shape == (3, 480, 480) and batch["depth_labels"].dtype == torch.float32


@pytest.mark.parametrize("task", ["object_detection", "instance_segmentation"])
def test_detection_and_instance_segmentation_batches(coco, task):
    data = coco.with_transform(LargeScaleJitter(task, generator=torch.Generator().manual_seed(0)))
    examples = [data[i] for i in range(len(coco))]  # includes the image without objects
    batch = DetectionCollator(task)(examples)
    assert set(batch) == {"pixel_values", "object_targets", "task"}
    assert batch["task"] == task
    assert (
        batch["pixel_values"].shape == (len(coco), 3, 640, 640)
        and batch["pixel_values"].dtype == torch.float32
    )
    assert isinstance(batch["object_targets"], list) and len(batch["object_targets"]) == len(coco)
    wanted = (
        {"boxes", "class_labels", "masks"} if task == "instance_segmentation" else {"boxes", "class_labels"}
    )
    for target, example in zip(batch["object_targets"], examples):
        assert set(target) == wanted
        n = len(example["class_labels"])
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["class_labels"].shape == (n,) and target["class_labels"].dtype == torch.int64
        assert ((target["class_labels"] >= 0) & (target["class_labels"] < 80)).all()
        if "masks" in target:
            assert target["masks"].shape == (n, 640, 640) and target["masks"].dtype == torch.uint8
    assert any(len(t["class_labels"]) == 0 for t in batch["object_targets"])


def test_evaluation_metadata_only_on_request(coco):
    data = coco.with_transform(CocoResizePad("object_detection"))
    examples = [data[0], data[1]]
    assert set(DetectionCollator("object_detection")(examples)) == {"pixel_values", "object_targets", "task"}
    batch = DetectionCollator("object_detection", return_metadata=True)(examples)
    assert batch["image_ids"] == [coco[0]["image_id"], coco[1]["image_id"]]
    assert batch["original_sizes"] == [
        (coco[0]["height"], coco[0]["width"]),
        (coco[1]["height"], coco[1]["width"]),
    ]
    assert len(batch["scale_factors"]) == 2 and len(batch["image_sizes"]) == 2


def test_vqvae_batches_and_task_mismatch(nyu, coco):
    data = nyu.with_transform(DepthVQVAETransform())
    batch = VQVAECollator()([data[0], data[1]])
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == batch["labels"].shape == (2, 1, 480, 480)
    assert (batch["pixel_values"] == 0).sum() > (batch["labels"] == 0).sum()
    detection = coco.with_transform(CocoResizePad("object_detection"))[0]
    with pytest.raises(DataValidationError, match="instance_segmentation collator got an example of task"):
        DetectionCollator("instance_segmentation")([detection])
    with pytest.raises(DataValidationError, match="depth collator got"):
        DepthCollator()([detection])


def test_sampler_one_task_per_batch_by_weight():
    sampler = MultiTaskBatchSampler({"depth": 100, "instance_segmentation": 300}, {"depth": 2, "instance_segmentation": 4},
                                    weights={"depth": 1.0, "instance_segmentation": 3.0}, num_batches=4000, seed=0)  # fmt: skip
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4000
    counts = {"depth": 0, "instance_segmentation": 0}
    for batch in batches:
        if all(i < 100 for i in batch):
            assert len(batch) == 2
            counts["depth"] += 1
        else:
            assert all(100 <= i < 400 for i in batch) and len(batch) == 4
            counts["instance_segmentation"] += 1
        assert len(set(batch)) == len(batch)
    assert counts["instance_segmentation"] / 4000 == pytest.approx(0.75, abs=0.03)
    assert list(sampler) == batches  # deterministic
    sampler.set_epoch(1)
    assert list(sampler) != batches
    # Default: one epoch of full batches, weights proportional to each task's number of batches.
    default = MultiTaskBatchSampler({"a": 10, "b": 30}, 5)
    assert len(default) == 2 + 6 and torch.allclose(
        default.weights, torch.tensor([2.0, 6.0], dtype=torch.float64)
    )


def test_sampler_distributed_ranks_share_the_task_and_split_the_data():
    sizes = {"depth": 64, "object_detection": 96}
    ranks = [
        list(MultiTaskBatchSampler(sizes, 4, num_batches=50, seed=7, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    for batch0, batch1 in zip(*ranks):
        assert (max(batch0) < 64) == (max(batch1) < 64)  # same task at the same step
        assert not set(batch0) & set(batch1)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        MultiTaskBatchSampler(sizes, 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        MultiTaskBatchSampler({"depth": 3}, 4)
    with pytest.raises(ValueError, match="unknown tasks"):
        MultiTaskBatchSampler(sizes, 4, weights={"segmentation": 1.0})


def test_joint_training_loader(nyu, coco):
    dataset = MultiTaskDataset({
        "depth": nyu.with_transform(NYUDepthTrainTransform()),
        "instance_segmentation": coco.with_transform(LargeScaleJitter("instance_segmentation")),
    })  # fmt: skip
    assert len(dataset) == len(nyu) + len(coco) and dataset.locate(len(nyu)) == ("instance_segmentation", 0)
    sampler = MultiTaskBatchSampler(
        dataset.sizes, {"depth": 2, "instance_segmentation": 2}, num_batches=6, seed=1
    )
    collator = MultiTaskCollator({"depth": DepthCollator(), "instance_segmentation": DetectionCollator()})
    tasks = []
    for batch in DataLoader(dataset, batch_sampler=sampler, collate_fn=collator):
        tasks.append(batch["task"])
        if batch["task"] == "depth":
            assert set(batch) == {"pixel_values", "depth_labels", "task"}
            assert batch["pixel_values"].shape == (2, 3, 480, 480)
        else:
            assert set(batch) == {"pixel_values", "object_targets", "task"}
            assert batch["pixel_values"].shape == (2, 3, 640, 640)
            assert all("masks" in target for target in batch["object_targets"])
    assert set(tasks) == {"depth", "instance_segmentation"}
    with pytest.raises(DataValidationError, match="must hold one task"):
        collator([dataset[0], dataset[len(nyu)]])
    with pytest.raises(DataValidationError, match="no collator for task"):
        MultiTaskCollator({"depth": DepthCollator()})([dataset[len(nyu)]])
