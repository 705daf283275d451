"""Parity and behaviour tests of the AiT SwinV2 backbone (`ait_hf/modeling_ait_backbone.py`).

The references are outputs of the original `SwinV2TransformerRPE2FC` (random weights, tiny widths, original
window geometry) shipped in tests/fixtures/original; the manifests describe the full-size original models.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from ait_hf.modeling_ait_backbone import (
    AiTSwinV2Backbone,
    convert_original_backbone_state_dict,
    relative_coords_table,
    relative_position_index,
    shift_window_channels,
    shift_window_mask,
)

FIXTURES = Path(__file__).parent / "fixtures" / "original"
MAX_ABS_ERROR = 1e-4
SUM_RELATIVE_ERROR = 1e-5
IMPLEMENTATIONS = ("eager", "sdpa")
SINGLE_INPUT_CASES = ("depth_ar", "depth_ar_hard", "depth_parallel", "det", "insseg")


def backbone_kwargs(original: dict) -> dict:
    """Our constructor arguments from an original `SwinV2TransformerRPE2FC` config dict."""
    return {
        "image_size": original.get("pretrain_img_size", 224),
        "patch_size": original.get("patch_size", 4),
        "num_channels": original.get("in_chans", 3),
        "embed_dim": original["embed_dim"],
        "depths": original["depths"],
        "num_heads": original["num_heads"],
        "window_sizes": original["window_size"],
        "pretrained_window_sizes": original["pretrain_window_size"],
        "shift_windows": original["use_shift"],
        "mlp_ratio": original.get("mlp_ratio", 4.0),
        "rpe_hidden_dim": original.get("rpe_hidden_dim", 512),
        "drop_path_rate": original.get("drop_path_rate", 0.1),
        "out_indices": original.get("out_indices", (0, 1, 2, 3)),
        "use_absolute_embeddings": original.get("ape", False),
        "post_norm_init": 1.0,  # the original's from-scratch init (blocks are not identities on random weights)
        "patch_norm": original.get("patch_norm", True),
    }


@cache
def load_case(case: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """(backbone config, complete original backbone state_dict without `backbone.`, reference arrays)."""
    directory = FIXTURES / case
    config = json.loads((directory / "config.json").read_text())
    checkpoint = torch.load(directory / "checkpoint.pth", weights_only=True)["state_dict"]
    state_dict = {k.removeprefix("backbone."): v for k, v in checkpoint.items() if k.startswith("backbone.")}
    derived = np.load(directory / "derived_buffers.npz")
    for key, array_name in config["checkpoint"]["keys_stored_in_derived_buffers_npz"].items():
        if key.startswith("backbone."):
            state_dict[key.removeprefix("backbone.")] = torch.from_numpy(derived[array_name])
    with np.load(directory / "reference.npz") as reference:
        arrays = dict(reference)
    return config["model"]["backbone"], state_dict, arrays


@cache
def converted_model(case: str) -> AiTSwinV2Backbone:
    """Our backbone with the case's converted original weights, loaded strictly (shared by the tests)."""
    config, state_dict, _ = load_case(case)
    model = AiTSwinV2Backbone(**backbone_kwargs(config)).eval()
    model.load_state_dict(convert_original_backbone_state_dict(state_dict, model), strict=True)
    return model


def build_converted(case: str, attn_implementation: str) -> AiTSwinV2Backbone:
    model = converted_model(case)
    model.set_attn_implementation(attn_implementation)
    return model


def compare(name: str, actual: torch.Tensor, expected: np.ndarray, worst: dict[str, float]) -> None:
    actual = actual.detach().cpu().numpy()
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != reference {expected.shape}"
    if name.endswith("_sum"):
        error = abs(float(actual) - float(expected)) / max(abs(float(expected)), 1e-12)
        worst[name] = error
        assert error <= SUM_RELATIVE_ERROR, f"{name}: relative error {error:.3g}"
    else:
        error = float(np.abs(actual - expected).max())
        worst[name] = error
        assert error <= MAX_ABS_ERROR, f"{name}: max abs error {error:.3g}"


