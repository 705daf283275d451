"""Conversion of original checkpoints: full-size manifests, presets, the CLI and every refusal."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ait_hf.configuration_ait import AiTConfig, AiTVQVAEConfig
from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
from ait_hf.modeling_ait_vqvae import AiTVQVAE, load_original_state_dict
from ait_hf.original_checkpoints import convert_original_solver_state_dict
from ait_hf.original_presets import ORIGINAL_SOLVER_CONFIGS, ORIGINAL_TOKENIZER_CONFIGS
from conversion.convert_ait_to_hf import convert, read_python_config, resolve_original_config

ROOT = Path(__file__).resolve().parents[1]
DERIVED = ("relative_position_index", "relative_coords_table", "enc_embed", "loss_seq.weight")


def _manifest(fixtures_dir, name):
    return json.loads((fixtures_dir / "manifests" / f"{name}.json").read_text())


def _random_state_dict(manifest):
    """Original-layout state dict of the manifest's shapes; aliases share the tensor; derived buffers omitted."""
    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, (shape, dtype, _kind) in manifest["state_dict"].items():
        if key in manifest["alias_of"] or key.endswith(DERIVED):
            continue
        if dtype.startswith("torch.int") or "int" in dtype:
            state_dict[key] = torch.zeros(shape, dtype=torch.long)
        else:
            state_dict[key] = torch.randn(shape, generator=generator) * 0.02
    for alias, original in manifest["alias_of"].items():
        if original in state_dict:
            state_dict[alias] = state_dict[original]
    return state_dict


@pytest.mark.parametrize("name", sorted(ORIGINAL_SOLVER_CONFIGS))
def test_full_size_solver_manifest_converts(fixtures_dir, name):
    manifest = _manifest(fixtures_dir, name)
    with torch.device("meta"):  # shapes and counts only: no memory, no initialisation time
        model = AiTForDepthAndInstanceSegmentation(AiTConfig.from_original_preset(name))
    converted = convert_original_solver_state_dict(_random_state_dict(manifest), model)
    assert set(converted) == set(model.state_dict())
    ours = sum(p.numel() for p in model.parameters())
    print(name, "parameters", ours, "manifest", manifest["totals"]["total_parameters"])
    assert ours == manifest["totals"]["total_parameters"]


@pytest.mark.parametrize("name", sorted(ORIGINAL_TOKENIZER_CONFIGS))
def test_full_size_tokenizer_manifest_converts(fixtures_dir, name):
    manifest = _manifest(fixtures_dir, name)
    state_dict = {"module." + k: torch.zeros(shape) for k, (shape, _, _) in manifest["state_dict"].items()}
    model = AiTVQVAE.from_original_checkpoint(
        state_dict, AiTVQVAEConfig.from_original_stage_config(manifest["model_cfg"])
    )
    assert sum(p.numel() for p in model.parameters()) == manifest["totals"]["total_parameters"]


def test_presets_match_manifest_configs(fixtures_dir):
    for name in ORIGINAL_SOLVER_CONFIGS:
        config = AiTConfig.from_original_preset(name)
        vocab = _manifest(fixtures_dir, name)["vocabulary"]
        assert config.vocab_size == vocab["num_vocal"]
        assert config.vocabulary.mask_offset == vocab["mask_offset"]
        assert config.vocabulary.depth_offset == vocab["depth_offset"]
    with pytest.raises(ValueError, match="valid:.*swinv2b_480reso_depthonly"):
        AiTConfig.from_original_preset("swinv2b_no_such_config")


def _tiny_case(fixtures_dir, case="depth_ar"):
    d = fixtures_dir / case
    return d, load_original_state_dict(str(d / "checkpoint.pth")), json.loads((d / "config.json").read_text())


