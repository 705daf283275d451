"""SwinV2 backbone of the AiT task solver, numerically equal to the original `SwinV2TransformerRPE2FC`.

The original backbone is a SwinV2 variant with a few details that decide the numbers:

* post-norm blocks (`x + norm(attn(x))`, `x + norm(mlp(x))`), LayerNorm eps 1e-6 everywhere;
* cosine attention with `q / (|q| + 5e-5)` (an additive epsilon, not `F.normalize`'s clamp) and a per-head
  `exp(clamp(logit_scale, max=log(100)))` temperature;
* a continuous position bias: an MLP on log-spaced relative coordinates normalised by the *pretrained*
  window size of the stage, squashed with `16 * sigmoid`;
* one window size and one shift flag per stage; the token grid is zero-padded (bottom/right) to a multiple
  of the window *before* the cyclic shift; the window is never clamped to the grid (a 30x30 grid with a
  30x30 window still shifts by 15); padded tokens are not masked, only the shift regions are, with an
  additive -100 (not -inf);
* a LayerNorm on each output stage, applied in float32.

timm's `SwinTransformerV2` (1.0.x) differs in three of these points (it normalises q/k with
`F.normalize`, pads *after* the cyclic shift, and clamps windows/shifts to small grids), so the blocks are
written here; timm's `Mlp`, `DropPath` and `trunc_normal_` are reused as they are numerically identical.

Two attention implementations share the parameters:

* `"eager"`: the original computation step by step (float32 attention matrix, bias and mask added).
* `"sdpa"`: `F.scaled_dot_product_attention`. The normalised queries carry the temperature, the position bias
  is the additive `attn_mask` (shared by all windows and images, so it broadcasts), and the shift mask is folded
  into four extra query/key channels: with per-token signs `s_h, s_w` (bottom/right shift region or not),
  `25 * (s_h s_h' + s_w s_w' + s_h s_w s_h' s_w') - 75` is 0 inside a region and -100 across regions, which is
  exactly the original additive mask without materialising a (windows, heads, N, N) tensor. The extra channels
  come first so that the in-region sums start from an exact 0.

This file imports only torch, timm and the standard library so it can ship with a Hub checkpoint.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn

# Constants of the original implementation.
COSINE_NORM_EPS = 5e-5  # q / (|q| + eps)
LOGIT_SCALE_MAX = math.log(1.0 / 0.01)  # temperature clamp: at most 100
POSITION_BIAS_SCALE = 16.0  # 16 * sigmoid(cpb_mlp(coords))
SHIFT_MASK_VALUE = -100.0  # additive penalty between tokens of different shift regions
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


# --------------------------------------------------------------------------------------------------------
# Fixed geometry (derived buffers of the original, recomputed here)
# --------------------------------------------------------------------------------------------------------


def relative_position_index(window_size: int) -> Tensor:
    """(N, N) int64 index of the relative offset of every token pair of a window into the (2W-1)^2 table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # 2, N
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N, N, 2
    return (relative[..., 0] + window_size - 1) * (2 * window_size - 1) + (relative[..., 1] + window_size - 1)