def check_backbone_arrays(model: AiTSwinV2Backbone, pixel_values: torch.Tensor, reference: dict) -> None:
    with torch.no_grad():
        output = model(pixel_values, output_hidden_states=True)
    names = ["patch_embed"] + [f"stage{i}" for i in range(4)]
    assert len(output.hidden_states) == len(names)
    worst: dict[str, float] = {}
    for name, hidden in zip(names, output.hidden_states):
        candidates = {
            f"bb_{name}": hidden,
            f"bb_{name}_tl": hidden[..., :16, :16],
            f"bb_{name}_br": hidden[..., -16:, -16:],
            f"bb_{name}_sum": hidden.double().sum(),
        }
        present = [key for key in candidates if key in reference]
        assert len(present) >= 2, f"reference has no arrays for {name}"
        for key in present:
            compare(key, candidates[key], reference[key], worst)
    assert len(output.feature_maps) == 1
    compare("backbone_out", output.feature_maps[0], reference["backbone_out"], worst)
    print("  ".join(f"{k}={v:.2e}" for k, v in worst.items()))


@pytest.mark.parametrize("attn_implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", SINGLE_INPUT_CASES)
def test_matches_original_backbone(case: str, attn_implementation: str) -> None:
    _, _, reference = load_case(case)
    model = build_converted(case, attn_implementation)
    pixel_values = torch.from_numpy(
        reference["img"] if "img" in reference else reference["img_tta"][..., :480]
    )
    check_backbone_arrays(model, pixel_values, reference)


@pytest.mark.parametrize("attn_implementation", IMPLEMENTATIONS)
def test_matches_original_backbone_joint_batch(attn_implementation: str) -> None:
    """The joint model pads every input to 640x640; both of its inputs go through as one batch of 2."""
    _, _, reference = load_case("joint")
    model = build_converted("joint", attn_implementation)
    image = torch.from_numpy(reference["depth_img_tta"])
    depth_input = torch.nn.functional.pad(image[..., :480], (0, 160, 0, 160))
    insseg_input = torch.nn.functional.pad(image, (0, 0, 0, 160))
    with torch.no_grad():
        features = model(torch.cat([depth_input, insseg_input])).feature_maps[0]
    worst: dict[str, float] = {}
    compare("depth_backbone_out", features[:1], reference["depth_backbone_out"], worst)
    compare("insseg_backbone_out", features[1:], reference["insseg_backbone_out"], worst)
    print(worst)


# ---------------------------------------------------------------------------------------------------------
# sdpa == eager beyond the fixtures
# ---------------------------------------------------------------------------------------------------------


