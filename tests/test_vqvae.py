"""AiTVQVAE: parity with the original tokenizers, save/load round trip, bad input, checkpoint loading."""

import json

import numpy as np
import pytest
import torch

from ait_hf.configuration_ait import AiTVQVAEConfig
from ait_hf.modeling_ait_vqvae import AiTVQVAE, convert_original_vqvae_state_dict, load_original_state_dict

CASES = ["vqvae_depth", "vqvae_insseg"]


def _case(fixtures_dir, case):
    d = fixtures_dir / case
    return d, json.loads((d / "config.json").read_text()), np.load(d / "reference.npz")


def _max_err(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


@pytest.mark.parametrize("case", CASES)
def test_inference_parity(fixtures_dir, case):
    d, cfg, ref = _case(fixtures_dir, case)
    model = AiTVQVAE.from_original_checkpoint(
        str(d / "checkpoint.pth"), AiTVQVAEConfig.from_original_head_config(cfg["ait_side_vqvae_cfg"])
    )
    img = torch.from_numpy(ref["img"])
    codes = model.encode(img)
    np.testing.assert_array_equal(codes.numpy(), ref["ait_encode"])
    np.testing.assert_array_equal(codes.numpy(), ref["stage_indices"].reshape(codes.shape))
    errors = {
        "decode": _max_err(model.decode(codes), ref["ait_decode"]),
        "decode_soft": _max_err(
            model.decode_soft(torch.from_numpy(ref["soft_logits"])), ref["ait_decode_soft"]
        ),
    }
    # the sequence layout (B, h*w, K) the solver emits gives the same maps as the grid layout
    logits = torch.from_numpy(ref["soft_logits"])
    seq = logits.flatten(2).transpose(1, 2)
    errors["decode_soft_seq"] = _max_err(model.decode_soft(seq), ref["ait_decode_soft"])
    print(case, {k: f"{v:.2e}" for k, v in errors.items()})
    assert max(errors.values()) <= 1e-5


@pytest.mark.parametrize("case", CASES)
def test_training_step_parity(fixtures_dir, case):
    """Stage-1 training forward: losses, codes and the EMA buffers after one train-mode step."""
    d, cfg, ref = _case(fixtures_dir, case)
    config = AiTVQVAEConfig.from_original_stage_config(cfg["vae_stage_model"])
    model = AiTVQVAE.from_original_checkpoint(str(d / "checkpoint.pth"), config).train()
    img = torch.from_numpy(ref["img"])
    inputs = torch.from_numpy(ref["img_masked"]) if "img_masked" in ref.files else img
    out = model(inputs, labels=img)
    errors = {
        "total_loss": abs(out.loss.item() - float(ref["stage_train_total_loss"])),
        "recon_loss": abs(out.reconstruction_loss.item() - float(ref["stage_train_recon_loss"])),
        "embedding": _max_err(model.quantizer.embedding, ref["stage_train_embedding_after"]),
        "ema_w": _max_err(model.quantizer.ema_weight, ref["stage_train_ema_w_after"]),
        "ema_cluster_size": _max_err(
            model.quantizer.ema_cluster_size, ref["stage_train_ema_cluster_size_after"]
        ),
    }
    if "stage_train_out" in ref.files:
        errors["reconstruction"] = _max_err(out.reconstruction, ref["stage_train_out"])
    print(case, {k: f"{v:.2e}" for k, v in errors.items()})
    np.testing.assert_array_equal(out.codes.numpy().reshape(-1), ref["stage_train_indices"].reshape(-1))
    assert max(errors.values()) <= 1e-5
    out.loss.backward()  # the straight-through estimator gives the encoder gradients
    assert model.encoder[0].weight.grad is not None and model.encoder[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("case", CASES)
def test_ait_side_training_loss_parity(fixtures_dir, case):
    """The AiT-side class reports plain-MSE reconstruction + commitment loss."""
    d, cfg, ref = _case(fixtures_dir, case)
    config = AiTVQVAEConfig.from_original_head_config(cfg["ait_side_vqvae_cfg"])
    config.reconstruction_loss = "mse"
    model = AiTVQVAE.from_original_checkpoint(str(d / "checkpoint.pth"), config).train()
    out = model(torch.from_numpy(ref["img"]))
    assert abs(out.loss.item() - float(ref["ait_train_total_loss"])) <= 1e-5
    assert abs(out.reconstruction_loss.item() - float(ref["ait_train_recon_loss"])) <= 1e-5
    assert abs(out.commitment_loss.item() - float(ref["ait_train_vq_loss"])) <= 1e-5


@pytest.mark.parametrize("case", CASES)
def test_ddp_prefixed_checkpoint_loads(fixtures_dir, case):
    d, cfg, ref = _case(fixtures_dir, case)
    config = AiTVQVAEConfig.from_original_head_config(cfg["ait_side_vqvae_cfg"])
    plain = AiTVQVAE.from_original_checkpoint(str(d / "checkpoint.pth"), config)
    ddp = AiTVQVAE.from_original_checkpoint(str(d / "checkpoint_ddp.pth"), config)
    for (k, a), (_, b) in zip(plain.state_dict().items(), ddp.state_dict().items()):
        assert torch.equal(a, b), k


def test_tokenizers_inside_solver_checkpoints(fixtures_dir):
    """Tokenizer weights embedded in a task-solver checkpoint load under their head prefix and match."""
    for case, head in [("depth_ar", "depth"), ("insseg", "insseg"), ("joint", "depth"), ("joint", "insseg")]:
        d = fixtures_dir / case
        cfg = json.loads((d / "config.json").read_text())
        vae_cfg = cfg["model"]["task_heads"][head]["vae_cfg"]
        sd = load_original_state_dict(str(d / "checkpoint.pth"))
        model = AiTVQVAE.from_original_checkpoint(
            sd, AiTVQVAEConfig.from_original_head_config(vae_cfg), prefix=f"{head}_head.vqvae."
        )
        ref = np.load(d / "reference.npz")
        key = "train_gt_codes" if "train_gt_codes" in ref.files else "train_depth_gt_codes"
        if head == "depth":
            codes = model.encode(torch.from_numpy(ref["train_depth_gt"]))
            np.testing.assert_array_equal(codes.numpy(), ref[key])
        else:
            codes = model.encode(torch.from_numpy(ref["train_encode0_in"]))
            np.testing.assert_array_equal(codes.numpy(), ref["train_encode0_out"])


def _tiny(**kw):
    return AiTVQVAEConfig(
        image_size=32, downsample_ratio=8, num_embeddings=16, embedding_dim=8, hidden_size=4, **kw
    )


def test_save_pretrained_round_trip_keeps_ema_state(tmp_path):
    torch.manual_seed(0)
    model = AiTVQVAE(_tiny()).train()
    model(torch.rand(2, 1, 32, 32) * 5)  # one EMA step changes the buffers
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AiTVQVAE.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert torch.count_nonzero(loaded.quantizer.ema_cluster_size) > 0


def test_mask_augmentation_uses_separate_target():
    torch.manual_seed(0)
    model = AiTVQVAE(_tiny()).eval()
    target = torch.rand(1, 1, 32, 32) + 1
    masked = target.clone()
    masked[..., :16, :16] = 0
    a = model(masked, labels=target).reconstruction_loss
    b = model(masked).reconstruction_loss
    assert not torch.isclose(a, b)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m: m.encode(torch.rand(1, 31, 32)), r"\(B, 32, 32\)"),
        (lambda m: m.encode(torch.rand(1, 2, 32, 32)), r"got \(1, 2, 32, 32\)"),
        (lambda m: m.encode(torch.ones(1, 32, 32, dtype=torch.int64)), "floating point"),
        (lambda m: m.encode(torch.full((1, 32, 32), float("nan"))), "NaN"),
        (lambda m: m.decode(torch.full((1, 16), 16)), r"\[0, 15\]"),
        (lambda m: m.decode(torch.zeros(1, 15, dtype=torch.long)), r"\(B, 16\)"),
        (lambda m: m.decode_soft(torch.rand(1, 16, 17)), r"\(B, 16, 16\)"),
        (lambda m: m.decode_soft(torch.rand(1, 15, 4, 4)), r"\(B, 16, 4, 4\)"),
        (lambda m: m(torch.rand(1, 32, 32), labels=torch.rand(2, 32, 32)), "batch size"),
    ],
)
def test_bad_input(call, message):
    model = AiTVQVAE(_tiny())
    with pytest.raises(ValueError, match=message):
        call(model)


