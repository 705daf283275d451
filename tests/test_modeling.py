"""AiT task solver on tiny configs: shapes, fast paths equal straightforward paths, training from raw targets."""

import json
import random

import numpy as np
import pytest
import torch

from ait_hf.configuration_ait import AiTConfig, AiTVQVAEConfig
from ait_hf.modeling_ait import (
    AiTDecodingState,
    AiTForDepthAndInstanceSegmentation,
    ObjectSequenceCodec,
    crop_and_resize_masks,
    sample_tokens,
)

TINY_BACKBONE = {
    "embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_sizes": [4, 4, 4, 2],
    "pretrained_window_sizes": [0, 0, 0, 0], "shift_windows": [True, True, False, False], "rpe_hidden_dim": 16,
    "drop_path_rate": 0.0,
    # unit residual post-norms: with the default zero init every block starts as the identity, and tests
    # comparing computation paths on random weights would not exercise attention and MLP
    "post_norm_init": 1.0,
}  # fmt: skip


def tiny_config(tasks=("depth", "instance_segmentation"), **kwargs) -> AiTConfig:
    depth_tok = AiTVQVAEConfig(
        image_size=64, downsample_ratio=16, num_embeddings=16, embedding_dim=8, hidden_size=4, tau=0.8
    )
    mask_tok = AiTVQVAEConfig(image_size=16, downsample_ratio=8, num_embeddings=16, embedding_dim=8, hidden_size=4,
                              normalize_inputs=True, reconstruction_loss="mse", tokenizer_type="mask")  # fmt: skip
    defaults = dict(
        backbone_config=TINY_BACKBONE, tasks=list(tasks), d_model=16, encoder_layers=1, decoder_layers=2,
        num_attention_heads=2, ffn_dim=32, dropout=0.0, drop_path=0.0, encoder_grid=(4, 4), max_decoder_length=64,
        num_bins=50, num_classes=3, num_mask_codes=16, num_depth_codes=16, num_queries=3, coord_norm_value=128,
        depth_tokenizer_config=depth_tok.to_diff_dict(), mask_tokenizer_config=mask_tok.to_diff_dict(),
    )  # fmt: skip
    defaults.update(kwargs)
    return AiTConfig(**defaults)


def tiny_model(**kwargs) -> AiTForDepthAndInstanceSegmentation:
    torch.manual_seed(0)
    model = AiTForDepthAndInstanceSegmentation(tiny_config(**kwargs)).eval()
    with torch.no_grad():  # larger embeddings so that greedy tokens vary with the image
        model.decoder.token_embeddings.normal_(0, 1.0)
        model.decoder.position_embeddings.normal_(0, 1.0)
    return model


def test_vocabulary_is_derived_once():
    vocab = tiny_config().vocabulary
    assert (vocab.class_offset, vocab.noise_label, vocab.mask_offset, vocab.depth_offset, vocab.size) == (
        51,
        55,
        56,
        72,
        88,
    )


@pytest.mark.parametrize("soft", [True, False])
def test_depth_cached_decoding_equals_teacher_forcing(soft):
    """Step-by-step decoding with the key/value cache equals one causal pass over the same inputs."""
    model = tiny_model(tasks=["depth"], soft_token_inputs=soft, depth_soft_decoding=soft)
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(pixel_values, task="depth", output_hidden_states=True)
        start, end = model.config.vocabulary.depth_range()
        if soft:  # re-run without cache, feeding the soft embeddings of the cached run's logits
            codes = model.decoder.token_embeddings[start:end]
            embeds = torch.cat(
                [model.decoder.task_embeddings[2].expand(2, -1, -1), out.logits[:, :-1].softmax(-1) @ codes],
                1,
            )
            embeds = embeds + model.decoder.position_embeddings[2, : embeds.shape[1]]
            hidden = model.decoder(embeds, out.encoder_last_hidden_state)
        else:
            ids = out.sequences[:, :-1] + start
            hidden = model(pixel_values, task="depth", decoder_input_ids=ids).decoder_hidden_states
    assert out.predicted_depth.shape == (2, 64, 64) and out.logits.shape == (2, 16, 16)
    torch.testing.assert_close(out.decoder_hidden_states, hidden, atol=1e-5, rtol=1e-5)


