"""Data for AiT: `datasets` loaders (NYUv2, COCO instances, box-cropped masks), the original augmentations,
collators that build the model's batches, and a synthetic on-disk data generator for tests.

This package imports no modeling code.
"""

from .box_masks import (
    build_box_cropped_masks,
    crop_and_resize_masks,
    load_box_cropped_masks,
    write_box_cropped_masks,
)
from .coco import (
    coco_category_ids,
    coco_id2label,
    coco_object_masks,
    decode_coco_segmentation,
    load_coco_instances,
)
from .collators import (
    DepthCollator,
    DetectionCollator,
    MultiTaskBatchSampler,
    MultiTaskCollator,
    MultiTaskDataset,
    VQVAECollator,
)
from .nyu import (
    NYUDepthDecode,
    depth_to_metres,
    load_nyu_depth_v2,
    packaged_nyu_list_file,
    parse_nyu_list_file,
)
from .photometric import PhotometricDistortion
from .prepared import load_prepared_dataset
from .transforms import (
    COCO_IMAGE_MEAN,
    COCO_IMAGE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BoxMaskTransform,
    CocoResizePad,
    Compose,
    DepthVQVAETransform,
    LargeScaleJitter,
    NYUDepthEvalTransform,
    NYUDepthTrainTransform,
    patch_mask,
    training_object_indices,
)
from .validation import BadSampleWarning, DataValidationError, SkipBadSamples

__all__ = [
    "COCO_IMAGE_MEAN",
    "COCO_IMAGE_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BadSampleWarning",
    "BoxMaskTransform",
    "CocoResizePad",
    "Compose",
    "DataValidationError",
    "DepthCollator",
    "DepthVQVAETransform",
    "DetectionCollator",
    "LargeScaleJitter",
    "MultiTaskBatchSampler",
    "MultiTaskCollator",
    "MultiTaskDataset",
    "NYUDepthDecode",
    "NYUDepthEvalTransform",
    "NYUDepthTrainTransform",
    "PhotometricDistortion",
    "SkipBadSamples",
    "VQVAECollator",
    "build_box_cropped_masks",
    "coco_category_ids",
    "coco_id2label",
    "coco_object_masks",
    "crop_and_resize_masks",
    "decode_coco_segmentation",
    "depth_to_metres",
    "load_box_cropped_masks",
    "load_coco_instances",
    "load_nyu_depth_v2",
    "load_prepared_dataset",
    "packaged_nyu_list_file",
    "parse_nyu_list_file",
    "patch_mask",
    "training_object_indices",
    "write_box_cropped_masks",
]
