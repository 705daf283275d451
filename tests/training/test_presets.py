"""Presets: every original configuration is there, selectable by name, overridable; bad names list the valid ones."""

import pytest

from ait_hf.configuration_ait import AiTConfig
from training.data import per_process_batch_sizes
from training.presets import apply_override, list_presets, load_preset
from training.stage1 import build_vqvae_config
from training.stage2 import build_solver_config

ORIGINAL_SOLVERS = [
    "swinv2b_480reso_depthonly", "swinv2b_480reso_depthonly_wosoft", "swinv2b_480reso_parallel_depthonly",
    "swinv2b_640reso_detonly", "swinv2b_640reso_inssegonly", "swinv2b_640reso_inssegonly_wosoft",
    "swinv2b_640reso_joint", "swinv2l_480reso_depthonly", "swinv2l_480reso_parallel_depthonly",
]  # fmt: skip


def test_one_preset_per_original_configuration_and_tiny_ones():
    names = list_presets()
    for name in [*ORIGINAL_SOLVERS, "ait_depth_vqvae", "ait_insseg_vqvae"]:
        assert name in names
        assert load_preset(name)["original"].endswith(f"{name}.py")
    assert {
        "tiny_depth_vqvae",
        "tiny_mask_vqvae",
        "tiny_depth",
        "tiny_depth_parallel",
        "tiny_insseg",
        "tiny_joint",
    } <= set(names)


@pytest.mark.parametrize("name", ORIGINAL_SOLVERS)
def test_solver_presets_build_the_original_model_config(name):
    preset = load_preset(name)
    config = build_solver_config(preset["model"])
    assert config.to_dict() == AiTConfig.from_original_preset(name).to_dict()
    assert set(preset["tasks"]) <= set(config.tasks)
    assert preset["training"]["optimizer"]["type"] == "adamw_layer_decay"


def test_original_hyper_parameters_are_kept():
    depth = load_preset("swinv2b_480reso_depthonly")["training"]
    assert (depth["optimizer"]["lr"], depth["optimizer"]["layer_decay_rate"], depth["max_grad_norm"]) == (
        2e-4,
        0.9,
        10.0,
    )
    assert depth["schedule"] == {
        "type": "step",
        "milestones": [18180],
        "gamma": 0.1,
        "warmup_steps": 500,
        "warmup_ratio": 0.1,
    }
    joint = load_preset("swinv2b_640reso_joint")
    assert {t: s["total_batch_size"] for t, s in joint["tasks"].items()} == {
        "instance_segmentation": 60,
        "depth": 4,
    }
    assert joint["training"]["schedule"]["type"] == "linear_annealing"
    assert (
        load_preset("swinv2b_640reso_detonly")["training"]["mixed_precision"] == "no"
    )  # no fp16 in that config
    vq = load_preset("ait_depth_vqvae")
    config = build_vqvae_config(vq["model"])
    assert (config.image_size, config.downsample_ratio, config.num_embeddings, config.embedding_dim) == (
        480,
        32,
        128,
        512,
    )
    assert vq["training"]["optimizer"] == {"type": "adam", "lr": 3e-4, "weight_decay": 0.0}
    mask = build_vqvae_config(load_preset("ait_insseg_vqvae")["model"])
    assert (mask.image_size, mask.grid_size, mask.normalize_inputs) == (64, 4, True)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown preset 'nope'; valid presets: .*swinv2b_640reso_joint"):
        load_preset("nope")


def test_overrides():
    preset = load_preset(
        "tiny_depth", ["training.optimizer.lr=1e-4", "tasks.depth.total_batch_size=8", "+training.note='x'"]
    )
    assert preset["training"]["optimizer"]["lr"] == 1e-4 and preset["tasks"]["depth"]["total_batch_size"] == 8
    assert preset["training"]["note"] == "x"
    with pytest.raises(ValueError, match="has no key 'lrate'; valid keys: .*'lr'"):
        apply_override(preset, "training.optimizer.lrate=1")
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_override(preset, "training.max_steps")
    assert load_preset("tiny_depth")["training"]["optimizer"]["lr"] == 5e-3  # presets are copied, not mutated


def test_per_process_batch_from_total():
    assert per_process_batch_sizes({"instance_segmentation": 60, "depth": 4}, 4) == {
        "instance_segmentation": 15,
        "depth": 1,
    }
    assert per_process_batch_sizes({"depth": 24}, 2, gradient_accumulation_steps=3) == {"depth": 4}
    with pytest.raises(ValueError, match="depth: total batch size 4 is not divisible by 8 process"):
        per_process_batch_sizes({"depth": 4}, 8)
