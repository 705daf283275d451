"""Fault tolerance and scale-out: a run killed between checkpoints resumes to the same weights as an
uninterrupted run, and a 2-process CPU DDP run (gloo, torchrun) matches a 1-process run with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_test_helpers import coco_args, nyu_args, run_in_process
from transformers import TrainerCallback

from training import stage1, stage2

REPO_ROOT = Path(__file__).resolve().parents[2]


class Killed(Exception):
    """Stands for the process dying (the state after the last checkpoint is lost)."""


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after step {state.global_step}")


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol, rtol=0), (name, (a[name] - b[name]).abs().max())


@pytest.mark.parametrize(
    "module, preset, data, save_steps",
    # checkpoints in the middle of an epoch (11 usable COCO images -> 2 batches per epoch; 12 NYUv2 frames -> 3),
    # so the resumed run must also skip the batches of the epoch it had started
    [(stage2, "tiny_insseg", "coco", 3), (stage1, "tiny_depth_vqvae", "nyu", 4)],
)
def test_kill_and_resume_gives_the_uninterrupted_weights(
    module, preset, data, save_steps, training_data, tmp_path
):
    """Instance segmentation draws random sequence noise, augmentation and data order: all must replay."""
    extra = coco_args(training_data) if data == "coco" else nyu_args(training_data)
    max_steps, kill_at = 2 * save_steps + 1, save_steps + 2
    common = ["--preset", preset, *extra, "--no-eval", "--set", f"training.max_steps={max_steps}",
              f"training.save_steps={save_steps}"]  # fmt: skip
    straight = run_in_process(module, [*common, "--output-dir", str(tmp_path / "straight")])
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Killed):
        run_in_process(module, [*common, "--output-dir", str(interrupted)], callbacks=[KillAtStep(kill_at)])
    assert sorted(p.name for p in interrupted.glob("checkpoint-*")) == [f"checkpoint-{save_steps}"]
    resumed = run_in_process(module, [*common, "--output-dir", str(interrupted), "--resume"])
    assert resumed.state.global_step == max_steps
    assert save_steps % len(resumed.get_train_dataloader()) != 0  # the checkpoint is inside an epoch
    _assert_same(_weights(straight), _weights(resumed))


@pytest.mark.parametrize(
    "module, preset, data",
    [
        (stage2, "tiny_depth", "nyu"),
        # stage 1 with masks: the EMA codebook update is gathered over processes (depth's per-process
        # valid-pixel mean, as in the original, makes 2 processes differ from 1 there)
        pytest.param(stage1, "tiny_mask_vqvae", "masks", marks=pytest.mark.slow),
    ],
)
def test_two_process_ddp_matches_one_process(module, preset, data, training_data, tmp_path):
    """torchrun --nproc_per_node 2 on the CPU (gloo): per-process batch B x 2 processes == batch 2B in one."""
    if data == "nyu":
        data_args = nyu_args(training_data)
    else:
        annotations = training_data["coco"] / "annotations" / "instances_train2017.json"
        data_args = ["--box-masks-train", str(annotations), "--cache-dir", str(training_data["cache"])]
    common = ["--preset", preset, *data_args, "--no-eval", "--report-to", "none",
              "--disable-tqdm", "--set", "training.max_steps=4", "training.save_steps=100"]  # fmt: skip
    single = run_in_process(module, [*common, "--output-dir", str(tmp_path / "single")])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", module.__name__, *common, "--output-dir", str(tmp_path / "ddp")]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    _assert_same(_weights(single), {k: ddp[k] for k in _weights(single)}, atol=1e-5)


def test_run_script_destroys_the_process_group_even_when_main_fails(tmp_path):
    """The scripts' entry point tears down a distributed group that `main` left alive, and re-raises."""
    from training.common import run_script

    def main():
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
        )
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        run_script(main)
    assert not torch.distributed.is_initialized()
    run_script(lambda: None)  # no group: nothing to tear down


def test_run_script_frees_what_main_left_in_reference_cycles_before_the_teardown(tmp_path, monkeypatch):
    """A trainer left in reference cycles (its DDP wrapper holds the process group) is collected before the
    group is destroyed, not during interpreter shutdown."""
    import gc
    import weakref

    from training.common import run_script

    class Trainer:  # stands for the trainer: an object in a reference cycle
        pass

    left = []

    def main():
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
        )
        trainer = Trainer()
        trainer.itself = trainer
        left.append(weakref.ref(trainer))

    seen_at_teardown = []
    destroy = torch.distributed.destroy_process_group

    def recording_destroy(*args, **kwargs):
        seen_at_teardown.append(left[0]() is not None)
        return destroy(*args, **kwargs)

    monkeypatch.setattr(torch.distributed, "destroy_process_group", recording_destroy)
    gc.disable()  # no automatic pass may free the cycle by chance
    try:
        run_script(main)
    finally:
        gc.enable()
    assert seen_at_teardown == [False] and not torch.distributed.is_initialized()