def test_shift_window_channels_reproduce_the_additive_mask() -> None:
    for padded_height, padded_width, window in [
        (30, 30, 30),
        (60, 90, 30),
        (180, 180, 30),
        (30, 45, 15),
        (14, 21, 7),
    ]:
        query, key = shift_window_channels(padded_height, padded_width, window, window // 2)
        mask = shift_window_mask(padded_height, padded_width, window, window // 2)
        assert torch.equal(query @ key.transpose(1, 2), mask)
        assert set(mask.unique().tolist()) == {0.0, -100.0}


def _randomized_tiny_backbone(seed: int, **overrides) -> AiTSwinV2Backbone:
    """Tiny backbone with large random weights and temperatures up to the clamp (100), to stress the mask."""
    kwargs = {
        "image_size": 64, "embed_dim": 16, "depths": [2, 2, 2], "num_heads": [2, 4, 4], "window_sizes": [7, 6, 4],
        "pretrained_window_sizes": [4, 3, 0], "shift_windows": [True, True, True], "mlp_ratio": 2.0,
        "rpe_hidden_dim": 32, "drop_path_rate": 0.0, "out_indices": (1, 2),
    }  # fmt: skip
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = AiTSwinV2Backbone(**kwargs).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("logit_scale"):
                parameter.uniform_(math.log(10), math.log(150))  # some heads beyond the clamp
            elif not name.endswith("norm.weight"):
                parameter.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("shape", [(2, 3, 100, 124), (1, 3, 61, 30)])
def test_sdpa_matches_eager_with_padding_and_large_temperatures(shape: tuple[int, ...]) -> None:
    model = _randomized_tiny_backbone(0)
    pixel_values = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.set_attn_implementation("eager")
        eager = model(pixel_values, output_hidden_states=True)
        model.set_attn_implementation("sdpa")
        sdpa = model(pixel_values, output_hidden_states=True)
    for a, b in zip(eager.feature_maps + eager.hidden_states, sdpa.feature_maps + sdpa.hidden_states):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= MAX_ABS_ERROR


def test_sdpa_matches_eager_in_training_gradients() -> None:
    model = _randomized_tiny_backbone(2).train()
    pixel_values = torch.randn(2, 3, 36, 52, generator=torch.Generator().manual_seed(3))
    gradients = {}
    for implementation in IMPLEMENTATIONS:
        model.set_attn_implementation(implementation)
        model.zero_grad()
        sum(f.square().mean() for f in model(pixel_values).feature_maps).backward()
        gradients[implementation] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in gradients["eager"].items():
        other = gradients["sdpa"][name]
        assert torch.allclose(grad, other, atol=1e-4, rtol=1e-3), name
    mlp_grad = gradients["sdpa"]["encoder.layers.0.blocks.0.attention.continuous_position_bias_mlp.2.weight"]
    assert mlp_grad.abs().sum() > 0  # the position-bias MLP is trained (no cached table in training)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model = _randomized_tiny_backbone(4).train()
    pixel_values = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    results = []
    for enabled in (False, True):
        model.gradient_checkpointing = enabled
        model.zero_grad()
        sum(f.sum() for f in model(pixel_values).feature_maps).backward()
        results.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cache_full_position_bias", [False, True])
def test_position_bias_cache_follows_parameter_updates(cache_full_position_bias: bool) -> None:
    model = _randomized_tiny_backbone(6)
    model.cache_full_position_bias = cache_full_position_bias
    reference = _randomized_tiny_backbone(7)  # other weights
    pixel_values = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        first = model(pixel_values).feature_maps[-1]
        assert torch.equal(model(pixel_values).feature_maps[-1], first)  # cached tables reused
        attention = model.encoder.layers[0].blocks[0].attention
        assert attention._bias_cache is not None
        assert (attention._bias_cache[2] is not None) == cache_full_position_bias
    model.load_state_dict(reference.state_dict())  # in-place copies bump the version counters
    with torch.inference_mode():
        assert torch.equal(model(pixel_values).feature_maps[-1], reference(pixel_values).feature_maps[-1])
    with torch.no_grad():  # an optimiser-style in-place step on both models
        for parameter in [*model.parameters(), *reference.parameters()]:
            parameter.mul_(0.5)
    with torch.inference_mode():
        assert torch.equal(model(pixel_values).feature_maps[-1], reference(pixel_values).feature_maps[-1])


def test_model_built_under_inference_mode_runs_uncached() -> None:
    """Inference tensors have no version counter: such a model must run (without the bias cache)."""
    pixel_values = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(12))
    with torch.inference_mode():
        expected = _randomized_tiny_backbone(11)(pixel_values).feature_maps[-1]
        model = _randomized_tiny_backbone(11)
        assert model.encoder.layers[0].blocks[0].attention.qkv.weight.is_inference()
        assert torch.equal(model(pixel_values).feature_maps[-1], expected)
        assert model.encoder.layers[0].blocks[0].attention._bias_cache is None


def test_bfloat16_autocast_runs_with_sdpa() -> None:
    model = _randomized_tiny_backbone(9)
    pixel_values = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        expected = model(pixel_values).feature_maps[-1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model(pixel_values).feature_maps[-1]
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    assert (features - expected).abs().max() < 0.5  # bf16 rounding only


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="attn_implementation"):
        AiTSwinV2Backbone(embed_dim=8, depths=[1], num_heads=[1], window_sizes=[4], pretrained_window_sizes=[4],
                          out_indices=(0,), attn_implementation="flash")  # fmt: skip
    with pytest.raises(ValueError, match="window_sizes has 1 entries"):
        AiTSwinV2Backbone(embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_sizes=[4], out_indices=(0,))
    model = _randomized_tiny_backbone(10)
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.zeros(3, 32, 32))


