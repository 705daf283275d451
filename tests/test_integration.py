"""Hugging Face integration (issue 4): Auto-class registration, remote-code folder contents, and the
transformers pipelines on saved AiT folders (single and batched, multi-task routing, bad inputs), on tiny
random models. The command line is tested in test_hf_cli.py, remote-code loading in test_hf_remote_code.py,
the Hub round trip in test_hf_hub.py."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_testing import (
    batch_images,
    cached_pipeline,
    direct_prediction,
    odd_images,
    one_cpu_thread,
    random_image,
    save_tiny_solvers,
    task_routing_available,
    tiny_solver,
)
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForDepthEstimation,
    AutoModelForImageSegmentation,
    AutoModelForInstanceSegmentation,
    AutoModelForObjectDetection,
    pipeline,
)

import ait_hf
from ait_hf import (
    AiTConfig,
    AiTForDepthAndInstanceSegmentation,
    AiTImageProcessor,
    AiTImageProcessorPil,
    AiTModel,
    AiTVQVAE,
    AiTVQVAEConfig,
)

ROOT = Path(__file__).resolve().parents[1]

needs_task_routing = pytest.mark.skipif(
    not task_routing_available(),
    reason="needs the image processor to pass `task` to the model (task-routing change, see the issue-4 report)",
)


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return save_tiny_solvers(tmp_path_factory.mktemp("models"))


def _check_depth(result, image, model_dir):
    assert set(result) == {"predicted_depth", "depth"}
    assert result["predicted_depth"].shape == (image.height, image.width)
    assert result["depth"].size == image.size and result["depth"].mode == "L"
    expected = direct_prediction(model_dir, "depth", image)["predicted_depth"]
    torch.testing.assert_close(result["predicted_depth"], expected, rtol=1e-4, atol=1e-4)
    assert (result["predicted_depth"] > 0).all()


def _check_instances(result, image, model_dir, id2label):
    expected = direct_prediction(model_dir, "instance_segmentation", image, threshold=0.0)
    assert len(result) == len(expected["segments_info"])
    for segment, info in zip(result, expected["segments_info"]):
        assert set(segment) == {"score", "label", "mask"}
        assert segment["label"] == id2label[info["label_id"]]
        assert segment["score"] == pytest.approx(info["score"], abs=1e-5)
        assert segment["mask"].size == image.size and segment["mask"].mode == "L"
        mask = np.asarray(segment["mask"]) > 0
        np.testing.assert_array_equal(mask, (expected["segmentation"] == info["id"]).numpy())


def _check_detections(result, image, model_dir, id2label):
    expected = direct_prediction(model_dir, "object_detection", image, threshold=0.0)
    assert len(result) == len(expected["scores"])
    for detection, score, label, box in zip(
        result, expected["scores"], expected["labels"], expected["boxes"]
    ):
        assert set(detection) == {"score", "label", "box"}
        assert detection["score"] == pytest.approx(float(score), abs=1e-5)
        assert detection["label"] == id2label[int(label)]
        assert detection["box"] == dict(zip(("xmin", "ymin", "xmax", "ymax"), [int(v) for v in box.tolist()]))


# ------------------------------------------------------------------------------------------ registration
def test_public_names_and_auto_registration(model_dirs, tmp_path):
    assert all(getattr(ait_hf, name) is not None for name in ait_hf.__all__)
    config = tiny_solver().config
    assert isinstance(AutoConfig.for_model("ait"), AiTConfig)
    assert isinstance(AutoConfig.for_model("ait_vqvae"), AiTVQVAEConfig)
    assert type(AutoModel.from_config(config)) is AiTModel
    assert type(AutoModel.from_config(AiTVQVAEConfig(image_size=64, downsample_ratio=16))) is AiTVQVAE
    for auto in (
        AutoModelForDepthEstimation,
        AutoModelForInstanceSegmentation,
        AutoModelForImageSegmentation,
        AutoModelForObjectDetection,
    ):
        assert type(auto.from_config(config)) is AiTForDepthAndInstanceSegmentation

    loaded = AutoModelForDepthEstimation.from_pretrained(model_dirs["joint"])
    reference = AiTForDepthAndInstanceSegmentation.from_pretrained(model_dirs["joint"])
    assert type(loaded) is AiTForDepthAndInstanceSegmentation and not loaded.training
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    base = AutoModel.from_pretrained(model_dirs["joint"])  # the backbone + encoder of the solver checkpoint
    assert type(base) is AiTModel
    assert torch.equal(base.encoder.memory_proj.weight, reference.model.encoder.memory_proj.weight)

    assert type(AutoImageProcessor.from_pretrained(model_dirs["joint"])) is AiTImageProcessor
    pil = AutoImageProcessor.from_pretrained(model_dirs["joint"], backend="pil")
    assert type(pil) is AiTImageProcessorPil and pil.task == "depth"

    tokenizer = AiTVQVAE(
        AiTVQVAEConfig(image_size=64, downsample_ratio=16, num_embeddings=8, embedding_dim=4)
    )
    ait_hf.save_for_remote_code(tmp_path / "tok", tokenizer)
    assert type(AutoModel.from_pretrained(tmp_path / "tok")) is AiTVQVAE


def test_image_processor_follows_the_config():
    config = tiny_solver().config
    processor = ait_hf.image_processor_for_config(config)
    assert processor.task == "depth" and dict(processor.size) == {"height": 64, "width": 85}
    assert dict(processor.pad_size) == {"height": 128, "width": 128}
    assert processor(random_image(30, 200), task="instance_segmentation", return_tensors="pt")[
        "pixel_values"
    ].shape == (1, 3, 128, 128)
    pil = ait_hf.image_processor_for_config(config, task="instance_segmentation", backend="pil")
    assert type(pil) is AiTImageProcessorPil and pil.task == "instance_segmentation"
    released = ait_hf.image_processor_for_config(AiTConfig.from_original_preset("swinv2b_640reso_joint"))
    assert dict(released.size) == {"height": 480, "width": 640}  # the NYUv2 frame
    assert dict(released.instance_size) == {"shortest_edge": 640, "longest_edge": 640}
    with pytest.raises(ValueError, match="backend"):
        ait_hf.image_processor_for_config(config, backend="opencv")


def test_model_task_for():
    joint, det = tiny_solver().config, tiny_solver(("object_detection",)).config
    assert ait_hf.model_task_for(joint, "depth") == "depth"
    assert (
        ait_hf.model_task_for(joint, "object_detection") == "instance_segmentation"
    )  # boxes of the instances
    assert ait_hf.model_task_for(det, "object_detection") == "object_detection"
    with pytest.raises(
        ValueError, match=r"no 'instance_segmentation' head; it was trained for \['object_detection'\]"
    ):
        ait_hf.model_task_for(det, "instance_segmentation")


def test_remote_code_folder_contents(model_dirs):
    directory = model_dirs["joint"]
    names = {path.name for path in ait_hf.hub.remote_code_files()}
    assert names == {
        "configuration_ait.py",
        "modeling_ait.py",
        "modeling_ait_backbone.py",
        "modeling_ait_vqvae.py",
        "image_processing_ait.py",
        "image_processing_pil_ait.py",
        "original_presets.py",  # imported (lazily) by configuration_ait.py
    }
    for name in names:
        assert (directory / name).read_text() == (ROOT / "ait_hf" / name).read_text()
    config = json.loads((directory / "config.json").read_text())
    assert (
        config["auto_map"]["AutoModelForDepthEstimation"] == "modeling_ait.AiTForDepthAndInstanceSegmentation"
    )
    assert config["auto_map"]["AutoConfig"] == "configuration_ait.AiTConfig"
    processor = json.loads((directory / "preprocessor_config.json").read_text())
    assert processor["auto_map"]["AutoImageProcessor"] == {
        "torchvision": "image_processing_ait.AiTImageProcessor",
        "pil": "image_processing_pil_ait.AiTImageProcessorPil",
    }


def test_add_remote_code_refuses_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ait_hf.add_remote_code(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type 'bert' is not an AiT model"):
        ait_hf.add_remote_code(tmp_path)
    with pytest.raises(ValueError, match="tokenizer has no image processor"):
        ait_hf.save_for_remote_code(
            tmp_path / "tok",
            AiTVQVAE(AiTVQVAEConfig(image_size=64, downsample_ratio=16)),
            AiTImageProcessor(),
        )


# ------------------------------------------------------------------------------------------ pipelines
def test_depth_pipeline_single_image(model_dirs):
    depth = cached_pipeline("depth-estimation", model_dirs["depth"])
    image = random_image(60, 80)
    _check_depth(depth(image), image, model_dirs["depth"])


@needs_task_routing
@pytest.mark.parametrize("kind", ["depth", "joint"])
def test_depth_pipeline_batched(model_dirs, kind):
    depth = cached_pipeline("depth-estimation", model_dirs[kind])
    images = batch_images()
    results = depth(images, batch_size=4)
    assert len(results) == len(images)
    for result, image in zip(results, images):
        _check_depth(result, image, model_dirs[kind])


@pytest.mark.parametrize("kind", ["insseg", pytest.param("joint", marks=needs_task_routing)])
def test_instance_segmentation_pipeline_single_and_batched(model_dirs, kind):
    segmenter = cached_pipeline("image-segmentation", model_dirs[kind], subtask="instance")
    id2label = segmenter.model.config.id2label
    images = batch_images()
    single = segmenter(images[0], threshold=0.0)
    assert isinstance(single, list) and len(single) > 0
    _check_instances(single, images[0], model_dirs[kind], id2label)
    batched = segmenter(images, batch_size=4, threshold=0.0)
    assert len(batched) == len(images)
    for result, image in zip(batched, images):
        _check_instances(result, image, model_dirs[kind], id2label)


@pytest.mark.parametrize(
    "kind",
    [
        "det",
        pytest.param("insseg", marks=needs_task_routing),
        pytest.param("joint", marks=needs_task_routing),
    ],
)
def test_object_detection_pipeline_single_and_batched(model_dirs, kind):
    detector = cached_pipeline("object-detection", model_dirs[kind])
    id2label = detector.model.config.id2label
    images = batch_images()
    single = detector(images[0], threshold=0.0)
    assert len(single) == detector.model.config.num_queries
    _check_detections(single, images[0], model_dirs[kind], id2label)
    batched = detector(images, batch_size=4, threshold=0.0)
    assert len(batched) == len(images)
    for result, image in zip(batched, images):
        _check_detections(result, image, model_dirs[kind], id2label)


def test_object_detection_pipeline_on_an_instance_model_without_routing(model_dirs):
    """An instance segmentation checkpoint's saved task already gives boxes to the detection pipeline."""
    detector = cached_pipeline("object-detection", model_dirs["insseg"])
    image = random_image(60, 80)
    _check_detections(
        detector(image, threshold=0.0), image, model_dirs["insseg"], detector.model.config.id2label
    )


