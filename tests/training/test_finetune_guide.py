"""The README's fine-tuning guide, run as written on a small converted-like checkpoint and a user depth folder."""

import torch

from ait_hf.configuration_ait import AiTConfig
from ait_hf.modeling_ait import AiTForDepthAndInstanceSegmentation
from training.presets._tiny import tiny_solver_config


def test_finetune_guide_runs(training_data, tmp_path):
    checkpoint = tmp_path / "converted"
    AiTForDepthAndInstanceSegmentation(AiTConfig(**tiny_solver_config(["depth"]))).save_pretrained(checkpoint)
    # A user's folder: RGB images, uint16 millimetre depth PNGs and a list file "image depth" per line.
    my_depth, list_file = training_data["nyu"], training_data["train_list"]
    output = tmp_path / "finetuned"

    # ---- the guide (README.md, Training section), with the tiny model's 64x64 crop instead of 480x480 ----
    from transformers import Trainer, TrainingArguments

    from ait_hf import AiTForDepthAndInstanceSegmentation as Model
    from ait_hf.data import DepthCollator, NYUDepthTrainTransform, load_nyu_depth_v2

    model = Model.from_pretrained(checkpoint)
    train = load_nyu_depth_v2(my_depth, "train", list_file=list_file, cache_dir=training_data["cache"])
    train = train.with_transform(NYUDepthTrainTransform(crop_size=(64, 64)))
    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=2, learning_rate=1e-4, max_steps=3,
        remove_unused_columns=False, label_names=["depth_labels"], report_to=[],
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=train, data_collator=DepthCollator()).train()
    model.save_pretrained(output / "final")
    # ---- end of the guide ----

    tuned = Model.from_pretrained(output / "final")
    original = Model.from_pretrained(checkpoint)
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert any(k.startswith("decoder.") for k in changed)
    assert not any(k.startswith("depth_tokenizer.") for k in changed)  # the tokenizer stays frozen
