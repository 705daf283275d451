"""AiT task solver: SwinV2 backbone, transformer encoder-decoder over one shared vocabulary, task codecs.

`AiTModel` turns images into the encoder memory. `AiTForDepthAndInstanceSegmentation` adds the decoder and
the task codecs: depth (VQ-VAE depth codes, autoregressive or parallel AiT-P), object detection and
instance segmentation (Pix2Seq-style object sequences `[x1, y1, x2, y2, class, mask codes...]`).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_ait import TASK_IDS, AiTConfig
from .modeling_ait_backbone import (
    AiTSwinV2Backbone,
    AiTSwinV2Stage,
    relative_coords_table,
    relative_position_index,
)
from .modeling_ait_vqvae import AiTVQVAE

SUPPORTED_TASKS = tuple(TASK_IDS)


# ============================================================================ outputs
@dataclass
class AiTModelOutput(ModelOutput):
    """Output of `AiTModel`.

    Args:
        last_hidden_state: encoder memory given to the decoder's cross-attention, (B, h * w, d_model).
        backbone_features: last backbone feature map, (B, C, h, w).
        encoder_output: transformer encoder output before the memory projection, (B, h * w, d_model).
        encoder_inputs: transformer encoder input (projected backbone features), (B, h * w, d_model).
    """

    last_hidden_state: torch.FloatTensor | None = None
    backbone_features: torch.FloatTensor | None = None
    encoder_output: torch.FloatTensor | None = None
    encoder_inputs: torch.FloatTensor | None = None


@dataclass
class AiTOutput(ModelOutput):
    """Output of `AiTForDepthAndInstanceSegmentation` (fields of other tasks are `None`).

    Args:
        loss: the task loss (training or when `labels` are given).
        loss_terms: named loss terms of the task, as the original logs them (`ce`, `cls_ce`, ...).
        logits: depth inference: per-step depth-code logits (B, tokens, depth codes), or (B, views, tokens,
            depth codes) when the depth is merged from several windows / flips; teacher forcing:
            logits over the whole vocabulary (B, L, vocab).
        predicted_depth: depth in metres, (B, H, W) in the input frame.
        pred_boxes: x1y1x2y2 in input pixels, (B, Q, 4).
        pred_scores: class score of each object, (B, Q).
        pred_labels: class index 0..num_classes-1 of each object, (B, Q).
        pred_masks: box-local mask probabilities, (B, Q, S, S) (instance segmentation).
        sequences: decoded tokens (range-relative ids: box bins, class index, code index), (B, L), or
            (B, views, L) for depth merged from several windows / flips.
        mask_logits: per-object mask-code logits (B, Q, mask tokens, mask codes) when soft tokens are used.
        decoder_hidden_states: decoder output after its final LayerNorm at every position, (B, L, d_model).
        encoder_last_hidden_state: the encoder memory, (B, N, d_model).
    """

    loss: torch.FloatTensor | None = None
    loss_terms: dict[str, torch.Tensor] | None = None
    logits: torch.FloatTensor | None = None
    predicted_depth: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    pred_scores: torch.FloatTensor | None = None
    pred_labels: torch.LongTensor | None = None
    pred_masks: torch.FloatTensor | None = None
    sequences: torch.LongTensor | None = None
    mask_logits: torch.FloatTensor | None = None
    decoder_hidden_states: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None


# ============================================================================ transformer layers
class AiTAttention(nn.Module):
    """Multi-head attention through `scaled_dot_product_attention`, with separate q/k/v projections."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.is_causal = False  # SDPA integrations treat modules as causal unless told otherwise

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the q, k and v projections stacked, for one matmul per decoding step."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        return weight, torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])

    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, causal: bool = False
    ) -> torch.Tensor:
        """Attention of `query` (B, L, D) over projected `key`/`value` (B, H, S, Dh)."""
        q = self.split_heads(self.q_proj(query))
        out = F.scaled_dot_product_attention(q, key, value, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(query.shape))

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, causal: bool = False) -> torch.Tensor:
        return self.attend(query, *self.project_kv(key_value), causal=causal)


class AiTEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, config: AiTConfig, drop_path: float) -> None:
        super().__init__()
        d, eps = config.d_model, config.layer_norm_eps
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.self_attn = AiTAttention(d, config.num_attention_heads)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, config.ffn_dim, drop=(config.dropout, 0.0))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        normed = self.self_attn_layer_norm(hidden_states)
        hidden_states = hidden_states + self.drop_path(self.self_attn(normed, normed))
        return hidden_states + self.drop_path(self.mlp(self.final_layer_norm(hidden_states)))


