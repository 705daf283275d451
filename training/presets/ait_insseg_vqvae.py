"""Stage 1, instance-mask tokenizer: the original ``vae/configs/insseg/ait_insseg_vqvae.py``.

64x64 box-cropped binary COCO instance masks (``python -m ait_hf.data.box_masks``), 128 codes of 512 dims on
a 4x4 grid; AdamW 3e-4 without weight decay for 20 epochs at a total batch of 512, 500 warmup steps from
3e-7 then cosine to 1e-6 (timm's scheduler, stepped per iteration). The original scores the tokenizer by
COCO mask AP of reconstructed masks after training; here validation reports the reconstruction loss and the
IoU of the binarised reconstructions on the held-out box masks.
"""

PRESET = {
    "stage": 1,
    "original": "vae/configs/insseg/ait_insseg_vqvae.py",
    "model": {
        "original_stage_config": {
            "image_size": 64,
            "num_resnet_blocks": 2,
            "downsample_ratio": 16,
            "num_tokens": 128,
            "codebook_dim": 512,
            "hidden_dim": 16,
            "channels": 1,
            "use_norm": True,
            "train_objective": "regression",
            "max_value": 1.0,
            "residul_type": "v1",
            "loss_type": "mse",
        },
    },  # fmt: skip
    "data": {"kind": "box_masks", "train_transform": {}, "eval_transform": {}, "eval_crop": None},
    "training": {
        "total_batch_size": 512,
        "num_epochs": 20,
        "max_steps": -1,
        "optimizer": {"type": "adamw", "lr": 3e-4, "weight_decay": 0.0},
        "schedule": {"type": "timm_cosine", "warmup_steps": 500, "warmup_ratio": 1e-3, "min_lr": 1e-6},
        "max_grad_norm": 0.0,
        "mixed_precision": "no",
        "eval_strategy": "epoch",
        "eval_steps": None,
        "save_strategy": "epoch",
        "save_steps": None,
        "logging_steps": 100,
        "eval_batch_size": 512,
        "dataloader_num_workers": 4,
        "seed": 0,
    },
}