def test_parallel_one_pass_equals_stepwise():
    model = tiny_model(tasks=["depth"], depth_parallel=True, soft_token_inputs=False)
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(pixel_values, task="depth", output_hidden_states=True)
        state = AiTDecodingState(model.decoder, out.encoder_last_hidden_state, 16)
        inputs = model.decoder.task_embeddings[2].expand(2, -1, -1)
        stepwise = []
        for i in range(16):
            stepwise.append(state.step(inputs + model.decoder.position_embeddings[2, i]))
            inputs = model.decoder.parallel_query_embedding.expand(2, -1, -1)
    torch.testing.assert_close(out.decoder_hidden_states, torch.stack(stepwise, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("task", ["depth", "instance_segmentation", "object_detection"])
def test_batched_equals_single(task):
    model = tiny_model(tasks=["depth", "instance_segmentation", "object_detection"])
    size = 64 if task == "depth" else 128
    pixel_values = torch.randn(3, 3, size, size)
    with torch.no_grad():
        batched = model(pixel_values, task=task)
        singles = [model(pixel_values[i : i + 1], task=task) for i in range(3)]
    for name in ("predicted_depth", "pred_boxes", "pred_scores", "pred_masks"):
        value = getattr(batched, name)
        if value is not None:
            torch.testing.assert_close(
                value, torch.cat([getattr(s, name) for s in singles]), atol=1e-4, rtol=1e-4
            )
    assert torch.equal(batched.sequences, torch.cat([s.sequences for s in singles]))


def test_instance_outputs_shapes_and_ranges():
    model = tiny_model()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 128), task="instance_segmentation")
    assert (
        out.pred_boxes.shape == (2, 3, 4)
        and out.pred_scores.shape == (2, 3)
        and out.pred_labels.shape == (2, 3)
    )
    assert out.pred_masks.shape == (2, 3, 16, 16) and out.mask_logits.shape == (2, 3, 4, 16)
    assert out.pred_boxes.min() >= 0 and out.pred_boxes.max() <= 128
    assert out.pred_labels.max() < 3 and ((out.pred_scores > 0) & (out.pred_scores <= 1)).all()


def test_nucleus_sampling():
    logits = torch.tensor([[4.0, 3.0, -5.0, -6.0]]).repeat(2000, 1)
    generator = torch.Generator().manual_seed(0)
    tokens = sample_tokens(logits, 0.9, generator)
    assert set(tokens.tolist()) == {0, 1}  # the two-token nucleus holds > 0.9 of the mass
    assert 0.6 < (tokens == 0).float().mean() < 0.85  # renormalised p(0) = e / (e + 1) = 0.73
    assert torch.equal(sample_tokens(logits, 0.0), torch.zeros(2000, dtype=torch.long))
    assert torch.equal(sample_tokens(logits, 1e-6, generator), torch.zeros(2000, dtype=torch.long))


def test_depth_training_from_raw_targets_backpropagates():
    model = tiny_model(tasks=["depth"]).train()
    depth = torch.rand(2, 64, 64) * 5 + 0.5
    out = model(torch.randn(2, 3, 64, 64), task="depth", depth_labels=depth)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and set(out.loss_terms) == {"ce", "decoder_aux_ce"}
    out.loss.backward()
    assert model.decoder.token_embeddings.grad is not None
    assert all(p.grad is None for p in model.depth_tokenizer.parameters())  # frozen tokenizer


def _targets(n_images=2):
    targets = []
    for i in range(n_images):
        masks = torch.zeros(2, 128, 128, dtype=torch.uint8)
        masks[0, 10:40, 20:60] = 1
        masks[1, 70:120, 50:100] = 1
        targets.append(
            {
                "boxes": torch.tensor([[20.0, 10, 60, 40], [50, 70, 100, 120]]),
                "class_labels": torch.tensor([i, 2]),
                "masks": masks,
            }
        )
    return targets


def test_instance_sequence_construction():
    config = tiny_config()
    model = tiny_model()
    codec = ObjectSequenceCodec(config, "instance_segmentation", model.mask_tokenizer)
    torch.manual_seed(0)
    inputs, labels, crops = codec.build(_targets(), (128, 128))
    vocab = config.vocabulary
    length = config.object_length("instance_segmentation")
    assert length == 9 and inputs.shape == (2, 3 * length - 1) and labels.shape == (2, 3 * length)
    objects = labels.view(2, 3, length)
    # two real objects: supervised boxes, classes and mask codes; the noise object: only its noise class
    assert (objects[:, :2, :4] >= 0).all() and (objects[:, :2, :4] <= vocab.num_bins).all()
    assert ((objects[:, :2, 4] >= vocab.class_offset) & (objects[:, :2, 4] < vocab.special_offset)).all()
    assert ((objects[:, :2, 5:] >= vocab.mask_offset) & (objects[:, :2, 5:] < vocab.depth_offset)).all()
    assert (
        (objects[:, 2, :4] == -100).all()
        and (objects[:, 2, 5:] == -100).all()
        and (objects[:, 2, 4] == vocab.noise_label).all()
    )
    # class inputs are corrupted (random class or noise label), boxes are kept
    in_objects = torch.cat([inputs, torch.zeros(2, 1, dtype=torch.long)], 1).view(2, 3, length)
    assert torch.equal(
        in_objects[:, :, :4],
        labels.view(2, 3, length)[:, :, :4].where(objects[:, :, :4] >= 0, in_objects[:, :, :4]),
    )
    assert ((in_objects[:, :, 4] >= vocab.class_offset) & (in_objects[:, :, 4] <= vocab.noise_label)).all()
    assert crops[0].shape == (2, 16, 16) and set(crops[0].unique().tolist()) <= {0.0, 1.0}


