"""The evaluation runner end to end on synthetic NYUv2 / COCO written into tmp folders, with tiny random models
saved by `save_pretrained`: reports, the original protocols (checked against direct computations and an
oracle model), batch-size invariance, the Trainer glue, tokenizer upper bounds and user errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from hf_testing import save_tiny_solver, tiny_solver
from pycocotools import mask as mask_utils
from torch import nn

from ait_hf import AiTForDepthAndInstanceSegmentation, AiTImageProcessor, image_processor_for_config
from ait_hf.data import coco_object_masks, crop_and_resize_masks, load_coco_instances, load_nyu_depth_v2
from ait_hf.data.synthetic import make_synthetic_coco, make_synthetic_nyu
from ait_hf.evaluation import (
    COCO_STAT_NAMES,
    DEPTH_METRIC_NAMES,
    compute_depth_metrics,
    mask_tokenizer_upper_bound,
)
from ait_hf.evaluation.runner import (
    CocoExamplePreparer,
    DepthExamplePreparer,
    _Rows,
    collate_examples,
    evaluate_coco,
    evaluate_depth,
    load_model_and_processor,
    main,
    make_compute_metrics,
    make_prediction_fn,
    run_evaluation,
)
from ait_hf.image_processing_ait import get_keep_ratio_scale_factor, paste_masks_in_image

BBOX_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "AR300", "AR1000", "ARs", "ARm", "ARl")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Other engineers share the CPU cores: one thread (module fixtures included), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> SimpleNamespace:
    """Synthetic NYUv2 (5 test frames, 480x640), synthetic COCO (5 images) and a tiny joint solver folder."""
    root = tmp_path_factory.mktemp("eval_runner")
    nyu = make_synthetic_nyu(root / "nyu_depth_v2", num_train=0, num_test=5, seed=0)
    coco = make_synthetic_coco(root / "coco", split="val", num_images=5, seed=0)
    joint = save_tiny_solver(root / "joint", ("depth", "instance_segmentation"))
    cache = root / "cache"
    return SimpleNamespace(root=root, nyu=nyu, coco=coco, joint=joint, cache=cache)


def depth_args(ws: SimpleNamespace, *extra: str) -> list[str]:
    return ["--model", str(ws.joint), "--task", "depth", "--data", str(ws.nyu["root"]),
            "--list-file", str(ws.nyu["test_list"]), "--cache-dir", str(ws.cache), "--quiet", *extra]  # fmt: skip


def nyu_dataset(ws: SimpleNamespace):
    return load_nyu_depth_v2(ws.nyu["root"], "test", ws.nyu["test_list"], cache_dir=ws.cache)


# ================================================================================================ depth
def test_depth_cli_writes_reports_and_follows_the_protocol(workspace, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(depth_args(workspace, "--batch-size", "2", "--output", str(output))) == 0
    printed = capsys.readouterr().out
    assert "images/s end to end" in printed and "| d1 | d2 | d3 |" in printed
    report = json.loads((output / "metrics.json").read_text())
    assert set(report) == {"depth", "run"}
    assert report["run"]["num_images"] == 5 and report["run"]["batch_size"] == 2
    assert report["run"]["images_per_second"] > 0 and report["run"]["test_time_augmentation"] is True
    markdown = (output / "metrics.md").read_text()
    assert "## depth" in markdown and "| images_per_second |" in markdown

    # The same protocol computed directly: processor frame, the model's TTA, bilinear back to 480x640, the
    # metrics on the NYU crop.
    model = AiTForDepthAndInstanceSegmentation.from_pretrained(workspace.joint).eval()
    processor = AiTImageProcessor.from_pretrained(workspace.joint)
    folder = workspace.nyu["root"] / "official_splits" / "test"
    predictions, targets = [], []
    for line in workspace.nyu["test_list"].read_text().split("\n"):
        if not line:
            continue
        image_name, depth_name = (name.lstrip("/") for name in line.split())
        image = PIL.Image.open(folder / image_name).convert("RGB")
        target = np.asarray(PIL.Image.open(folder / depth_name), dtype=np.float32) / np.float32(1000.0)
        pixel_values = processor(image, task="depth", return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            depth = model(pixel_values, task="depth", test_time_augmentation=True).predicted_depth
        predictions.append(
            F.interpolate(depth[None], size=(480, 640), mode="bilinear", align_corners=False)[0, 0]
        )
        targets.append(torch.from_numpy(target))
    expected = compute_depth_metrics(torch.stack(predictions), torch.stack(targets))
    for name in DEPTH_METRIC_NAMES:
        assert report["depth"][name] == pytest.approx(expected[name], rel=1e-6), name
    assert 0.0 < report["depth"]["d3"] and report["depth"]["rmse"] > 0  # a random model: far from perfect


def test_depth_metrics_do_not_depend_on_the_batch_size(workspace):
    """Greedy decoding: batched and one-by-one decoding give the same tokens; the metrics agree up to float32
    rounding of the batched matrix products (about 1e-7 relative)."""
    common = dict(model_dir=workspace.joint, data=workspace.nyu["root"], list_file=str(workspace.nyu["test_list"]),
                  cache_dir=str(workspace.cache), progress=False)  # fmt: skip
    one = run_evaluation("depth", batch_size=1, **common)
    four = run_evaluation("depth", batch_size=4, **common)  # batches of 4 and 1
    assert one["run"]["top_p"] == 0.0
    for name in DEPTH_METRIC_NAMES:
        assert four["depth"][name] == pytest.approx(one["depth"][name], rel=1e-6), name
    no_tta = run_evaluation("depth", batch_size=4, test_time_augmentation=False, **common)
    assert no_tta["run"]["test_time_augmentation"] is False
    assert no_tta["depth"]["rmse"] != one["depth"]["rmse"]  # the flips change the prediction


def test_full_size_nyu_frames_follow_the_original_protocol(workspace):
    """A model with the released depth geometry (480x480 tokenizer, 480x640 frame; tiny elsewhere): frames are
    not resized, the model's windows and flips cover 480x640, and the metrics use the NYU crop. The upper bound
    of its own tokenizer runs whole frames (15x20 codes) or the solver's windows."""
    from test_modeling import tiny_config

    from ait_hf.configuration_ait import AiTVQVAEConfig

    tokenizer_config = AiTVQVAEConfig(image_size=480, downsample_ratio=32, num_embeddings=16, embedding_dim=8,
                                      hidden_size=4, tau=0.8)  # fmt: skip
    config = tiny_config(tasks=["depth"], depth_tokenizer_config=tokenizer_config.to_diff_dict(),
                         encoder_grid=(15, 15), max_decoder_length=256, image_size=480)  # fmt: skip
    torch.manual_seed(0)
    model = AiTForDepthAndInstanceSegmentation(config).eval()
    with torch.no_grad():
        model.depth_tokenizer.decoder[-1].bias.add_(3.0)  # positive metres
    model_dir = workspace.root / "depth480"
    model.save_pretrained(model_dir)
    common = dict(data=workspace.nyu["root"], limit=1, batch_size=1, list_file=str(workspace.nyu["test_list"]),
                  cache_dir=str(workspace.cache), progress=False)  # fmt: skip
    sections = run_evaluation("depth", model_dir=model_dir, upper_bound=True, **common)

    rows = nyu_dataset(workspace).select(range(1))
    pixel_values = torch.stack(
        [
            torch.from_numpy(np.asarray(row["image"], dtype=np.float32).transpose(2, 0, 1) / np.float32(255))
            for row in rows
        ]
    )
    targets = torch.stack([torch.from_numpy(row["depth"]) for row in rows])
    with torch.no_grad():
        predicted = model(pixel_values, task="depth", test_time_augmentation=True).predicted_depth
    assert predicted.shape == targets.shape == (1, 480, 640)
    expected = compute_depth_metrics(predicted, targets)  # NYU crop: 480x640 ground truth
    for name in DEPTH_METRIC_NAMES:
        assert sections["depth"][name] == pytest.approx(expected[name], rel=1e-6), name
    assert all(np.isfinite(v) for v in sections["depth_tokenizer_upper_bound"].values())
    # a solver folder as --tokenizer: its depth tokenizer, here on the solver's windows
    windows = run_evaluation("depth", tokenizer_dir=model_dir, upper_bound_mode="windows", **common)
    assert windows["run"]["upper_bound_mode"] == "windows"
    assert windows["depth_tokenizer_upper_bound"] != sections["depth_tokenizer_upper_bound"]


