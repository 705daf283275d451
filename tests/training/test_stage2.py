"""Stage 2 on tiny presets: depth (AR and parallel), instance segmentation and joint runs reduce their losses;
evaluation, initialisation from stage-1 / converted folders, and the non-finite loss guard."""

import json
import random

import pytest
import torch
from training_test_helpers import build_in_process, coco_args, nyu_args, run_in_process, step_losses

from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
from training import stage1, stage2
from training.trainer import NonFiniteLossError


def fixed_batch_loss(trainer) -> float:
    """Loss of the run's first global batch, with the model's random sequence noise fixed."""
    sampler = trainer.train_sampler_factory(1, 0)
    batch = trainer.train_collator([trainer.train_dataset[key] for key in sampler.batch_keys(0)])
    torch.manual_seed(0)
    random.seed(0)
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, batch))


@pytest.mark.parametrize(
    "preset, data, factor",
    [
        ("tiny_depth", "nyu", 1.25),
        ("tiny_depth_parallel", "nyu", 1.25),
        ("tiny_insseg", "coco", 1.1),
        ("tiny_joint", "both", 1.15),
    ],
)
def test_training_reduces_the_loss(preset, data, factor, training_data, tmp_path):
    data_args = {"nyu": nyu_args, "coco": coco_args}
    extra = (
        [*nyu_args(training_data), *coco_args(training_data)]
        if data == "both"
        else data_args[data](training_data)
    )
    argv = ["--preset", preset, "--output-dir", str(tmp_path / preset), *extra, "--no-eval",
            "--set", "training.logging_steps=1", "training.save_steps=100"]  # fmt: skip
    trainer, _ = build_in_process(stage2, argv)
    before = fixed_batch_loss(trainer)
    trainer.train()
    after = fixed_batch_loss(trainer)
    assert len(step_losses(trainer)) == 20
    # stated factor over 20 steps (loss of the same batch before / after training)
    assert before / after > factor, (before, after)
    if data == "both":  # each task's normalised loss and terms are logged
        logged = trainer.state.log_history[0]
        assert {
            "instance_segmentation_loss",
            "instance_segmentation_mask_ce",
            "depth_loss",
            "depth_ce",
        } <= set(logged)