def test_checkpoint_key_mismatch_is_listed(fixtures_dir):
    d = fixtures_dir / "vqvae_insseg"
    cfg = json.loads((d / "config.json").read_text())
    config = AiTVQVAEConfig.from_original_head_config(cfg["ait_side_vqvae_cfg"])
    sd = load_original_state_dict(str(d / "checkpoint.pth"))
    model = AiTVQVAE(config)
    broken = dict(sd)
    del broken["decoder.0.weight"]
    broken["encoder.99.weight"] = torch.zeros(1)
    broken["_vq_vae._ema_w"] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as err:
        convert_original_vqvae_state_dict(broken, model)
    text = str(err.value)
    assert "encoder.99.weight" in text and "decoder.0.weight" in text and "quantizer.ema_weight" in text


def test_wrong_config_for_checkpoint_is_refused(fixtures_dir):
    d = fixtures_dir / "vqvae_insseg"
    with pytest.raises(ValueError, match="shape mismatches"):
        AiTVQVAE.from_original_checkpoint(
            str(d / "checkpoint.pth"),
            AiTVQVAEConfig(image_size=64, downsample_ratio=16, embedding_dim=32, hidden_size=2),
        )


def test_config_validation():
    with pytest.raises(ValueError, match="power of 2"):
        AiTVQVAEConfig(downsample_ratio=12)
    with pytest.raises(ValueError, match="multiple of downsample_ratio"):
        AiTVQVAEConfig(image_size=100, downsample_ratio=32)
