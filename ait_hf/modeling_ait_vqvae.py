"""AiT VQ-VAE tokenizer: dense maps (depth, box-cropped instance masks) to codes and back.

`encode` maps a map to code indices, `decode` maps indices back, and `decode_soft` decodes from code
*distributions* (soft tokens): the decoder input is `softmax(logits * tau) @ codebook`. Training uses an
EMA codebook and a commitment loss; the reconstruction target may differ from the input (mask
augmentation of depth maps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_ait import AiTVQVAEConfig


@dataclass
class AiTVQVAEOutput(ModelOutput):
    """Output of `AiTVQVAE.forward`.

    Args:
        loss: `reconstruction_loss + commitment_loss` (when a target is available).
        reconstruction_loss: MSE of the reconstruction in normalised space (ignoring zero targets for depth).
        commitment_loss: `commitment_cost * MSE(quantised.detach(), encoder output)`.
        reconstruction: decoded map, (B, 1, H, W), de-normalised.
        perplexity: exp(entropy) of the code usage in the batch.
        codes: code indices, (B, h * w).
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None


class AiTVQVAEResidualBlock(nn.Module):
    """`x + conv1x1(relu(conv3x3(relu(conv3x3(x)))))`; the layer indices match the original checkpoint."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.net(hidden_states) + hidden_states


class AiTVectorQuantizerEMA(nn.Module):
    """Nearest-code quantiser whose codebook follows an exponential moving average of its assignments.

    The codebook is a buffer, not a parameter: it is learned by the EMA update in train mode only.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, decay: float, epsilon: float) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.decay = decay
        self.epsilon = epsilon
        self.register_buffer("embedding", torch.randn(num_embeddings, embedding_dim))
        self.register_buffer("ema_cluster_size", torch.zeros(num_embeddings))
        self.register_buffer("ema_weight", torch.randn(num_embeddings, embedding_dim))

    def nearest_codes(self, flat_inputs: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (squared L2) for each row of `flat_inputs` (N, D)."""
        distances = (
            flat_inputs.pow(2).sum(dim=1, keepdim=True)
            + self.embedding.pow(2).sum(dim=1)
            - 2 * flat_inputs @ self.embedding.t()
        )
        return distances.argmin(dim=1)

    @torch.no_grad()
    def ema_update(self, flat_inputs: torch.Tensor, one_hot: torch.Tensor) -> None:
        """One EMA step of cluster sizes (Laplace-smoothed) and code sums, then the new codebook."""
        cluster_size = self.ema_cluster_size * self.decay + (1 - self.decay) * one_hot.sum(0)
        total = cluster_size.sum()
        cluster_size = (cluster_size + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
        self.ema_cluster_size.copy_(cluster_size)
        self.ema_weight.mul_(self.decay).add_((1 - self.decay) * (one_hot.t() @ flat_inputs))
        self.embedding.copy_(self.ema_weight / self.ema_cluster_size.unsqueeze(1))


class AiTVQVAEPreTrainedModel(PreTrainedModel):
    config_class = AiTVQVAEConfig
    base_model_prefix = "ait_vqvae"
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        # Convolutions keep PyTorch's default initialisation, as the original does.
        if isinstance(module, AiTVectorQuantizerEMA):
            module.embedding.normal_()
            module.ema_weight.normal_()
            module.ema_cluster_size.zero_()


class AiTVQVAE(AiTVQVAEPreTrainedModel):
    """The AiT tokenizer for one kind of dense output (see `AiTVQVAEConfig`)."""

    def __init__(self, config: AiTVQVAEConfig) -> None:
        super().__init__(config)
        num_down = int(math.log2(config.downsample_ratio)) - 1  # stride-2 convs after the first one
        dim = config.hidden_size
        encoder: list[nn.Module] = [nn.Conv2d(1, dim, 4, stride=2, padding=1), nn.ReLU()]
        for _ in range(num_down):
            encoder += [nn.Conv2d(dim, dim * 2, 4, stride=2, padding=1), nn.ReLU()]
            dim *= 2
        encoder += [AiTVQVAEResidualBlock(dim) for _ in range(config.num_resnet_blocks)]
        encoder.append(nn.Conv2d(dim, config.embedding_dim, 1))
        self.encoder = nn.Sequential(*encoder)

        dim = config.hidden_size * config.downsample_ratio // 2
        decoder: list[nn.Module] = [nn.Conv2d(config.embedding_dim, dim, 1), nn.ReLU()]
        decoder += [AiTVQVAEResidualBlock(dim) for _ in range(config.num_resnet_blocks)]
        decoder += [nn.ConvTranspose2d(dim, dim, 4, stride=2, padding=1), nn.ReLU()]
        for _ in range(num_down):
            decoder += [nn.ConvTranspose2d(dim, dim // 2, 4, stride=2, padding=1), nn.ReLU()]
            dim //= 2
        decoder.append(nn.Conv2d(dim, 1, 1))
        self.decoder = nn.Sequential(*decoder)

        self.quantizer = AiTVectorQuantizerEMA(
            config.num_embeddings, config.embedding_dim, config.ema_decay, config.ema_epsilon
        )
        self.post_init()

    # ----------------------------------------------------------------- input checks and scaling
    def _check_maps(self, maps: torch.Tensor, name: str) -> torch.Tensor:
        """Accept (B, H, W) or (B, 1, H, W) float maps of the configured size; return (B, 1, H, W)."""
        size = self.config.image_size
        if not isinstance(maps, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(maps).__name__}")
        if not maps.is_floating_point():
            raise ValueError(f"{name} must be a floating point tensor, got dtype {maps.dtype}")
        if maps.dim() == 3:
            maps = maps.unsqueeze(1)
        if maps.dim() != 4 or maps.shape[1] != 1 or maps.shape[-2:] != (size, size):
            raise ValueError(
                f"{name} must have shape (B, {size}, {size}) or (B, 1, {size}, {size}) for this "
                f"{self.config.tokenizer_type} tokenizer, got {tuple(maps.shape)}"
            )
        if torch.isnan(maps).any():
            raise ValueError(f"{name} contains NaN values")
        return maps

    def normalize(self, maps: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize_inputs:
            return maps
        return 2.0 * (maps / self.config.max_value - 0.5)

    def denormalize(self, maps: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize_inputs:
            return maps
        return (maps * 0.5 + 0.5) * self.config.max_value

    # ----------------------------------------------------------------- tokenizer API
    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """Code indices `(B, h * w)` (row-major grid) of maps `(B, H, W)` or `(B, 1, H, W)`."""
        maps = self._check_maps(pixel_values, "pixel_values").to(self.encoder[0].weight.dtype)
        latents = self.encoder(self.normalize(maps))
        flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        return self.quantizer.nearest_codes(flat).view(maps.shape[0], -1)

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.denormalize(self.decoder(latents)).squeeze(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Maps `(B, H, W)` from code indices `(B, h * w)`."""
        if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        grid, n = self.config.grid_size, self.config.num_embeddings
        if codes.dim() != 2 or codes.shape[1] != grid * grid:
            raise ValueError(f"codes must have shape (B, {grid * grid}), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= n):
            raise ValueError(
                f"code indices must lie in [0, {n - 1}], got range [{int(codes.min())}, {int(codes.max())}]"
            )
        latents = self.quantizer.embedding[codes.long()]  # (B, N, D)
        latents = latents.view(codes.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        return self._decode_latents(latents)

    def decode_soft(self, logits: torch.Tensor) -> torch.Tensor:
        """Maps `(B, H, W)` decoded from code distributions `softmax(logits * tau)`.

        `logits` is either a token sequence `(B, h * w, num_embeddings)` (what the solver emits) or a grid
        `(B, num_embeddings, h, w)` (the original layout).
        """
        grid, n = self.config.grid_size, self.config.num_embeddings
        if logits.dim() == 3:
            if logits.shape[1:] != (grid * grid, n):
                raise ValueError(
                    f"logits must have shape (B, {grid * grid}, {n}) or (B, {n}, {grid}, {grid}), got {tuple(logits.shape)}"
                )
            probs = F.softmax(logits * self.config.tau, dim=-1)
            latents = (
                (probs @ self.quantizer.embedding).view(logits.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
            )
        elif logits.dim() == 4:
            if logits.shape[1:] != (n, grid, grid):
                raise ValueError(
                    f"logits must have shape (B, {grid * grid}, {n}) or (B, {n}, {grid}, {grid}), got {tuple(logits.shape)}"
                )
            probs = F.softmax(logits * self.config.tau, dim=1)
            latents = torch.einsum("bnhw,nd->bdhw", probs, self.quantizer.embedding)
        else:
            raise ValueError(f"logits must be 3-D or 4-D, got shape {tuple(logits.shape)}")
        return self._decode_latents(latents)

    # ----------------------------------------------------------------- training
    def reconstruction_loss(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE in normalised space; for depth only over pixels whose target is > 0 (valid)."""
        if self.config.reconstruction_loss == "mse_ignore_zero":
            valid = target > 0
            return (target[valid] - reconstruction[valid]).pow(2).mean()
        return F.mse_loss(reconstruction, target)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> AiTVQVAEOutput | tuple:
        """Encode, quantise (EMA codebook update in train mode) and decode `pixel_values`.

        `labels` is the reconstruction target (defaults to `pixel_values`); give the whole map here and a
        masked map as `pixel_values` for mask augmentation.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        maps = self._check_maps(pixel_values, "pixel_values")
        target = maps if labels is None else self._check_maps(labels, "labels")
        if target.shape[0] != maps.shape[0]:
            raise ValueError(
                f"labels batch size {target.shape[0]} differs from pixel_values batch size {maps.shape[0]}"
            )
        latents = self.encoder(self.normalize(maps))
        flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        codes = self.quantizer.nearest_codes(flat)
        one_hot = F.one_hot(codes, self.config.num_embeddings).to(flat.dtype)
        quantized = self.quantizer.embedding[codes]
        if self.training:
            self.quantizer.ema_update(flat.detach(), one_hot)
        commitment = self.config.commitment_cost * F.mse_loss(quantized.detach(), flat)
        quantized = flat + (quantized - flat).detach()  # straight-through estimator
        grid_latents = quantized.view(latents.shape[0], latents.shape[2], latents.shape[3], -1).permute(
            0, 3, 1, 2
        )
        decoded = self.decoder(grid_latents)
        recon_loss = self.reconstruction_loss(decoded, self.normalize(target.to(decoded.dtype)))
        avg_probs = one_hot.mean(0)
        perplexity = torch.exp(-(avg_probs * torch.log(avg_probs + 1e-10)).sum())
        output = AiTVQVAEOutput(
            loss=recon_loss + commitment,
            reconstruction_loss=recon_loss,
            commitment_loss=commitment,
            reconstruction=self.denormalize(decoded),
            perplexity=perplexity,
            codes=codes.view(maps.shape[0], -1),
        )
        return output if return_dict else output.to_tuple()

    # ----------------------------------------------------------------- original checkpoints
    @classmethod
    def from_original_checkpoint(
        cls, checkpoint: str | Mapping[str, torch.Tensor], config: AiTVQVAEConfig, prefix: str = ""
    ) -> AiTVQVAE:
        """Build a tokenizer from an original stage-1 file or the tokenizer inside a solver checkpoint."""
        state_dict = load_original_state_dict(checkpoint) if isinstance(checkpoint, str) else checkpoint
        model = cls(config)
        model.load_state_dict(convert_original_vqvae_state_dict(state_dict, model, prefix=prefix))
        return model.eval()


_QUANTIZER_KEYS = {
    "_vq_vae._embedding": "quantizer.embedding",
    "_vq_vae._ema_cluster_size": "quantizer.ema_cluster_size",
    "_vq_vae._ema_w": "quantizer.ema_weight",
}


def load_original_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read an original checkpoint safely (`weights_only=True`) and return its flat state dict.

    Accepts `{'weights': sd}` (stage-1 files), `{'state_dict': sd, 'meta': ...}` (mmcv solver files) and a
    bare state dict. Real mmcv files carry numpy scalars / arrays in `meta`: only those plain types are
    allow-listed, never arbitrary classes.
    """
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
    scalar_types = [np.float64, np.float32, np.int64, np.int32, np.bool_]
    safe = [
        multiarray.multiarray._reconstruct,
        multiarray.multiarray.scalar,
        np.ndarray,
        np.dtype,
        *scalar_types,
    ]
    safe += [type(np.dtype(t)) for t in scalar_types]
    with torch.serialization.safe_globals(safe):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # weights_only refuses pickles that need arbitrary classes
            raise ValueError(f"cannot load {path} safely with torch.load(weights_only=True): {err}") from err
    if isinstance(obj, dict):
        for key in ("weights", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (found {type(obj).__name__})")
    return dict(obj)


def convert_original_vqvae_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: AiTVQVAE, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Map original tokenizer keys (optionally under `prefix`, optionally `module.`-prefixed) to ours.

    Every original key must be accounted for and every one of ours present with the same shape; otherwise
    a `ValueError` lists the unmapped, missing and mismatched keys (no partial load).
    """
    keys = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if keys and all(k.startswith("module.") for k in keys):
        keys = {k[len("module.") :]: v for k, v in keys.items()}
    keys.pop("codebook.weight", None)  # an unused legacy entry the original loader also drops
    expected = model.state_dict()
    converted, unmapped = {}, []
    for key, value in keys.items():
        new_key = _QUANTIZER_KEYS.get(key, key)
        if new_key in expected:
            converted[new_key] = value
        else:
            unmapped.append(prefix + key)
    _raise_on_mismatch(converted, expected, unmapped, what=f"tokenizer checkpoint (prefix {prefix!r})")
    return converted


def _raise_on_mismatch(
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    unmapped: list[str],
    what: str,
    inconsistent: list[str] | None = None,
) -> None:
    missing = sorted(set(expected) - set(converted))
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if inconsistent:
        problems.append(
            f"inconsistent derived or aliased entries ({len(inconsistent)}): {sorted(inconsistent)}"
        )
    if unmapped:
        problems.append(f"unexpected keys ({len(unmapped)}): {sorted(unmapped)}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing}")
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): {wrong}")
    if problems:
        raise ValueError(f"{what} does not match the model; " + "; ".join(problems))
