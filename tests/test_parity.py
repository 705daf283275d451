"""Converted original checkpoints reproduce the original implementation's outputs (float32).

Every case in tests/fixtures/original is converted with the conversion tool, reloaded with
`from_pretrained` and compared array by array; the worst absolute error of each array is printed.
"""

import json

import numpy as np
import pytest
import torch

from ait_hf.image_processing_ait import paste_masks_in_image
from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation, ObjectSequenceCodec
from conversion.convert_ait_to_hf import convert

TOL = 1e-4
DEPTH_CASES = ["depth_ar", "depth_ar_hard", "depth_parallel"]
ALL_CASES = DEPTH_CASES + ["det", "insseg", "joint"]


@pytest.fixture(scope="module")
def converted(fixtures_dir, tmp_path_factory):
    cache = {}

    def load(case):
        if case not in cache:
            d = fixtures_dir / case
            out = tmp_path_factory.mktemp(case)
            convert(
                str(d / "checkpoint.pth"),
                str(d / "config.json"),
                str(out),
                derived_buffers=str(d / "derived_buffers.npz"),
            )
            model = AiTForDepthAndInstanceSegmentation.from_pretrained(out).eval()
            cache[case] = (model, np.load(d / "reference.npz"), json.loads((d / "config.json").read_text()))
        return cache[case]

    return load


class Report:
    """Collects the worst absolute error per array, prints them, and asserts at the end."""

    def __init__(self, case):
        self.case, self.errors = case, {}

    def close(self, name, ours, ref, tol=TOL):
        ours = ours.detach().float().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        assert ours.shape == ref.shape, f"{name}: shape {ours.shape} vs reference {ref.shape}"
        self.errors[name] = (float(np.abs(ours - ref).max()) if ours.size else 0.0, tol)

    def equal(self, name, ours, ref):
        ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        assert ours.shape == ref.shape, f"{name}: shape {ours.shape} vs reference {ref.shape}"
        self.errors[name] = (float((ours != ref).sum()), 0.0)

    def check(self):
        print(f"\n[{self.case}] worst abs error per array:")
        for name, (err, tol) in self.errors.items():
            print(f"  {name:32s} {err:.3e}  (tol {tol:g})")
        bad = {k: v for k, v in self.errors.items() if v[0] > v[1]}
        assert not bad, f"{self.case}: arrays over tolerance: {bad}"


def _backbone_and_memory(report, model, pixel_values, ref, prefix=""):
    with torch.no_grad():
        out = model.model(pixel_values)
    report.close(prefix + "backbone_out", out.backbone_features, ref[prefix + "backbone_out"])
    report.close(prefix + "tf_src_embed", out.encoder_inputs, ref[prefix + "tf_src_embed"])
    report.close(prefix + "tf_enc_out", out.encoder_output, ref[prefix + "tf_enc_out"])
    report.close(prefix + "tf_memory", out.last_hidden_state, ref[prefix + "tf_memory"])


def _depth_inference(report, model, img_tta, ref, prefix=""):
    with torch.no_grad():
        out = model(img_tta[..., :480], task="depth", output_hidden_states=True)
        tta = model(img_tta, task="depth", test_time_augmentation=True)
    report.close(prefix + "dec_hidden", out.decoder_hidden_states, ref[prefix + "dec_hidden"])
    report.close(prefix + "pred_logits", out.logits, ref[prefix + "pred_logits"])
    report.equal(prefix + "pred_tokens", out.sequences, ref[prefix + "pred_tokens"])
    if prefix + "pred_depth" in ref.files:
        report.close(prefix + "pred_depth", out.predicted_depth, ref[prefix + "pred_depth"])
    report.close(prefix + "tta_pred_depth", tta.predicted_depth, ref[prefix + "tta_pred_depth"])
    report.equal(
        prefix + "tta_crop_tokens", tta.sequences.flatten(0, 1), ref[prefix + "tta_crop_tokens"]
    )  # (B=1, views, L)


