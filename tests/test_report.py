"""Tests of lgtm.report: atomic JSON, metrics.json, influence.jsonl, plots, summary table."""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch
from rich.console import Console

from lgtm.errors import LgtmInputError
from lgtm.report import (
    InfluenceLog,
    choose_tracked_ids,
    make_plots,
    read_influence,
    summary_table,
    write_json_atomic,
    write_metrics,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- JSON files


def test_write_json_atomic_round_trips_and_leaves_no_tmp(tmp_path):
    path = tmp_path / "sub" / "state.json"
    obj = {
        "a": 1,
        "b": [1.5, "x", None],
        "nested": {"np": np.float32(0.25), "arr": np.arange(3), "t": torch.tensor(2.0)},
        "nan": float("nan"),
        "path": tmp_path / "p",
    }
    write_json_atomic(path, obj)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]
    data = json.loads(path.read_text())
    assert data == {
        "a": 1,
        "b": [1.5, "x", None],
        "nested": {"np": 0.25, "arr": [0, 1, 2], "t": 2.0},
        "nan": None,  # strict JSON: NaN is written as null
        "path": str(tmp_path / "p"),
    }
    write_json_atomic(path, {"v": 2})  # replaces
    assert json.loads(path.read_text()) == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_write_json_atomic_failure_keeps_old_file_and_no_tmp(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic(path, {"ok": True})

    class Boom:
        def tolist(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"bad": Boom()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_write_metrics_adds_versions(tmp_path):
    path = write_metrics(tmp_path, {"student": {"accuracy": 0.9}, "method": "lgtm"})
    assert path == tmp_path / "metrics.json"
    data = json.loads(path.read_text())
    assert data["student"] == {"accuracy": 0.9}
    assert set(data["versions"]) >= {"python", "torch", "transformers", "accelerate", "lgtm"}
    assert data["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    write_metrics(tmp_path, {"versions": {"mine": "1"}})  # the caller's own wins
    assert json.loads(path.read_text())["versions"] == {"mine": "1"}


# --------------------------------------------------------------------------- influence log


def test_influence_log_writes_only_tracked_ids_with_correct_fields(tmp_path):
    path = tmp_path / "influence.jsonl"
    log = InfluenceLog(path, tracked_ids=[3, 7, 100])
    ids = torch.tensor([1, 3, 5, 7])
    influence = torch.tensor([0.5, -0.25, 0.125, 2.0])
    labels = torch.tensor([0, 1, 0, 0])
    teacher = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [1.0, 0.0], [2.0, 0.0]])
    student = torch.tensor([[0.0, 1.0], [math.log(4.0), 0.0], [0.0, 0.0], [0.0, 1.0]])
    log.log(12, 0.5, ids, influence, labels, teacher, student)
    log.log(13, 0.52, [1, 2], [0.1, 0.2], [0, 1], np.zeros((2, 2)), np.zeros((2, 2)))  # none
    log.close()
    log.close()  # idempotent

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in records] == [3, 7]
    fields = {
        "step",
        "epoch",
        "id",
        "influence",
        "label",
        "teacher_pred",
        "student_pred",
        "teacher_prob",
        "student_prob",
    }
    assert all(set(r) == fields for r in records)
    r3, r7 = records
    assert r3["step"] == 12 and r3["epoch"] == 0.5
    assert r3["influence"] == pytest.approx(-0.25)
    assert r3["label"] == 1
    assert r3["teacher_pred"] == 1 and r3["teacher_prob"] == pytest.approx(0.75)  # P(gold)
    assert r3["student_pred"] == 0 and r3["student_prob"] == pytest.approx(0.2)
    assert r7["influence"] == pytest.approx(2.0) and r7["label"] == 0
    assert r7["teacher_pred"] == 0
    assert r7["teacher_prob"] == pytest.approx(math.exp(2) / (math.exp(2) + 1))
    assert r7["student_pred"] == 1
    assert r7["student_prob"] == pytest.approx(1 / (1 + math.e))


def test_influence_log_regression_and_missing_influence(tmp_path):
    path = tmp_path / "influence.jsonl"
    with InfluenceLog(path, [0]) as log:
        log.log(1, 0.1, [0, 1], None, [3.5, 1.0], [[3.0], [0.0]], [[2.5], [0.0]])
    (record,) = read_influence(path)
    assert record["influence"] is None
    assert record["label"] == 3.5
    assert record["teacher_pred"] == 3.0 and record["student_pred"] == 2.5
    assert record["teacher_prob"] is None and record["student_prob"] is None