@needs_task_routing
@pytest.mark.parametrize(
    ("task", "kwargs", "missing"),
    [
        ("image-segmentation", {"subtask": "instance"}, "instance_segmentation"),
        ("object-detection", {}, "object_detection"),
    ],
)
def test_a_task_the_checkpoint_lacks_is_a_clear_error(model_dirs, task, kwargs, missing):
    runner = pipeline(task, model=str(model_dirs["depth"]), **kwargs)
    with pytest.raises(ValueError, match=rf"no '{missing}' head; it supports \['depth'\]"):
        runner(random_image(40, 50))


@needs_task_routing
def test_depth_pipeline_on_a_detection_only_model_is_a_clear_error(model_dirs):
    with pytest.raises(ValueError, match=r"no 'depth' head; it supports \['object_detection'\]"):
        cached_pipeline("depth-estimation", model_dirs["det"])(random_image(40, 50))


# ------------------------------------------------------------------------------------------ bad inputs
def test_pipelines_take_non_rgb_images(model_dirs):
    depth = cached_pipeline("depth-estimation", model_dirs["depth"])
    segmenter = cached_pipeline("image-segmentation", model_dirs["insseg"], subtask="instance")
    for name, image in odd_images().items():
        assert image.mode != "RGB", name
        result = depth(image)
        assert result["predicted_depth"].shape == (40, 50) and torch.isfinite(result["predicted_depth"]).all()
        segments = segmenter(image, threshold=0.0)
        assert segments and all(segment["mask"].size == (50, 40) for segment in segments), name