def test_depth_frames_at_the_model_frame_are_converted_exactly():
    """480x640 NYUv2 frames become `ToTensor` pixels (uint8 / 255, the original loader); other sizes are
    resized by the image processor to the model's frame."""
    processor = AiTImageProcessor()  # depth frame 480x640
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.integers(0, 10000, (480, 640)).astype(np.uint16)
    example = DepthExamplePreparer(processor)({"image": PIL.Image.fromarray(pixels), "depth": depth})
    expected = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))
    assert torch.equal(example["pixel_values"], expected)
    assert torch.equal(
        example["depth_labels"], torch.from_numpy(depth.astype(np.float32) / np.float32(1000.0))
    )
    small = DepthExamplePreparer(processor)(
        {"image": PIL.Image.fromarray(pixels[:240, :320]), "depth": depth[:240, :320]}
    )
    assert small["pixel_values"].shape == (3, 480, 640) and small["depth_labels"].shape == (240, 320)


# ================================================================================================= COCO
class OracleModel(nn.Module):
    """Answers with the ground-truth objects of the image it is shown (recognised by its pixels): boxes in
    model-input pixels (original boxes times the resize factor), score 1, box-local 64x64 masks."""

    def __init__(self, dataset, processor, task: str, num_queries: int = 4) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(tasks=["instance_segmentation"], num_classes=80, sampling_top_p=0.0)
        self.answers: dict[bytes, dict[str, torch.Tensor]] = {}
        for row in dataset:
            pixel_values = processor(row["image"], task=task, return_tensors="pt")["pixel_values"][0]
            keep = [i for i, crowd in enumerate(row["objects"]["iscrowd"]) if not crowd][:num_queries]
            boxes = torch.tensor([row["objects"]["bbox"][i] for i in keep], dtype=torch.float32).reshape(
                -1, 4
            )
            masks = crop_and_resize_masks(
                torch.from_numpy(coco_object_masks(row, keep)), boxes, 64, binarize=False
            )
            side = processor.instance_size.longest_edge
            w_scale, h_scale = get_keep_ratio_scale_factor(row["height"], row["width"], side, side)
            count = len(keep)
            answer = {  # unused queries: a zero-score dummy object
                "pred_boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(num_queries, 1),
                "pred_scores": torch.zeros(num_queries),
                "pred_labels": torch.zeros(num_queries, dtype=torch.int64),
                "pred_masks": torch.zeros(num_queries, 64, 64),
            }
            answer["pred_boxes"][:count] = boxes * torch.tensor([w_scale, h_scale, w_scale, h_scale])
            answer["pred_scores"][:count] = 1.0
            answer["pred_labels"][:count] = torch.tensor([row["objects"]["label"][i] for i in keep])
            answer["pred_masks"][:count] = masks
            self.answers[pixel_values.numpy().tobytes()] = answer

    def forward(self, pixel_values, task=None, generator=None):
        answers = [self.answers[image.cpu().numpy().tobytes()] for image in pixel_values]
        return SimpleNamespace(**{key: torch.stack([a[key] for a in answers]) for key in answers[0]})