def test_joint_run_evaluates_both_tasks_and_saves_an_hf_folder(training_data, tmp_path):
    out = tmp_path / "joint"
    argv = ["--preset", "tiny_joint", "--output-dir", str(out), *nyu_args(training_data), *coco_args(training_data),
            "--set", "training.max_steps=2", "training.eval_steps=2", "training.save_steps=2"]  # fmt: skip
    trainer = run_in_process(stage2, argv)
    stage2.save_final(trainer, str(out))
    evaluation = {
        k: v for entry in trainer.state.log_history for k, v in entry.items() if k.startswith("eval_")
    }
    assert {"eval_depth_abs_rel", "eval_depth_d1", "eval_instance_segmentation_bbox_AP",
            "eval_instance_segmentation_segm_AP"} <= set(evaluation)  # fmt: skip
    loaded = AiTForDepthAndInstanceSegmentation.from_pretrained(out)
    assert loaded.config.tasks == ["instance_segmentation", "depth"]
    assert (out / "preprocessor_config.json").exists()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_initialisation_from_stage1_tokenizer_and_converted_folders(training_data, tmp_path):
    tokenizer_dir = tmp_path / "vq"
    run_in_process(stage1, ["--preset", "tiny_depth_vqvae", "--output-dir", str(tokenizer_dir), *nyu_args(training_data),
                            "--no-eval", "--set", "training.max_steps=2"]).save_model(str(tokenizer_dir))  # fmt: skip
    first = tmp_path / "first"
    trainer = run_in_process(stage2, ["--preset", "tiny_depth", "--output-dir", str(first), *nyu_args(training_data),
                                      "--no-eval", "--depth-tokenizer", str(tokenizer_dir), "--set", "training.max_steps=2"])  # fmt: skip
    trainer.save_model(str(first))
    from ait_hf.modeling_ait_vqvae import AiTVQVAE

    stage1_weights = AiTVQVAE.from_pretrained(tokenizer_dir).state_dict()
    for name, value in trainer.model.depth_tokenizer.state_dict().items():
        assert torch.equal(value, stage1_weights[name]), name  # loaded and kept frozen
    # --load-from a solver folder (tokenizers excluded) and --backbone-checkpoint from it
    second, _ = build_in_process(stage2, ["--preset", "tiny_depth_parallel", "--output-dir", str(tmp_path / "second"),
                                          *nyu_args(training_data), "--no-eval", "--load-from", str(first)])  # fmt: skip
    source = trainer.model.state_dict()
    for name, value in second.model.state_dict().items():
        if name.startswith(("model.", "decoder.layers.", "decoder.token_embeddings")):
            assert torch.equal(value, source[name]), name
    assert not torch.equal(
        second.model.depth_tokenizer.quantizer.embedding, source["depth_tokenizer.quantizer.embedding"]
    )
    third, _ = build_in_process(stage2, ["--preset", "tiny_depth", "--output-dir", str(tmp_path / "third"),
                                         *nyu_args(training_data), "--no-eval", "--backbone-checkpoint", str(first)])  # fmt: skip
    backbone = {k: v for k, v in third.model.state_dict().items() if k.startswith("model.backbone.")}
    assert backbone and all(torch.equal(v, source[k]) for k, v in backbone.items())
    with pytest.raises(ValueError, match="does not fit the model's mask tokenizer"):
        build_in_process(stage2, ["--preset", "tiny_insseg", "--output-dir", str(tmp_path / "x"), *coco_args(training_data),
                                  "--no-eval", "--mask-tokenizer", str(tokenizer_dir)])  # fmt: skip


def _nan_on_step(trainer, step: int):
    forward = trainer.model.forward
    calls = {"n": 0}

    def patched(*args, **kwargs):
        output = forward(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == step:
            output.loss = output.loss * float("nan")
        return output

    trainer.model.forward = patched


def test_nonfinite_loss_is_reported_and_skipped(training_data, tmp_path):
    out = tmp_path / "nan"
    argv = ["--preset", "tiny_depth", "--output-dir", str(out), *nyu_args(training_data), "--no-eval",
            "--set", "training.max_steps=4", "training.save_steps=100"]  # fmt: skip
    trainer, _ = build_in_process(stage2, argv)
    _nan_on_step(trainer, 3)
    snapshots = {}

    class Snapshot(__import__("transformers").TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            snapshots[state.global_step] = {k: v.clone() for k, v in model.state_dict().items()}

    trainer.add_callback(Snapshot())
    trainer.train()
    assert all(
        torch.equal(snapshots[2][k], snapshots[3][k]) for k in snapshots[2]
    )  # step 3 left the weights alone
    assert not all(torch.equal(snapshots[3][k], snapshots[4][k]) for k in snapshots[3])  # training went on
    assert all(torch.isfinite(v).all() for v in snapshots[4].values() if v.is_floating_point())
    records = [json.loads(line) for line in (out / "nonfinite_losses.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["step"] == 3 and len(records[0]["sample_ids"]) == 4
    assert all(
        sample_id.startswith("depth[") and "file_name=" in sample_id for sample_id in records[0]["sample_ids"]
    )


def test_nonfinite_loss_can_stop_the_run(training_data, tmp_path):
    argv = ["--preset", "tiny_depth", "--output-dir", str(tmp_path / "nan"), *nyu_args(training_data), "--no-eval",
            "--on-nonfinite-loss", "raise", "--set", "training.max_steps=3", "training.save_steps=100"]  # fmt: skip
    trainer, _ = build_in_process(stage2, argv)
    _nan_on_step(trainer, 2)
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at step 2 .*sample ids on this process: \['depth\["
    ):
        trainer.train()
