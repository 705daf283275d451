"""Configurations of the AiT tokenizers (`AiTVQVAEConfig`) and the AiT task solver (`AiTConfig`).

The shared token vocabulary is defined here, once: `AiTVocabulary` derives every offset from the
number of box bins, classes, mask codes and depth codes, and every other module asks the config for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig

# Tasks the solver knows, with the task ids of the original implementation (they index the learned
# task embeddings, so they are part of the checkpoint format).
TASK_IDS: dict[str, int] = {"object_detection": 0, "instance_segmentation": 1, "depth": 2}
ORIGINAL_TASK_NAMES: dict[str, str] = {
    "det": "object_detection",
    "insseg": "instance_segmentation",
    "depth": "depth",
}

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


class AiTVQVAEConfig(PretrainedConfig):
    """Configuration of an AiT VQ-VAE tokenizer (depth maps or box-cropped instance masks).

    Args:
        image_size: side of the square input map (480 for depth, 64 for masks).
        downsample_ratio: input pixels per code along each side (32 for depth, 16 for masks); a power of 2.
        num_embeddings: codebook size (number of codes).
        embedding_dim: dimension of each code vector.
        hidden_size: channels of the first encoder convolution; doubles at every further downsampling.
        num_resnet_blocks: residual blocks after the encoder's and before the decoder's convolutions.
        normalize_inputs: map inputs with `2 * (x / max_value - 0.5)` (masks) or not (depth).
        max_value: the value mapped to 1 by that normalisation.
        tau: multiplier of the code logits in `decode_soft` (`softmax(logits * tau)`).
        commitment_cost: weight of the commitment loss.
        ema_decay, ema_epsilon: EMA codebook update settings.
        reconstruction_loss: `"mse"` or `"mse_ignore_zero"` (depth: pixels whose target is 0 are invalid).
        tokenizer_type: `"depth"` or `"mask"`; informative, used in error messages and model cards.
    """

    model_type = "ait_vqvae"

    def __init__(
        self,
        image_size: int = 480,
        downsample_ratio: int = 32,
        num_embeddings: int = 128,
        embedding_dim: int = 512,
        hidden_size: int = 16,
        num_resnet_blocks: int = 2,
        normalize_inputs: bool = False,
        max_value: float = 1.0,
        tau: float = 1.0,
        commitment_cost: float = 0.25,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        reconstruction_loss: str = "mse_ignore_zero",
        tokenizer_type: str = "depth",
        **kwargs: Any,
    ) -> None:
        if downsample_ratio < 2 or downsample_ratio & (downsample_ratio - 1):
            raise ValueError(
                f"AiTVQVAEConfig.downsample_ratio must be a power of 2 >= 2, got {downsample_ratio}"
            )
        if image_size % downsample_ratio:
            raise ValueError(
                f"AiTVQVAEConfig.image_size ({image_size}) must be a multiple of downsample_ratio ({downsample_ratio})"
            )
        if reconstruction_loss not in ("mse", "mse_ignore_zero"):
            raise ValueError(
                f"AiTVQVAEConfig.reconstruction_loss must be 'mse' or 'mse_ignore_zero', got {reconstruction_loss!r}"
            )
        self.image_size = image_size
        self.downsample_ratio = downsample_ratio
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_resnet_blocks = num_resnet_blocks
        self.normalize_inputs = normalize_inputs
        self.max_value = max_value
        self.tau = tau
        self.commitment_cost = commitment_cost
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.reconstruction_loss = reconstruction_loss
        self.tokenizer_type = tokenizer_type
        super().__init__(**kwargs)

    @property
    def grid_size(self) -> int:
        """Codes along each side of the token grid."""
        return self.image_size // self.downsample_ratio

    @property
    def num_tokens(self) -> int:
        """Codes per map (the token sequence length)."""
        return self.grid_size**2

    @classmethod
    def from_original_stage_config(cls, model_cfg: dict[str, Any], tau: float = 1.0) -> AiTVQVAEConfig:
        """Build from the `model` dict of an original stage-1 config (`vae/configs/*/ait_*_vqvae.py`)."""
        _reject_unsupported(model_cfg, {"channels": 1, "train_objective": "regression", "residul_type": "v1"})
        loss_type = model_cfg.get("loss_type", "mse")
        return cls(
            image_size=model_cfg["image_size"],
            downsample_ratio=model_cfg["downsample_ratio"],
            num_embeddings=model_cfg["num_tokens"],
            embedding_dim=model_cfg["codebook_dim"],
            hidden_size=model_cfg["hidden_dim"],
            num_resnet_blocks=model_cfg.get("num_resnet_blocks", 2),
            normalize_inputs=model_cfg.get("use_norm", True),
            max_value=float(model_cfg.get("max_value", 1.0)),
            tau=tau,
            reconstruction_loss=loss_type,
            tokenizer_type="depth" if loss_type == "mse_ignore_zero" else "mask",
        )

    @classmethod
    def from_original_head_config(cls, vae_cfg: dict[str, Any]) -> AiTVQVAEConfig:
        """Build from a task head's `vae_cfg` of an original solver config (the AiT-side VQVAE).

        The AiT-side class divides `hidden_dim` by `downsample_ratio // 2` to get the first conv width and
        always normalises with `max_value = 1`.
        """
        token_length = vae_cfg.get("token_length", 16)
        image_size = vae_cfg.get("mask_size", 64)
        grid = math.isqrt(token_length)
        if grid * grid != token_length or image_size % grid:
            raise ValueError(
                f"vae_cfg token_length={token_length} / mask_size={image_size} is not a square grid"
            )
        downsample_ratio = image_size // grid
        use_norm = vae_cfg.get("use_norm", True)
        return cls(
            image_size=image_size,
            downsample_ratio=downsample_ratio,
            num_embeddings=vae_cfg.get("num_embeddings", 1024),
            embedding_dim=vae_cfg.get("embedding_dim", 512),
            hidden_size=vae_cfg.get("hidden_dim", 256) // (downsample_ratio // 2),
            num_resnet_blocks=vae_cfg.get("num_resnet_blocks", 2),
            normalize_inputs=use_norm,
            max_value=1.0,
            tau=float(vae_cfg.get("tau", 1.0)),
            reconstruction_loss="mse" if use_norm else "mse_ignore_zero",
            tokenizer_type="mask" if use_norm else "depth",
        )


def _reject_unsupported(cfg: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if key in cfg and cfg[key] != value:
            raise ValueError(f"original config field {key!r}={cfg[key]!r} is not supported (only {value!r})")


@dataclass(frozen=True)
class AiTVocabulary:
    """Layout of the shared token vocabulary: `[box bins | classes | specials | mask codes | depth codes | spare]`.

    Box bins are `0..num_bins` inclusive (num_bins + 1 tokens). The two special tokens are the (unused)
    end-of-sequence slot and the noise label of Pix2Seq-style sequence augmentation.
    """

    num_bins: int
    num_classes: int
    num_mask_codes: int
    num_depth_codes: int
    num_spare_codes: int = 0

    @property
    def class_offset(self) -> int:
        return self.num_bins + 1

    @property
    def special_offset(self) -> int:
        return self.class_offset + self.num_classes

    @property
    def noise_label(self) -> int:
        return self.special_offset + 1

    @property
    def mask_offset(self) -> int:
        return self.special_offset + 2

    @property
    def depth_offset(self) -> int:
        return self.mask_offset + self.num_mask_codes

    @property
    def depth_end(self) -> int:
        return self.depth_offset + self.num_depth_codes

    @property
    def size(self) -> int:
        return self.depth_end + self.num_spare_codes

    def box_range(self) -> tuple[int, int]:
        return 0, self.num_bins + 1

    def class_range(self) -> tuple[int, int]:
        return self.class_offset, self.class_offset + self.num_classes

    def mask_range(self) -> tuple[int, int]:
        return self.mask_offset, self.mask_offset + self.num_mask_codes

    def depth_range(self) -> tuple[int, int]:
        return self.depth_offset, self.depth_end


DEFAULT_BACKBONE = {
    "image_size": 192,
    "patch_size": 4,
    "num_channels": 3,
    "embed_dim": 128,
    "depths": [2, 2, 18, 2],
    "num_heads": [4, 8, 16, 32],
    "window_sizes": [30, 30, 30, 15],
    "pretrained_window_sizes": [12, 12, 12, 6],
    "shift_windows": [True, True, False, False],
    "mlp_ratio": 4.0,
    "rpe_hidden_dim": 512,
    "drop_path_rate": 0.1,
    "out_indices": [3],
    "post_norm_init": 0.0,
}


class AiTConfig(PretrainedConfig):
    """Configuration of the AiT task solver (`AiTModel`, `AiTForDepthAndInstanceSegmentation`).

    Args:
        backbone_config: keyword arguments of the SwinV2 backbone (see `DEFAULT_BACKBONE`).
        tasks: the task heads present, a subset of `"depth"`, `"object_detection"`, `"instance_segmentation"`.
        d_model, encoder_layers, decoder_layers, num_attention_heads, ffn_dim: transformer sizes.
        dropout, drop_path, drop_path_linear: regularisation of the transformer.
        encoder_grid: `(rows, cols)` of the sine position code of the encoder (15x15 for 480 inputs,
            20x20 for 640 inputs); the backbone feature grid must fit inside it.
        position_encoding: `"sine"`, `"sine_norm"` or `"learned"` encoder positions.
        max_decoder_length: number of learned decoder positions per task.
        num_task_embeddings: rows of the task embedding table.
        pad_to: zero-pad inputs on the bottom/right to this square size before the backbone (0: off).
        num_bins, num_classes, num_mask_codes, num_depth_codes, num_spare_codes: the vocabulary (see
            `AiTVocabulary`).
        soft_token_inputs: feed `softmax(logits) @ code embeddings` back into the decoder for dense-code
            steps (the original `soft_transformer`).
        soft_mask_decoding: decode masks from the mask-code distributions (`decode_soft`) instead of argmax.
        depth_soft_decoding: decode depth from the depth-code distributions.
        depth_parallel: AiT-P: every depth query is the learned mask embedding, decoded in one pass.
        sampling_top_p: nucleus-sampling mass; 0 means greedy decoding.
        depth_tokenizer_config, mask_tokenizer_config: `AiTVQVAEConfig` dicts of the tokenizers.
        depth_loss_weight, depth_decoder_loss_weight: depth cross-entropy weight and the weight of the
            SILog loss on the soft-decoded depth (auxiliary loss).
        depth_tta_windows, depth_tta_flip: test-time protocol: sliding windows over wide inputs and flips.
        num_queries: objects per image (sequence length `num_queries * (5 [+ mask tokens])`).
        coord_norm_value: box coordinates are quantised as `round(x / coord_norm_value * num_bins)`.
        sequence_augmentation: Pix2Seq noise and duplicate objects in training sequences.
        class_label_corruption: `"rand_n_fake_cls"`, `"rand_cls"` or `"none"`.
        detection_loss_weight, instance_loss_weight: task loss weights.
        box_loss_weight, class_loss_weight, mask_loss_weight: token-class weights of the cross-entropy.
        box_regression_loss_weight: weight of an L1 loss between the expected box bin under the softmax over
            the box bins and the target bin (in units of the image side), added per supervised box token. Not
            in the original (0 keeps its losses); a dense location signal that the cross-entropy lacks.
        mask_decoder_loss_weight, mask_dice_loss_weight, max_objects_decoder_loss: the instance mask
            auxiliary loss (dice + MSE of soft-decoded masks).
    """

    model_type = "ait"

    def __init__(
        self,
        backbone_config: dict[str, Any] | None = None,
        tasks: list[str] | tuple[str, ...] = ("depth",),
        d_model: int = 256,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        num_attention_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        drop_path: float = 0.1,
        drop_path_linear: bool = False,
        encoder_grid: tuple[int, int] | list[int] = (15, 15),
        position_encoding: str = "sine",
        max_decoder_length: int = 2100,
        num_task_embeddings: int = 4,
        pad_to: int = 0,
        image_size: int | None = None,
        num_bins: int = 2000,
        num_classes: int = 80,
        num_mask_codes: int = 128,
        num_depth_codes: int = 128,
        num_spare_codes: int = 0,
        soft_token_inputs: bool = True,
        soft_mask_decoding: bool = True,
        depth_soft_decoding: bool = True,
        depth_parallel: bool = False,
        sampling_top_p: float = 0.0,
        depth_tokenizer_config: dict[str, Any] | None = None,
        mask_tokenizer_config: dict[str, Any] | None = None,
        depth_loss_weight: float = 1.0,
        depth_decoder_loss_weight: float = 1.0,
        depth_tta_windows: int = 2,
        depth_tta_flip: bool = True,
        num_queries: int = 100,
        coord_norm_value: float = 640.0,
        sequence_augmentation: bool = True,
        class_label_corruption: str = "rand_n_fake_cls",
        detection_loss_weight: float = 1.0,
        instance_loss_weight: float = 1.0,
        box_loss_weight: float = 1.0,
        box_regression_loss_weight: float = 0.0,
        class_loss_weight: float = 1.0,
        mask_loss_weight: float = 0.2,
        mask_decoder_loss_weight: float = 5.0,
        mask_dice_loss_weight: float = 1.0,
        max_objects_decoder_loss: int = 100,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in TASK_IDS]
        if unknown or not tasks:
            raise ValueError(f"AiTConfig.tasks must be a non-empty subset of {sorted(TASK_IDS)}, got {tasks}")
        if class_label_corruption not in ("rand_n_fake_cls", "rand_cls", "none"):
            raise ValueError(
                "AiTConfig.class_label_corruption must be 'rand_n_fake_cls', 'rand_cls' or 'none', "
                f"got {class_label_corruption!r}"
            )
        if d_model % num_attention_heads:
            raise ValueError(
                f"AiTConfig.d_model ({d_model}) must be divisible by num_attention_heads ({num_attention_heads})"
            )
        if not 0.0 <= sampling_top_p <= 1.0:
            raise ValueError(f"AiTConfig.sampling_top_p must be in [0, 1], got {sampling_top_p}")
        self.backbone_config = {**DEFAULT_BACKBONE, **(backbone_config or {})}
        self.tasks = tasks
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.num_attention_heads = num_attention_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.drop_path = drop_path
        self.drop_path_linear = drop_path_linear
        self.encoder_grid = list(encoder_grid)
        self.position_encoding = position_encoding
        self.max_decoder_length = max_decoder_length
        self.num_task_embeddings = num_task_embeddings
        self.pad_to = pad_to
        self.num_bins = num_bins
        self.num_classes = num_classes
        self.num_mask_codes = num_mask_codes
        self.num_depth_codes = num_depth_codes
        self.num_spare_codes = num_spare_codes
        self.soft_token_inputs = soft_token_inputs
        self.soft_mask_decoding = soft_mask_decoding
        self.depth_soft_decoding = depth_soft_decoding
        self.depth_parallel = depth_parallel
        self.sampling_top_p = sampling_top_p
        self.depth_tokenizer_config = depth_tokenizer_config if "depth" in tasks else None
        self.mask_tokenizer_config = mask_tokenizer_config if "instance_segmentation" in tasks else None
        if "depth" in tasks and self.depth_tokenizer_config is None:
            self.depth_tokenizer_config = AiTVQVAEConfig(tau=0.8).to_diff_dict()
        if "instance_segmentation" in tasks and self.mask_tokenizer_config is None:
            self.mask_tokenizer_config = AiTVQVAEConfig(
                image_size=64,
                downsample_ratio=16,
                normalize_inputs=True,
                reconstruction_loss="mse",
                tokenizer_type="mask",
            ).to_diff_dict()
        self.depth_loss_weight = depth_loss_weight
        self.depth_decoder_loss_weight = depth_decoder_loss_weight
        self.depth_tta_windows = depth_tta_windows
        self.depth_tta_flip = depth_tta_flip
        self.num_queries = num_queries
        self.coord_norm_value = coord_norm_value
        self.sequence_augmentation = sequence_augmentation
        self.class_label_corruption = class_label_corruption
        self.detection_loss_weight = detection_loss_weight
        self.instance_loss_weight = instance_loss_weight
        self.box_loss_weight = box_loss_weight
        self.box_regression_loss_weight = box_regression_loss_weight
        self.class_loss_weight = class_loss_weight
        self.mask_loss_weight = mask_loss_weight
        self.mask_decoder_loss_weight = mask_decoder_loss_weight
        self.mask_dice_loss_weight = mask_dice_loss_weight
        self.max_objects_decoder_loss = max_objects_decoder_loss
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        # Input size the image processor produces; derived from the tasks unless given.
        self.image_size = image_size or (pad_to if pad_to else 480 if tasks == ["depth"] else 640)
        if "id2label" not in kwargs:
            kwargs["id2label"] = {i: name for i, name in enumerate(COCO_CLASSES[:num_classes])}
        super().__init__(**kwargs)
        vocab = self.vocabulary
        if self.depth_tokenizer_config is not None:
            n = self.depth_tokenizer_config.get("num_embeddings", 128)
            if n != vocab.num_depth_codes:
                raise ValueError(
                    f"depth tokenizer has {n} codes but AiTConfig.num_depth_codes={vocab.num_depth_codes}"
                )
        if self.mask_tokenizer_config is not None:
            n = self.mask_tokenizer_config.get("num_embeddings", 128)
            if n != vocab.num_mask_codes:
                raise ValueError(
                    f"mask tokenizer has {n} codes but AiTConfig.num_mask_codes={vocab.num_mask_codes}"
                )

    @property
    def vocabulary(self) -> AiTVocabulary:
        """The token vocabulary layout; the single source of every offset."""
        return AiTVocabulary(
            self.num_bins, self.num_classes, self.num_mask_codes, self.num_depth_codes, self.num_spare_codes
        )

    @property
    def vocab_size(self) -> int:
        return self.vocabulary.size

    @property
    def backbone_out_channels(self) -> int:
        bb = self.backbone_config
        return bb["embed_dim"] * 2 ** (len(bb["depths"]) - 1)

    @property
    def depth_tokenizer(self) -> AiTVQVAEConfig | None:
        return None if self.depth_tokenizer_config is None else AiTVQVAEConfig(**self.depth_tokenizer_config)

    @property
    def mask_tokenizer(self) -> AiTVQVAEConfig | None:
        return None if self.mask_tokenizer_config is None else AiTVQVAEConfig(**self.mask_tokenizer_config)

    @property
    def mask_tokens_per_object(self) -> int:
        return (
            0
            if self.mask_tokenizer_config is None
            else AiTVQVAEConfig(**self.mask_tokenizer_config).num_tokens
        )

    def object_length(self, task: str) -> int:
        """Tokens per object in a detection / instance segmentation sequence."""
        return 5 + (self.mask_tokens_per_object if task == "instance_segmentation" else 0)

    @classmethod
    def from_original_preset(cls, name: str) -> AiTConfig:
        """Config of one of the released original solver configurations, e.g. `swinv2b_480reso_depthonly`."""
        from .original_presets import (
            ORIGINAL_SOLVER_CONFIGS,  # local: presets are data, kept beside the config
        )

        if name not in ORIGINAL_SOLVER_CONFIGS:
            raise ValueError(f"unknown original preset {name!r}; valid: {sorted(ORIGINAL_SOLVER_CONFIGS)}")
        return cls.from_original_config(ORIGINAL_SOLVER_CONFIGS[name])

    @classmethod
    def from_original_config(cls, model_cfg: dict[str, Any]) -> AiTConfig:
        """Translate the `model` dict of an original solver config (`AiT(backbone, transformer, task_heads)`)."""
        if model_cfg.get("type", "AiT") != "AiT":
            raise ValueError(f"original model type {model_cfg.get('type')!r} is not 'AiT'")
        bb = dict(model_cfg["backbone"])
        tf = dict(model_cfg["transformer"])
        heads = dict(model_cfg["task_heads"])
        unsupported = {
            "pred_eos": False, "qk_pos": False, "enc_mask": False, "dec_mask": False, "mask_before_label": False,
            "with_dec_embed": True, "delay_eos": 0,
        }  # fmt: skip
        _reject_unsupported(tf, unsupported)
        if model_cfg.get("resizeto", 0):
            raise ValueError("original config field 'resizeto' is not supported (only 0)")
        if model_cfg.get("loss_exclude_offset", 0.0):
            raise ValueError("original config field 'loss_exclude_offset' is not supported (only 0)")
        backbone = {
            "image_size": bb.get("pretrain_img_size", 192),
            "patch_size": bb.get("patch_size", 4),
            "num_channels": bb.get("in_chans", 3),
            "embed_dim": bb["embed_dim"],
            "depths": list(bb["depths"]),
            "num_heads": list(bb["num_heads"]),
            "window_sizes": list(bb["window_size"]),
            "pretrained_window_sizes": list(bb.get("pretrain_window_size", [0, 0, 0, 0])),
            "shift_windows": list(bb.get("use_shift", [True] * len(bb["depths"]))),
            "mlp_ratio": bb.get("mlp_ratio", 4.0),
            "rpe_hidden_dim": bb.get("rpe_hidden_dim", 512),
            "drop_path_rate": bb.get("drop_path_rate", 0.1),
            "out_indices": list(bb.get("out_indices", (3,))),
        }
        if bb.get("ape", False):
            raise ValueError("original backbone field 'ape'=True is not supported")
        for key, head in heads.items():
            if head.get("task_id", TASK_IDS[ORIGINAL_TASK_NAMES[key]]) != TASK_IDS[ORIGINAL_TASK_NAMES[key]]:
                raise ValueError(
                    f"original {key}_head task_id={head['task_id']} differs from {TASK_IDS[ORIGINAL_TASK_NAMES[key]]}"
                )
        # instance segmentation first: a checkpoint that also carries a detection head is used for masks by default
        tasks = sorted((ORIGINAL_TASK_NAMES[k] for k in heads), key=lambda t: t != "instance_segmentation")
        num_bins = tf.get("num_bins", 2001)
        num_classes = tf.get("num_classes", 80)
        num_mask = tf.get("num_embeddings", 128)
        num_depth = tf.get("num_embeddings_depth", 128)
        num_vocal = tf["num_vocal"]
        spare = num_vocal - (num_bins + 1 + num_classes + 2 + num_mask + num_depth)
        if spare < 0:
            raise ValueError(
                f"original transformer num_vocal={num_vocal} is smaller than the vocabulary layout"
            )
        kwargs: dict[str, Any] = {
            "backbone_config": backbone,
            "tasks": tasks,
            "d_model": tf.get("d_model", 512),
            "encoder_layers": tf.get("num_encoder_layers", 6),
            "decoder_layers": tf.get("num_decoder_layers", 6),
            "num_attention_heads": tf.get("nhead", 8),
            "ffn_dim": tf.get("dim_feedforward", 1024),
            "dropout": tf.get("drop_out", 0.1),
            "drop_path": tf.get("drop_path", 0.1),
            "drop_path_linear": tf.get("drop_path_linear", False),
            "encoder_grid": [tf.get("n_rows", 20), tf.get("n_cols", 20)],
            "position_encoding": tf.get("pos_enc", "sine"),
            "max_decoder_length": tf.get("dec_length", 2100),
            "num_task_embeddings": tf.get("ntasks", 4),
            "pad_to": model_cfg.get("padto", 0),
            "num_bins": num_bins,
            "num_classes": num_classes,
            "num_mask_codes": num_mask,
            "num_depth_codes": num_depth,
            "num_spare_codes": spare,
            "soft_token_inputs": tf.get("soft_transformer", False),
            "soft_mask_decoding": tf.get("soft_vae", False) or tf.get("soft_transformer", False),
            "depth_parallel": tf.get("parallel", False),
            "sampling_top_p": tf.get("top_p", 0.4),
        }
        if "depth" in heads:
            h = heads["depth"]
            vq = AiTVQVAEConfig.from_original_head_config(h["vae_cfg"])
            vocab = AiTVocabulary(num_bins, num_classes, num_mask, num_depth, spare)
            if h.get("depth_token_offset", vocab.depth_offset) != vocab.depth_offset:
                raise ValueError(
                    f"depth head depth_token_offset={h['depth_token_offset']} disagrees with the vocabulary "
                    f"layout (depth codes start at {vocab.depth_offset})"
                )
            kwargs.update(
                depth_tokenizer_config=vq.to_diff_dict(),
                depth_loss_weight=h.get("loss_weight", 1.0),
                depth_decoder_loss_weight=h.get("decoder_loss_weight", 0.0),
                depth_soft_decoding=h.get("soft_vae", False),
                depth_tta_windows=h.get("shift_size", 2) if h.get("shift_window_test", True) else 1,
                depth_tta_flip=h.get("flip_test", True),
            )
        for key, task in (("det", "object_detection"), ("insseg", "instance_segmentation")):
            if key not in heads:
                continue
            h = heads[key]
            if h.get("coord_norm", "abs") != "abs":
                raise ValueError(
                    f"original {key}_head coord_norm={h.get('coord_norm')!r} is not supported (only 'abs')"
                )
            if h.get("num_bins", num_bins) != num_bins or h.get("num_classes", num_classes) != num_classes:
                raise ValueError(f"original {key}_head num_bins/num_classes disagree with the transformer's")
            _reject_unsupported(h, {"sup_neg_mask": False, "no_sup_mask": False, "mask_before_label": False})
            kwargs.update(
                num_queries=h.get("num_query", 100),
                coord_norm_value=float(h.get("norm_val", 1333)),
                sequence_augmentation=bool(h.get("seq_aug")),
                class_label_corruption=h.get("class_label_corruption", "rand_n_fake_cls"),
            )
            if task == "object_detection":
                kwargs["detection_loss_weight"] = h.get("loss_weight", 1.0)
            else:
                kwargs.update(
                    mask_tokenizer_config=AiTVQVAEConfig.from_original_head_config(
                        h["vae_cfg"]
                    ).to_diff_dict(),
                    instance_loss_weight=h.get("loss_weight", 1.0),
                    box_loss_weight=h.get("box_weight", 1.0),
                    class_loss_weight=h.get("cls_weight", 1.0),
                    mask_loss_weight=h.get("mask_weight", 1.0),
                    mask_decoder_loss_weight=h.get("decoder_loss_weight", 0.0),
                    mask_dice_loss_weight=h.get("dice_loss_weight", 1.0),
                    max_objects_decoder_loss=h.get("max_obj_decoderloss", 100),
                )
        if "det" in heads and "insseg" in heads:
            a, b = heads["det"], heads["insseg"]
            for field in ("num_query", "norm_val"):
                if a.get(field) != b.get(field):
                    raise ValueError(
                        f"det_head.{field}={a.get(field)} differs from insseg_head.{field}={b.get(field)}"
                    )
        return cls(**kwargs)
