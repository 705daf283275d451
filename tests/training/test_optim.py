"""Layer-wise lr decay and the original schedules, checked against hand-computed values and the original
schedulers' own implementations (torch ExponentialLR, timm CosineLRScheduler) driven as the original drives them."""

import math

import pytest
import torch

from ait_hf.configuration_ait import AiTConfig
from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
from training.optim import (
    build_layer_decay_adamw,
    lr_lambda_exponential_every,
    lr_lambda_linear_annealing,
    lr_lambda_step_decay,
    make_lr_lambda,
    original_parameter_name,
    swin_layer_decay_parameter_groups,
    swin_layer_id,
)
from training.presets import ORIGINAL_NO_DECAY_NAMES
from training.presets._tiny import tiny_solver_config

SWIN_B_DEPTHS = [2, 2, 18, 2]  # layers per stage with patch merging: 3, 3, 19, 2 -> 27 + 2 = 29 layers


@pytest.mark.parametrize(
    "name, layer_id",
    [
        ("model.backbone.embeddings.patch_embeddings.projection.weight", 0),
        ("model.backbone.encoder.layers.0.blocks.0.attention.qkv.weight", 1),
        ("model.backbone.encoder.layers.0.blocks.1.mlp.fc1.weight", 2),
        ("model.backbone.encoder.layers.0.downsample.reduction.weight", 3),
        ("model.backbone.encoder.layers.1.blocks.0.attention.qkv.weight", 4),
        ("model.backbone.encoder.layers.2.blocks.5.attention.qkv.weight", 5 + 6 + 1),
        ("model.backbone.encoder.layers.2.downsample.norm.weight", 25),
        ("model.backbone.encoder.layers.3.blocks.1.mlp.fc2.weight", 1 + 25 + 1),
        ("model.backbone.output_norms.3.weight", 28),
        ("decoder.token_embeddings", 28),
        ("model.encoder.layers.0.mlp.fc1.weight", 28),
    ],
)
def test_swin_layer_ids_follow_the_original(name, layer_id):
    assert swin_layer_id(name, SWIN_B_DEPTHS) == layer_id


def test_wrapper_prefixes_do_not_change_layer_ids():
    name = "model.backbone.encoder.layers.2.blocks.5.attention.qkv.weight"
    for wrapped in (f"module.{name}", f"_fsdp_wrapped_module.model._fsdp_wrapped_module.backbone.{name[15:]}",
                    f"_orig_mod.{name}"):  # fmt: skip
        assert swin_layer_id(wrapped, SWIN_B_DEPTHS) == 12, wrapped


def test_names_map_to_the_original_backbone_names():
    assert (
        original_parameter_name("model.backbone.encoder.layers.2.blocks.5.attention.qkv.weight")
        == "backbone.layers.2.blocks.5.attn.qkv.weight"
    )
    assert original_parameter_name("model.backbone.embeddings.patch_embeddings.projection.weight") == (
        "backbone.patch_embed.proj.weight"
    )


def test_layer_decay_learning_rates_and_weight_decay_of_named_parameters():
    config = AiTConfig(**tiny_solver_config(["depth"], depth_parallel=True))
    model = AiTForDepthAndInstanceSegmentation(config)
    optimizer = build_layer_decay_adamw(
        model,
        lr=2e-4,
        weight_decay=0.05,
        layer_decay_rate=0.9,
        depths=[1, 1, 1, 1],
        no_decay_names=ORIGINAL_NO_DECAY_NAMES,
    )
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    num_layers = (2 + 2 + 2 + 1) + 2  # 9: layer ids 0..8, the head is 8

    def lr_and_wd(name):
        group = by_param[id(params[name])]
        return group["lr"], group["weight_decay"]

    expected = {
        "model.backbone.embeddings.patch_embeddings.projection.weight": (2e-4 * 0.9**8, 0.05),
        "model.backbone.embeddings.patch_embeddings.projection.bias": (2e-4 * 0.9**8, 0.0),
        "model.backbone.encoder.layers.1.blocks.0.attention.qkv.weight": (2e-4 * 0.9 ** (num_layers - 1 - 3), 0.05),
        "model.backbone.encoder.layers.1.blocks.0.attention.logit_scale": (2e-4 * 0.9 ** (num_layers - 1 - 3), 0.0),
        "model.backbone.encoder.layers.1.blocks.0.attention.continuous_position_bias_mlp.0.weight": (
            2e-4 * 0.9 ** (num_layers - 1 - 3), 0.0,
        ),
        "model.backbone.encoder.layers.2.downsample.reduction.weight": (2e-4 * 0.9 ** (num_layers - 1 - 6), 0.05),
        "decoder.token_embeddings": (2e-4, 0.0),
        "decoder.position_embeddings": (2e-4, 0.0),
        "decoder.task_embeddings": (2e-4, 0.0),
        "decoder.parallel_query_embedding": (2e-4, 0.0),
        "decoder.layers.0.mlp.fc1.weight": (2e-4, 0.05),
        "decoder.layers.0.mlp.fc1.bias": (2e-4, 0.0),
        "model.encoder.input_layer_norm.weight": (2e-4, 0.0),
    }  # fmt: skip
    for name, (lr, wd) in expected.items():
        got_lr, got_wd = lr_and_wd(name)
        assert got_lr == pytest.approx(lr, rel=1e-12) and got_wd == wd, name
    # frozen tokenizer weights are not optimised; every trainable parameter is, exactly once
    optimised = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(optimised) == len(set(optimised)) == sum(p.requires_grad for p in model.parameters())
    assert not any(id(p) in by_param for p in model.depth_tokenizer.parameters())


