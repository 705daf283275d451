"""Model cards: one per released original configuration (9 solvers, 2 tokenizers) with Hub metadata that
matches the configuration's tasks, and the conversion writing the matching card as README.md."""

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from ait_hf import PIPELINE_TASKS, AiTConfig
from ait_hf.original_presets import ORIGINAL_SOLVER_CONFIGS, ORIGINAL_TOKENIZER_CONFIGS
from conversion.convert_ait_to_hf import MODEL_CARDS_DIR, convert, model_card

TASK_PIPELINES = {task: pipeline for pipeline, task in PIPELINE_TASKS.items()}
TASK_DATASETS = {"depth": "nyu_depth_v2", "instance_segmentation": "coco", "object_detection": "coco"}
SECTIONS = ("## What it is", "## Reported results", "## Intended use", "## How to convert", "## How to use",
            "## Limitations", "## Licence", "## Citation")  # fmt: skip


def test_one_card_per_released_configuration():
    cards = {path.stem for path in MODEL_CARDS_DIR.glob("*.md")}
    assert cards == set(ORIGINAL_SOLVER_CONFIGS) | set(ORIGINAL_TOKENIZER_CONFIGS)


@pytest.mark.parametrize("name", sorted(ORIGINAL_SOLVER_CONFIGS))
def test_solver_card_metadata_matches_the_configuration(name):
    text = (MODEL_CARDS_DIR / f"{name}.md").read_text()
    card = ModelCard(text)
    tasks = AiTConfig.from_original_preset(name).tasks
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == TASK_PIPELINES[tasks[0]]
    assert card.data.license == "unknown"
    assert set(card.data.datasets) == {TASK_DATASETS[task] for task in tasks}
    assert "custom_code" in card.data.tags
    for section in SECTIONS:
        assert section in text, section
    assert f"--original-config {name}" in text and f"ait/configs/{name}.py" in text
    assert "no licence" in text.lower()
    if name != "swinv2b_640reso_detonly":  # released with reported results
        assert card.data.metrics and "| " in text.split("## Reported results")[1].split("## Intended use")[0]
    else:
        assert "no results" in text


@pytest.mark.parametrize("name", sorted(ORIGINAL_TOKENIZER_CONFIGS))
def test_tokenizer_card_metadata(name):
    text = (MODEL_CARDS_DIR / f"{name}.md").read_text()
    card = ModelCard(text)
    assert card.data.library_name == "transformers" and card.data.license == "unknown"
    assert card.data.pipeline_tag is None  # a tokenizer is no pipeline model
    expected = "nyu_depth_v2" if ORIGINAL_TOKENIZER_CONFIGS[name]["max_value"] == 10.0 else "coco"
    assert card.data.datasets == [expected]
    assert f"--original-config {name}" in text
    for section in SECTIONS:
        assert section in text, section


def test_conversion_picks_the_card_by_preset_or_config_file_name():
    from hf_testing import tiny_solver

    expected = (MODEL_CARDS_DIR / "swinv2b_480reso_depthonly.md").read_text()
    model = tiny_solver(("depth",))
    assert model_card("swinv2b_480reso_depthonly", model, "ait_depth_swinv2b_ar.pth") == expected
    assert model_card("/configs/swinv2b_480reso_depthonly.py", model, "x.pth") == expected


@pytest.mark.parametrize(
    ("case", "checkpoint", "pipeline_tag", "dataset"),
    [
        ("insseg", "checkpoint.pth", "image-segmentation", "coco"),
        ("depth_ar", "checkpoint.pth", "depth-estimation", "nyu_depth_v2"),
        ("vqvae_insseg", "checkpoint_ddp.pth", None, "coco"),
    ],
)
def test_conversion_writes_a_generated_card_for_other_checkpoints(
    fixtures_dir, tmp_path, case, checkpoint, pipeline_tag, dataset
):
    directory = fixtures_dir / case
    derived = directory / "derived_buffers.npz"
    out = tmp_path / "out"
    convert(str(directory / checkpoint), str(directory / "config.json"), str(out),
            derived_buffers=str(derived) if derived.exists() else None)  # fmt: skip
    card = ModelCard((out / "README.md").read_text())
    assert card.data.pipeline_tag == pipeline_tag
    assert card.data.datasets == [dataset] and card.data.license == "unknown"
    assert f"`{checkpoint}`" in card.text and "not one of the released original checkpoints" in card.text


def test_cards_do_not_claim_unverified_numbers_as_measured():
    for path in MODEL_CARDS_DIR.glob("swinv2*.md"):
        text = path.read_text()
        if "## Reported results" in text and "no results" not in text:
            assert "not re-measured" in text, path.name


def test_readme_of_the_integration():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for task in ('"depth-estimation"', '"image-segmentation"', '"object-detection"'):
        assert f"pipeline({task}" in readme