def test_pipelines_take_tiny_and_huge_images(model_dirs):
    depth = cached_pipeline("depth-estimation", model_dirs["depth"])
    with warnings.catch_warnings():
        # transformers' preview normalises by (max - min), which is 0 for a one-pixel map (its NaN warning)
        warnings.simplefilter("ignore", RuntimeWarning)
        tiny = depth(random_image(1, 1))
    assert tiny["predicted_depth"].shape == (1, 1) and torch.isfinite(tiny["predicted_depth"]).all()
    huge = depth(random_image(40, 60).resize((3000, 2000)))
    assert huge["predicted_depth"].shape == (2000, 3000)
    detector = cached_pipeline("object-detection", model_dirs["det"])
    assert len(detector(random_image(1, 1), threshold=0.0)) == detector.model.config.num_queries
    segmenter = cached_pipeline("image-segmentation", model_dirs["insseg"], subtask="instance")
    for segment in segmenter(random_image(30, 40).resize((1600, 1200)), threshold=0.0):
        assert segment["mask"].size == (1600, 1200)


def test_pipelines_name_corrupt_files(model_dirs, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    depth = cached_pipeline("depth-estimation", model_dirs["depth"])
    with pytest.raises(OSError, match="corrupt.png"):
        depth(str(corrupt))


def test_pipelines_refuse_folders_that_are_not_ait_models(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="Could not load model"):
        pipeline("depth-estimation", model=str(tmp_path / "bert"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises((OSError, ValueError), match="nothing"):
        pipeline("depth-estimation", model=str(tmp_path / "nothing"))


def test_the_processor_refuses_an_empty_batch(model_dirs):
    processor = AutoImageProcessor.from_pretrained(model_dirs["joint"])
    with pytest.raises(ValueError, match="empty list of images"):
        processor([])