def test_groups_report_their_names():
    model = AiTForDepthAndInstanceSegmentation(AiTConfig(**tiny_solver_config(["depth"])))
    _, info = swin_layer_decay_parameter_groups(model, 1.0, 0.05, 0.5, [1, 1, 1, 1], ["voc_embed"])
    assert "decoder.token_embeddings" in info["layer_8_no_decay"].names
    assert info["layer_0_decay"].lr_scale == 0.5**8


def test_step_decay_with_linear_warmup_matches_mmcv():
    # mmcv: warmup lr = regular * (1 - (1 - i / 500) * (1 - 0.1)); regular = base * 0.1 ** (#milestones <= i)
    f = lambda i: lr_lambda_step_decay(i, milestones=[18180], gamma=0.1, warmup_steps=500, warmup_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1)
    assert f(250) == pytest.approx(1 - 0.5 * 0.9)
    assert f(500) == 1.0 and f(18179) == 1.0 and f(18180) == pytest.approx(0.1)


def test_linear_annealing_matches_the_original_hook():
    def f(i):
        return lr_lambda_linear_annealing(
            i, max_steps=1000, min_lr_ratio=0.01, warmup_steps=100, warmup_ratio=0.1
        )  # noqa: E731

    assert f(0) == pytest.approx(0.1)
    regular_50 = 1 + (0.01 - 1) * 50 / 1000
    assert f(50) == pytest.approx(regular_50 * (1 - 0.5 * 0.9))
    assert f(600) == pytest.approx(1 + (0.01 - 1) * 0.6)
    assert f(1000) == pytest.approx(0.01)


def test_exponential_every_matches_the_original_depth_vqvae_loop():
    """The original steps ExponentialLR when `iter % 500 == 0` (iter within the epoch), after opt.step()."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=3e-4)
    reference = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.98)
    steps_per_epoch, every = 1234, 500
    lrs = []
    for _epoch in range(3):
        for it in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if it % every == 0:
                reference.step()
    ours = [3e-4 * lr_lambda_exponential_every(s, 0.98, every, steps_per_epoch) for s in range(len(lrs))]
    assert ours == pytest.approx(lrs, rel=1e-12)


def test_timm_cosine_matches_timm_driven_as_the_original():
    from timm.scheduler.cosine_lr import CosineLRScheduler

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=3e-4)
    total = 300
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=total,
        lr_min=1e-6,
        warmup_lr_init=1e-3 * 3e-4,
        warmup_t=50,
        cycle_limit=1,
        t_in_epochs=False,
    )
    lrs = []
    for step in range(total + 20):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step_update(step)
    f = make_lr_lambda(
        {"type": "timm_cosine", "warmup_steps": 50, "warmup_ratio": 1e-3, "min_lr": 1e-6}, 3e-4, total
    )
    assert [3e-4 * f(s) for s in range(total + 20)] == pytest.approx(lrs, rel=1e-9)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule type 'cos'"):
        make_lr_lambda({"type": "cos"}, 1.0, 10)
    assert math.isclose(make_lr_lambda({"type": "constant"}, 1.0, 10)(5), 1.0)