class AiTDecoderLayer(nn.Module):
    """Pre-norm decoder layer; one LayerNorm normalises both the queries and the memory of cross-attention."""

    def __init__(self, config: AiTConfig, drop_path: float) -> None:
        super().__init__()
        d, eps = config.d_model, config.layer_norm_eps
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.self_attn = AiTAttention(d, config.num_attention_heads)
        self.cross_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.cross_attn = AiTAttention(d, config.num_attention_heads)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, config.ffn_dim, drop=(config.dropout, 0.0))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values of the memory: computed once per image, reused at every step."""
        return self.cross_attn.project_kv(self.cross_attn_layer_norm(memory))

    def forward(
        self, hidden_states: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Teacher forcing: causal self-attention over all positions of `hidden_states`."""
        normed = self.self_attn_layer_norm(hidden_states)
        hidden_states = hidden_states + self.drop_path(self.self_attn(normed, normed, causal=True))
        return self._cross_attention_and_mlp(hidden_states, memory_kv)

    def _cross_attention_and_mlp(
        self, hidden_states: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        normed = self.cross_attn_layer_norm(hidden_states)
        hidden_states = hidden_states + self.drop_path(self.cross_attn.attend(normed, *memory_kv))
        return hidden_states + self.drop_path(self.mlp(self.final_layer_norm(hidden_states)))

    def step(
        self,
        hidden_states: torch.Tensor,
        fused_qkv: tuple[torch.Tensor, torch.Tensor],
        cache_keys: torch.Tensor,
        cache_values: torch.Tensor,
        position: int,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """One decoding position (B, 1, d) through the modules (the straightforward path, also used in
        training mode): writes its key/value into the cache at `position` and attends to positions
        `0..position` (no mask needed: later positions are not there yet)."""
        attn = self.self_attn
        b = hidden_states.shape[0]
        qkv = F.linear(self.self_attn_layer_norm(hidden_states), *fused_qkv)
        q, k, v = qkv.view(b, 3, attn.num_heads, attn.head_dim).unbind(1)
        cache_keys[:, :, position] = k
        cache_values[:, :, position] = v
        out = F.scaled_dot_product_attention(
            q[:, :, None], cache_keys[:, :, : position + 1], cache_values[:, :, : position + 1]
        )
        hidden_states = hidden_states + self.drop_path(attn.out_proj(out.reshape(b, 1, -1)))
        return self._cross_attention_and_mlp(hidden_states, memory_kv)

    def step_constants(
        self, memory_kv: tuple[torch.Tensor, torch.Tensor], matrix_vector: bool = False
    ) -> tuple:
        """Everything `fast_decoder_layer_step` needs, prepared once per decoding call (inference: no dropout).

        The softmax scale is folded into the query weights, q/k/v are one matrix, and the memory keys
        (transposed) and values are laid out as (B * heads, ...) so each step runs batched matmuls on views.
        Projection weights are transposed to (in, out) for `addmm`, or kept (out, in) for `matrix_vector`.
        """
        sa, ca = self.self_attn, self.cross_attn
        scale = sa.head_dim**-0.5
        d = sa.q_proj.weight.shape[0]
        qkv_weight = torch.cat([sa.q_proj.weight * scale, sa.k_proj.weight, sa.v_proj.weight])
        qkv_bias = torch.cat([sa.q_proj.bias * scale, sa.k_proj.bias, sa.v_proj.bias])
        keys, values = memory_kv
        b, heads, length, head_dim = keys.shape
        memory_keys_t = keys.transpose(-1, -2).reshape(b * heads, head_dim, length)
        memory_values = values.reshape(b * heads, length, head_dim)
        mlp = self.mlp

        def projection(weight: torch.Tensor) -> torch.Tensor:  # (in, out) for `addmm`, else (out, in)
            return weight if matrix_vector else weight.t().contiguous()

        norms = [
            (n.weight, n.bias)
            for n in (self.self_attn_layer_norm, self.cross_attn_layer_norm, self.final_layer_norm)
        ]
        return (
            (d,), self.self_attn_layer_norm.eps, *norms[0], qkv_bias, projection(qkv_weight),
            sa.out_proj.bias, projection(sa.out_proj.weight),
            *norms[1], ca.q_proj.bias * scale, projection(ca.q_proj.weight * scale), memory_keys_t, memory_values,
            ca.out_proj.bias, projection(ca.out_proj.weight),
            *norms[2], mlp.fc1.bias, projection(mlp.fc1.weight), mlp.fc2.bias, projection(mlp.fc2.weight),
        )  # fmt: skip


def _matrix_vector_linear(bias: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`inputs @ weight.T + bias` for (out, in) `weight` as a multiply-and-sum, for the compiled batch-1 step.

    Why not `addmm`: with one input row it is a matrix-vector product, bound by reading the weight; the BLAS
    that torch uses on x86 (MKL) runs it in a generic, non-AVX2 kernel on AMD CPUs, at about half the memory
    bandwidth (measured: README, "Performance"), while inductor compiles this multiply-and-sum into a
    vectorised pass over the weight rows. `as_strided` (a no-op view) makes inductor store `inputs` first:
    otherwise it recomputes an elementwise producer such as GELU once per weight row.
    """
    inputs = torch.as_strided(inputs, inputs.shape, inputs.stride())
    return (inputs.unsqueeze(1) * weight).sum(-1) + bias


def attend_decoding_cache(
    query: torch.Tensor, new_keys_values: torch.Tensor, cache: torch.Tensor, position: int
) -> torch.Tensor:
    """Self-attention of one decoding position over the cache, the part of a step that grows with the sequence.

    Writes `new_keys_values` (2, B, heads, head_dim) into `cache` (2, B, heads, max_length, head_dim) at
    `position` and attends the query (B * heads, 1, head_dim; softmax scale folded in) to positions
    `0..position` with two batched matmuls over views of the cache; returns (B * heads, 1, head_dim).
    """
    cache[:, :, :, position] = new_keys_values
    heads_total, _, head_dim = query.shape
    keys = cache[0].view(heads_total, -1, head_dim)[:, : position + 1]
    values = cache[1].view(heads_total, -1, head_dim)[:, : position + 1]
    return torch.bmm(torch.bmm(query, keys.transpose(1, 2)).softmax(-1), values)


@torch.library.custom_op("ait_hf::attend_decoding_cache", mutates_args=("cache",))
def _attend_decoding_cache_op(
    query: torch.Tensor, new_keys_values: torch.Tensor, cache: torch.Tensor, position: torch.Tensor
) -> torch.Tensor:
    """`attend_decoding_cache` as an operator opaque to `torch.compile`, `position` a 0-d tensor.

    Why: a compiled graph has one shape for every step, so inside it attention would read the whole
    preallocated cache at each step; behind this operator it reads only the positions written so far (for a
    2100-step instance sequence, half the cache on average; the cache reads then dominate a step). Reading the
    position's value costs a host sync on an accelerator, so the compiled step uses this operator on CPU only.
    """
    return attend_decoding_cache(query, new_keys_values, cache, int(position))


@_attend_decoding_cache_op.register_fake
def _(query: torch.Tensor, new_keys_values: torch.Tensor, cache: torch.Tensor, position: torch.Tensor):
    return torch.empty_like(query)


def fast_decoder_layer_step(
    hidden: torch.Tensor,
    constants: tuple,
    cache: torch.Tensor,
    position: int | torch.Tensor,
    num_heads: int,
    attention_bias: torch.Tensor | None = None,
    matrix_vector: bool = False,
) -> torch.Tensor:
    """One decoding position (B, d) of one decoder layer in eval mode, with as few tensor ops as possible.

    Each step is dominated by per-op overhead and by reading the weights once (matrix-vector products), so
    this projects with `addmm` on pre-transposed weights and writes and attends to the cache with
    `attend_decoding_cache`. Equal to `AiTDecoderLayer.step` up to float rounding (tested).

    Forms for `torch.compile` (one graph for every step), `position` a 0-d long tensor: without
    `attention_bias`, the self-attention runs as the opaque `ait_hf::attend_decoding_cache` operator over
    the positions written so far (the compiled CPU step of a long sequence); with `attention_bias` (max_length,), 0 up to `position`
    and -inf after it, the static-shape form attends to the whole (zero-initialised) cache with later positions
    masked out (no host sync; the compiled step on accelerators). `matrix_vector`: the constants hold (out, in)
    weights for `_matrix_vector_linear` (the compiled batch-1 step) instead of (in, out) ones for `addmm`.
    """
    (shape, eps, n1_w, n1_b, qkv_b, qkv_wt, o1_b, o1_wt, n2_w, n2_b, q2_b, q2_wt, mem_kt, mem_v, o2_b, o2_wt,
     n3_w, n3_b, fc1_b, fc1_wt, fc2_b, fc2_wt) = constants  # fmt: skip
    b, d = hidden.shape
    heads_total = b * num_heads
    head_dim = d // num_heads
    # self-attention over the cache
    project = _matrix_vector_linear if matrix_vector else torch.addmm
    qkv = project(qkv_b, F.layer_norm(hidden, shape, n1_w, n1_b, eps), qkv_wt)
    new_keys_values = qkv[:, d:].view(b, 2, num_heads, head_dim).transpose(0, 1)
    query = qkv[:, :d].reshape(heads_total, 1, head_dim)
    if attention_bias is not None:
        # a 0-d tensor index would need its value on the host, a 1-element one does not
        cache[:, :, :, position.view(1)] = new_keys_values.unsqueeze(3)
        keys = cache[0].view(heads_total, -1, head_dim)
        scores = torch.bmm(query, keys.transpose(1, 2)) + attention_bias
        context = torch.bmm(scores.softmax(-1), cache[1].view(heads_total, -1, head_dim))
    elif isinstance(position, torch.Tensor):
        context = _attend_decoding_cache_op(query, new_keys_values, cache, position)
    else:
        context = attend_decoding_cache(query, new_keys_values, cache, position)
    hidden = project(o1_b, context.view(b, d), o1_wt).add_(hidden)
    # cross-attention over the memory
    query = project(q2_b, F.layer_norm(hidden, shape, n2_w, n2_b, eps), q2_wt).view(heads_total, 1, head_dim)
    context = torch.bmm(torch.bmm(query, mem_kt).softmax(-1), mem_v)
    hidden = project(o2_b, context.view(b, d), o2_wt).add_(hidden)
    # MLP
    inner = F.gelu(project(fc1_b, F.layer_norm(hidden, shape, n3_w, n3_b, eps), fc1_wt))
    return project(fc2_b, inner, fc2_wt).add_(hidden)


def sine_position_encoding(rows: int, cols: int, dim: int, normalize: bool = False) -> torch.Tensor:
    """2-D sine/cosine position code (rows, cols, dim): first half encodes y, second half x."""
    half = dim // 2
    y = torch.arange(rows, dtype=torch.float32)
    x = torch.arange(cols, dtype=torch.float32)
    if normalize:
        y = y / (rows - 1) * 2 * math.pi
        x = x / (cols - 1) * 2 * math.pi
    dim_t = 10000.0 ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)
    pos_x, pos_y = x[:, None] / dim_t, y[:, None] / dim_t
    pos_x = (
        torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=-1)
        .view(1, cols, -1)
        .expand(rows, cols, -1)
    )
    pos_y = (
        torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=-1)
        .view(rows, 1, -1)
        .expand(rows, cols, -1)
    )
    return torch.cat((pos_y, pos_x), dim=-1)


class AiTEncoder(nn.Module):
    """Projects backbone features, runs the transformer encoder and builds the decoder memory."""

    def __init__(self, config: AiTConfig) -> None:
        super().__init__()
        d, eps = config.d_model, config.layer_norm_eps
        rows, cols = config.encoder_grid
        self.dropout = nn.Dropout(config.dropout)
        self.input_proj = nn.Linear(config.backbone_out_channels, d)
        self.input_layer_norm = nn.LayerNorm(d, eps=eps)
        rates = _drop_path_rates(config, config.encoder_layers)
        self.layers = nn.ModuleList(AiTEncoderLayer(config, r) for r in rates)
        self.output_layer_norm = nn.LayerNorm(d, eps=eps)
        self.memory_proj = nn.Linear(d, d)
        self.memory_proj_layer_norm = nn.LayerNorm(d, eps=eps)
        self.memory_mlp_layer_norm = nn.LayerNorm(d, eps=eps)
        self.memory_mlp = Mlp(d, config.ffn_dim, drop=(config.dropout, 0.0))
        self.memory_mlp_drop_path = DropPath(config.drop_path) if config.drop_path > 0 else nn.Identity()
        if config.position_encoding == "learned":
            self.position_embeddings = nn.Parameter(torch.zeros(rows, cols, d))
        elif config.position_encoding in ("sine", "sine_norm"):
            code = sine_position_encoding(rows, cols, d, normalize=config.position_encoding == "sine_norm")
            self.register_buffer("position_embeddings", code, persistent=False)
        else:
            raise ValueError(
                f"AiTConfig.position_encoding must be 'sine', 'sine_norm' or 'learned', got {config.position_encoding!r}"
            )

    def forward(self, features: torch.Tensor) -> AiTModelOutput:
        rows, cols = self.position_embeddings.shape[:2]
        h, w = features.shape[-2:]
        if h > rows or w > cols:
            raise ValueError(
                f"backbone feature grid {h}x{w} exceeds the encoder position grid {rows}x{cols} "
                f"(AiTConfig.encoder_grid); use a smaller input"
            )
        pos = self.position_embeddings[:h, :w].reshape(h * w, -1)
        src = self.input_layer_norm(self.input_proj(self.dropout(features.flatten(2).transpose(1, 2))))
        hidden = src + pos
        for layer in self.layers:
            hidden = layer(hidden)
        memory = self.memory_proj_layer_norm(self.memory_proj(self.output_layer_norm(hidden))) + pos
        memory = memory + self.memory_mlp_drop_path(self.memory_mlp(self.memory_mlp_layer_norm(memory)))
        return AiTModelOutput(
            last_hidden_state=memory, backbone_features=features, encoder_output=hidden, encoder_inputs=src
        )


def _drop_path_rates(config: AiTConfig, n: int) -> list[float]:
    if config.drop_path_linear:
        return torch.linspace(0, config.drop_path, n, device="cpu").tolist()
    return [config.drop_path] * n


class AiTDecoder(nn.Module):
    """Transformer decoder with the tied vocabulary classifier `x @ token_embeddings.T + output_bias`."""

    def __init__(self, config: AiTConfig) -> None:
        super().__init__()
        d = config.d_model
        self.num_heads = config.num_attention_heads
        self.token_embeddings = nn.Parameter(torch.empty(config.vocab_size, d))
        self.output_bias = nn.Parameter(torch.empty(config.vocab_size))
        self.task_embeddings = nn.Parameter(torch.empty(config.num_task_embeddings, 1, d))
        self.position_embeddings = nn.Parameter(
            torch.empty(config.num_task_embeddings, config.max_decoder_length, d)
        )
        if config.depth_parallel:
            self.parallel_query_embedding = nn.Parameter(torch.empty(1, 1, d))
        rates = _drop_path_rates(config, config.decoder_layers)
        self.layers = nn.ModuleList(AiTDecoderLayer(config, r) for r in rates)
        self.final_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def logits(self, hidden: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Vocabulary logits of `hidden`, optionally only for the id range [start, end)."""
        end = self.token_embeddings.shape[0] if end is None else end
        return hidden @ self.token_embeddings[start:end].t() + self.output_bias[start:end]

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.memory_kv(memory) for layer in self.layers]

    def forward(self, inputs_embeds: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Causal teacher-forced pass; returns hidden states after the final LayerNorm."""
        hidden = inputs_embeds
        for layer, kv in zip(self.layers, self.memory_kv(memory)):
            hidden = layer(hidden, kv)
        return self.final_layer_norm(hidden)


def decoder_layers_step(
    hidden: torch.Tensor,
    position: int | torch.Tensor,
    positions: torch.Tensor | None,
    constants: list[tuple],
    caches: list[torch.Tensor],
    num_heads: int,
    matrix_vector: bool = False,
    final_norm: tuple | None = None,
) -> torch.Tensor:
    """One decoding position (B, d) through every layer (`fast_decoder_layer_step`), then `final_norm`
    (`F.layer_norm` arguments after the input) if given.

    With a 0-d tensor `position` it runs a form that `compiled_decoder_layers_step` compiles into one graph for
    every step: self-attention through the `ait_hf::attend_decoding_cache` operator, or with `positions`
    (arange(max_length)) the static-shape form that attends to the whole cache with a mask.
    """
    attention_bias = None
    if positions is not None:
        attention_bias = torch.zeros(positions.shape, dtype=hidden.dtype, device=hidden.device)
        attention_bias = attention_bias.masked_fill(positions > position, float("-inf"))
    for layer_constants, cache in zip(constants, caches):
        hidden = fast_decoder_layer_step(
            hidden, layer_constants, cache, position, num_heads, attention_bias, matrix_vector
        )
    return hidden if final_norm is None else F.layer_norm(hidden, *final_norm)


_COMPILED_STEP = None


# `torch.compiler.set_stance` and its `skip_guard_eval_unsafe` are recent (absent from torch 2.4-2.5)
_SET_STANCE_PARAMETERS = (
    inspect.signature(torch.compiler.set_stance).parameters if hasattr(torch.compiler, "set_stance") else {}
)


def _skip_nondifferentiating_guards() -> contextlib.AbstractContextManager:
    """Run only the dynamo guards that tell cached graphs apart (`skip_guard_eval_unsafe`; where torch lacks
    it, all guards run). Safe for the steps of one decoding state after its first: see `AiTDecodingState.step`."""
    if "skip_guard_eval_unsafe" not in _SET_STANCE_PARAMETERS:
        return contextlib.nullcontext()
    return torch.compiler.set_stance(skip_guard_eval_unsafe=True)


# Compiled CPU decoding attends in the static form (the whole cache, masked) up to this many positions, and
# through `ait_hf::attend_decoding_cache` (only the positions written so far) beyond. Measured on the 2-core
# CPU (README, "Performance"): the operator's six calls cost ~0.3-0.5 ms a step more than the static form at 225
# positions (depth) and save ~0.8 ms a step over 2100 (instance segmentation); the two cross near 400-800.
STATIC_ATTENTION_MAX_LENGTH = 512


def compiled_decoder_layers_step():
    """`decoder_layers_step` through `torch.compile` (static shapes), created on first use.

    Why compile: a decoding step is ~40 matrix-vector products plus ~150 small ops; at batch 1 inductor
    turns the step, projections included (`_matrix_vector_linear`), into vectorised C++ loops without Python
    dispatch: one parallel region per step, or seven around the six self-attention operators of a long sequence
    (`STATIC_ATTENTION_MAX_LENGTH`; measured on the 2-core CPU: README, "Performance"). Not
    `fullgraph`: should a model exceed dynamo's recompile limit (one graph per batch size and sequence length),
    it falls back to the eager step instead of failing.
    """
    global _COMPILED_STEP
    if _COMPILED_STEP is None:
        _COMPILED_STEP = torch.compile(decoder_layers_step, dynamic=False)
    return _COMPILED_STEP


class AiTDecodingState:
    """Step-by-step decoding state: preallocated self-attention key/value cache, memory keys/values.

    The memory's cross-attention keys/values and the per-layer constants (fused q/k/v weights, transposed
    weight views, scaled queries) are prepared once per call; each step then costs one fused projection,
    two single-query attentions and the MLP per layer (`fast_decoder_layer_step`). In training mode (dropout,
    drop path active) the steps go through the modules (`AiTDecoderLayer.step`) instead.
    """

    def __init__(
        self,
        decoder: AiTDecoder,
        memory: torch.Tensor,
        max_length: int,
        fast: bool | None = None,
        compiled: bool = False,
    ) -> None:
        """`fast`: use `fast_decoder_layer_step` (default: when the decoder is in eval mode). `compiled`: run
        the fast step through `torch.compile` (one graph per batch size and `max_length`, compiled on first
        use; see `compiled_decoder_layers_step`): for long sequences on CPU with the self-attention operator
        over the positions written so far, otherwise in the static-shape form (no host sync)."""
        if (fast or compiled) and decoder.training:
            raise ValueError(
                "the fast decoding step skips dropout and drop path: put the decoder in eval mode"
            )
        self.decoder = decoder
        self.memory_kv = decoder.memory_kv(memory)
        self.batch, heads = memory.shape[0], decoder.num_heads
        self.num_heads = heads
        self.fast = compiled or (not decoder.training if fast is None else fast)
        self.compiled = compiled
        # compiled batch-1 steps project with `_matrix_vector_linear`; larger batches are matrix products (`addmm`)
        self.matrix_vector = compiled and self.batch == 1
        head_dim = memory.shape[-1] // heads
        static = compiled and (memory.device.type != "cpu" or max_length <= STATIC_ATTENTION_MAX_LENGTH)
        # one key/value buffer per layer, (2, B, heads, max_length, head_dim): separate tensors, not views of one,
        # so the compiled step writes its new position in place (a mutated view made inductor copy the whole
        # buffer every step); the static form attends to every position (later ones with weight 0), so its cache
        # must hold finite values
        shape = (2, self.batch, heads, max_length, head_dim)
        self.cache = [memory.new_zeros(shape) if static else memory.new_empty(shape) for _ in decoder.layers]
        if compiled:
            # 0-d position tensors (one graph for every step); the static form also takes `positions`
            self.positions = torch.arange(max_length, device=memory.device)
            self.attention_positions = self.positions if static else None
        if self.fast:
            self.constants = [
                layer.step_constants(kv, self.matrix_vector)
                for layer, kv in zip(decoder.layers, self.memory_kv)
            ]
        else:
            self.fused_qkv = [layer.self_attn.fused_qkv() for layer in decoder.layers]
        norm = decoder.final_layer_norm
        self.final_norm = (norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        self.max_length = max_length
        self.length = 0

    def step(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Run one position (B, d) or (B, 1, d); returns its hidden state after the final LayerNorm (B, d)."""
        t = self.length
        if t >= self.max_length:
            raise ValueError(f"decoding state is full: it was allocated for {self.max_length} positions")
        if self.compiled:
            # after the first step (full guards: it picks or compiles the graph) every step passes the same
            # tensors but the input and the position, which have the first step's shapes
            with _skip_nondifferentiating_guards() if t > 0 else contextlib.nullcontext():
                hidden = compiled_decoder_layers_step()(  # contiguous: the first input is often an expanded view
                    inputs_embeds.reshape(self.batch, -1).contiguous(), self.positions[t], self.attention_positions,
                    self.constants, self.cache, self.num_heads, self.matrix_vector, self.final_norm,
                )  # fmt: skip
        elif self.fast:
            hidden = decoder_layers_step(
                inputs_embeds.reshape(self.batch, -1), t, None, self.constants, self.cache, self.num_heads,
                final_norm=self.final_norm,
            )  # fmt: skip
        else:
            hidden = inputs_embeds.reshape(self.batch, 1, -1)
            for i, layer in enumerate(self.decoder.layers):
                keys, values = self.cache[i]
                hidden = layer.step(hidden, self.fused_qkv[i], keys, values, t, self.memory_kv[i])
            hidden = F.layer_norm(hidden[:, 0], *self.final_norm)
        self.length += 1
        return hidden


def sample_tokens(
    logits: torch.Tensor, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Greedy (`top_p == 0`) or nucleus sampling over the last dim, vectorised over the batch.

    The nucleus keeps the smallest set of top tokens whose probability mass exceeds `top_p` (always at
    least the arg-max), as the original does, and draws from it renormalised. The draw is by inverse CDF
    (one uniform number per row searched in the nucleus' cumulative mass) rather than `torch.multinomial`,
    which draws one exponential number per vocabulary entry; the distribution is the same.
    """
    if top_p <= 0:
        return logits.argmax(dim=-1)
    sorted_logits, sorted_idx = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # the nucleus is a prefix: position j is kept when the mass before it is <= top_p (j = 0 always)
    threshold = cumulative.new_full((*cumulative.shape[:-1], 1), top_p)
    last_kept = torch.searchsorted(cumulative, threshold, right=True).clamp_(max=cumulative.shape[-1] - 1)
    mass = cumulative.gather(-1, last_kept)
    uniform = torch.rand(mass.shape, generator=generator, dtype=mass.dtype, device=mass.device)
    choice = torch.searchsorted(cumulative, uniform * mass, right=True)
    return sorted_idx.gather(-1, torch.minimum(choice, last_kept)).squeeze(-1)


@contextlib.contextmanager
def intra_op_threads(num_threads: int | None) -> Iterator[None]:
    """Run the enclosed code with `torch.set_num_threads(num_threads)` (None: leave it), then restore it.

    A decoding step is a few hundred tiny ops on (B, 256) tensors; with several threads each op pays a
    thread hand-off, which costs more than the op itself and, on a busy machine, waits for a descheduled
    thread (measured on 2 cores under load: 13 ms per depth step with 2 threads, 3 ms with 1).
    """
    previous = torch.get_num_threads()
    if num_threads is None or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ============================================================================ pretrained base
class AiTPreTrainedModel(PreTrainedModel):
    config_class = AiTConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    _no_split_modules = ["AiTEncoderLayer", "AiTDecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            module.reset_parameters()  # unit weight, zero bias; the backbone's residual post-norms: `post_norm_init`
        elif isinstance(module, AiTDecoder):
            for p in (
                module.token_embeddings,
                module.output_bias,
                module.task_embeddings,
                module.position_embeddings,
            ):
                trunc_normal_(p, std=std)
            if hasattr(module, "parallel_query_embedding"):
                trunc_normal_(module.parallel_query_embedding, std=std)
        elif isinstance(module, AiTEncoder):
            if isinstance(module.position_embeddings, nn.Parameter):
                trunc_normal_(module.position_embeddings, std=std)
            else:  # non-persistent buffer: recomputed, since loading may have left it uninitialised
                rows, cols, dim = module.position_embeddings.shape
                normalize = self.config.position_encoding == "sine_norm"
                module.position_embeddings.copy_(sine_position_encoding(rows, cols, dim, normalize))
        elif isinstance(module, AiTSwinV2Stage):  # derived window buffers, likewise
            module.relative_position_index.copy_(relative_position_index(module.window_size).view(-1))
            module.relative_coords_table.copy_(
                relative_coords_table(module.window_size, module.pretrained_window_size)
            )


class AiTModel(AiTPreTrainedModel):
    """SwinV2 backbone + transformer encoder: images to the memory the decoder attends to."""

    def __init__(self, config: AiTConfig) -> None:
        super().__init__(config)
        self.backbone = AiTSwinV2Backbone(**config.backbone_config)
        self.encoder = AiTEncoder(config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None) -> AiTModelOutput | tuple:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.backbone_config["num_channels"]:
            raise ValueError(
                f"pixel_values must have shape (B, {self.config.backbone_config['num_channels']}, H, W), "
                f"got {tuple(pixel_values.shape)}"
            )
        pad = self.config.pad_to
        if pad:
            h, w = pixel_values.shape[-2:]
            if h > pad or w > pad:
                raise ValueError(
                    f"pixel_values of size {h}x{w} exceed this model's padded input size {pad}x{pad}"
                )
            pixel_values = F.pad(pixel_values, (0, pad - w, 0, pad - h))
        features = self.backbone(pixel_values).feature_maps[-1]
        output = self.encoder(features)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()


# ============================================================================ task codecs
def silog_loss(pred: torch.Tensor, target: torch.Tensor, variance_focus: float = 0.5) -> torch.Tensor:
    """Scale-invariant log loss over pixels with target > 0 (predictions clipped at 1e-3)."""
    valid = target > 0
    diff = torch.log(target[valid]) - torch.log(pred.clip(min=1e-3)[valid])
    return torch.sqrt(diff.pow(2).mean() - variance_focus * diff.mean().pow(2))


def dice_loss(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - smoothed Dice coefficient per mask, averaged; probabilities are clipped to [0, 1]."""
    probs = probs.clip(0.0, 1.0).flatten(1)
    targets = targets.flatten(1)
    return (1 - (2 * (probs * targets).sum(-1) + 1) / (probs.sum(-1) + targets.sum(-1) + 1)).mean()


def crop_and_resize_masks(masks: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Box-local binary masks: RoIAlign (aligned, adaptive sampling) of each mask in its box, >= 0.5."""
    from torchvision.ops import roi_align

    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    rois = torch.cat(
        [torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None], boxes], dim=1
    )
    crops = roi_align(masks[:, None].to(boxes.dtype), rois, (size, size), 1.0, 0, True).squeeze(1)
    return (crops >= 0.5).to(boxes.dtype)


class ObjectSequenceCodec:
    """Builds Pix2Seq-style training sequences for detection / instance segmentation and decodes outputs.

    Each object is `[x1, y1, x2, y2, class, (mask codes...)]`; boxes are quantised with
    `round(coord / coord_norm_value * num_bins)`. With sequence augmentation every image gets
    `num_queries` objects: the real ones (random order), then noise objects (random or shifted boxes, and
    jittered duplicates) labelled with the noise token; class inputs are corrupted at random.
    """

    def __init__(self, config: AiTConfig, task: str, mask_tokenizer: AiTVQVAE | None) -> None:
        self.config = config
        self.vocab = config.vocabulary
        self.task = task
        self.tokenizer = mask_tokenizer if task == "instance_segmentation" else None
        self.mask_tokens = config.mask_tokens_per_object if self.tokenizer is not None else 0
        self.object_length = 5 + self.mask_tokens

    def quantize(self, boxes: torch.Tensor) -> torch.Tensor:
        bins = self.vocab.num_bins
        return (boxes / self.config.coord_norm_value * bins).round().long().clamp(0, bins)

    def dequantize(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.float() * self.config.coord_norm_value / self.vocab.num_bins

    def mask_crops(self, masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Box-local binary masks at the mask tokenizer's input size (n, s, s)."""
        return crop_and_resize_masks(masks, boxes, self.tokenizer.config.image_size)

    def build(
        self, targets: list[dict[str, torch.Tensor]], image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Input ids (B, L - 1), target ids (B, L) with -100 where ignored, and each image's GT mask crops."""
        plans, input_classes = [], []
        # each image's class corruption draws right after its objects (the order of the random stream)
        for target in targets:
            plans.append(self._plan_one(target, image_size))
            input_classes.append(self._corrupt_classes(plans[-1][0][:, 4]))
        # every object's mask crop of the batch goes through the tokenizer in one call: per image (and per noise
        # kind) calls made the sequence building cost a third of a small solver's training step
        codes_per_image: list[torch.Tensor | None] = [None] * len(plans)
        if self.tokenizer is not None:
            all_crops = torch.cat([crops for _, crops, _ in plans])
            codes = (
                self.tokenizer.encode(all_crops)
                if all_crops.shape[0]
                else torch.zeros((0, self.mask_tokens), dtype=torch.long, device=all_crops.device)
            )
            codes_per_image = list(codes.split([crops.shape[0] for _, crops, _ in plans]))
        inputs, labels, crops_list = [], [], []
        for (objects, crops, n_real), classes, codes in zip(plans, input_classes, codes_per_image):
            if codes is not None:
                objects = torch.cat([objects, codes + self.vocab.mask_offset], dim=1)
            label = objects.clone()
            label[n_real:, :4] = -100
            label[n_real:, 5:] = -100
            objects[:, 4] = classes
            inputs.append(objects.flatten()[:-1])
            labels.append(label.flatten())
            crops_list.append(None if crops is None else crops[:n_real])
        return _pad_stack(inputs, 0), _pad_stack(labels, -100), crops_list

    def _plan_one(
        self, target: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """One image's objects in sequence order: box and class tokens (N, 5), the mask crops their mask codes
        are encoded from (N, s, s; real objects first) or None, and the number of real objects."""
        boxes = target["boxes"].float()
        classes = target["class_labels"].long()
        device = boxes.device
        h, w = target.get("size", image_size)
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=device)
        perm = torch.randperm(len(classes), device=device)
        boxes, classes = boxes[perm], classes[perm]
        masks = target["masks"][perm] if self.tokenizer is not None else None
        real = torch.cat([self.quantize(boxes), (classes + self.vocab.class_offset)[:, None]], dim=1)
        crops = self.mask_crops(masks, boxes) if self.tokenizer is not None else None
        if not self.config.sequence_augmentation:
            return real, crops, len(classes)
        noise, noise_crops = self._noise_objects(boxes, masks, scale)
        if crops is not None:
            crops = torch.cat([crops, noise_crops])
        return torch.cat([real, noise], dim=0), crops, len(classes)

    def _noise_objects(
        self, boxes: torch.Tensor, masks: torch.Tensor | None, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Noise objects filling the sequence to `num_queries`: random/shifted boxes (empty masks) and jittered
        duplicates (the duplicated object's mask in the jittered box). Returns their box and noise-label tokens
        (num_noise, 5) and mask crops (num_noise, s, s), or None without a mask tokenizer."""
        n = boxes.shape[0]
        num_noise = self.config.num_queries - n
        device = boxes.device
        num_dup = 0 if n == 0 else random.randint(0, num_noise)
        num_bad = num_noise - num_dup
        repeats = 1 if n == 0 else num_noise // n + 1
        tiled = boxes.repeat(repeats, 1)
        tiled_idx = torch.arange(n, device=device).repeat(repeats)
        shifted = _shift_boxes(tiled[torch.randperm(len(tiled))[:num_bad]], scale)
        candidates = torch.cat([_random_boxes(num_bad, scale, device), shifted], dim=0)
        bad = candidates[torch.randperm(len(candidates))[:num_bad]]
        dup_pick = torch.randperm(len(tiled), device=device)[:num_dup]
        dup = _jitter_boxes(tiled[dup_pick]).max(boxes.new_zeros(4)).min(scale)
        order = torch.randperm(num_noise)
        noise_boxes = torch.cat([bad, dup], dim=0)[order].max(boxes.new_zeros(4)).min(scale)
        tokens = torch.cat(
            [self.quantize(noise_boxes), torch.full((num_noise, 1), self.vocab.noise_label, device=device)],
            dim=1,
        )
        if self.tokenizer is None:
            return tokens, None
        size = self.tokenizer.config.image_size
        empty = boxes.new_zeros((num_bad, size, size))
        return tokens, torch.cat([empty, self.mask_crops(masks[tiled_idx[dup_pick]], dup)])[order]

    def _corrupt_classes(self, classes: torch.Tensor) -> torch.Tensor:
        """Decoder-input class tokens (N,): `class_label_corruption` replaces them with random classes
        ('rand_cls') or, each with probability 1/2, a random class or the noise token ('rand_n_fake_cls')."""
        mode = self.config.class_label_corruption
        if mode == "none":
            return classes
        n = classes.shape[0]
        random_labels = (
            torch.randint(self.vocab.num_classes, (1, n), device=classes.device)[0] + self.vocab.class_offset
        )
        if mode == "rand_cls":
            return random_labels
        noise = torch.full((n,), self.vocab.noise_label, device=classes.device)
        return torch.where(torch.rand((1, n), device=classes.device)[0] < 0.5, random_labels, noise)


def _pad_stack(seqs: list[torch.Tensor], value: int) -> torch.Tensor:
    length = max(s.shape[0] for s in seqs)
    return torch.stack([F.pad(s, (0, length - s.shape[0]), value=value) for s in seqs])


def _shift_boxes(boxes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Boxes of the same size centred at uniformly random points of the image."""
    centre = torch.rand((boxes.shape[0], 2), device=boxes.device) * scale[:2]
    half = (boxes[:, 2:] - boxes[:, :2]) / 2.0
    return torch.cat([centre - half, centre + half], dim=-1)


def _random_boxes(n: int, scale: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Random boxes: uniform centres, half sizes |truncated normal| / 4 (relative), scaled to the image."""
    centre = torch.rand((n, 2), device=device)
    half = torch.abs(trunc_normal_(torch.empty((n, 2), device=device)) / 4)
    return torch.cat([centre - half, centre + half], dim=-1) * scale


def _jitter_boxes(boxes: torch.Tensor, max_range: float = 0.1) -> torch.Tensor:
    if boxes.shape[0] == 0:
        return boxes
    wh = boxes[:, 2:] - boxes[:, :2]
    noise = torch.cat([wh, wh], dim=-1)
    rate = trunc_normal_(torch.empty((boxes.shape[0], 4), device=boxes.device)) / 2 * max_range
    return boxes + noise * rate


# ============================================================================ the task solver
class AiTForDepthAndInstanceSegmentation(AiTPreTrainedModel):
    """AiT with any subset of the depth, object detection and instance segmentation heads.

    Inference: `model(pixel_values, task=...)`. Training from raw targets: `depth_labels` (depth) or
    `object_targets` (list of dicts with `boxes` x1y1x2y2 in input pixels, `class_labels`, `masks` full-frame
    binary masks for instance segmentation, optional `size` (h, w) of the valid image area). Scoring a
    given sequence: `decoder_input_ids` (B, L) and `labels` (B, L + 1) absolute token ids (-100 ignored); the
    decoder's first position is the task token, so it predicts `labels[:, 0]`.
    """

    def __init__(self, config: AiTConfig) -> None:
        super().__init__(config)
        self.model = AiTModel(config)
        self.decoder = AiTDecoder(config)
        self.depth_tokenizer = AiTVQVAE(config.depth_tokenizer) if "depth" in config.tasks else None
        self.mask_tokenizer = (
            AiTVQVAE(config.mask_tokenizer) if "instance_segmentation" in config.tasks else None
        )
        for tokenizer in (self.depth_tokenizer, self.mask_tokenizer):
            if tokenizer is not None:
                tokenizer.requires_grad_(False)  # stage-1 tokenizers stay frozen in stage 2
        # intra-op threads of the eager decoding loops (None: torch's setting); see `intra_op_threads`
        self.decode_num_threads: int | None = 1
        # run batch-1 decoding steps through `torch.compile` (eval mode only; compiled on the first decode of each
        # sequence length): `compiled_decoder_layers_step`. Larger batches keep the eager step, which was faster
        # there (README, "Performance")
        self.decode_compiled: bool = False
        # intra-op threads of the compiled steps (None: torch's setting): unlike the eager step's hundreds of small
        # ops, a compiled step is one parallel region whose loops split the weight reads between the threads
        self.compiled_decode_num_threads: int | None = None
        self.post_init()

    def train(self, mode: bool = True) -> AiTForDepthAndInstanceSegmentation:
        super().train(mode)
        for tokenizer in (self.depth_tokenizer, self.mask_tokenizer):
            if tokenizer is not None:
                # frozen: eval behaviour (no EMA updates) and no gradients; re-applied here because loading
                # (`from_pretrained` ends with `eval()`) materialises fresh parameters
                tokenizer.eval().requires_grad_(False)
        return self

    # ------------------------------------------------------------------ helpers
    def _compile_decoding(self, memory: torch.Tensor) -> bool:
        """Whether a decode of this memory takes the compiled step (`decode_compiled`, eval mode, batch 1)."""
        return self.decode_compiled and not self.decoder.training and memory.shape[0] == 1

    def _check_task(self, task: str) -> None:
        if task not in SUPPORTED_TASKS:
            raise ValueError(f"unknown task {task!r}; supported tasks are {list(SUPPORTED_TASKS)}")
        if task not in self.config.tasks:
            raise ValueError(f"this model has no {task!r} head; it supports {self.config.tasks}")

    def _resolve_task(self, task: str | list[str] | tuple[str, ...] | None, training: bool = False) -> str:
        """The head to run. `task` may be one name or the per-image names of a batch (pipelines collate the
        image processor's `task` output into a list); `None` means `config.tasks[0]`. At inference, object
        detection is served by the instance segmentation head when there is no detection head (same boxes,
        labels and scores)."""
        if isinstance(task, (list, tuple)):
            names = set(task)
            if len(names) != 1:
                raise ValueError(
                    f"one forward pass runs one task, got the tasks {sorted(names)} in one batch"
                )
            task = names.pop()
        task = task or self.config.tasks[0]
        if (
            not training
            and task == "object_detection"
            and task not in self.config.tasks
            and "instance_segmentation" in self.config.tasks
        ):
            task = "instance_segmentation"
        self._check_task(task)
        return task

    def _embed_inputs(self, task: str, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing decoder inputs: [task token, embeddings of input_ids] + learned positions."""
        task_id = TASK_IDS[task]
        b, length = input_ids.shape
        if length + 1 > self.config.max_decoder_length:
            raise ValueError(
                f"sequence of {length + 1} positions exceeds max_decoder_length={self.config.max_decoder_length}"
            )
        embeds = self.decoder.token_embeddings[input_ids]
        if task == "depth" and self.config.depth_parallel:
            embeds = self.decoder.parallel_query_embedding.expand_as(embeds)
        embeds = torch.cat([self.decoder.task_embeddings[task_id].expand(b, -1, -1), embeds], dim=1)
        return embeds + self.decoder.position_embeddings[task_id, : length + 1]

    def _depth_size(self) -> int:
        return self.config.depth_tokenizer.image_size

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        task: str | None = None,
        depth_labels: torch.Tensor | None = None,
        object_targets: list[dict[str, torch.Tensor]] | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        mask_labels: torch.Tensor | None = None,
        test_time_augmentation: bool = False,
        output_hidden_states: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
    ) -> AiTOutput | tuple:
        """Run one task. See the class docstring for the training and scoring inputs.

        `mask_labels` (N, S, S): box-local GT masks of the real objects in sequence order, used by the
        instance mask auxiliary loss when scoring given sequences.
        """
        training = decoder_input_ids is not None or depth_labels is not None or object_targets is not None
        task = self._resolve_task(task, training)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if decoder_input_ids is not None:
            output = self._teacher_forced(
                pixel_values, task, decoder_input_ids, labels, depth_labels, mask_labels
            )
        elif depth_labels is not None or object_targets is not None:
            output = self._train_from_targets(pixel_values, task, depth_labels, object_targets)
        elif task == "depth":
            output = self._predict_depth(
                pixel_values, test_time_augmentation, output_hidden_states, generator
            )
        else:
            output = self._predict_objects(pixel_values, task, output_hidden_states, generator)
        return output if return_dict else output.to_tuple()

    # ------------------------------------------------------------------ training
    def _teacher_forced(
        self, pixel_values, task, input_ids, labels, depth_labels=None, mask_labels=None
    ) -> AiTOutput:
        memory = self.model(pixel_values).last_hidden_state
        hidden = self.decoder(self._embed_inputs(task, input_ids), memory)
        logits = self.decoder.logits(hidden)
        loss, terms = (None, None)
        if labels is not None:
            if labels.shape != (input_ids.shape[0], input_ids.shape[1] + 1):
                raise ValueError(
                    f"labels must have shape (B, L + 1) = {(input_ids.shape[0], input_ids.shape[1] + 1)} for "
                    f"decoder_input_ids of shape {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
            loss, terms = self.task_loss(task, logits, labels, depth_labels, mask_labels)
        return AiTOutput(
            loss=loss,
            loss_terms=terms,
            logits=logits,
            decoder_hidden_states=hidden,
            encoder_last_hidden_state=memory,
        )

    def _train_from_targets(self, pixel_values, task, depth_labels, object_targets) -> AiTOutput:
        if task == "depth":
            if depth_labels is None:
                raise ValueError("task 'depth' trains from depth_labels (B, H, W) in metres")
            gt = depth_labels if depth_labels.dim() == 4 else depth_labels.unsqueeze(1)
            labels = self.depth_tokenizer.encode(gt) + self.config.vocabulary.depth_offset
            return self._teacher_forced(pixel_values, task, labels[:, :-1], labels, depth_labels=gt)
        if object_targets is None or len(object_targets) != pixel_values.shape[0]:
            raise ValueError(
                f"task {task!r} trains from object_targets: one dict per image (boxes, class_labels[, masks])"
            )
        codec = ObjectSequenceCodec(self.config, task, self.mask_tokenizer)
        input_ids, labels, crops = codec.build(object_targets, tuple(pixel_values.shape[-2:]))
        mask_labels = torch.cat(crops) if task == "instance_segmentation" else None
        return self._teacher_forced(pixel_values, task, input_ids, labels, mask_labels=mask_labels)

    def _global_num_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Supervised tokens in the batch; in distributed training the mean over processes, as the original.

        With gradients averaged over processes this makes the loss the global sum over the global count.
        """
        count = (labels > -1).sum().float()
        if self.training and torch.distributed.is_available() and torch.distributed.is_initialized():
            count = count.clone()
            torch.distributed.all_reduce(count)
            count = count / torch.distributed.get_world_size()
        return count.clamp(min=1)

    def token_class_weights(self, task: str) -> torch.Tensor:
        """Per-token-id weights of the cross-entropy (instance segmentation weighs boxes, classes, masks)."""
        cfg, vocab = self.config, self.config.vocabulary
        weight = torch.ones(cfg.vocab_size)
        if task == "instance_segmentation":
            weight[slice(*vocab.box_range())] = cfg.box_loss_weight
            weight[slice(*vocab.class_range())] = cfg.class_loss_weight
            weight[vocab.noise_label] = cfg.class_loss_weight
            weight[slice(*vocab.mask_range())] = cfg.mask_loss_weight
        return weight

    def soft_box_l1(
        self, box_logits: torch.Tensor, box_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed |expected bin - target bin| / num_bins over supervised box tokens, and their count.

        The expectation is under the softmax over the box bins alone, so the loss pulls probability mass towards
        the target from wherever it is (the cross-entropy scores a near miss like a far one).
        """
        start, end = self.config.vocabulary.box_range()
        supervised = (box_labels >= start) & (box_labels < end)
        probs = box_logits[..., start:end].float().softmax(-1)
        bins = torch.arange(end - start, device=probs.device, dtype=probs.dtype)
        expected = (probs * bins).sum(-1)
        distance = (expected - (box_labels - start).to(probs.dtype)).abs() / (end - start - 1)
        return distance[supervised].sum(), supervised.sum()

    def task_loss(
        self, task, logits, labels, depth_labels=None, mask_labels=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The original per-task losses, normalised by the number of supervised tokens."""
        cfg, vocab = self.config, self.config.vocabulary
        num_targets = self._global_num_targets(labels)
        flat_logits = logits.reshape(-1, logits.shape[-1])
        if task == "depth":
            ce_sum = F.cross_entropy(flat_logits, labels.flatten(), reduction="sum", ignore_index=-100)
            aux = logits.new_zeros(())
            if cfg.depth_decoder_loss_weight > 0 and depth_labels is not None:
                start, end = vocab.depth_range()
                soft = self.depth_tokenizer.decode_soft(logits[..., start:end])
                gt = depth_labels.squeeze(1) if depth_labels.dim() == 4 else depth_labels
                aux = silog_loss(soft.float(), gt.float())
            loss = (
                ce_sum + aux * cfg.depth_decoder_loss_weight * (labels > -1).sum()
            ) * cfg.depth_loss_weight
            return loss / num_targets, {"ce": ce_sum / num_targets, "decoder_aux_ce": aux}

        length = cfg.object_length(task)
        weight = self.token_class_weights(task).to(logits)
        objects_logits = logits.view(logits.shape[0], -1, length, logits.shape[-1])
        objects_labels = labels.view(labels.shape[0], -1, length)

        def part_ce(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
            part_labels = objects_labels[:, :, sl].flatten()
            total = F.cross_entropy(
                objects_logits[:, :, sl].reshape(-1, logits.shape[-1]),
                part_labels,
                weight=weight,
                reduction="sum",
            )
            count = (part_labels > -1).sum()
            return total / count.clamp(min=1), count

        bbox_ce, _ = part_ce(slice(0, 4))
        cls_ce, _ = part_ce(slice(4, 5))
        ce_sum = F.cross_entropy(flat_logits, labels.flatten(), weight=weight, reduction="sum")
        terms = {"cls_ce": cls_ce, "bbox_ce": bbox_ce}
        if cfg.box_regression_loss_weight > 0:
            box_l1_sum, num_boxes = self.soft_box_l1(objects_logits[:, :, :4], objects_labels[:, :, :4])
            terms["bbox_l1"] = box_l1_sum / num_boxes.clamp(min=1)
            ce_sum = ce_sum + cfg.box_regression_loss_weight * box_l1_sum
        if task == "object_detection":
            return ce_sum * cfg.detection_loss_weight / num_targets, terms
        mask_ce, num_mask_targets = part_ce(slice(5, length))
        aux = logits.new_zeros(())
        if cfg.mask_decoder_loss_weight > 0 and mask_labels is not None and mask_labels.shape[0] > 0:
            start, end = vocab.mask_range()
            real = objects_labels[:, :, 5] > -1  # objects whose mask tokens are supervised
            mask_logits = objects_logits[:, :, 5:, start:end][real][: cfg.max_objects_decoder_loss]
            soft = self.mask_tokenizer.decode_soft(mask_logits)
            target = mask_labels[: soft.shape[0]].to(soft.dtype)
            aux = cfg.mask_dice_loss_weight * dice_loss(soft, target) + F.mse_loss(soft, target)
        loss = ce_sum + aux * cfg.mask_decoder_loss_weight * num_mask_targets * cfg.mask_loss_weight
        terms.update(mask_ce=mask_ce, decoder_aux_ce=aux)
        return loss * cfg.instance_loss_weight / num_targets, terms

    # ------------------------------------------------------------------ depth inference
    def _predict_depth(self, pixel_values, tta, output_hidden_states, generator) -> AiTOutput:
        size = self._depth_size()
        b, _, h, w = pixel_values.shape
        if h != size or w < size:
            raise ValueError(
                f"depth input must be {size} pixels high and at least {size} wide (B, 3, {size}, W >= {size}), "
                f"got {tuple(pixel_values.shape)}"
            )
        if w == size and not tta:
            return self._decode_depth(pixel_values, output_hidden_states, generator)
        num_windows = max(self.config.depth_tta_windows, math.ceil(w / size)) if w > size else 1
        step = (w - size) // (num_windows - 1) if num_windows > 1 else 0
        offsets = [i * step for i in range(num_windows)]
        crops = torch.cat([pixel_values[..., o : o + size] for o in offsets])
        flip = tta and self.config.depth_tta_flip
        if flip:
            crops = torch.cat([crops, crops.flip(-1)])
        out = self._decode_depth(crops, False, generator)
        depth = out.predicted_depth
        if flip:
            half = depth.shape[0] // 2
            depth = (depth[:half] + depth[half:].flip(-1)) / 2
        total = depth.new_zeros((b, h, w))
        count = depth.new_zeros((1, 1, w))
        for i, o in enumerate(offsets):
            total[..., o : o + size] += depth[i * b : (i + 1) * b]
            count[..., o : o + size] += 1
        # per-view logits and codes, batch first (B, views, ...): views are the windows (then their flips)
        return AiTOutput(
            predicted_depth=(total / count).clip(min=1e-3),
            logits=out.logits.unflatten(0, (-1, b)).transpose(0, 1),
            sequences=out.sequences.unflatten(0, (-1, b)).transpose(0, 1),
        )

    def _decode_depth(self, pixel_values, output_hidden_states, generator) -> AiTOutput:
        cfg, vocab = self.config, self.config.vocabulary
        memory = self.model(pixel_values).last_hidden_state
        n = cfg.depth_tokenizer.num_tokens
        start, end = vocab.depth_range()
        b = memory.shape[0]
        if cfg.depth_parallel:  # AiT-P: every query is the same learned embedding, so one causal pass
            dummy = torch.zeros((b, n - 1), dtype=torch.long, device=memory.device)
            hidden = self.decoder(self._embed_inputs("depth", dummy), memory)
            logits = self.decoder.logits(hidden, start, end)
            tokens = sample_tokens(logits, cfg.sampling_top_p, generator)
        else:
            hidden, logits, tokens = self._decode_depth_autoregressive(memory, n, start, end, generator)
        if cfg.depth_soft_decoding:
            depth = self.depth_tokenizer.decode_soft(logits)
        else:
            depth = self.depth_tokenizer.decode(tokens)
        return AiTOutput(
            predicted_depth=depth,
            logits=logits,
            sequences=tokens,
            decoder_hidden_states=hidden if output_hidden_states else None,
            encoder_last_hidden_state=memory if output_hidden_states else None,
        )

    def _decode_depth_autoregressive(self, memory, n, start, end, generator):
        """Depth codes one position at a time; returns hidden states (B, n, d), logits (B, n, codes), tokens."""
        cfg, decoder = self.config, self.decoder
        task_id = TASK_IDS["depth"]
        compiled = self._compile_decoding(memory)
        state = AiTDecodingState(decoder, memory, n, compiled=compiled)
        code_embeddings = decoder.token_embeddings[start:end]
        code_weight_t, code_bias = code_embeddings.t(), decoder.output_bias[start:end]
        positions = decoder.position_embeddings[task_id]
        inputs = (decoder.task_embeddings[task_id] + positions[0]).expand(memory.shape[0], -1)
        # greedy decoding with soft inputs needs no token inside the loop: one arg-max at the end
        tokens_in_loop = cfg.sampling_top_p > 0 or not cfg.soft_token_inputs
        hiddens, all_logits, all_tokens = [], [], []
        with intra_op_threads(self.compiled_decode_num_threads if compiled else self.decode_num_threads):
            for i in range(n):
                hidden = state.step(inputs)
                logits = torch.addmm(code_bias, hidden, code_weight_t)
                hiddens.append(hidden)
                all_logits.append(logits)
                if tokens_in_loop:
                    all_tokens.append(sample_tokens(logits, cfg.sampling_top_p, generator))
                if i + 1 == n:
                    break
                if cfg.soft_token_inputs:
                    inputs = torch.addmm(positions[i + 1], logits.softmax(-1), code_embeddings)
                else:
                    inputs = code_embeddings[all_tokens[-1]] + positions[i + 1]
        logits = torch.stack(all_logits, 1)
        tokens = torch.stack(all_tokens, 1) if tokens_in_loop else logits.argmax(-1)
        return torch.stack(hiddens, 1), logits, tokens

    # ------------------------------------------------------------------ object inference
    def _predict_objects(self, pixel_values, task, output_hidden_states, generator) -> AiTOutput:
        memory = self.model(pixel_values).last_hidden_state
        return self._decode_objects(memory, task, output_hidden_states, generator)

    def _decode_objects(self, memory, task, output_hidden_states, generator) -> AiTOutput:
        """Autoregressive object sequences `[box x4, class, mask codes...] x num_queries` from the memory."""
        cfg, vocab, decoder = self.config, self.config.vocabulary, self.decoder
        b = memory.shape[0]
        length = cfg.object_length(task)
        total = cfg.num_queries * length
        task_id = TASK_IDS[task]
        compiled = self._compile_decoding(memory)
        state = AiTDecodingState(decoder, memory, total, compiled=compiled)
        positions = decoder.position_embeddings[task_id]
        embeddings = decoder.token_embeddings
        soft_masks = cfg.soft_mask_decoding and task == "instance_segmentation"
        # the classifier rows of each slot kind, sliced once: boxes, classes followed by the noise label, masks
        box_range, (cls_start, cls_end), mask_range = (
            vocab.box_range(),
            vocab.class_range(),
            vocab.mask_range(),
        )
        class_rows = torch.cat([torch.arange(cls_start, cls_end), torch.tensor([vocab.noise_label])])
        class_rows = class_rows.to(embeddings.device)
        heads = {
            "box": (box_range[0], embeddings[slice(*box_range)].t(), decoder.output_bias[slice(*box_range)]),
            "class": (cls_start, embeddings[class_rows].t(), decoder.output_bias[class_rows]),
            "mask": (
                mask_range[0],
                embeddings[slice(*mask_range)].t(),
                decoder.output_bias[slice(*mask_range)],
            ),
        }
        mask_embeddings = embeddings[slice(*mask_range)]
        inputs = (decoder.task_embeddings[task_id] + positions[0]).expand(b, -1)
        hiddens, tokens, scores, mask_logits = [], [], [], []
        with intra_op_threads(self.compiled_decode_num_threads if compiled else self.decode_num_threads):
            for i in range(total):
                hidden = state.step(inputs)
                slot = i % length
                kind = "box" if slot < 4 else "class" if slot == 4 else "mask"
                start, weight_t, bias = heads[kind]
                logits = torch.addmm(bias, hidden, weight_t)
                if kind == "class":  # the class score is normalised together with the noise label
                    class_probs = logits.softmax(-1)
                    logits = logits[:, :-1]
                elif soft_masks and kind == "mask":
                    mask_logits.append(logits)
                token = sample_tokens(logits, cfg.sampling_top_p, generator)
                if kind == "class":
                    scores.append(class_probs.gather(1, token[:, None])[:, 0])
                hiddens.append(hidden)
                tokens.append(token)
                if i + 1 == total:
                    break
                if kind == "mask" and cfg.soft_token_inputs:
                    inputs = torch.addmm(positions[i + 1], logits.softmax(-1), mask_embeddings)
                else:
                    inputs = embeddings[token + start] + positions[i + 1]
        sequences = torch.stack(tokens, 1)
        objects = sequences.view(b, cfg.num_queries, length)
        codec = ObjectSequenceCodec(cfg, task, self.mask_tokenizer)
        output = AiTOutput(
            pred_boxes=codec.dequantize(objects[..., :4]),
            pred_scores=torch.stack(scores, 1),
            pred_labels=objects[..., 4],
            sequences=sequences,
            decoder_hidden_states=torch.stack(hiddens, 1) if output_hidden_states else None,
            encoder_last_hidden_state=memory if output_hidden_states else None,
        )
        if task == "instance_segmentation":
            tokenizer = self.mask_tokenizer
            if soft_masks:
                stacked = torch.stack(mask_logits, 1).view(b, cfg.num_queries, cfg.mask_tokens_per_object, -1)
                output.mask_logits = stacked
                masks = tokenizer.decode_soft(stacked.flatten(0, 1))
            else:
                masks = tokenizer.decode(objects[..., 5:].flatten(0, 1))
            output.pred_masks = masks.view(b, cfg.num_queries, *masks.shape[-2:])
        return output