def _object_inference(report, model, task, img, ref, meta, prefix=""):
    with torch.no_grad():
        out = model(img, task=task, output_hidden_states=True)
    n = ref[prefix + "pred_tokens"].shape[1]
    report.close(prefix + "dec_hidden", out.decoder_hidden_states[:, :n], ref[prefix + "dec_hidden"])
    report.equal(prefix + "pred_tokens", out.sequences[:, :n], ref[prefix + "pred_tokens"])
    report.close(prefix + "pred_scores", out.pred_scores, ref[prefix + "pred_scores"])
    scale = meta["scale_factor"]["value"][0]
    boxes = torch.cat([out.pred_boxes[0] / scale, out.pred_scores[0, :, None]], dim=1)
    report.close(prefix + "det_bboxes", boxes, ref[prefix + "det_bboxes"])
    report.equal(prefix + "det_labels", out.pred_labels[0], ref[prefix + "det_labels"])
    if task == "instance_segmentation":
        report.close(prefix + "pred_mask_logits", out.mask_logits, ref[prefix + "pred_mask_logits"])
        report.close(prefix + "mask_probs", out.pred_masks[0], ref[prefix + "mask_probs"])
        pasted = paste_masks_in_image(
            out.pred_masks[0], out.pred_boxes[0] / scale, tuple(meta["ori_shape"][:2])
        )
        report.equal(prefix + "det_masks", pasted, ref[prefix + "det_masks"])
    return out


def _post_processing(report, model, task, ref, meta):
    """Hand-made token sequences (`pp_*`) decoded into boxes, labels and pasted masks as the original does."""
    codec = ObjectSequenceCodec(model.config, task, model.mask_tokenizer)
    scale = meta["scale_factor"]["value"][0]
    variants = [("pp_", None)] if task == "object_detection" else [("pp_soft_", "soft"), ("pp_hard_", "hard")]
    for prefix, kind in variants:
        tokens = torch.from_numpy(ref[prefix + "tokens"]).view(-1, codec.object_length)
        boxes = codec.dequantize(tokens[:, :4]) / scale
        scores = torch.from_numpy(ref[prefix + "scores"])
        report.close(prefix + "bboxes", torch.cat([boxes, scores[:, None]], 1), ref[prefix + "bboxes"])
        report.equal(prefix + "labels", tokens[:, 4], ref[prefix + "labels"])
        if kind is None:
            continue
        with torch.no_grad():
            if kind == "soft":
                probs = model.mask_tokenizer.decode_soft(torch.from_numpy(ref[prefix + "mask_logits"]))
            else:
                probs = model.mask_tokenizer.decode(tokens[:, 5:])
        pasted = paste_masks_in_image(probs, boxes, tuple(meta["ori_shape"][:2]), restrict_to_box=True)
        report.equal(prefix + "masks", pasted, ref[prefix + "masks"])


@pytest.mark.parametrize("case", DEPTH_CASES)
def test_depth_parity(converted, case):
    model, ref, _ = converted(case)
    report = Report(case)
    img_tta = torch.from_numpy(ref["img_tta"])
    _backbone_and_memory(report, model, img_tta[..., :480], ref)
    _depth_inference(report, model, img_tta, ref)
    with torch.no_grad():
        out = model(
            img_tta[..., :480], task="depth",
            decoder_input_ids=torch.from_numpy(ref["train_input_seq"]), labels=torch.from_numpy(ref["train_target_seq"]),
            depth_labels=torch.from_numpy(ref["train_depth_gt"]),
        )  # fmt: skip
        raw = model(img_tta[..., :480], task="depth", depth_labels=torch.from_numpy(ref["train_depth_gt"]))
    target = torch.from_numpy(ref["train_target_seq"])
    start, end = model.config.vocabulary.depth_range()
    report.close("train_hidden", out.decoder_hidden_states, ref["train_hidden"])
    report.close("train_logits_lse", torch.logsumexp(out.logits, -1), ref["train_logits_lse"])
    report.close("train_logits_task_range", out.logits[..., start:end], ref["train_logits_task_range"])
    report.close("train_logits_first8", out.logits[:, :8], ref["train_logits_first8"])
    report.close(
        "train_logits_at_target",
        out.logits.gather(-1, target.clamp(min=0)[..., None])[..., 0],
        ref["train_logits_at_target"],
    )
    report.close("train_losses_depth_loss", out.loss, ref["train_losses_depth_loss"])
    report.close("train_losses_depth_ce", out.loss_terms["ce"], ref["train_losses_depth_ce"])
    report.close(
        "train_losses_depth_decoder_aux_ce",
        out.loss_terms["decoder_aux_ce"],
        ref["train_losses_depth_decoder_aux_ce"],
    )
    # training from the raw depth map builds the same sequences and hence the same loss
    report.close("raw_target_loss", raw.loss, ref["train_losses_depth_loss"])
    report.check()


