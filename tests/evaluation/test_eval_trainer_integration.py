"""`make_depth_compute_metrics` inside a real `transformers.Trainer.evaluate`, both metric modes."""

import numpy as np
import pytest
import torch
from torch import nn

from ait_hf.evaluation import compute_depth_metrics, make_depth_compute_metrics


class _ScaleDepthModel(nn.Module):
    """Predicts depth as `scale * pixel_values[:, 0]`; returns (loss, predicted_depth) like HF models."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.1))

    def forward(self, pixel_values, labels=None):
        predicted_depth = self.scale * pixel_values[:, 0]
        loss = (predicted_depth - labels).abs().mean() if labels is not None else None
        return (loss, predicted_depth) if loss is not None else (predicted_depth,)


class _DepthDataset(torch.utils.data.Dataset):
    def __init__(self, depth: np.ndarray) -> None:
        self.depth = torch.from_numpy(depth).float()

    def __len__(self) -> int:
        return len(self.depth)

    def __getitem__(self, index):
        return {"pixel_values": self.depth[index][None].repeat(3, 1, 1), "labels": self.depth[index]}


@pytest.mark.parametrize("batch_eval_metrics", [False, True])
def test_trainer_evaluate_reports_depth_metrics(tmp_path, batch_eval_metrics):
    from transformers import Trainer, TrainingArguments

    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, size=(5, 6, 8))
    depth[1, :2] = 0.0  # missing ground truth
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=2,  # 5 images: the last batch is short
        report_to=[],
        use_cpu=True,
        batch_eval_metrics=batch_eval_metrics,
        label_names=["labels"],
    )
    trainer = Trainer(
        model=_ScaleDepthModel(),
        args=args,
        eval_dataset=_DepthDataset(depth),
        compute_metrics=make_depth_compute_metrics(eval_crop=None),
    )
    metrics = trainer.evaluate()
    expected = compute_depth_metrics(
        np.float32(1.1) * depth.astype(np.float32), depth.astype(np.float32), eval_crop=None
    )
    for name, value in expected.items():
        assert metrics[f"eval_{name}"] == pytest.approx(value, rel=1e-6), name
    # Every scored pixel is over-estimated by 10%.
    assert metrics["eval_abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert metrics["eval_d1"] == 1.0
