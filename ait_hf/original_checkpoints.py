"""Original AiT solver checkpoints (mmcv layout) to `AiTForDepthAndInstanceSegmentation` weights.

Every original key is accounted for: renamed, recognised as an alias of the shared transformer (checked
equal, dropped) or a derived buffer (checked against our recomputation, dropped). Anything else, a missing
key or a shape mismatch stops the conversion with the full list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .modeling_ait import AiTForDepthAndInstanceSegmentation
from .modeling_ait_backbone import convert_original_backbone_state_dict
from .modeling_ait_vqvae import _raise_on_mismatch, convert_original_vqvae_state_dict

# transformer.<original> -> <ours>; `{i}` is a layer index
_TRANSFORMER_RENAMES = [
    (r"input_proj\.", "model.encoder.input_proj."),
    (r"stem_ln\.", "model.encoder.input_layer_norm."),
    (r"encout_ln\.", "model.encoder.output_layer_norm."),
    (r"proj\.", "model.encoder.memory_proj."),
    (r"proj_ln\.", "model.encoder.memory_proj_layer_norm."),
    (r"proj_mlp\.", "model.encoder.memory_mlp."),
    (r"proj_mlp_ln\.", "model.encoder.memory_mlp_layer_norm."),
    (r"norm\.", "decoder.final_layer_norm."),
    (r"encoder\.blocks\.(\d+)\.", r"model.encoder.layers.\1."),
    (r"decoder\.blocks\.(\d+)\.", r"decoder.layers.\1."),
]
_BLOCK_RENAMES = [
    (r"attn\.wq\.", "self_attn.q_proj."),
    (r"attn\.wk\.", "self_attn.k_proj."),
    (r"attn\.wv\.", "self_attn.v_proj."),
    (r"attn\.proj\.", "self_attn.out_proj."),
    (r"crossattn\.wq\.", "cross_attn.q_proj."),
    (r"crossattn\.wk\.", "cross_attn.k_proj."),
    (r"crossattn\.wv\.", "cross_attn.v_proj."),
    (r"crossattn\.proj\.", "cross_attn.out_proj."),
    (r"norm1\.", "self_attn_layer_norm."),
    (r"mlp\.", "mlp."),
]
_PARAMETER_RENAMES = {
    "voc_embed": "decoder.token_embeddings",
    "outp_bias": "decoder.output_bias",
    "det_embed": "decoder.task_embeddings",
    "dec_embed": "decoder.position_embeddings",
    "mask_embed": "decoder.parallel_query_embedding",
}
_TOKENIZER_HEADS = {"depth_head.vqvae.": "depth_tokenizer", "insseg_head.vqvae.": "mask_tokenizer"}


def _rename_transformer_key(key: str) -> str | None:
    if key in _PARAMETER_RENAMES:
        return _PARAMETER_RENAMES[key]
    for pattern, repl in _TRANSFORMER_RENAMES:
        m = re.match(pattern, key)
        if not m:
            continue
        rest = key[m.end() :]
        new = m.expand(repl)
        if "blocks" not in pattern:
            return new + rest
        in_encoder = new.startswith("model.encoder")
        for block_pattern, block_repl in _BLOCK_RENAMES:
            if re.match(block_pattern, rest):
                return new + re.sub("^" + block_pattern, block_repl, rest)
        if rest.startswith("norm2."):
            return new + ("final_layer_norm." if in_encoder else "cross_attn_layer_norm.") + rest[6:]
        if rest.startswith("norm3.") and not in_encoder:
            return new + "final_layer_norm." + rest[6:]
        return None
    return None


def convert_original_solver_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: AiTForDepthAndInstanceSegmentation
) -> dict[str, torch.Tensor]:
    """Map an original `AiT` state dict onto `model`'s keys (see the module docstring)."""
    expected = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    inconsistent: list[str] = []

    backbone = {k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    for key, value in convert_original_backbone_state_dict(backbone, model.model.backbone).items():
        converted["model.backbone." + key] = value

    for prefix, name in _TOKENIZER_HEADS.items():
        if not any(k.startswith(prefix) for k in state_dict):
            continue
        tokenizer = getattr(model, name)
        if tokenizer is None:
            unmapped.extend(k for k in state_dict if k.startswith(prefix))
            continue
        for key, value in convert_original_vqvae_state_dict(state_dict, tokenizer, prefix=prefix).items():
            converted[f"{name}.{key}"] = value

    transformer = {k[len("transformer.") :]: v for k, v in state_dict.items() if k.startswith("transformer.")}
    for key, value in state_dict.items():
        if key.startswith(("backbone.", "transformer.")) or any(key.startswith(p) for p in _TOKENIZER_HEADS):
            continue
        if key == "insseg_head.loss_seq.weight":  # cross-entropy class weights, derived from the config
            ours = model.token_class_weights("instance_segmentation")
            if value.shape != ours.shape or not torch.allclose(value.float(), ours):
                inconsistent.append(f"{key} (differs from the class weights of the config)")
            continue
        m = re.match(r"(det|insseg|depth)_head\.transformer\.(.+)", key)
        if m:  # the shared transformer, registered again inside each head
            original = transformer.get(m.group(2))
            if original is not None and (original.shape != value.shape or not torch.equal(original, value)):
                inconsistent.append(f"{key} (differs from transformer.{m.group(2)})")
            continue
        unmapped.append(key)

    for key, value in transformer.items():
        if key == "enc_embed":
            ours = model.model.encoder.position_embeddings
            if isinstance(ours, torch.nn.Parameter):
                converted["model.encoder.position_embeddings"] = value.reshape(ours.shape)
            elif value.reshape(-1).shape != ours.reshape(-1).shape or not torch.allclose(
                value.reshape(ours.shape), ours, atol=1e-5
            ):
                inconsistent.append(
                    "transformer.enc_embed (differs from the sine position code of the config)"
                )
            continue
        new_key = _rename_transformer_key(key)
        if new_key is None or new_key not in expected:
            unmapped.append("transformer." + key)
        else:
            converted[new_key] = value

    _raise_on_mismatch(
        converted, expected, unmapped, what="original AiT checkpoint", inconsistent=inconsistent
    )
    return converted
