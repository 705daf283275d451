"""ait-hf: AiT (All in Tokens) for Hugging Face transformers.

Importing the package registers the AiT configs, models and image processors with the transformers Auto
classes, so `AutoModelForDepthEstimation.from_pretrained(dir)`, `AutoImageProcessor.from_pretrained(dir)` and
`pipeline("depth-estimation" | "image-segmentation" | "object-detection", model=dir)` work on AiT folders.
"""

from .configuration_ait import AiTConfig, AiTVocabulary, AiTVQVAEConfig
from .hub import (
    PIPELINE_TASKS,
    add_remote_code,
    image_processor_for_config,
    model_task_for,
    push_folder_to_hub,
    register_auto_classes,
    save_for_remote_code,
)
from .image_processing_ait import AiTImageProcessor
from .image_processing_pil_ait import AiTImageProcessorPil
from .modeling_ait import (
    AiTForDepthAndInstanceSegmentation,
    AiTModel,
    AiTModelOutput,
    AiTOutput,
    AiTPreTrainedModel,
)
from .modeling_ait_vqvae import AiTVQVAE, AiTVQVAEOutput

register_auto_classes()

__all__ = [
    "PIPELINE_TASKS",
    "AiTConfig",
    "AiTForDepthAndInstanceSegmentation",
    "AiTImageProcessor",
    "AiTImageProcessorPil",
    "AiTModel",
    "AiTModelOutput",
    "AiTOutput",
    "AiTPreTrainedModel",
    "AiTVQVAE",
    "AiTVQVAEConfig",
    "AiTVQVAEOutput",
    "AiTVocabulary",
    "add_remote_code",
    "image_processor_for_config",
    "model_task_for",
    "push_folder_to_hub",
    "register_auto_classes",
    "save_for_remote_code",
]
