"""Model cards (README.md of every saved student and teacher): Hugging Face's ModelCard
metadata that the hub's own parser reads back, the measured scores, the leak warning."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

from lgtm.report.card import BUNDLED_HUB_ID, model_card, write_model_cards


def metrics(leaks: bool = False) -> dict:
    """A metrics.json of an SST-2 run with the bundled teacher (values written by hand)."""
    return {
        "task": "sst2",
        "method": "lgtm",
        "seed": 3,
        "student": {"accuracy": 0.8125},
        "teacher": {"accuracy": 0.875},
        "eval_split": "validation",
        "feedback": {
            "source": "validation" if leaks else "train",
            "size": 100,
            "leaks_into_evaluation": leaks,
        },  # fmt: skip
        "data_source": "glue/SST-2",
        "train_samples": 900,
        "eval_samples": {"validation": 872},
        "parameters": {"student": 11, "teacher": 22},
        "config": {"teacher": None, "data_dir": "glue/SST-2", "task": "sst2", "lr": 1e-4},
    }


def test_card_metadata_reads_back_with_the_scores(tmp_path: Path):
    for role, value in (("student", 0.8125), ("teacher", 0.875)):
        path = tmp_path / f"{role}.md"
        path.write_text(model_card(role, metrics()))
        card = ModelCard.load(path)
        assert card.data.base_model == BUNDLED_HUB_ID
        assert card.data.pipeline_tag == "text-classification"
        assert "method-lgtm" in card.data.tags
        (result,) = card.data.eval_results
        assert (result.metric_type, result.metric_value) == ("accuracy", value)
        assert (result.dataset_config, result.dataset_split) == ("sst2", "validation")
        assert "Intended use" in card.text and "Feedback protocol" in card.text
        assert "LEAKS" not in card.text


def test_leak_warning_where_the_feedback_set_is_the_evaluation_split(tmp_path: Path):
    text = model_card("student", metrics(leaks=True))
    assert "Warning: the feedback set leaks into the evaluation" in text
    assert "it LEAKS into the evaluation" in text


def test_cards_are_written_into_the_model_folders(tmp_path: Path):
    (tmp_path / "student").mkdir()
    (tmp_path / "teacher").mkdir()
    write_model_cards(tmp_path, ["student", "teacher"], metrics())
    assert ModelCard.load(tmp_path / "student" / "README.md").data.eval_results[0].metric_value
    assert "teacher of a distillation run" in (tmp_path / "teacher" / "README.md").read_text()