def relative_coords_table(window_size: int, pretrained_window_size: int) -> Tensor:
    """(1, 2W-1, 2W-1, 2) float32 log-spaced relative coordinates, normalised by the pretrained window.

    Offsets are divided by `pretrained_window_size - 1`, scaled to +-8 and mapped by
    `sign(x) * log2(|x| + 1) / log2(8)` (the original's `norm8_log_bylayer` table).
    """
    offsets = torch.arange(-(window_size - 1), window_size, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij")).permute(1, 2, 0).contiguous()
    table = table.unsqueeze(0) / (pretrained_window_size - 1)
    table = table * 8
    return torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / math.log2(8)


def _shift_region_ids(padded_height: int, padded_width: int, window_size: int, shift_size: int) -> Tensor:
    """Region id (0..8) of every token of the shifted, padded grid, partitioned into windows: (nW, N)."""

    def one_axis(length: int) -> Tensor:
        ids = torch.zeros(length, dtype=torch.long)
        ids[length - window_size :] = 1
        ids[length - shift_size :] = 2
        return ids

    grid = one_axis(padded_height)[:, None] * 3 + one_axis(padded_width)[None, :]
    return _window_partition(grid[None, :, :, None], window_size)[..., 0]


def shift_window_mask(
    padded_height: int,
    padded_width: int,
    window_size: int,
    shift_size: int,
    device: torch.device | None = None,
) -> Tensor:
    """(nW, N, N) float32 additive mask of the original: 0 within a shift region, -100 across regions."""
    ids = _shift_region_ids(padded_height, padded_width, window_size, shift_size).to(device)
    different = ids[:, :, None] != ids[:, None, :]
    return torch.zeros(different.shape, device=ids.device).masked_fill_(different, SHIFT_MASK_VALUE)


def shift_window_channels(
    padded_height: int, padded_width: int, window_size: int, shift_size: int
) -> tuple[Tensor, Tensor]:
    """Extra query/key channels, each (nW, N, 4), whose dot product equals `shift_window_mask`.

    Inside one window a token is in the bottom shift band or not (`a`) and in the right band or not (`b`);
    regions of a window differ exactly when (a, b) differ (a window never mixes region 0 with 1 or 2 along an
    axis, since the grid is padded to a window multiple). With signs s = 1 - 2a, t = 1 - 2b:
    `25 * (s s' + t t' + s t s' t') - 75` is 0 for equal (a, b) and -100 otherwise.
    """
    ids = _shift_region_ids(padded_height, padded_width, window_size, shift_size)
    sign_h = 1.0 - 2.0 * (ids // 3 == 2).float()
    sign_w = 1.0 - 2.0 * (ids % 3 == 2).float()
    key_channels = torch.stack([torch.ones_like(sign_h), sign_h, sign_w, sign_h * sign_w], dim=-1)
    quarter = -SHIFT_MASK_VALUE / 4.0
    query_channels = key_channels * torch.tensor([-3.0 * quarter, quarter, quarter, quarter])
    return query_channels, key_channels


# Window partitioning is written here (instead of timm's helpers) because the order of pad, shift and
# partition must follow the original exactly, and the layouts are kept to one copy each way.
def _window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, window_size**2, C), windows in row-major order per image."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window_size, window_size, width // window_size, window_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, channels)


def _window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """(B * nW, window_size**2, C) -> (B, H, W, C)."""
    channels = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


# --------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------


class AiTSwinV2BackboneOutput(NamedTuple):
    """Backbone outputs.

    feature_maps: one (B, C_i, H_i, W_i) float32 map per `out_indices` stage, after that stage's output
        LayerNorm (computed in float32, as the original).
    hidden_states: with `output_hidden_states=True`: (patch embedding after its LayerNorm, stage 0 blocks
        output, ..., last stage blocks output), each (B, C, H, W) and taken before the stage's patch merging.
    """

    feature_maps: tuple[Tensor, ...]
    hidden_states: tuple[Tensor, ...] | None = None


class AiTSwinV2PatchEmbeddings(nn.Module):
    """Non-overlapping patch projection; inputs are zero-padded at the right/bottom to a patch multiple."""

    def __init__(self, patch_size: int, num_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(num_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        height, width = pixel_values.shape[-2:]
        pad_right, pad_bottom = (-width) % self.patch_size, (-height) % self.patch_size
        if pad_right or pad_bottom:
            pixel_values = F.pad(pixel_values, (0, pad_right, 0, pad_bottom))
        return self.projection(pixel_values)


class AiTSwinV2Embeddings(nn.Module):
    """Patch embedding, its LayerNorm and the optional absolute position embedding (bicubic-resized)."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_channels: int,
        embed_dim: int,
        layer_norm_eps: float,
        patch_norm: bool,
        use_absolute_embeddings: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.patch_embeddings = AiTSwinV2PatchEmbeddings(patch_size, num_channels, embed_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps) if patch_norm else None
        if use_absolute_embeddings:
            grid = image_size // patch_size
            self.position_embeddings = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
        else:
            self.position_embeddings = None
        self.dropout = nn.Dropout(dropout)

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor, int, int]:
        """Returns (tokens (B, L, C) fed to stage 0, normalised patch tokens (B, L, C), height, width)."""
        features = self.patch_embeddings(pixel_values)  # B, C, H, W
        height, width = features.shape[-2:]
        tokens = features.flatten(2).transpose(1, 2)
        if self.norm is not None:
            tokens = self.norm(tokens)
        patch_tokens = tokens
        if self.position_embeddings is not None:
            position = F.interpolate(self.position_embeddings, size=(height, width), mode="bicubic")
            tokens = tokens + position.flatten(2).transpose(1, 2)
        return self.dropout(tokens), patch_tokens, height, width


class _ScratchBuffer(threading.local):
    """A per-thread reusable inference buffer, shared by the attention layers of one backbone.

    The gathered (heads, N, N) position bias is consumed by the attention right after it is built, so one
    buffer serves every block. Writing into it instead of a fresh tensor avoids the page faults of a new
    large allocation per block (52 MB per block for 16 heads and 30x30 windows; allocations that size are
    returned to the OS when freed), which cost several times the gather itself on CPU. The backbone empties
    it at the end of each forward, so between calls it holds no memory (peak RSS, README "Performance").
    """

    def __init__(self) -> None:
        self.buffer: Tensor | None = None

    def get(self, numel: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        buffer = self.buffer
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype or buffer.device != device:
            buffer = self.buffer = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel]

    def clear(self) -> None:
        self.buffer = None

    def __reduce__(self):  # copies and pickles of a model get a fresh, empty buffer
        return (_ScratchBuffer, ())


class AiTSwinV2WindowAttention(nn.Module):
    """Cosine window attention with the continuous (MLP) relative position bias of SwinV2."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        rpe_hidden_dim: int,
        attention_dropout: float,
        projection_dropout: float,
        attn_implementation: str,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_implementation = attn_implementation
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.continuous_position_bias_mlp = nn.Sequential(
            nn.Linear(2, rpe_hidden_dim, bias=True),
            nn.ReLU(inplace=True),
            nn.Linear(rpe_hidden_dim, num_heads, bias=False),
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.projection = nn.Linear(dim, dim)
        self.projection_dropout = nn.Dropout(projection_dropout)
        # (key, table, gathered bias or None); see `position_bias`.
        self._bias_cache: tuple[tuple, Tensor, Tensor | None] | None = None
        self.cache_full_position_bias = False
        self._scratch = _ScratchBuffer()  # replaced by one shared buffer in `AiTSwinV2Backbone`

    # -- relative position bias ------------------------------------------------------------------------

    def _bias_cache_key(self, coords_table: Tensor, position_index: Tensor) -> tuple | None:
        """Identity and version of everything the bias depends on; None (no caching) for inference tensors,
        which have no version counter (a model built under `torch.inference_mode`)."""
        first, _, second = self.continuous_position_bias_mlp
        tensors = (first.weight, first.bias, second.weight, coords_table, position_index)
        if any(t.is_inference() for t in tensors):
            return None
        return tuple((id(t), t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)

    def _compute_position_bias_table(self, coords_table: Tensor) -> Tensor:
        """(num_heads, (2W-1)^2) float32 table `16 * sigmoid(mlp(coords))`.

        The MLP runs in float32 (the original's last layer is an explicit float32 linear); sigmoid is
        elementwise, so applying it before the gather equals the original's order.
        """
        first, _, second = self.continuous_position_bias_mlp
        hidden = F.relu(F.linear(coords_table.float(), first.weight.float(), first.bias.float()))
        table = F.linear(hidden, second.weight.float()).view(-1, self.num_heads)
        return (POSITION_BIAS_SCALE * torch.sigmoid(table)).t().contiguous()

    def position_bias(self, coords_table: Tensor, position_index: Tensor) -> Tensor:
        """(num_heads, N, N) float32 additive bias for one window.

        In eval mode without gradients the small table (and, with `cache_full_position_bias`, the gathered
        (heads, N, N) bias too) is cached; otherwise the bias is gathered into a buffer shared by the layers
        (the returned tensor is then valid until the next layer's call). The key is the identity and version counter of the MLP parameters
        and the buffers, so `load_state_dict`, optimiser steps and `.to()` invalidate it (edits through
        `param.data` do not: call `clear_cache()` after those).
        """
        inference = not (self.training or torch.is_grad_enabled() or torch.compiler.is_compiling())
        key = self._bias_cache_key(coords_table, position_index) if inference else None
        use_cache = key is not None
        cached = self._bias_cache if use_cache and self._bias_cache and self._bias_cache[0] == key else None
        if cached is not None and cached[2] is not None:
            return cached[2]
        table = cached[1] if cached is not None else self._compute_position_bias_table(coords_table)
        tokens = math.isqrt(position_index.numel())
        keep = use_cache and self.cache_full_position_bias
        if inference and not keep:  # valid until the next layer's bias: the attention uses it at once
            out = self._scratch.get(table.shape[0] * position_index.numel(), table.dtype, table.device)
            bias = torch.index_select(table, 1, position_index.view(-1), out=out.view(table.shape[0], -1))
        else:
            bias = table.index_select(1, position_index.view(-1))
        bias = bias.view(self.num_heads, tokens, tokens)
        if use_cache:
            self._bias_cache = (key, table, bias if keep else None)
        return bias

    def clear_cache(self) -> None:
        self._bias_cache = None
        self._scratch.clear()

    def train(self, mode: bool = True) -> AiTSwinV2WindowAttention:
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's internal signature
        self.clear_cache()
        return super()._apply(fn, recurse)

    # -- attention -----------------------------------------------------------------------------------------

    def qkv_bias(self) -> Tensor | None:
        """Bias of the fused q/k/v projection (q and v biased, k not), or None."""
        if self.q_bias is None:
            return None
        return torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))

    def project_qkv(self, hidden_states: Tensor) -> Tensor:
        """(..., C) -> (..., 3C): the fused q/k/v projection (a zero token gets exactly `qkv_bias`)."""
        return F.linear(hidden_states, self.qkv.weight, self.qkv_bias())

    def _temperature(self) -> Tensor:
        return torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp().float()

    def forward(
        self,
        hidden_states: Tensor,
        coords_table: Tensor,
        position_index: Tensor,
        shift_mask: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Attend within windows.

        hidden_states: (B * nW, N, C). shift_mask: None (no shift); for "eager" the (nW, N, N) additive mask;
        for "sdpa" the (query, key) extra channels (B * nW, 1, N, 4) of `shift_window_channels`.
        """
        qkv = self.project_qkv(hidden_states)
        context = self.attend(qkv, coords_table, position_index, shift_mask, hidden_states.dtype)
        return self.project_output(context)

    def attend(
        self,
        qkv: Tensor,
        coords_table: Tensor,
        position_index: Tensor,
        shift_mask: Tensor | tuple[Tensor, Tensor] | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Attention of projected windows (B * nW, N, 3C) -> context (B * nW, N, C) before the output projection.

        `dtype`: of the attention probabilities in "eager" (the input's dtype; default that of `qkv`).
        """
        num_windows_batch, tokens, _ = qkv.shape
        qkv = qkv.view(num_windows_batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        bias = self.position_bias(coords_table, position_index)
        if self.attn_implementation == "sdpa":
            context = self._sdpa(query, key, value, bias, shift_mask)
        else:
            context = self._eager(query, key, value, bias, shift_mask, dtype or qkv.dtype)
        return context.transpose(1, 2).reshape(num_windows_batch, tokens, self.dim)

    def project_output(self, context: Tensor) -> Tensor:
        return self.projection_dropout(self.projection(context))

    def _eager(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        bias: Tensor,
        shift_mask: Tensor | None,
        dtype: torch.dtype,
    ) -> Tensor:
        num_windows_batch, _, tokens, _ = query.shape
        query, key = query.float(), key.float()
        query = query / (query.norm(dim=-1, keepdim=True) + COSINE_NORM_EPS)
        key = key / (key.norm(dim=-1, keepdim=True) + COSINE_NORM_EPS)
        scores = query @ key.transpose(-2, -1)
        # Same operations in the same order as the original; without autograd they run in place, which only
        # saves allocations of the (B * nW, heads, N, N) score tensor.
        inplace = not torch.is_grad_enabled()
        temperature = self._temperature()
        scores = scores.mul_(temperature) if inplace else scores * temperature
        scores = scores.add_(bias.unsqueeze(0)) if inplace else scores + bias.unsqueeze(0)
        if shift_mask is not None:
            num_windows = shift_mask.shape[0]
            grouped = scores.view(
                num_windows_batch // num_windows, num_windows, self.num_heads, tokens, tokens
            )
            mask = shift_mask.unsqueeze(1).unsqueeze(0)
            grouped = grouped.add_(mask) if inplace else grouped + mask
            scores = grouped.view(-1, self.num_heads, tokens, tokens)
        probs = self.attention_dropout(scores.softmax(dim=-1).to(dtype))
        return probs @ value

    def _sdpa(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        bias: Tensor,
        shift_channels: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        dtype = value.dtype
        # Cosine normalisation as the original (additive eps), with the temperature folded into the queries.
        query = query.float()
        query = (query * (self._temperature() / (query.norm(dim=-1, keepdim=True) + COSINE_NORM_EPS))).to(
            dtype
        )
        key = key.float()
        key = (key / (key.norm(dim=-1, keepdim=True) + COSINE_NORM_EPS)).to(dtype)
        attn_mask = bias.to(dtype).unsqueeze(0)
        dropout = self.attention_dropout.p if self.training else 0.0
        if shift_channels is None:
            return F.scaled_dot_product_attention(
                query, key, value, attn_mask=attn_mask, dropout_p=dropout, scale=1.0
            )
        # Shift mask as 4 extra leading channels; all three tensors get the same padded width (multiple of 8)
        # so the fused kernels apply.
        num_windows_batch, heads, tokens, head_dim = value.shape
        extra = shift_channels[0].shape[-1]
        pad = -(head_dim + extra) % 8
        shape = (num_windows_batch, heads, tokens, extra)
        query_extra = shift_channels[0].to(dtype).expand(shape)
        key_extra = shift_channels[1].to(dtype).expand(shape)
        zeros = value.new_zeros(()).expand(num_windows_batch, heads, tokens, pad)
        query = torch.cat([query_extra, query, zeros], dim=-1)
        key = torch.cat([key_extra, key, zeros], dim=-1)
        value = F.pad(value, (extra, pad))
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, dropout_p=dropout, scale=1.0
        )
        return context[..., extra : extra + head_dim]


class AiTSwinV2ResidualPostNorm(nn.LayerNorm):
    """LayerNorm closing a block's residual branch; `reset_parameters` sets its weight to `init_value` (bias 0).

    With 0 the branch starts switched off and the block is the identity (see `AiTSwinV2Backbone`'s
    `post_norm_init`). Parameters and state-dict keys are those of `nn.LayerNorm`.
    """

    def __init__(self, dim: int, eps: float, init_value: float) -> None:
        self.init_value = init_value
        super().__init__(dim, eps=eps)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.elementwise_affine:
            nn.init.constant_(self.weight, self.init_value)


class AiTSwinV2Block(nn.Module):
    """Post-norm SwinV2 block: `x + norm(window_attention(x))`, then `x + norm(mlp(x))`."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        rpe_hidden_dim: int,
        drop_path: float,
        hidden_dropout: float,
        attention_dropout: float,
        layer_norm_eps: float,
        attn_implementation: str,
        post_norm_init: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.attention = AiTSwinV2WindowAttention(
            dim, num_heads, qkv_bias, rpe_hidden_dim, attention_dropout, hidden_dropout, attn_implementation
        )
        self.layernorm_after_attention = AiTSwinV2ResidualPostNorm(dim, layer_norm_eps, post_norm_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=hidden_dropout)
        self.layernorm_after_mlp = AiTSwinV2ResidualPostNorm(dim, layer_norm_eps, post_norm_init)
        self._window_index_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None

    def forward(
        self,
        hidden_states: Tensor,
        height: int,
        width: int,
        coords_table: Tensor,
        position_index: Tensor,
        shift_mask: Tensor | tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        batch, length, channels = hidden_states.shape
        window = self.window_size
        pad_bottom, pad_right = (-height) % window, (-width) % window
        shift = self.shift_size
        if self.attention.attn_implementation == "sdpa" and (pad_bottom or pad_right):
            x = self._padded_windows_attention(hidden_states, height, width, coords_table, position_index,
                                               shift_mask if shift else None)  # fmt: skip
        else:
            x = hidden_states.view(batch, height, width, channels)
            if pad_bottom or pad_right:  # zero padding before the shift, as the original
                x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))
            padded_height, padded_width = x.shape[1:3]
            if shift:
                x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            windows = _window_partition(x, window)
            windows = self.attention(windows, coords_table, position_index, shift_mask if shift else None)
            x = _window_reverse(windows, window, padded_height, padded_width)
            if shift:
                x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
            if pad_bottom or pad_right:
                x = x[:, :height, :width, :]
            x = x.reshape(batch, length, channels)
        hidden_states = hidden_states + self.drop_path(self.layernorm_after_attention(x))
        return hidden_states + self.drop_path(self.layernorm_after_mlp(self.mlp(hidden_states)))

    def _padded_windows_attention(
        self,
        hidden_states: Tensor,
        height: int,
        width: int,
        coords_table: Tensor,
        position_index: Tensor,
        shift_mask: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        """Window attention of a grid that needs padding, projecting only the real tokens ("sdpa" path).

        A zero padding token projects to exactly the q/k/v bias, and the output projection is per token, so
        both projections run on the real tokens only and one gather builds the padded, shifted windows (and
        one gathers the real tokens back). At 640x640 the padding is most of stage 3 (40x40 tokens in 60x60).
        """
        batch, length, channels = hidden_states.shape
        gather, scatter = self._window_index(height, width, batch, hidden_states.device)
        qkv = self.attention.project_qkv(hidden_states).reshape(batch * length, 3 * channels)
        pad_row = self.attention.qkv_bias()
        pad_row = qkv.new_zeros(3 * channels) if pad_row is None else pad_row.to(qkv.dtype)
        windows = torch.cat([qkv, pad_row[None]]).index_select(0, gather)
        windows = windows.view(-1, self.window_size**2, 3 * channels)
        context = self.attention.attend(windows, coords_table, position_index, shift_mask)
        context = context.reshape(-1, channels).index_select(0, scatter)
        return self.attention.project_output(context).view(batch, length, channels)

    def _window_index(
        self, height: int, width: int, batch: int, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """(gather, scatter) int64 indices between the token rows (B * H * W, a padding row B * H * W at the
        end) and the padded, shifted, window-partitioned rows; the latest geometry is kept."""
        key = (height, width, batch, device)
        if self._window_index_cache is not None and self._window_index_cache[0] == key:
            return self._window_index_cache[1]
        window, shift = self.window_size, self.shift_size
        rows = torch.arange(batch * height * width).view(batch, height, width, 1)
        rows = F.pad(rows, (0, 0, 0, (-width) % window, 0, (-height) % window), value=-1)
        if shift:
            rows = torch.roll(rows, shifts=(-shift, -shift), dims=(1, 2))
        gather = _window_partition(rows, window).reshape(-1)
        real = gather >= 0
        scatter = torch.empty(batch * height * width, dtype=torch.long)
        scatter[gather[real]] = torch.nonzero(real).squeeze(1)
        gather = gather.masked_fill(~real, batch * height * width)
        indices = (gather.to(device), scatter.to(device))
        self._window_index_cache = (key, indices)
        return indices


class AiTSwinV2PatchMerging(nn.Module):
    """2x2 patch merging (post-norm): concat [(0,0), (1,0), (0,1), (1,1)] neighbours, linear 4C -> 2C, norm."""

    def __init__(self, dim: int, layer_norm_eps: float) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=layer_norm_eps)

    def forward(self, hidden_states: Tensor, height: int, width: int) -> tuple[Tensor, int, int]:
        batch, _, channels = hidden_states.shape
        x = hidden_states.view(batch, height, width, channels)
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        new_height, new_width = (height + 1) // 2, (width + 1) // 2
        # (B, H/2, 2[row parity], W/2, 2[col parity], C) -> neighbour order (col parity, row parity).
        x = x.view(batch, new_height, 2, new_width, 2, channels).permute(0, 1, 3, 4, 2, 5)
        x = x.reshape(batch, new_height * new_width, 4 * channels)
        return self.norm(self.reduction(x)), new_height, new_width


class AiTSwinV2Stage(nn.Module):
    """Blocks of one resolution (alternating shifted windows if enabled) and the following patch merging.

    The relative position index / coordinate table and the shift mask depend only on the window sizes, so
    they are non-persistent buffers shared by the blocks of the stage.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        pretrained_window_size: int,
        shift_windows: bool,
        mlp_ratio: float,
        qkv_bias: bool,
        rpe_hidden_dim: int,
        drop_path: Sequence[float],
        hidden_dropout: float,
        attention_dropout: float,
        layer_norm_eps: float,
        downsample: bool,
        attn_implementation: str,
        post_norm_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.pretrained_window_size = pretrained_window_size
        self.shift_size = window_size // 2
        self.attn_implementation = attn_implementation
        self.blocks = nn.ModuleList(
            AiTSwinV2Block(
                dim,
                num_heads,
                window_size,
                shift_size=self.shift_size if (shift_windows and index % 2 == 1) else 0,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                rpe_hidden_dim=rpe_hidden_dim,
                drop_path=drop_path[index],
                hidden_dropout=hidden_dropout,
                attention_dropout=attention_dropout,
                layer_norm_eps=layer_norm_eps,
                attn_implementation=attn_implementation,
                post_norm_init=post_norm_init,
            )
            for index in range(depth)
        )
        self.has_shift = any(block.shift_size for block in self.blocks)
        self.downsample = AiTSwinV2PatchMerging(dim, layer_norm_eps) if downsample else None
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size).view(-1), persistent=False
        )
        self.register_buffer(
            "relative_coords_table",
            relative_coords_table(window_size, pretrained_window_size),
            persistent=False,
        )
        self._shift_mask_cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        self.gradient_checkpointing = False

    def _shift_mask(
        self, height: int, width: int, batch: int, device: torch.device
    ) -> Tensor | tuple[Tensor, Tensor]:
        window = self.window_size
        padded_height, padded_width = -(-height // window) * window, -(-width // window) * window
        if self.attn_implementation != "sdpa":
            # The (nW, N, N) mask of the original, rebuilt every forward as the original does (it can be large).
            return shift_window_mask(padded_height, padded_width, window, self.shift_size, device)
        # The sdpa channels are small (B * nW, 1, N, 4): keep the latest ones.
        key = (padded_height, padded_width, batch, device)
        cached = self._shift_mask_cache.get(key)
        if cached is None:
            query, key_channels = shift_window_channels(padded_height, padded_width, window, self.shift_size)
            cached = tuple(c.to(device).repeat(batch, 1, 1).unsqueeze(1) for c in (query, key_channels))
            self._shift_mask_cache = {key: cached}
        return cached

    def forward(self, hidden_states: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, int, int]:
        """Returns (blocks output (B, H*W, C), input of the next stage, its height, its width)."""
        shift_mask = (
            self._shift_mask(height, width, hidden_states.shape[0], hidden_states.device)
            if self.has_shift
            else None
        )
        for block in self.blocks:
            arguments = (
                hidden_states,
                height,
                width,
                self.relative_coords_table,
                self.relative_position_index,
                shift_mask,
            )
            if self.gradient_checkpointing and self.training:
                hidden_states = torch.utils.checkpoint.checkpoint(block, *arguments, use_reentrant=False)
            else:
                hidden_states = block(*arguments)
        if self.downsample is None:
            return hidden_states, hidden_states, height, width
        merged, new_height, new_width = self.downsample(hidden_states, height, width)
        return hidden_states, merged, new_height, new_width


class AiTSwinV2Backbone(nn.Module):
    """SwinV2 backbone of AiT (the original `SwinV2TransformerRPE2FC` with its default options).

    Args:
        image_size: pretraining image size; only sizes the absolute position embedding (if used).
        patch_size, num_channels, embed_dim: patch embedding.
        depths, num_heads, window_sizes, pretrained_window_sizes, shift_windows: per stage. A pretrained
            window size of 0/None means "the stage's window size".
        mlp_ratio, qkv_bias, rpe_hidden_dim: block shapes (`rpe_hidden_dim`: width of the position-bias MLP).
        drop_path_rate: stochastic depth, linearly increasing over all blocks from 0.
        hidden_dropout_prob, attention_dropout_prob: dropout (original `drop_rate`, `attn_drop_rate`).
        layer_norm_eps: eps of every LayerNorm (1e-6 in the original).
        out_indices: stages whose (normalised) output is returned.
        use_absolute_embeddings, patch_norm: original `ape`, `patch_norm`.
        attn_implementation: "eager" (the original's computation) or "sdpa" (fused attention).
        post_norm_init: weight of every block's residual post-norms (the LayerNorms after attention and MLP)
            at from-scratch initialisation. 0 (default) starts each block as the identity, as timm and the
            official SwinV2 do (`_init_respostnorm`); small SwinV2s trained from scratch need it (with 1.0 the
            synthetic-scene solvers never learned to use their input). 1.0 is the original AiT's from-scratch
            init, which the original never trains from (it always loads pretrained weights). Irrelevant
            when weights are loaded.
    """

    def __init__(
        self,
        *,
        image_size: int = 224,
        patch_size: int = 4,
        num_channels: int = 3,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window_sizes: Sequence[int] = (30, 30, 30, 15),
        pretrained_window_sizes: Sequence[int | None] | None = (12, 12, 12, 6),
        shift_windows: Sequence[bool] | bool = True,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        rpe_hidden_dim: int = 512,
        drop_path_rate: float = 0.1,
        hidden_dropout_prob: float = 0.0,
        attention_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-6,
        out_indices: Sequence[int] = (3,),
        use_absolute_embeddings: bool = False,
        patch_norm: bool = True,
        attn_implementation: str = "sdpa",
        post_norm_init: float = 0.0,
    ) -> None:
        super().__init__()
        num_stages = len(depths)
        if isinstance(shift_windows, bool):
            shift_windows = [shift_windows] * num_stages
        if pretrained_window_sizes is None:
            pretrained_window_sizes = [None] * num_stages
        pretrained_window_sizes = [p or w for p, w in zip(pretrained_window_sizes, window_sizes)]
        for name, values in (
            ("num_heads", num_heads),
            ("window_sizes", window_sizes),
            ("pretrained_window_sizes", pretrained_window_sizes),
            ("shift_windows", shift_windows),
        ):
            if len(values) != num_stages:
                raise ValueError(f"{name} has {len(values)} entries, expected one per stage ({num_stages})")
        if any(p < 2 for p in pretrained_window_sizes):
            raise ValueError(
                f"pretrained_window_sizes must be >= 2 (or 0 for the window size), got {pretrained_window_sizes}"
            )
        if any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f"out_indices {list(out_indices)} must index the {num_stages} stages")
        self._check_attn_implementation(attn_implementation)

        self.num_stages = num_stages
        self.out_indices = tuple(int(i) for i in out_indices)
        self.num_features = [embed_dim * 2**i for i in range(num_stages)]
        self.attn_implementation = attn_implementation
        self.embeddings = AiTSwinV2Embeddings(
            image_size, patch_size, num_channels, embed_dim, layer_norm_eps, patch_norm, use_absolute_embeddings,
            hidden_dropout_prob,
        )  # fmt: skip
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            AiTSwinV2Stage(
                dim=self.num_features[i],
                depth=depths[i],
                num_heads=num_heads[i],
                window_size=window_sizes[i],
                pretrained_window_size=pretrained_window_sizes[i],
                shift_windows=bool(shift_windows[i]),
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                rpe_hidden_dim=rpe_hidden_dim,
                drop_path=rates[sum(depths[:i]) : sum(depths[: i + 1])],
                hidden_dropout=hidden_dropout_prob,
                attention_dropout=attention_dropout_prob,
                layer_norm_eps=layer_norm_eps,
                downsample=i < num_stages - 1,
                attn_implementation=attn_implementation,
                post_norm_init=post_norm_init,
            )
            for i in range(num_stages)
        )
        self.output_norms = nn.ModuleDict(
            {str(i): nn.LayerNorm(self.num_features[i], eps=layer_norm_eps) for i in self.out_indices}
        )
        self._scratch = _ScratchBuffer()
        for module in self.modules():
            if isinstance(module, AiTSwinV2WindowAttention):
                module._scratch = self._scratch
        self.init_weights()

    @staticmethod
    def _check_attn_implementation(name: str) -> None:
        if name not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {name!r}")

    def set_attn_implementation(self, name: str) -> None:
        """Switch every attention layer to "eager" or "sdpa" (same parameters, same results up to rounding)."""
        self._check_attn_implementation(name)
        self.attn_implementation = name
        for module in self.modules():
            if isinstance(module, (AiTSwinV2Stage, AiTSwinV2WindowAttention)):
                module.attn_implementation = name

    @property
    def gradient_checkpointing(self) -> bool:
        return all(stage.gradient_checkpointing for stage in self.encoder.layers)

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        for stage in self.encoder.layers:
            stage.gradient_checkpointing = bool(enabled)

    @property
    def cache_full_position_bias(self) -> bool:
        """Also keep the gathered (heads, N, N) position biases in inference (faster, memory hungry).

        Off by default: for SwinV2-B with 30x30 windows they take about 1 GB (float32); the default cache
        keeps only the small per-block tables and re-gathers the bias every forward.
        """
        return all(
            m.cache_full_position_bias for m in self.modules() if isinstance(m, AiTSwinV2WindowAttention)
        )

    @cache_full_position_bias.setter
    def cache_full_position_bias(self, enabled: bool) -> None:
        for module in self.modules():
            if isinstance(module, AiTSwinV2WindowAttention):
                module.cache_full_position_bias = bool(enabled)
                module.clear_cache()

    def clear_cache(self) -> None:
        """Drop cached position-bias tables and shift masks (needed only after edits through `param.data`)."""
        for module in self.modules():
            if isinstance(module, AiTSwinV2WindowAttention):
                module.clear_cache()
            elif isinstance(module, AiTSwinV2Stage):
                module._shift_mask_cache = {}

    def init_weights(self) -> None:
        """From-scratch initialisation: truncated normal (std 0.02) linears, unit LayerNorms except the blocks'
        residual post-norms (`post_norm_init`)."""
        if self.embeddings.position_embeddings is not None:
            trunc_normal_(self.embeddings.position_embeddings, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()  # unit weight, zero bias; `post_norm_init` for residual post-norms
            elif isinstance(module, AiTSwinV2WindowAttention):
                nn.init.constant_(module.logit_scale, math.log(10))
                if module.q_bias is not None:
                    nn.init.zeros_(module.q_bias)
                    nn.init.zeros_(module.v_bias)

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False) -> AiTSwinV2BackboneOutput:
        """pixel_values (B, C, H, W) -> `AiTSwinV2BackboneOutput` (feature maps of `out_indices`)."""
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must be (batch, channels, height, width), got shape {tuple(pixel_values.shape)}"
            )
        hidden_states, patch_tokens, height, width = self.embeddings(pixel_values)
        batch = hidden_states.shape[0]

        def as_map(tokens: Tensor, h: int, w: int) -> Tensor:
            return tokens.view(batch, h, w, -1).permute(0, 3, 1, 2)

        all_hidden_states = [as_map(patch_tokens, height, width)] if output_hidden_states else None
        feature_maps = []
        try:
            for index, stage in enumerate(self.encoder.layers):
                stage_output, hidden_states, next_height, next_width = stage(hidden_states, height, width)
                if all_hidden_states is not None:
                    all_hidden_states.append(as_map(stage_output, height, width))
                if index in self.out_indices:
                    norm = self.output_norms[str(index)]
                    normed = F.layer_norm(
                        stage_output.float(),
                        norm.normalized_shape,
                        norm.weight.float(),
                        norm.bias.float(),
                        norm.eps,
                    )
                    feature_maps.append(as_map(normed, height, width).contiguous())
                height, width = next_height, next_width
        finally:
            # the position-bias buffer ends a call at the size of the deepest stage's bias (52 MB at 480x480);
            # kept, it would sit beside the next call's first stage, whose activations are the largest
            self._scratch.clear()
        return AiTSwinV2BackboneOutput(
            tuple(feature_maps), tuple(all_hidden_states) if all_hidden_states is not None else None
        )


# --------------------------------------------------------------------------------------------------------
# Original checkpoint conversion
# --------------------------------------------------------------------------------------------------------

# (original key template, our key template); {i}, {j}: stage / block index, {p}: weight or bias.
_KEY_RULES: tuple[tuple[str, str], ...] = (
    ("patch_embed.proj.{p}", "embeddings.patch_embeddings.projection.{p}"),
    ("patch_embed.norm.{p}", "embeddings.norm.{p}"),
    ("absolute_pos_embed", "embeddings.position_embeddings"),
    ("layers.{i}.blocks.{j}.norm1.{p}", "encoder.layers.{i}.blocks.{j}.layernorm_after_attention.{p}"),
    ("layers.{i}.blocks.{j}.norm2.{p}", "encoder.layers.{i}.blocks.{j}.layernorm_after_mlp.{p}"),
    ("layers.{i}.blocks.{j}.attn.logit_scale", "encoder.layers.{i}.blocks.{j}.attention.logit_scale"),
    ("layers.{i}.blocks.{j}.attn.q_bias", "encoder.layers.{i}.blocks.{j}.attention.q_bias"),
    ("layers.{i}.blocks.{j}.attn.v_bias", "encoder.layers.{i}.blocks.{j}.attention.v_bias"),
    ("layers.{i}.blocks.{j}.attn.qkv.weight", "encoder.layers.{i}.blocks.{j}.attention.qkv.weight"),
    ("layers.{i}.blocks.{j}.attn.rpe_mlp.0.{p}", "encoder.layers.{i}.blocks.{j}.attention.continuous_position_bias_mlp.0.{p}"),
    ("layers.{i}.blocks.{j}.attn.rpe_mlp.2.weight", "encoder.layers.{i}.blocks.{j}.attention.continuous_position_bias_mlp.2.weight"),
    ("layers.{i}.blocks.{j}.attn.proj.{p}", "encoder.layers.{i}.blocks.{j}.attention.projection.{p}"),
    ("layers.{i}.blocks.{j}.mlp.fc1.{p}", "encoder.layers.{i}.blocks.{j}.mlp.fc1.{p}"),
    ("layers.{i}.blocks.{j}.mlp.fc2.{p}", "encoder.layers.{i}.blocks.{j}.mlp.fc2.{p}"),
    ("layers.{i}.downsample.reduction.weight", "encoder.layers.{i}.downsample.reduction.weight"),
    ("layers.{i}.downsample.norm.{p}", "encoder.layers.{i}.downsample.norm.{p}"),
    ("norm{i}.{p}", "output_norms.{i}.{p}"),
)  # fmt: skip
_DERIVED_BUFFER = re.compile(
    r"layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.attn\.(?P<name>relative_coords_table|relative_position_index)"
)


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    pattern = pattern.replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(pattern.replace(r"\{p\}", r"(?P<p>weight|bias)"))


_FORWARD = tuple((_template_regex(original), ours) for original, ours in _KEY_RULES)
_BACKWARD = tuple((_template_regex(ours), original) for original, ours in _KEY_RULES)


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match:
            return template.format(**match.groupdict())
    return None


def original_backbone_key(key: str) -> str | None:
    """The original (`backbone.`-stripped) name of one of our backbone state_dict keys."""
    return _rename(key, _BACKWARD)


@functools.lru_cache(maxsize=8)
def _reference_position_index(window_size: int) -> Tensor:
    """Read-only copy for the converter's checks (every block of a stage has the same buffer)."""
    return relative_position_index(window_size)


@functools.lru_cache(maxsize=8)
def _reference_coords_table(window_size: int, pretrained_window_size: int) -> Tensor:
    return relative_coords_table(window_size, pretrained_window_size)


def _infer_pretrained_window_size(table: Tensor, window_size: int) -> int | None:
    """Solve the corner value of a `norm8_log_bylayer` table for the pretrained window size."""
    corner = float(table.flatten()[0].abs())  # offset -(W-1): log2(8 (W-1) / (P-1) + 1) / 3
    denominator = 2.0 ** (3.0 * corner) - 1.0
    if window_size < 2 or denominator <= 0:
        return None
    return round(8.0 * (window_size - 1) / denominator + 1.0)


def _check_derived_buffer(
    key: str, value: Tensor, stage_window: tuple[int, int] | None, errors: list[str]
) -> None:
    name = _DERIVED_BUFFER.fullmatch(key).group("name")
    if name == "relative_position_index":
        tokens = value.shape[0] if value.dim() == 2 else 0
        window = math.isqrt(tokens)
        if stage_window is not None and window != stage_window[0]:
            errors.append(
                f"{key}: shape {tuple(value.shape)} is for window {window}, the model uses {stage_window[0]}"
            )
            return
        if (
            value.dim() != 2
            or window * window != tokens
            or not torch.equal(value.cpu(), _reference_position_index(window))
        ):
            errors.append(f"{key}: differs from the relative position index of a {window}x{window} window")
        return
    window = (value.shape[1] + 1) // 2 if value.dim() == 4 else 0
    if stage_window is not None and window != stage_window[0]:
        errors.append(
            f"{key}: shape {tuple(value.shape)} is for window {window}, the model uses {stage_window[0]}"
        )
        return
    pretrained = stage_window[1] if stage_window is not None else _infer_pretrained_window_size(value, window)
    expected = _reference_coords_table(window, pretrained) if pretrained and window >= 1 else None
    if expected is None or expected.shape != value.shape or not torch.equal(value.float().cpu(), expected):
        errors.append(
            f"{key}: differs from the coordinate table of window {window} with pretrained window {pretrained}"
        )


def convert_original_backbone_state_dict(
    original_state_dict: Mapping[str, Tensor], backbone: AiTSwinV2Backbone | None = None
) -> dict[str, Tensor]:
    """Rename an original `SwinV2TransformerRPE2FC` state_dict (keys without `backbone.`) to ours.

    Every key must be accounted for: parameters are renamed; the derived buffers (`relative_position_index`,
    `relative_coords_table`) are recomputed by our module, so they are checked against the recomputed values
    and dropped. Unknown keys raise. With `backbone` given, the result is also checked against it: missing
    keys, wrong shapes and derived buffers of another window / pretrained window size raise, each named by its
    original key.
    """
    stage_windows = None
    if backbone is not None:
        stage_windows = {
            index: (stage.window_size, stage.pretrained_window_size)
            for index, stage in enumerate(backbone.encoder.layers)
        }
    converted: dict[str, Tensor] = {}
    errors: list[str] = []
    for key, value in original_state_dict.items():
        if _DERIVED_BUFFER.fullmatch(key):
            stage = int(_DERIVED_BUFFER.fullmatch(key).group("i"))
            window = None if stage_windows is None else stage_windows.get(stage)
            if stage_windows is not None and window is None:
                errors.append(f"{key}: the model has no stage {stage}")
                continue
            _check_derived_buffer(key, value, window, errors)
            continue
        new_key = _rename(key, _FORWARD)
        if new_key is None:
            hint = " (strip the 'backbone.' prefix first)" if key.startswith("backbone.") else ""
            errors.append(f"{key}: not a key of the original SwinV2 backbone{hint}")
            continue
        converted[new_key] = value
    if backbone is not None:
        expected = backbone.state_dict()
        for key in expected.keys() - converted.keys():
            errors.append(f"{original_backbone_key(key)}: missing (needed for {key})")
        for key in converted.keys() - expected.keys():
            errors.append(f"{original_backbone_key(key)}: the model has no parameter {key}")
        for key in converted.keys() & expected.keys():
            if converted[key].shape != expected[key].shape:
                errors.append(
                    f"{original_backbone_key(key)}: shape {tuple(converted[key].shape)}, "
                    f"the model expects {tuple(expected[key].shape)} for {key}"
                )
    if errors:
        raise ValueError(
            "cannot convert the original SwinV2 backbone state_dict:\n  " + "\n  ".join(sorted(errors))
        )
    return converted