def test_influence_log_resume_keeps_lines_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "influence.jsonl"
    with InfluenceLog(path, [0]) as log:
        for step in (10, 20, 30):
            log.log(step, step / 10, [0], [float(step)], [0], [[1.0, 0.0]], [[1.0, 0.0]])
    with path.open("a") as f:
        f.write('{"step": 40, "epo')  # a torn line of a killed run
    with InfluenceLog(path, [0], resume_step=20) as log:
        log.log(30, 3.0, [0], [31.0], [0], [[1.0, 0.0]], [[1.0, 0.0]])
    assert [(r["step"], r["influence"]) for r in read_influence(path)] == [
        (10, 10.0),
        (20, 20.0),
        (30, 31.0),
    ]
    with InfluenceLog(path, [0]):  # a fresh run starts an empty file
        pass
    assert path.read_text() == ""


def test_choose_tracked_ids_is_seeded_sorted_and_order_independent():
    ids = list(range(1000))
    a = choose_tracked_ids(ids, n=64, seed=3)
    assert len(a) == 64 == len(set(a)) and a == sorted(a) and set(a) <= set(ids)
    assert choose_tracked_ids(list(reversed(ids)), n=64, seed=3) == a
    assert choose_tracked_ids(ids, n=64, seed=4) != a
    assert choose_tracked_ids([5, 2, 9], n=64) == [2, 5, 9]


# --------------------------------------------------------------------------- plots


def _synthetic_run(out, *, steps: int = 120, log_every: int = 10, leak: bool = False):
    rng = np.random.default_rng(0)
    history = [
        {
            "step": 0,
            "epoch": 0.0,
            "student_eval": {"accuracy": 0.5, "f1": 0.4},
            "teacher_eval": {"accuracy": 0.5, "f1": 0.45},
        }
    ]
    for step in range(1, steps + 1):
        entry = {
            "step": step,
            "epoch": step / 40,
            "student_loss": math.exp(-step / 50) + 0.05 * rng.random(),
            "teacher_loss": 0.8 * math.exp(-step / 40) + 0.05 * rng.random(),
            "influence_mean": 0.001 * rng.standard_normal(),
            "influence_std": 0.01,
        }
        if step % 40 == 0:
            entry["student_eval"] = {"accuracy": 0.6 + step / 1000, "f1": 0.55 + step / 1000}
            entry["teacher_eval"] = {"accuracy": 0.7 + step / 1000, "f1": float("nan")}
        history.append(entry)
    write_metrics(
        out,
        {
            "task": "mrpc",
            "method": "lgtm",
            "student": {"accuracy": 0.72, "f1": 0.67},
            "teacher": {"accuracy": 0.82, "f1": 0.8},
            "history": history,
            "feedback": {
                "source": "validation" if leak else "train",
                "fraction": None if leak else 0.1,
                "leaks_into_evaluation": leak,
            },
        },
    )
    tracked = choose_tracked_ids(range(500), n=16, seed=0)
    difficulty = {i: rng.uniform(-2, 2) for i in tracked}
    labels = np.array([i % 2 for i in tracked])
    with InfluenceLog(out / "influence.jsonl", tracked) as log:
        for step in range(log_every, steps + 1, log_every):
            margin = np.array([difficulty[i] for i in tracked]) + 3 * step / steps - 1
            gold = np.eye(2)[labels]
            teacher = gold * (margin[:, None] + 0.2)
            student = gold * margin[:, None]
            influence = 0.01 * np.array([difficulty[i] for i in tracked]) * math.sin(
                math.pi * step / steps
            ) + 0.002 * rng.standard_normal(len(tracked))
            log.log(step, step / 40, tracked, influence, labels, teacher, student)


def test_make_plots_writes_four_valid_pngs(tmp_path):
    import matplotlib.image

    _synthetic_run(tmp_path)
    paths = make_plots(tmp_path)
    names = ["dev_metrics.png", "losses.png", "influence_samples.png", "influence_mean.png"]
    assert [p.name for p in paths] == names
    for path in paths:
        assert path.parent == tmp_path / "plots"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 15_000  # real content, not an empty canvas
    image = matplotlib.image.imread(tmp_path / "plots" / "influence_samples.png")
    height, width, channels = image.shape
    assert width > 800 and height > 500 and channels in (3, 4)
    assert image[..., :3].std() > 0.05  # not a blank image


def test_make_plots_without_influence_skips_influence_figures(tmp_path):
    _synthetic_run(tmp_path, leak=True)
    (tmp_path / "influence.jsonl").unlink()
    paths = make_plots(tmp_path)
    assert [p.name for p in paths] == ["dev_metrics.png", "losses.png"]
    assert not (tmp_path / "plots" / "influence_mean.png").exists()


def test_make_plots_needs_metrics_json(tmp_path):
    with pytest.raises(LgtmInputError, match="metrics.json"):
        make_plots(tmp_path)


