"""Remote code: a saved AiT folder loads and runs with `trust_remote_code=True` in a fresh Python process in
which `ait_hf` cannot be imported (it is pip-installed in editable mode here, so the child process blocks it
with a meta-path hook), and gives the same predictions as the package."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hf_testing import (
    BLOCK_AIT_HF,
    direct_prediction,
    one_cpu_thread,
    random_image,
    save_tiny_solvers,
    task_routing_available,
)

from ait_hf import AiTVQVAE, AiTVQVAEConfig, save_for_remote_code

CHILD = BLOCK_AIT_HF + textwrap.dedent(
    """
    import json

    import numpy as np
    import torch
    from PIL import Image
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

    dirs, image_path, out_path, check_routing = json.loads(sys.argv[1])
    image = Image.open(image_path)
    report, arrays = {"classes": {}}, {}

    def remote(obj):
        module = type(obj).__module__
        assert module.startswith("transformers_modules"), module
        report["classes"][type(obj).__name__] = module.split(".")[-1]
        return obj

    remote(AutoConfig.from_pretrained(dirs["joint"], trust_remote_code=True))
    for auto in (AutoModelForDepthEstimation, AutoModelForInstanceSegmentation, AutoModelForImageSegmentation,
                 AutoModelForObjectDetection):
        remote(auto.from_pretrained(dirs["joint"], trust_remote_code=True))
    remote(AutoModel.from_pretrained(dirs["joint"], trust_remote_code=True))
    for backend in ("torchvision", "pil"):
        remote(AutoImageProcessor.from_pretrained(dirs["joint"], trust_remote_code=True, backend=backend))
    tokenizer = remote(AutoModel.from_pretrained(dirs["tokenizer"], trust_remote_code=True))
    arrays["tokenizer_codes"] = tokenizer.encode(torch.linspace(0, 1, 64 * 64).view(1, 64, 64)).numpy()

    model = remote(AutoModelForDepthEstimation.from_pretrained(dirs["depth"], trust_remote_code=True)).eval()
    processor = AutoImageProcessor.from_pretrained(dirs["depth"], trust_remote_code=True)
    with torch.no_grad():
        outputs = model(processor(image, return_tensors="pt")["pixel_values"], task="depth")
    arrays["model_depth"] = processor.post_process_depth_estimation(outputs, [image.size[::-1]])[0][
        "predicted_depth"
    ].numpy()

    depth = pipeline("depth-estimation", model=dirs["depth"], trust_remote_code=True)
    arrays["pipeline_depth"] = depth(image)["predicted_depth"].numpy()
    segmenter = pipeline("image-segmentation", model=dirs["insseg"], subtask="instance", trust_remote_code=True)
    segments = segmenter(image, threshold=0.0)
    report["segments"] = [(s["label"], s["score"]) for s in segments]
    arrays["segment_masks"] = np.stack([np.asarray(s["mask"]) for s in segments])
    detector = pipeline("object-detection", model=dirs["det"], trust_remote_code=True)
    report["detections"] = detector(image, threshold=0.0)
    if check_routing:  # one multi-task folder serves every pipeline
        joint_depth = pipeline("depth-estimation", model=dirs["joint"], trust_remote_code=True)
        arrays["joint_depth"] = joint_depth(image)["predicted_depth"].numpy()
        joint_segmenter = pipeline(
            "image-segmentation", model=dirs["joint"], subtask="instance", trust_remote_code=True
        )
        report["joint_segments"] = [(s["label"], s["score"]) for s in joint_segmenter(image, threshold=0.0)]
    np.savez(out_path, **arrays)
    print(json.dumps(report))
    """
)


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    yield from one_cpu_thread()


def test_remote_code_loading_in_a_process_without_ait_hf(tmp_path):
    dirs = {kind: str(path) for kind, path in save_tiny_solvers(tmp_path / "models").items()}
    torch.manual_seed(0)
    tokenizer = AiTVQVAE(
        AiTVQVAEConfig(image_size=64, downsample_ratio=16, num_embeddings=8, embedding_dim=4)
    )
    dirs["tokenizer"] = str(save_for_remote_code(tmp_path / "models" / "tokenizer", tokenizer))
    image = random_image(50, 70)
    image.save(tmp_path / "image.png")
    routing = task_routing_available()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")
    }
    environment.update(
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    arguments = json.dumps([dirs, str(tmp_path / "image.png"), str(tmp_path / "out.npz"), routing])
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,  # nothing named ait_hf here
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    arrays = np.load(tmp_path / "out.npz")

    assert report["classes"] == {
        "AiTConfig": "configuration_ait",
        "AiTForDepthAndInstanceSegmentation": "modeling_ait",
        "AiTModel": "modeling_ait",
        "AiTImageProcessor": "image_processing_ait",
        "AiTImageProcessorPil": "image_processing_pil_ait",
        "AiTVQVAE": "modeling_ait_vqvae",
    }
    with torch.no_grad():
        codes = tokenizer.encode(torch.linspace(0, 1, 64 * 64).view(1, 64, 64)).numpy()
    np.testing.assert_array_equal(arrays["tokenizer_codes"], codes)

    expected_depth = direct_prediction(tmp_path / "models" / "depth", "depth", image)[
        "predicted_depth"
    ].numpy()
    assert expected_depth.shape == (50, 70)
    np.testing.assert_allclose(arrays["model_depth"], expected_depth, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(arrays["pipeline_depth"], expected_depth, rtol=1e-5, atol=1e-5)

    instances = direct_prediction(
        tmp_path / "models" / "insseg", "instance_segmentation", image, threshold=0.0
    )
    id2label = {0: "person", 1: "bicycle", 2: "car"}
    assert len(report["segments"]) == len(instances["segments_info"]) > 0
    for (label, score), info in zip(report["segments"], instances["segments_info"]):
        assert label == id2label[info["label_id"]] and score == pytest.approx(info["score"], abs=1e-5)
    expected_masks = np.stack(
        [(instances["segmentation"] == s["id"]).numpy() for s in instances["segments_info"]]
    )
    np.testing.assert_array_equal(arrays["segment_masks"] > 0, expected_masks)

    boxes = direct_prediction(tmp_path / "models" / "det", "object_detection", image, threshold=0.0)
    assert [d["score"] for d in report["detections"]] == pytest.approx(boxes["scores"].tolist(), abs=1e-5)
    assert [list(d["box"].values()) for d in report["detections"]] == boxes["boxes"].int().tolist()

    if routing:
        joint = tmp_path / "models" / "joint"
        np.testing.assert_allclose(
            arrays["joint_depth"],
            direct_prediction(joint, "depth", image)["predicted_depth"].numpy(),
            rtol=1e-5,
        )
        joint_instances = direct_prediction(joint, "instance_segmentation", image, threshold=0.0)
        assert [score for _, score in report["joint_segments"]] == pytest.approx(
            [s["score"] for s in joint_instances["segments_info"]], abs=1e-5
        )