@pytest.mark.parametrize("post_norm_init", [None, 0.0, 1.0, 0.25])
def test_residual_post_norms_start_at_post_norm_init(post_norm_init: float | None) -> None:
    """Default 0: every block starts as the identity (timm / official SwinV2); other LayerNorms start at 1."""
    from test_modeling import TINY_BACKBONE, tiny_config

    from ait_hf import AiTModel

    kwargs = {} if post_norm_init is None else {"post_norm_init": post_norm_init}
    expected = 0.0 if post_norm_init is None else post_norm_init
    torch.manual_seed(0)
    direct = AiTSwinV2Backbone(embed_dim=8, depths=[2, 1], num_heads=[1, 2], window_sizes=[4, 4],
                               pretrained_window_sizes=[0, 0], out_indices=(1,), **kwargs)  # fmt: skip
    # through the transformers init (`post_init` resets every LayerNorm with `reset_parameters`)
    backbone = (
        {**TINY_BACKBONE, **kwargs}
        if kwargs
        else {k: v for k, v in TINY_BACKBONE.items() if k != "post_norm_init"}
    )
    hf_backbone = AiTModel(tiny_config(backbone_config=backbone)).backbone
    for model in (direct, hf_backbone):
        post_norms = {
            name
            for name, _ in model.named_modules()
            if name.endswith(("layernorm_after_attention", "layernorm_after_mlp"))
        }
        assert post_norms
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.LayerNorm):
                weight = expected if name in post_norms else 1.0
                assert torch.equal(module.weight, torch.full_like(module.weight, weight)), name
                assert not module.bias.any(), name
    # state-dict keys are those of plain LayerNorms (checkpoints and conversion unchanged)
    assert "encoder.layers.0.blocks.0.layernorm_after_attention.weight" in direct.state_dict()
    if expected == 0.0:  # identity blocks: the first stage's output is its input
        pixel_values = torch.randn(2, 3, 32, 32)
        out = direct(pixel_values, output_hidden_states=True)
        assert torch.equal(out.hidden_states[1], out.hidden_states[0])


# ---------------------------------------------------------------------------------------------------------
# Conversion of original checkpoints
# ---------------------------------------------------------------------------------------------------------


def test_converter_accounts_for_every_key_and_recomputes_derived_buffers() -> None:
    config, state_dict, _ = load_case("det")
    model = AiTSwinV2Backbone(**backbone_kwargs(config))
    converted = convert_original_backbone_state_dict(state_dict, model)
    assert converted.keys() == model.state_dict().keys()
    derived = [k for k in state_dict if k.endswith(("relative_coords_table", "relative_position_index"))]
    assert len(derived) == 2 * sum(config["depths"])
    assert len(converted) == len(state_dict) - len(derived)
    # without a model, the renaming and the derived buffer checks still run
    assert convert_original_backbone_state_dict(state_dict).keys() == converted.keys()
    # the derived buffers may be absent (as in checkpoint.pth)
    stripped = {k: v for k, v in state_dict.items() if k not in derived}
    assert convert_original_backbone_state_dict(stripped, model).keys() == converted.keys()