def test_instance_sequence_mask_codes_equal_per_object_encoding():
    """The codec encodes every mask crop of a batch in one tokenizer call. Each real object's codes must equal
    encoding its own GT mask cropped to its own box, alone; each noise object's codes are an empty mask's
    (random or shifted boxes) or, for jittered duplicates, an object's mask in a box near that object's."""
    config = tiny_config(num_queries=5)
    tokenizer = tiny_model(num_queries=5).mask_tokenizer
    codec = ObjectSequenceCodec(config, "instance_segmentation", tokenizer)
    vocab, length = config.vocabulary, config.object_length("instance_segmentation")
    generator = torch.Generator().manual_seed(3)
    targets = []
    for n in (0, 1, 1, 2, 2, 3, 5):
        corner = torch.rand(n, 2, generator=generator) * 80
        boxes = torch.cat([corner, corner + 10 + torch.rand(n, 2, generator=generator) * 38], 1)
        masks = (torch.rand(n, 128, 128, generator=generator) > 0.5).to(torch.uint8)
        targets.append({"boxes": boxes, "class_labels": torch.zeros(n, dtype=torch.long), "masks": masks})
    torch.manual_seed(0)
    random.seed(0)
    _, labels, crops = codec.build(targets, (128, 128))
    for image, target in enumerate(targets):
        objects = labels[image].view(-1, length)
        n = len(target["boxes"])
        assert objects.shape[0] == 5 and crops[image].shape[0] == n
        for real in objects[:n]:  # find the object (the codec shuffles them) by its box tokens
            match = (codec.quantize(target["boxes"]) == real[:4]).all(1).nonzero()[0, 0]
            own_crop = crop_and_resize_masks(
                target["masks"][match, None].float(), target["boxes"][match, None], 16
            )
            assert torch.equal(real[5:] - vocab.mask_offset, tokenizer.encode(own_crop)[0])
        assert (objects[n:, 5:] == -100).all()
    # noise objects: with full-image masks a duplicate's crop is all ones, an empty mask's all zeros
    for target in targets:
        target["masks"] = torch.ones_like(target["masks"])
    constant_maps = torch.stack([torch.zeros(1, 16, 16), torch.ones(1, 16, 16)])
    # random weights map both to one code: give each map's mean latent a code of its own
    with torch.no_grad():
        latents = tokenizer.encoder(tokenizer.normalize(constant_maps)).mean((2, 3))
        tokenizer.quantizer.embedding[:2] = latents
    empty_codes, full_codes = tokenizer.encode(constant_maps)
    assert not torch.equal(empty_codes[:-1], full_codes[:-1])
    inputs, _, _ = codec.build(targets, (128, 128))
    kinds = set()
    for image, target in enumerate(targets):
        n = len(target["boxes"])
        real_boxes = codec.quantize(target["boxes"]).float()
        for noise in torch.cat([inputs[image], inputs.new_zeros(1)]).view(-1, length)[n:]:
            # the inputs lack the sequence's last token: compare all but each object's last code
            codes = noise[5:-1] - vocab.mask_offset
            empty, full = torch.equal(codes, empty_codes[:-1]), torch.equal(codes, full_codes[:-1])
            assert empty or full, codes
            if full:  # jitter moves each coordinate by at most 10% of the box size
                sizes = (real_boxes[:, 2:] - real_boxes[:, :2]).repeat(1, 2)
                near = ((noise[:4].float() - real_boxes).abs() <= 0.1 * sizes + 1).all(1)
                assert near.any(), (noise[:4], real_boxes)
            kinds.add(full)
    assert kinds == {True, False}  # both kinds of noise objects occurred


def test_instance_training_from_raw_targets():
    model = tiny_model().train()
    out = model(torch.randn(2, 3, 128, 128), task="instance_segmentation", object_targets=_targets())
    assert (
        set(out.loss_terms) == {"cls_ce", "bbox_ce", "mask_ce", "decoder_aux_ce"}
        and out.loss_terms["decoder_aux_ce"] > 0
    )
    out.loss.backward()
    det = tiny_model(tasks=["object_detection"]).train()
    out = det(
        torch.randn(2, 3, 128, 128),
        task="object_detection",
        object_targets=[{k: v for k, v in t.items() if k != "masks"} for t in _targets()],
    )
    assert set(out.loss_terms) == {"cls_ce", "bbox_ce"} and torch.isfinite(out.loss)


