"""Tokenizer upper bounds: perfect and useless fake tokenizers give the extreme scores, the original protocol's
details (box rounding, skipped tiny boxes, whole-frame depth), and real tiny tokenizers give finite metrics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from ait_hf.configuration_ait import AiTVQVAEConfig
from ait_hf.data.synthetic import make_synthetic_coco, make_synthetic_nyu
from ait_hf.evaluation import (
    DEPTH_METRIC_NAMES,
    depth_tokenizer_upper_bound,
    mask_tokenizer_upper_bound,
    reconstruct_box_masks,
    reconstruct_depth,
)
from ait_hf.evaluation.upper_bounds import window_offsets
from ait_hf.modeling_ait_vqvae import AiTVQVAE


class IdentityTokenizer:
    """`decode(encode(x)) == x`: a perfect tokenizer."""

    def __init__(self, image_size: int) -> None:
        self.config = SimpleNamespace(image_size=image_size)
        self.encoded_shapes: list[tuple[int, ...]] = []

    def encode(self, maps: torch.Tensor) -> torch.Tensor:
        self.encoded_shapes.append(tuple(maps.shape))
        return maps.clone()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.clone()


class EmptyMaskTokenizer(IdentityTokenizer):
    """Decodes every mask to nothing: no reconstructed object overlaps its ground truth."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(codes)


def tiny_tokenizer(kind: str) -> AiTVQVAE:
    torch.manual_seed(0)
    if kind == "depth":
        config = AiTVQVAEConfig(
            image_size=64, downsample_ratio=16, num_embeddings=16, embedding_dim=8, hidden_size=4
        )
    else:
        config = AiTVQVAEConfig(image_size=16, downsample_ratio=8, num_embeddings=16, embedding_dim=8, hidden_size=4,
                                normalize_inputs=True, reconstruction_loss="mse", tokenizer_type="mask")  # fmt: skip
    tokenizer = AiTVQVAE(config).eval()
    if kind == "depth":
        with torch.no_grad():  # decode to plausible metres rather than around 0
            tokenizer.decoder[-1].bias.add_(3.0)
    return tokenizer


@pytest.fixture(scope="module")
def nyu_depth_maps(tmp_path_factory) -> list[np.ndarray]:
    """Ground truth of 3 synthetic NYUv2 test frames (480x640 metres, zeros where invalid)."""
    from ait_hf.data import load_nyu_depth_v2

    paths = make_synthetic_nyu(tmp_path_factory.mktemp("nyu_ub") / "nyu", num_train=0, num_test=3, seed=3)
    dataset = load_nyu_depth_v2(
        paths["root"], "test", paths["test_list"], cache_dir=tmp_path_factory.mktemp("cache")
    )
    return [np.asarray(row["depth"]) for row in dataset]


