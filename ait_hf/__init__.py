"""ait-hf: AiT (All in Tokens) for Hugging Face transformers."""

from .configuration_ait import AiTConfig, AiTVocabulary, AiTVQVAEConfig
from .modeling_ait_vqvae import AiTVQVAE, AiTVQVAEOutput

__all__ = ["AiTConfig", "AiTVQVAE", "AiTVQVAEConfig", "AiTVQVAEOutput", "AiTVocabulary"]
