"""Stage 1 on tiny presets: loss goes down, validation reports reconstruction metrics, HF folders come out."""

from pathlib import Path

import numpy as np
import pytest
import torch
from training_test_helpers import build_in_process, nyu_args, run_in_process, step_losses

from ait_hf.modeling_ait_vqvae import AiTVQVAE
from training import stage1
from training.stage1 import reconstruct


def _train_between_evaluations(argv):
    trainer, _ = build_in_process(stage1, argv)
    before = trainer.evaluate()
    trainer.train()
    return trainer, before, trainer.evaluate()


def test_depth_tokenizer_training_reduces_the_loss(training_data, tmp_path):
    out = tmp_path / "vq_depth"
    argv = ["--preset", "tiny_depth_vqvae", "--output-dir", str(out), *nyu_args(training_data),
            "--set", "training.logging_steps=1"]  # fmt: skip
    trainer, before, after = _train_between_evaluations(argv)
    losses = step_losses(trainer)
    assert len(losses) == 40 and all(np.isfinite(losses))
    # stated factor: 40 steps cut the validation loss (whole held-out frames) at least 3x
    assert before["eval_loss"] / after["eval_loss"] > 3.0, (before["eval_loss"], after["eval_loss"])
    assert {"eval_loss", "eval_abs_rel", "eval_rmse", "eval_d1"} <= set(after)
    assert after["eval_abs_rel"] < before["eval_abs_rel"]
    trainer.save_model(str(out))
    loaded = AiTVQVAE.from_pretrained(out)
    assert torch.equal(
        loaded.quantizer.embedding, trainer.model.quantizer.embedding
    )  # the EMA codebook is saved
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (10, 20, 30, 40)]


def test_mask_tokenizer_training_reduces_the_loss(training_data, tmp_path):
    annotations = training_data["coco"] / "annotations"
    argv = ["--preset", "tiny_mask_vqvae", "--output-dir", str(tmp_path / "vq_mask"),
            "--box-masks-train", str(annotations / "instances_train2017.json"),
            "--box-masks-eval", str(annotations / "instances_val2017.json"), "--cache-dir", str(training_data["cache"])]  # fmt: skip
    trainer, before, after = _train_between_evaluations(argv)
    # stated factor: 40 steps cut the validation reconstruction loss (normalised masks) by at least 10%; the
    # tiny tokenizer first learns the mean box mask (its EMA codebook starts out using few codes)
    assert before["eval_loss"] / after["eval_loss"] > 1.1, (before["eval_loss"], after["eval_loss"])
    assert 0.0 <= after["eval_mask_iou"] <= 1.0 and after["eval_mask_mse"] < before["eval_mask_mse"]


def test_any_size_reconstruction_equals_the_model_forward():
    """The validation path (whole frames) computes exactly what the model's eval forward computes."""
    from ait_hf.configuration_ait import AiTVQVAEConfig
    from training.presets._tiny import TINY_DEPTH_TOKENIZER

    torch.manual_seed(0)
    model = AiTVQVAE(AiTVQVAEConfig(**TINY_DEPTH_TOKENIZER)).eval()
    target = torch.rand(2, 1, 64, 64) * 5
    masked = target * (torch.rand(2, 1, 64, 64) > 0.5)
    with torch.no_grad():
        expected = model(masked, labels=target)
        loss, recon_loss, reconstruction = reconstruct(model, masked, target)
        # equal up to the rounding of the straight-through estimator `flat + (quantized - flat)`
        assert torch.allclose(reconstruction, expected.reconstruction, atol=1e-6)
        assert torch.allclose(loss, expected.loss) and torch.allclose(
            recon_loss, expected.reconstruction_loss
        )
        wide = reconstruct(model, torch.rand(1, 1, 64, 96) * 5)[2]
    assert wide.shape == (1, 1, 64, 96)
    with pytest.raises(ValueError, match="multiple of the 16x downsampling"):
        reconstruct(model, torch.rand(1, 1, 64, 90))


def test_tensorboard_logs_are_written(training_data, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    argv = ["--preset", "tiny_depth_vqvae", "--output-dir", str(out), *nyu_args(training_data), "--no-eval",
            "--report-to", "tensorboard", "--set", "training.max_steps=2", "training.logging_steps=1"]  # fmt: skip
    run_in_process(stage1, argv)
    events = list(Path(out, "runs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_stage_mismatch_is_refused(training_data, tmp_path):
    with pytest.raises(ValueError, match="stage-2 preset; use training.stage2"):
        run_in_process(
            stage1, ["--preset", "tiny_depth", "--output-dir", str(tmp_path), *nyu_args(training_data)]
        )