def test_soft_box_l1_values_and_loss_term():
    model = tiny_model(box_regression_loss_weight=2.0)
    start, end = model.config.vocabulary.box_range()
    num_bins = end - start - 1
    logits = torch.full((1, 3, 4, model.config.vocab_size), -1e4)
    labels = torch.tensor([[[10, 20, 30, 40], [5, 5, 5, 5], [-100, -100, -100, -100]]])
    logits[0, 0, torch.arange(4), labels[0, 0]] = 0.0  # all mass on the target bins: distance 0
    logits[0, 1, :, start:end] = 0.0  # uniform over the bins: expected bin num_bins / 2
    logits[0, 2, :, start + 7] = 0.0  # unsupervised (noise object) tokens do not count
    total, count = model.soft_box_l1(logits, labels)
    assert count == 8
    torch.testing.assert_close(total, torch.tensor(4 * (num_bins / 2 - 5) / num_bins))
    # the term enters the instance loss linearly in its weight (0: the original loss, no term logged)
    pixels = torch.randn(2, 3, 128, 128)
    losses = []
    for weight in (0.0, 1.0, 2.0):
        random.seed(0)  # the same training sequences for each weight
        torch.manual_seed(0)
        out = tiny_model(box_regression_loss_weight=weight).train()(
            pixels, task="instance_segmentation", object_targets=_targets()
        )
        assert ("bbox_l1" in out.loss_terms) == (weight > 0)
        losses.append(out.loss.detach())
    assert losses[1] > losses[0]
    torch.testing.assert_close(losses[2] - losses[0], 2 * (losses[1] - losses[0]))


def test_mask_crops_match_the_original(fixtures_dir):
    """RoIAlign crops of the GT masks equal the original's box-cropped masks (in its random GT order)."""
    ref = np.load(fixtures_dir / "insseg" / "reference.npz")
    masks, boxes = torch.from_numpy(ref["train_gt_masks"]), torch.from_numpy(ref["train_gt_bboxes"])
    expected = torch.from_numpy(ref["train_gt_mask_crops"])
    for order in ([0, 1], [1, 0]):
        crops = crop_and_resize_masks(masks[order], boxes[order], 64)
        if torch.equal(crops, expected):
            break
    else:
        pytest.fail("no ordering of the GT masks reproduces the original crops")
    assert torch.equal(crops, torch.from_numpy(ref["train_encode0_in"]))


def test_save_and_reload_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    loaded = AiTForDepthAndInstanceSegmentation.from_pretrained(tmp_path).eval()
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values, task="depth").predicted_depth,
            loaded(pixel_values, task="depth").predicted_depth,
        )
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "ait"


def test_config_validation_messages():
    with pytest.raises(ValueError, match="subset of"):
        tiny_config(tasks=["segmentation"])
    with pytest.raises(ValueError, match="sampling_top_p"):
        tiny_config(sampling_top_p=2.0)
    with pytest.raises(ValueError, match="num_depth_codes"):
        tiny_config(num_depth_codes=32)


def test_tokenizers_stay_frozen_after_from_pretrained(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    loaded = AiTForDepthAndInstanceSegmentation.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in loaded.depth_tokenizer.parameters())
    assert not any(p.requires_grad for p in loaded.mask_tokenizer.parameters())
    assert all(p.requires_grad for p in loaded.decoder.parameters())


def test_task_names_from_a_batched_pipeline_and_detection_by_the_instance_head():
    model = tiny_model()  # depth + instance segmentation, no detection head
    pixel_values = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        single_name = model(pixel_values, task="instance_segmentation")
        per_image = model(pixel_values, task=["instance_segmentation", "instance_segmentation"])
        detection = model(pixel_values, task="object_detection")
    assert torch.equal(single_name.sequences, per_image.sequences)
    assert torch.equal(detection.pred_boxes, single_name.pred_boxes)  # the instance head's boxes
    with pytest.raises(ValueError, match="one task"):
        model(pixel_values, task=["depth", "instance_segmentation"])
    with pytest.raises(ValueError, match="no 'object_detection' head"):  # training never falls back
        model.train()(pixel_values, task="object_detection", object_targets=_targets())


def test_windowed_depth_outputs_are_batch_first():
    """Pipelines split a batch along the first dimension of every output field."""
    model = tiny_model(tasks=["depth"])
    with torch.no_grad():
        out = model(torch.randn(3, 3, 64, 85), task="depth", test_time_augmentation=True)
        single = model(torch.randn(1, 3, 64, 85), task="depth", test_time_augmentation=True)
    views = 2 * model.config.depth_tta_windows  # windows and their flips
    assert out.predicted_depth.shape == (3, 64, 85)
    assert out.logits.shape == (3, views, 16, 16) and out.sequences.shape == (3, views, 16)
    assert single.sequences.shape == (1, views, 16)