def coco_dataset(ws: SimpleNamespace):
    return load_coco_instances(ws.coco["image_dir"], ws.coco["annotation_file"], cache_dir=ws.cache)


@pytest.mark.parametrize("task", ["instance_segmentation", "object_detection"])
def test_oracle_objects_map_back_to_the_original_images(workspace, task):
    """Boxes divided by the resize factor and masks pasted at the original size recover the ground truth:
    box AP 1 (a missing or wrong rescale gives about 0), every pasted mask overlaps its object (AP50 = 1)."""
    processor = image_processor_for_config(tiny_solver().config, task)  # 128-pixel canvas
    dataset = coco_dataset(workspace)
    oracle = OracleModel(dataset, processor, task)
    for batch_size in (1, 4):
        result = evaluate_coco(oracle, dataset, workspace.coco["annotation_file"], task=task, processor=processor,
                               batch_size=batch_size, progress=False)  # fmt: skip
        assert result.num_images == 5
        assert result.metrics["bbox_AP"] == 1.0 and result.metrics["bbox_AR100"] == 1.0
        if task == "instance_segmentation":
            assert result.metrics["segm_AP50"] == 1.0
            assert result.metrics["segm_AP"] > 0.5
        else:
            assert not any(name.startswith("segm") for name in result.metrics)