# --------------------------------------------------------------------------- summary table


def _render(table) -> str:
    console = Console(record=True, width=120, force_terminal=False)
    console.print(table)
    return console.export_text()


RESULT = {
    "task": "sst2",
    "method": "lgtm",
    "student": {"accuracy": 0.87654},
    "teacher": {"accuracy": 0.91234},
    "eval_split": "validation",
    "parameters": {"student": 15_616_130, "teacher": 22_713_986},
    "latency_seconds": {"student": 0.004, "teacher": 0.012},
    "latency_batch_size": 64,
    "wall_seconds": 312.4,
    "samples_per_second": 45.67,
    "seed": 7,
    "feedback": {"source": "train", "fraction": 0.1, "leaks_into_evaluation": False},
    "majority_class": {"accuracy": 0.50917},
}


def test_summary_table_shows_the_key_numbers():
    text = _render(summary_table(RESULT))
    for expected in (
        "sst2",
        "lgtm",
        "validation accuracy",
        "0.8765",
        "0.9123",
        "-0.0358",
        "15.6 M",
        "22.7 M",
        "4.0 ms",
        "12.0 ms",
        "3.00× faster",
        "5 min 12 s",
        "45.7 samples/s",
        "10% of train",
        "seed: 7",
        "majority class: accuracy 0.5092",
    ):
        assert expected in text, expected
    assert "LEAK" not in text


def test_summary_table_flags_leaking_feedback_and_several_splits():
    result = dict(RESULT)
    result["feedback"] = {"source": "validation", "leaks_into_evaluation": True}
    result["student"] = {
        "validation_matched": {"accuracy": 0.81},
        "validation_mismatched": {"accuracy": 0.82},
    }
    result["teacher"] = {
        "validation_matched": {"accuracy": 0.84},
        "validation_mismatched": {"accuracy": 0.85},
    }
    text = _render(summary_table(result))
    assert "LEAKS INTO EVALUATION" in text
    assert "validation_matched accuracy" in text and "validation_mismatched accuracy" in text
    assert "0.8100" in text and "0.8500" in text
    assert "(leaked)" in text


def test_summary_table_quotes_the_default_runs_measured_gain():
    gain = {"mean": 5.25, "low": 1.04, "high": 9.46, "n": 3, "source": "results/x.md"}
    text = " ".join(_render(summary_table({**RESULT, "default_run_gain": gain})).split())
    assert "+5.2 points [+1.0, +9.5] (95%, 3 paired seeds) against the student alone" in text
    gain = {"mean": 1.6, "low": -1.38, "high": 4.58, "n": 3, "source": "results/x.md"}
    gain["verdict"] = "no difference detected"
    text = " ".join(_render(summary_table({**RESULT, "default_run_gain": gain})).split())
    assert "+1.6 points [-1.4, +4.6] (95%, 3 paired seeds) against the student alone: no " in text
    assert "results/x.md" in text
    assert "measured:" not in _render(summary_table(RESULT))  # only the demonstration's


def test_summary_table_tolerates_missing_parts():
    text = _render(summary_table({"student": {"pearson": float("nan")}, "method": "kd"}))
    assert "pearson" in text and "–" in text and "kd" in text


def test_majority_class_scores_the_most_frequent_training_class():
    from lgtm.data import get_task
    from lgtm.evaluation import majority_class

    mrpc = get_task("mrpc")
    dev = [{"labels": y} for y in (0, 1, 1, 1, 0)]
    # training mostly 1: always 1 is right 3 times of 5; F1 of the positive class 2·3/(2·3+2)
    scores = majority_class(mrpc, [1, 1, 0], {"validation": dev})
    assert scores == pytest.approx({"f1": 0.75, "accuracy": 0.6})
    # a tie goes to class 0; two splits give {split: scores}
    two = majority_class(mrpc, [0, 1], {"a": dev, "b": dev[:2]})
    assert two["a"] == pytest.approx({"f1": 0.0, "accuracy": 0.4})
    assert two["b"] == pytest.approx({"f1": 0.0, "accuracy": 0.5})
    assert majority_class(get_task("stsb"), [0.5, 3.0], {"validation": dev}) is None


def test_loss_caption_says_what_each_curve_is():
    from lgtm.report import loss_caption

    assert "no teacher" in loss_caption("ce")
    assert "no longer changes" in loss_caption("kd") and "stage one" in loss_caption("kd")
    for joint in ("online", "meta", "lgtm", "dml", "prokt", "pesf"):
        text = loss_caption(joint)
        assert "may rise" in text and "teacher's loss" in text, joint
    lgtm = loss_caption("lgtm")
    assert "on the training batch" in lgtm and "feedback batch" in lgtm and "influence" in lgtm