def test_converter_refuses_bad_state_dicts() -> None:
    config, state_dict, _ = load_case("det")
    model = AiTSwinV2Backbone(**backbone_kwargs(config))

    def refused(bad: dict, *expected: str, with_model: bool = True) -> None:
        with pytest.raises(ValueError) as error:
            convert_original_backbone_state_dict(bad, model if with_model else None)
        for text in expected:
            assert text in str(error.value)

    key = "layers.1.blocks.0.attn.qkv.weight"
    refused({**state_dict, key: state_dict[key][:-1]}, key, "shape")
    refused({k: v for k, v in state_dict.items() if k != "norm3.bias"}, "norm3.bias: missing")
    refused({**state_dict, "layers.0.blocks.0.attn.extra": torch.zeros(1)}, "layers.0.blocks.0.attn.extra")
    refused({**state_dict, "layers.0.blocks.0.attn.extra": torch.zeros(1)}, "attn.extra", with_model=False)
    refused({**state_dict, "norm2.weight": torch.zeros(32)}, "norm2.weight")
    refused(
        {"backbone." + k: v for k, v in state_dict.items()}, "strip the 'backbone.' prefix", with_model=False
    )

    index_key = "layers.2.blocks.1.attn.relative_position_index"
    bad_index = state_dict[index_key].clone()
    bad_index[0, 1] += 1
    refused({**state_dict, index_key: bad_index}, index_key, with_model=False)
    refused({**state_dict, index_key: relative_position_index(15)}, index_key, "window 15")

    table_key = "layers.3.blocks.0.attn.relative_coords_table"
    bad_table = state_dict[table_key].clone()
    bad_table[0, 3, 4, 1] += 1e-3
    refused({**state_dict, table_key: bad_table}, table_key, with_model=False)
    refused({**state_dict, table_key: bad_table}, table_key)
    # a table of another pretrained window size is self-consistent, but not what the model uses
    other_pretrained = relative_coords_table(15, 8)
    convert_original_backbone_state_dict({**state_dict, table_key: other_pretrained})
    refused({**state_dict, table_key: other_pretrained}, table_key, "pretrained window 6")


# ---------------------------------------------------------------------------------------------------------
# Full-size models (manifests of the original configurations)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_name", ["swinv2b_480reso_depthonly", "swinv2b_640reso_joint", "swinv2l_480reso_depthonly"]
)
def test_full_size_backbone_matches_manifest(config_name: str) -> None:
    manifest = json.loads((FIXTURES / "manifests" / f"{config_name}.json").read_text())
    original = manifest["model_cfg"]["backbone"]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = AiTSwinV2Backbone(**backbone_kwargs(original))
    entries = {
        k.removeprefix("backbone."): v for k, v in manifest["state_dict"].items() if k.startswith("backbone.")
    }
    derived = {
        k: v for k, v in entries.items() if k.endswith(("relative_coords_table", "relative_position_index"))
    }
    state_dict = {
        k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
        for k, (shape, dtype, _) in entries.items()
        if k not in derived
    }
    converted = convert_original_backbone_state_dict(state_dict, model)  # checks keys and shapes
    assert converted.keys() == model.state_dict().keys()
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == manifest["totals"]["parameters_per_top_level_module"]["backbone"]
    assert len(converted) == sum(1 for v in entries.values() if v[2] == "param")
    for key, (shape, _, kind) in derived.items():
        assert kind == "buffer"
        stage = model.encoder.layers[int(key.split(".")[1])]
        buffer = stage.relative_coords_table if key.endswith("table") else stage.relative_position_index
        expected = list(buffer.shape) if key.endswith("table") else [math.isqrt(buffer.numel())] * 2
        assert shape == expected, key


@pytest.mark.slow
def test_full_size_swinv2b_sdpa_matches_eager() -> None:
    """SwinV2-B at 640x640 (padding, shifts in every stage, head width 32).

    With the initial temperature (10) the paths agree within 1e-4. With temperatures up to the clamp (100) the
    float32 result itself is sensitive: a relative input change of 1e-7 moves the eager output by ~1e-3; the
    sdpa difference must stay at that noise floor.
    """
    manifest = json.loads((FIXTURES / "manifests" / "swinv2b_640reso_joint.json").read_text())
    torch.manual_seed(0)
    model = AiTSwinV2Backbone(**backbone_kwargs(manifest["model_cfg"]["backbone"])).eval()
    pixel_values = torch.randn(1, 3, 640, 640)

    def features(implementation: str, inputs: torch.Tensor) -> torch.Tensor:
        model.set_attn_implementation(implementation)
        with torch.inference_mode():
            return model(inputs).feature_maps[0]

    assert (features("eager", pixel_values) - features("sdpa", pixel_values)).abs().max() <= MAX_ABS_ERROR
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("logit_scale"):
                parameter.uniform_(math.log(5), math.log(100))
    eager = features("eager", pixel_values)
    perturbed = features("eager", pixel_values * (1 + 1e-7 * torch.randn_like(pixel_values)))
    noise_floor = (eager - perturbed).abs().max()
    assert (eager - features("sdpa", pixel_values)).abs().max() <= 3 * noise_floor