@pytest.fixture(scope="module")
def self_consistent_coco(workspace) -> Path:
    """The synthetic COCO annotations plus, as further objects, the tiny solver's own batch-size-1 predictions
    (the valid ones): the solver finds those exactly and misses the others, so its AP is neither 0 nor 1."""
    model, processor = load_model_and_processor(workspace.joint)
    source = json.loads(workspace.coco["annotation_file"].read_text())
    category_ids = sorted(c["id"] for c in source["categories"])
    annotations = list(source["annotations"])
    for row in coco_dataset(workspace):
        image = row["image"]
        size = (image.height, image.width)
        pixel_values = processor(image, task="instance_segmentation", return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            output = model(pixel_values, task="instance_segmentation")
        boxes = processor.post_process_object_detection(output, threshold=-1.0, target_sizes=[size])[0][
            "boxes"
        ]
        masks = paste_masks_in_image(output.pred_masks[0], boxes, size).numpy()
        for box, label, mask in zip(boxes.tolist(), output.pred_labels[0].tolist(), masks):
            x1, y1, x2, y2 = box
            if x2 - x1 < 1 or y2 - y1 < 1 or not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": 1000 + len(annotations), "image_id": row["image_id"], "iscrowd": 0,
                                "category_id": category_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": float(mask.sum()), "segmentation": rle})  # fmt: skip
    assert len(annotations) > len(source["annotations"]), "the tiny solver predicted no valid object"
    path = workspace.root / "self_consistent" / "instances_val2017.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**source, "annotations": annotations}))
    return path


def test_coco_cli_reports_and_batch_size_invariance(workspace, self_consistent_coco, tmp_path, capsys):
    reports = {}
    for batch_size in ("1", "4"):
        output = tmp_path / f"out{batch_size}"
        argv = ["--model", str(workspace.joint), "--task", "instance_segmentation",
                "--image-dir", str(workspace.coco["image_dir"]), "--annotations", str(self_consistent_coco),
                "--batch-size", batch_size, "--output", str(output), "--cache-dir", str(workspace.cache), "--quiet"]  # fmt: skip
        assert main(argv) == 0
        reports[batch_size] = json.loads((output / "metrics.json").read_text())
        assert "## segm" in (output / "metrics.md").read_text()
    assert "images/s end to end" in capsys.readouterr().out
    one, four = reports["1"], reports["4"]
    assert set(one) == {"bbox", "segm", "run"} and set(one["bbox"]) == set(BBOX_NAMES)
    assert one["run"]["num_images"] == 5 and one["run"]["top_p"] == 0.0
    for iou_type in ("bbox", "segm"):
        # Identical tokens; scores and masks agree to float32 rounding, which does not move any AP value.
        assert four[iou_type] == one[iou_type], iou_type
        assert 0.0 < one[iou_type]["AP"] < 1.0  # the model's own objects are found, the synthetic ones missed


def test_detection_task_of_a_joint_model_reports_box_ap_only(workspace, self_consistent_coco):
    sections = run_evaluation("detection", model_dir=workspace.joint, image_dir=str(workspace.coco["image_dir"]),
                              annotations=str(self_consistent_coco), cache_dir=str(workspace.cache),
                              batch_size=2, progress=False)  # fmt: skip
    assert set(sections) == {"bbox", "run"} and sections["run"]["model_head"] == "instance_segmentation"
    full = run_evaluation("instance_segmentation", model_dir=workspace.joint, image_dir=str(workspace.coco["image_dir"]),
                          annotations=str(self_consistent_coco), cache_dir=str(workspace.cache), progress=False)  # fmt: skip
    assert sections["bbox"] == full["bbox"]


def test_sampling_results_follow_the_seed(workspace, self_consistent_coco):
    """With nucleus sampling the result is random: the same seed repeats it."""
    model, processor = load_model_and_processor(workspace.joint)
    dataset = coco_dataset(workspace)
    runs = [
        evaluate_coco(
            model,
            dataset,
            self_consistent_coco,
            processor=processor,
            top_p=0.9,
            seed=seed,
            batch_size=2,
            progress=False,
        )  # fmt: skip
        for seed in (3, 3)
    ]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].settings["top_p"] == 0.9 and model.config.sampling_top_p == 0.0  # restored afterwards