def rectangle_coco() -> dict:
    """Two images whose objects are axis-aligned rectangles filling their (integer) boxes, plus one object
    that is 1 pixel wide (the original protocol skips boxes under 2 pixels)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []

    def add(image_id: int, height: int, width: int, box: tuple[int, int, int, int], category: int) -> None:
        x1, y1, x2, y2 = box
        mask = np.zeros((height, width), np.uint8)
        mask[y1:y2, x1:x2] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category,
                "segmentation": rle,
                "area": float(mask.sum()),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
        )

    for index, (height, width) in enumerate([(90, 120), (150, 100)]):
        image_id = 10 + index
        images.append({"id": image_id, "file_name": f"{index}.jpg", "height": height, "width": width})
        for category in (1, 3, 7):
            y1, x1 = int(rng.integers(0, height - 30)), int(rng.integers(0, width - 30))
            add(
                image_id,
                height,
                width,
                (x1, y1, x1 + int(rng.integers(8, 30)), y1 + int(rng.integers(8, 30))),
                category,
            )
    ground_truth = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": f"class {i}"} for i in (1, 3, 7)],
    }
    return ground_truth


# ------------------------------------------------------------------------------------------------ depth
def test_perfect_depth_tokenizer_scores_perfectly(nyu_depth_maps):
    tokenizer = IdentityTokenizer(image_size=480)
    metrics = depth_tokenizer_upper_bound(tokenizer, nyu_depth_maps, batch_size=2)
    assert metrics["num_images"] == 3
    assert metrics["d1"] == metrics["d2"] == metrics["d3"] == 1.0
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert metrics[name] == 0.0, name
    # Full frame: each 480x640 map goes through the tokenizer whole, as the original VQ-VAE evaluation does.
    assert tokenizer.encoded_shapes == [(2, 480, 640), (1, 480, 640)]


def test_depth_upper_bound_sees_reconstruction_errors(nyu_depth_maps):
    """A tokenizer that adds 10% everywhere: every scored pixel is off by exactly 10%."""

    class TenPercentHigh(IdentityTokenizer):
        def decode(self, codes: torch.Tensor) -> torch.Tensor:
            return codes * 1.1

    metrics = depth_tokenizer_upper_bound(TenPercentHigh(480), nyu_depth_maps)
    assert metrics["d1"] == 1.0
    assert metrics["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert metrics["log10"] == pytest.approx(np.log10(1.1), rel=1e-5)


def test_windows_mode_places_windows_like_the_solver():
    """The windows mode slides the solver's windows (same offsets as the model's test-time augmentation) and
    averages the overlaps; with flips a perfect tokenizer is still perfect."""
    from test_modeling import tiny_model

    model = tiny_model(tasks=["depth"])
    pixel_values = torch.rand(1, 3, 64, 150)
    seen = []
    original = model._decode_depth

    def recording(crops, *args):
        seen.append(crops.clone())
        return original(crops, *args)

    model._decode_depth = recording
    with torch.no_grad():
        model(pixel_values, task="depth", test_time_augmentation=False)
    offsets = window_offsets(150, 64, model.config.depth_tta_windows)
    expected = torch.cat([pixel_values[..., offset : offset + 64] for offset in offsets])
    assert torch.equal(seen[0], expected)

    depth = torch.rand(2, 64, 150) * 9 + 0.5
    tokenizer = IdentityTokenizer(image_size=64)
    reconstruction = reconstruct_depth(tokenizer, depth, mode="windows", num_windows=2, flip=True)
    torch.testing.assert_close(reconstruction, depth, rtol=0, atol=1e-6)
    assert tokenizer.encoded_shapes == [(2 * len(offsets) * 2, 64, 64)]  # windows x flips x batch

    class LeftHalfOnly(IdentityTokenizer):  # reconstructs each window's left half, zero elsewhere
        def decode(self, codes: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(codes)
            out[..., :32] = codes[..., :32]
            return out

    reconstruction = reconstruct_depth(LeftHalfOnly(64), depth, mode="windows", num_windows=2)
    count = torch.zeros(150)
    total = torch.zeros(2, 64, 150)
    for offset in offsets:
        count[offset : offset + 64] += 1
        total[..., offset : offset + 32] += depth[..., offset : offset + 32]
    torch.testing.assert_close(reconstruction, total / count)

    with pytest.raises(ValueError, match="64 pixels high"):
        reconstruct_depth(tokenizer, torch.rand(1, 48, 150), mode="windows")


def test_full_frame_round_trip_of_a_real_tokenizer_matches_its_api():
    """The whole-frame path composes the tokenizer's own modules; at the configured size it must equal
    `decode(encode(x))`, and at 480x640 it must produce a full-size map."""
    tokenizer = tiny_tokenizer("depth")
    square = torch.rand(2, 64, 64) * 9
    expected = tokenizer.decode(tokenizer.encode(square))
    torch.testing.assert_close(reconstruct_depth(tokenizer, square), expected, rtol=0, atol=0)
    frame = reconstruct_depth(tokenizer, torch.rand(1, 480, 640) * 9)
    assert frame.shape == (1, 480, 640) and torch.isfinite(frame).all()
    with pytest.raises(ValueError, match="multiple of the tokenizer's downsample ratio 16"):
        reconstruct_depth(tokenizer, torch.rand(1, 100, 100))


def test_real_depth_tokenizer_gives_finite_metrics_and_ignores_batching(nyu_depth_maps):
    tokenizer = tiny_tokenizer("depth")
    single = depth_tokenizer_upper_bound(tokenizer, nyu_depth_maps, batch_size=1)
    batched = depth_tokenizer_upper_bound(tokenizer, nyu_depth_maps, batch_size=3)
    for name in DEPTH_METRIC_NAMES:
        assert np.isfinite(single[name]), name
        assert batched[name] == pytest.approx(single[name], rel=1e-6), name  # float32 batched convolutions
    assert 0.0 <= single["d1"] < 1.0  # a random tokenizer does not reconstruct the depth


# ------------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("protocol", ["original", "solver"])
def test_perfect_mask_tokenizer_gives_ap_one(protocol):
    result = mask_tokenizer_upper_bound(IdentityTokenizer(64), rectangle_coco(), protocol=protocol)
    assert result["num_images"] == 2 and result["num_objects"] == 6
    assert result["segm_AP"] == 1.0 and result["segm_AP50"] == 1.0 and result["segm_AR100"] == 1.0


@pytest.mark.parametrize("protocol", ["original", "solver"])
def test_empty_reconstructions_give_ap_zero(protocol):
    result = mask_tokenizer_upper_bound(EmptyMaskTokenizer(64), rectangle_coco(), protocol=protocol)
    assert result["segm_AP"] == 0.0 and result["segm_AR100"] == 0.0


def test_original_protocol_skips_boxes_under_two_pixels_and_rounds_like_python():
    ground_truth = rectangle_coco()
    first = ground_truth["annotations"][0]
    x, y, w, h = first["bbox"]
    thin = dict(first, id=99, bbox=[x, y, 1.4, h])  # rounds to 1 pixel wide: skipped, counted as a miss
    ground_truth["annotations"].append(thin)
    result = mask_tokenizer_upper_bound(IdentityTokenizer(64), ground_truth, protocol="original")
    assert result["num_objects"] == 6
    assert result["segm_AR100"] < 1.0  # the skipped object is never recovered

    from ait_hf.evaluation.upper_bounds import _rounded_box

    # Python's round is round-half-to-even, as in the original script: 2.5 -> 2, 3.5 -> 4.
    assert _rounded_box({"bbox": [2.5, 3.5, 10.0, 10.0]}, 100, 100) == (2, 4, 12, 14)
    assert _rounded_box({"bbox": [-0.4, 95.0, 10.0, 10.0]}, 100, 100) == (0, 95, 10, 100)


def test_real_mask_tokenizer_on_synthetic_coco(tmp_path):
    paths = make_synthetic_coco(tmp_path / "coco", num_images=4, seed=1)
    tokenizer = tiny_tokenizer("mask")
    for protocol in ("original", "solver"):
        result = mask_tokenizer_upper_bound(
            tokenizer, paths["annotation_file"], protocol=protocol, batch_size=3
        )
        assert result["num_images"] == 4 and result["num_objects"] > 0
        assert 0.0 <= result["segm_AP"] <= 1.0 and np.isfinite(result["segm_AP"])
    crops = (torch.rand(5, 16, 16) > 0.5).float()
    assert reconstruct_box_masks(tokenizer, crops, batch_size=2).shape == (5, 16, 16)
    with pytest.raises(ValueError, match=r"\(N, 16, 16\)"):
        reconstruct_box_masks(tokenizer, torch.rand(5, 64, 64))


def test_boundary_ap_of_a_perfect_tokenizer():
    pytest.importorskip("faster_coco_eval")
    result = mask_tokenizer_upper_bound(
        IdentityTokenizer(64), rectangle_coco(), iou_types=("segm", "boundary")
    )
    assert result["segm_AP"] == 1.0 and result["boundary_AP"] == 1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="protocol must be one of"):
        mask_tokenizer_upper_bound(IdentityTokenizer(64), rectangle_coco(), protocol="mmdet")
    with pytest.raises(ValueError, match="scores masks only"):
        mask_tokenizer_upper_bound(IdentityTokenizer(64), rectangle_coco(), iou_types=("bbox",))
    with pytest.raises(ValueError, match=r"image ids \[5\]"):
        mask_tokenizer_upper_bound(IdentityTokenizer(64), rectangle_coco(), image_ids=[5])
    with pytest.raises(ValueError, match="mode must be one of"):
        reconstruct_depth(IdentityTokenizer(64), torch.rand(1, 64, 64), mode="tiles")