def test_cli_converts_and_reloads(fixtures_dir, tmp_path):
    d = fixtures_dir / "det"
    out = tmp_path / "det-hf"
    cmd = [sys.executable, str(ROOT / "conversion" / "convert_ait_to_hf.py"), "--checkpoint", str(d / "checkpoint.pth"),
           "--original-config", str(d / "config.json"), "--output-dir", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    model = AiTForDepthAndInstanceSegmentation.from_pretrained(out)
    assert model.config.tasks == ["object_detection"]


def test_cli_tokenizer_alone(fixtures_dir, tmp_path):
    d = fixtures_dir / "vqvae_insseg"
    convert(str(d / "checkpoint_ddp.pth"), str(d / "config.json"), str(tmp_path / "tok"))
    model = AiTVQVAE.from_pretrained(tmp_path / "tok")
    assert model.config.tokenizer_type == "mask" and model.config.grid_size == 4


def _pop_shared(sd, key):
    for k in [key, "depth_head." + key]:
        sd.pop(k)


def _set_shared(sd, key, value):
    for k in [key, "depth_head." + key]:
        sd[k] = value


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda sd: _pop_shared(sd, "transformer.outp_bias"), "missing keys.*decoder.output_bias"),
        (
            lambda sd: sd.__setitem__("transformer.extra_thing", torch.zeros(1)),
            "unexpected keys.*transformer.extra_thing",
        ),
        (
            lambda sd: _set_shared(sd, "transformer.voc_embed", torch.zeros(3, 3)),
            "shape mismatches.*token_embeddings",
        ),
        (
            lambda sd: sd.__setitem__("depth_head.transformer.norm.weight", torch.zeros(24)),
            "inconsistent.*depth_head.transformer.norm.weight",
        ),
        (
            lambda sd: sd.__setitem__("transformer.enc_embed", torch.zeros(1, 15, 15, 24)),
            "inconsistent.*enc_embed",
        ),
        (
            lambda sd: sd.__setitem__("backbone.patch_embed.proj.weight", torch.zeros(1)),
            "patch_embed.proj.weight",
        ),
    ],
)
def test_bad_checkpoint_is_refused_with_the_list(fixtures_dir, tmp_path, edit, message):
    d, state_dict, cfg = _tiny_case(fixtures_dir)
    edit(state_dict)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state_dict}, path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        convert(str(path), str(d / "config.json"), str(out))
    assert not out.exists()  # nothing written on failure


def test_pickle_with_arbitrary_classes_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "meta": {"obj": Path("/")}}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_original_state_dict(str(path))


def test_numpy_meta_is_allowed(tmp_path):
    import numpy as np

    path = tmp_path / "mmcv_like.pth"
    torch.save(
        {
            "state_dict": {"x": torch.zeros(1)},
            "meta": {"iter": np.int64(3), "arr": np.zeros(2), "lr": np.float64(0.1)},
        },
        path,
    )
    assert set(load_original_state_dict(str(path))) == {"x"}


def test_python_config_is_parsed_not_executed(tmp_path):
    cfg = tmp_path / "cfg.py"
    cfg.write_text("from torchvision import transforms as T\nnum_bins = 2000\nn = num_bins + 1\n"
                   "model = dict(type='X', bins=[n, n * 2], t=(1, -2))\npipe = [dict(i=T.InterpolationMode.BILINEAR)]\n")  # fmt: skip
    env = read_python_config(cfg)
    assert env["model"] == {"type": "X", "bins": [2001, 4002], "t": (1, -2)}
    for code in [
        "import os\nos.system('echo hi')\n",
        "model = dict(a=open('x'))\n",
        "def f():\n    pass\n",
        "model = __import__('os')\n",
    ]:
        bad = tmp_path / "bad.py"
        bad.write_text(code)
        with pytest.raises(ValueError, match="not allowed"):
            read_python_config(bad)


def test_original_config_files_are_read(tmp_path):
    """The original config files' syntax (imports, arithmetic, nested dicts) is understood."""
    text = (
        "num_bins = 2000\nnum_classes = 80\nnum_embeddings = 128\nnum_embeddings_depth = 128\n"
        "num_vocal = num_bins+1 + num_classes + 2 + num_embeddings + num_embeddings_depth\n"
    )
    preset = ORIGINAL_SOLVER_CONFIGS["swinv2b_480reso_depthonly"]
    cfg = tmp_path / "swinv2b_480reso_depthonly.py"
    cfg.write_text(text + "model = " + repr(preset) + "\n")
    kind, model_cfg = resolve_original_config(str(cfg))
    assert kind == "solver" and model_cfg == preset
    with pytest.raises(ValueError, match="presets"):
        resolve_original_config("no_such_preset")


def test_wrong_input_and_missing_task(fixtures_dir, tmp_path):
    d = fixtures_dir / "depth_ar"
    model = convert(str(d / "checkpoint.pth"), str(d / "config.json"), str(tmp_path / "m"))
    with pytest.raises(ValueError, match="no 'instance_segmentation' head; it supports \\['depth'\\]"):
        model(torch.zeros(1, 3, 480, 480), task="instance_segmentation")
    with pytest.raises(ValueError, match="unknown task 'segmentation'"):
        model(torch.zeros(1, 3, 480, 480), task="segmentation")
    with pytest.raises(ValueError, match="480 pixels high"):
        model(torch.zeros(1, 3, 320, 480), task="depth")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(1, 1, 480, 480), task="depth")