# ============================================================================================ Trainer glue
class PredictionFnTrainer:
    """A `transformers.Trainer` whose evaluation step is `make_prediction_fn` (as training's AiTTrainer)."""

    @staticmethod
    def build(model, dataset, compute_metrics, prediction_fn, output_dir, batch_eval_metrics):
        from transformers import Trainer, TrainingArguments

        class _Trainer(Trainer):
            def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
                inputs = self._prepare_inputs(inputs)
                with torch.no_grad():
                    return prediction_fn(model, inputs)

        args = TrainingArguments(output_dir=str(output_dir), per_device_eval_batch_size=2, report_to=[],
                                 use_cpu=True, batch_eval_metrics=batch_eval_metrics,
                                 remove_unused_columns=False)  # keep the COCO metadata  # fmt: skip
        return _Trainer(model=model, args=args, eval_dataset=dataset, data_collator=collate_examples,
                        compute_metrics=compute_metrics)  # fmt: skip


@pytest.mark.parametrize("batch_eval_metrics", [True, False])
def test_trainer_evaluate_uses_the_runner_metrics(
    workspace, self_consistent_coco, tmp_path, batch_eval_metrics
):
    model, processor = load_model_and_processor(workspace.joint)
    depth_rows = nyu_dataset(workspace)
    trainer = PredictionFnTrainer.build(
        model, _Rows(depth_rows, DepthExamplePreparer(processor)), make_compute_metrics("depth"),
        make_prediction_fn("depth"), tmp_path / "depth", batch_eval_metrics,
    )  # fmt: skip
    metrics = trainer.evaluate()
    expected = evaluate_depth(model, depth_rows, processor=processor, batch_size=2, progress=False).metrics
    for name in DEPTH_METRIC_NAMES:
        assert metrics[f"eval_{name}"] == pytest.approx(expected[name], rel=1e-6), name

    coco_rows = coco_dataset(workspace)
    trainer = PredictionFnTrainer.build(
        model, _Rows(coco_rows, CocoExamplePreparer(processor, "instance_segmentation")),
        make_compute_metrics("instance_segmentation", ground_truth=self_consistent_coco, processor=processor),
        make_prediction_fn("instance_segmentation"), tmp_path / "coco", batch_eval_metrics,
    )  # fmt: skip
    metrics = trainer.evaluate()
    expected = evaluate_coco(model, coco_rows, self_consistent_coco, processor=processor, batch_size=2,
                             progress=False).metrics  # fmt: skip
    assert {name: metrics[f"eval_{name}"] for name in expected} == expected
    assert 0.0 < expected["segm_AP"] < 1.0