@pytest.mark.parametrize("case,task", [("det", "object_detection"), ("insseg", "instance_segmentation")])
def test_object_parity(converted, case, task):
    model, ref, cfg = converted(case)
    report = Report(case)
    img = torch.from_numpy(ref["img"])
    _backbone_and_memory(report, model, img, ref)
    _object_inference(report, model, task, img, ref, cfg["inputs"]["img_meta"])
    _post_processing(report, model, task, ref, cfg["inputs"]["img_meta"])
    crops = torch.from_numpy(ref["train_gt_mask_crops"]) if "train_gt_mask_crops" in ref.files else None
    with torch.no_grad():
        out = model(img, task=task, decoder_input_ids=torch.from_numpy(ref["train_input_seq"]),
                    labels=torch.from_numpy(ref["train_target_seq"]), mask_labels=crops)  # fmt: skip
    report.close("train_hidden", out.decoder_hidden_states, ref["train_hidden"])
    report.close("train_logits", out.logits, ref["train_logits"])
    report.close("train_logits_lse", torch.logsumexp(out.logits, -1), ref["train_logits_lse"])
    report.close(f"train_losses_{case}_loss", out.loss, ref[f"train_losses_{case}_loss"])
    for name, value in out.loss_terms.items():
        report.close(f"train_losses_{case}_{name}", value, ref[f"train_losses_{case}_{name}"])
    report.check()


def test_joint_parity(converted):
    model, ref, cfg = converted("joint")
    report = Report("joint")
    img_tta = torch.from_numpy(ref["depth_img_tta"])
    _backbone_and_memory(report, model, img_tta, ref, prefix="insseg_")  # padded to 640x640 by the model
    _backbone_and_memory(report, model, img_tta[..., :480], ref, prefix="depth_")
    _object_inference(
        report,
        model,
        "instance_segmentation",
        img_tta,
        ref,
        cfg["inputs"]["insseg_img_meta"],
        prefix="insseg_",
    )
    _depth_inference(report, model, img_tta, ref, prefix="depth_")
    # the training batch mixes one instance-segmentation row and one depth row; rows are independent
    input_seq, target_seq = (
        torch.from_numpy(ref["train_input_seq"]),
        torch.from_numpy(ref["train_target_seq"]),
    )
    with torch.no_grad():
        ins = model(img_tta, task="instance_segmentation", decoder_input_ids=torch.from_numpy(ref["train_insseg_input_seq_unpadded"]),
                    labels=torch.from_numpy(ref["train_insseg_target_seq_unpadded"]),
                    mask_labels=torch.from_numpy(ref["train_encode0_in"]))  # fmt: skip
        dep = model(img_tta[..., :480], task="depth", decoder_input_ids=torch.from_numpy(ref["train_depth_input_seq_unpadded"]),
                    labels=torch.from_numpy(ref["train_depth_target_seq_unpadded"]),
                    depth_labels=torch.from_numpy(ref["train_depth_gt"]))  # fmt: skip
    assert torch.equal(input_seq[1], torch.from_numpy(ref["train_depth_input_seq_unpadded"])[0])
    assert torch.equal(
        target_seq[0, : ins.logits.shape[1]], torch.from_numpy(ref["train_insseg_target_seq_unpadded"])[0]
    )
    report.close(
        "train_hidden[insseg]", ins.decoder_hidden_states, ref["train_hidden"][:1, : ins.logits.shape[1]]
    )
    report.close("train_hidden[depth]", dep.decoder_hidden_states, ref["train_hidden"][1:])
    mstart, mend = model.config.vocabulary.mask_range()
    dstart, dend = model.config.vocabulary.depth_range()
    report.close(
        "train_insseg_logits_task_range", ins.logits[..., mstart:mend], ref["train_insseg_logits_task_range"]
    )
    report.close("train_insseg_logits_first4", ins.logits[:, :4], ref["train_insseg_logits_first4"])
    report.close(
        "train_depth_logits_task_range", dep.logits[..., dstart:dend], ref["train_depth_logits_task_range"]
    )
    report.close("train_depth_logits_first4", dep.logits[:, :4], ref["train_depth_logits_first4"])
    report.close("train_losses_insseg_loss", ins.loss, ref["train_losses_insseg_loss"])
    report.close("train_losses_depth_loss", dep.loss, ref["train_losses_depth_loss"])
    for name, value in ins.loss_terms.items():
        report.close(f"train_losses_insseg_{name}", value, ref[f"train_losses_insseg_{name}"])
    for name, value in dep.loss_terms.items():
        report.close(f"train_losses_depth_{name}", value, ref[f"train_losses_depth_{name}"])
    report.check()


def test_parallel_depth_is_one_decoder_pass(converted):
    """AiT-P decodes all 225 depth tokens in a single decoder forward."""
    model, ref, _ = converted("depth_parallel")
    calls = []
    hook = model.decoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(ref["img_tta"])[..., :480], task="depth")
    finally:
        hook.remove()
    assert len(calls) == 1
    assert np.abs(out.logits.numpy() - ref["pred_logits"]).max() <= TOL
