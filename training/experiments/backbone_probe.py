"""Diagnostic: can a backbone learn to see? Fit the 2x2 mean depth of 8 synthetic crops through a linear head.

A backbone whose features depend on its input fits 8 examples in a few dozen steps; one whose features do not
stays at the targets' variance (it predicts their mean). The probe trains the ``synthetic_*`` preset's SwinV2
backbone (`ait_hf.modeling_ait_backbone`) and, for comparison, timm's `SwinTransformerV2` of the same size on the
same 8 crops with the same optimiser. Command line::

    python -m training.experiments.backbone_probe [--preset synthetic_depth_parallel] [--steps 200]

With the original's from-scratch init (unit residual post-norms, ``post_norm_init=1.0``) our backbone stayed at
the targets' variance (it predicted their mean) while timm's fitted: timm, like the official SwinV2, starts the
residual post-norms at 0 so that every block starts as the identity. ``post_norm_init`` now defaults to 0;
``--post-norm-init 1`` reproduces the failure. See the "Does it learn?" section of README.md.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def probe_batch(num_images: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values (N, 3, 64, 64), 2x2 mean-depth targets (N, 4)) of synthetic training crops."""
    from ait_hf.data import DepthCollator, NYUDepthTrainTransform, load_nyu_depth_v2
    from ait_hf.data.scenes import write_synthetic_scenes
    from training.presets._synthetic import SYNTHETIC_FRAME

    root = tempfile.mkdtemp(prefix="backbone_probe_")
    paths = write_synthetic_scenes(root, nyu_train=num_images, size=SYNTHETIC_FRAME, seed=0)
    rows = load_nyu_depth_v2(paths["nyu_root"], "train", paths["nyu_train_list"], cache_dir=root)
    crops = NYUDepthTrainTransform(crop_size=(64, 64), flip_p=0.0, generator=torch.Generator().manual_seed(0))
    rows = rows.with_transform(crops)
    batch = DepthCollator()([rows[i] for i in range(num_images)])
    targets = F.avg_pool2d(batch["depth_labels"][:, None], 32).flatten(1)
    return batch["pixel_values"], targets


def fit(features_fn, parameters, channels: int, pixel_values, targets, steps: int) -> list[float]:
    """Train backbone + linear head on the probe; returns the MSE every 50 steps."""
    head = torch.nn.Linear(channels, 1)
    optimizer = torch.optim.AdamW([*parameters, *head.parameters()], lr=1e-3, weight_decay=0.0)
    history = []
    for step in range(steps + 1):
        features = features_fn(pixel_values)  # (N, 4, C)
        loss = ((head(features)[..., 0] - targets) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            history.append(round(loss.item(), 4))
    return history


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    from timm.models.swin_transformer_v2 import SwinTransformerV2

    from ait_hf.configuration_ait import AiTConfig
    from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
    from training.presets import load_preset

    parser = argparse.ArgumentParser(prog="python -m training.experiments.backbone_probe")
    parser.add_argument("--preset", default="synthetic_depth_parallel")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--post-norm-init", type=float, default=None, help="override the backbone's post_norm_init"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pixel_values, targets = probe_batch()
    print(f"target variance {targets.var().item():.4f}")
    config = load_preset(args.preset)["model"]["config"]
    if args.post_norm_init is not None:
        config["backbone_config"] = {**config["backbone_config"], "post_norm_init": args.post_norm_init}
    torch.manual_seed(0)
    ours = AiTForDepthAndInstanceSegmentation(AiTConfig(**config)).model.backbone
    channels = ours(pixel_values[:1]).feature_maps[-1].shape[1]
    results = {
        "ait_hf backbone": fit(
            lambda x: ours(x).feature_maps[-1].flatten(2).transpose(1, 2),
            list(ours.parameters()),
            channels,
            pixel_values,
            targets,
            args.steps,
        )  # fmt: skip
    }
    backbone = config["backbone_config"]
    torch.manual_seed(0)
    reference = SwinTransformerV2(
        img_size=64, patch_size=4, embed_dim=backbone["embed_dim"], depths=tuple(backbone["depths"]),
        num_heads=tuple(backbone["num_heads"]), window_size=backbone["window_sizes"][0], num_classes=0,
    )  # fmt: skip
    results["timm SwinTransformerV2"] = fit(
        lambda x: reference.forward_features(x).flatten(1, 2),
        list(reference.parameters()), reference.num_features, pixel_values, targets, args.steps,
    )  # fmt: skip
    for name, history in results.items():
        print(f"{name}: MSE every 50 steps {history}")
    return results


if __name__ == "__main__":
    main()