# ============================================================================================ upper bounds
def test_tokenizer_upper_bounds_from_the_command_line(workspace, tmp_path, capsys):
    solver = tiny_solver()
    depth_dir, mask_dir = tmp_path / "depth_tokenizer", tmp_path / "mask_tokenizer"
    solver.depth_tokenizer.save_pretrained(depth_dir)
    solver.mask_tokenizer.save_pretrained(mask_dir)

    output = tmp_path / "depth_out"
    argv = ["--tokenizer", str(depth_dir), "--task", "depth", "--data", str(workspace.nyu["root"]),
            "--list-file", str(workspace.nyu["test_list"]), "--cache-dir", str(workspace.cache),
            "--batch-size", "2", "--output", str(output), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((output / "metrics.json").read_text())
    assert set(report) == {"depth_tokenizer_upper_bound", "run"}
    assert all(np.isfinite(report["depth_tokenizer_upper_bound"][name]) for name in DEPTH_METRIC_NAMES)
    assert report["run"]["upper_bound_num_images"] == 5 and report["run"]["upper_bound_mode"] == "full_frame"
    assert "tokenizer upper bound: 5 images" in capsys.readouterr().out

    output = tmp_path / "mask_out"
    argv = ["--tokenizer", str(mask_dir), "--task", "instance_segmentation", "--data", str(workspace.coco["root"]),
            "--output", str(output), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((output / "metrics.json").read_text())
    direct = mask_tokenizer_upper_bound(solver.mask_tokenizer, workspace.coco["annotation_file"])
    assert report["mask_tokenizer_upper_bound_segm"] == {
        name: direct[f"segm_{name}"] for name in COCO_STAT_NAMES
    }
    assert report["run"]["upper_bound_num_objects"] == direct["num_objects"] > 0

    # the model's own tokenizer beside the model's metrics
    sections = run_evaluation("depth", model_dir=workspace.joint, upper_bound=True, data=workspace.nyu["root"],
                              list_file=str(workspace.nyu["test_list"]), cache_dir=str(workspace.cache),
                              limit=2, progress=False)  # fmt: skip
    assert set(sections) == {"depth", "depth_tokenizer_upper_bound", "run"}
    assert sections["run"]["num_images"] == sections["run"]["upper_bound_num_images"] == 2


# ================================================================================================= errors
def test_user_errors_are_reported_without_traceback(workspace, tmp_path, capsys):
    solver = tiny_solver()
    mask_dir = tmp_path / "mask_tokenizer"
    solver.mask_tokenizer.save_pretrained(mask_dir)
    data = ["--data", str(workspace.nyu["root"])]
    cases = [
        (["--model", str(tmp_path / "missing"), "--task", "depth", *data], "no such directory"),
        (["--model", str(mask_dir), "--task", "depth", *data], "holds a VQ-VAE tokenizer"),
        (["--tokenizer", str(mask_dir), "--task", "depth", *data], "task 'depth' needs a 'depth' tokenizer"),
        (
            ["--tokenizer", str(mask_dir), "--task", "object_detection", *data],
            "object detection has no tokenizer",
        ),
        (["--model", str(workspace.joint), "--task", "segmentation", *data], "unknown task 'segmentation'"),
        (["--task", "depth", *data], "pass --model"),
        (
            ["--model", str(workspace.joint), "--task", "depth", "--data", str(tmp_path / "nowhere")],
            "no such file",
        ),
        (["--model", str(workspace.joint), "--task", "depth", *data, "--batch-size", "0"], "at least 1"),
        (
            [
                "--model",
                str(workspace.joint),
                "--upper-bound",
                "--task",
                "depth",
                *data,
                "--list-file",
                str(workspace.nyu["test_list"]),
                "--cache-dir",
                str(workspace.cache),
                "--upper-bound-mode",
                "windows",
            ],
            "windows mode needs depth maps 64 pixels high",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert main(["--task"]) == 2  # argparse usage error
    assert main(["--help"]) == 0
