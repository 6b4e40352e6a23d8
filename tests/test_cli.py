"""The ``lgtm`` command end to end on real GLUE files, and every bad input's one-line error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import one_line_error, run, write

from lgtm import cli


def tiny_budget(out: Path) -> list[str]:
    return [
        "--max-train-samples",
        "32",
        "--max-eval-samples",
        "32",
        "--max-length",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--output-dir",
        str(out),
        "--quiet",
    ]


def read_glue_dev(folder: Path, columns: tuple[str, ...], label: str) -> tuple[list, list]:
    """The dev file read here with the csv module alone (independent of lgtm.data)."""
    with open(folder / "dev.tsv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [tuple(r[c] for c in columns) for r in rows], [int(r[label]) for r in rows]


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    "method",
    ["kd", "online", "meta", "lgtm", "lgtm-exact", "ce", "pkd", "dml", "prokt", "pesf"],
)
@pytest.mark.parametrize("task", ["SST-2", "MRPC"])
def test_distill_each_method_on_glue(method, task, glue_dir, tiny_teacher_dir, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = run(
        capsys,
        "distill",
        "--task",
        task.lower().replace("-", ""),
        "--data-dir",
        glue_dir / task,
        "--teacher",
        tiny_teacher_dir,
        "--student-layers",
        "1",
        "--method",
        method,
        *(["--teacher-epochs", "1"] if method in ("kd", "pkd") else []),  # the others: none
        *tiny_budget(out),
    )
    assert status == 0, err
    m = json.loads((out / "metrics.json").read_text())
    metric_names = ["accuracy"] if task == "SST-2" else ["f1", "accuracy"]
    if method == "ce":  # the student alone: no teacher is scored or saved
        assert m["teacher"] is None and not (out / "teacher").exists()
        m["teacher"] = m["student"]
    else:  # a plain model, pesf's adapter merged in
        from transformers import AutoModelForSequenceClassification

        saved = AutoModelForSequenceClassification.from_pretrained(out / "teacher")
        assert type(saved).__name__ == "BertForSequenceClassification"
    assert list(m["student"]) == list(m["teacher"]) == metric_names
    assert all(0.0 <= v <= 1.0 for v in [*m["student"].values(), *m["teacher"].values()])
    assert m["method"] == method and m["leaks_into_evaluation"] is False
    assert m["train_samples"] == 29 and m["feedback"]["size"] == 3  # 32 rows, 10% feedback
    assert m["eval_samples"] == {"validation": 32}
    assert m["history"][-1]["step"] == m["steps"]["distill"] == 4
    assert ("teacher" in m["steps"]) == (method in ("kd", "pkd"))  # stage one: fine-tune it
    assert (out / "influence.jsonl").exists() == method.startswith("lgtm")
    assert (out / "plots" / "dev_metrics.png").stat().st_size > 0
    assert json.loads((out / "student" / "config.json").read_text())["num_hidden_layers"] == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == method


def test_rerunning_the_saved_config_reproduces_the_run(
    glue_dir, tiny_teacher_dir, tmp_path, capsys
):
    first = tmp_path / "first"
    assert (
        run(
            capsys,
            "distill",
            "--task",
            "sst2",
            "--data-dir",
            glue_dir / "SST-2",
            "--teacher",
            tiny_teacher_dir,
            "--student-layers",
            "1",
            "--lr",
            "1e-3",
            *tiny_budget(first),
        )[0]
        == 0
    )
    status, _, err = run(
        capsys, "distill", "--config", first / "config.yaml", "--output-dir", tmp_path / "second"
    )
    assert status == 0, err
    a = json.loads((first / "metrics.json").read_text())
    b = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["student"] == b["student"]
    # the saved config holds every option, and a flag still overrides it
    status, _, err = run(
        capsys,
        "distill",
        "--config",
        first / "config.yaml",
        "--output-dir",
        tmp_path / "third",
        "--seed",
        "7",
        "--quiet",
    )
    assert status == 0, err
    c = json.loads((tmp_path / "third" / "metrics.json").read_text())
    assert c["seed"] == 7 and c["history"] != a["history"]


def test_real_minilm_student_evaluate_predict_and_plot(glue_dir, tmp_path, capsys):
    """The bundled MiniLM teacher and a 1-layer student on MRPC; the saved student is checked
    against metrics computed here from the dev file with transformers and numpy alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "minilm"
    status, _, err = run(
        capsys,
        "distill",
        "--task",
        "mrpc",
        "--data-dir",
        glue_dir / "MRPC",
        "--student-layers",
        "1",
        "--method",
        "lgtm",
        "--max-train-samples",
        "48",
        "--max-length",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--eval-steps",
        "1000",
        "--output-dir",
        out,
        "--quiet",
    )
    assert status == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["parameters"]["student"] < m["parameters"]["teacher"]
    assert m["eval_samples"] == {"validation": 408}

    texts, labels = read_glue_dev(glue_dir / "MRPC", ("#1 String", "#2 String"), "Quality")
    model = AutoModelForSequenceClassification.from_pretrained(out / "student").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    logits = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            chunk = texts[i : i + 64]
            enc = tokenizer(
                [a for a, _ in chunk],
                [b for _, b in chunk],
                truncation=True,
                max_length=32,
                padding=True,
                return_tensors="pt",
            )
            logits.append(model(**enc).logits)
    preds = torch.cat(logits).argmax(-1).numpy()
    y = np.asarray(labels)
    accuracy = float((preds == y).mean())
    tp = float(((preds == 1) & (y == 1)).sum())
    f1 = 2 * tp / max(float((preds == 1).sum() + (y == 1).sum()), 1.0)
    assert m["student"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert m["student"]["f1"] == pytest.approx(f1, abs=1e-9)

    status, stdout, err = run(
        capsys,
        "evaluate",
        "--model",
        out / "student",
        "--data-dir",
        glue_dir / "MRPC",
        "--max-length",
        "32",
    )
    assert status == 0, err
    report = json.loads(stdout)
    assert report["task"] == "mrpc"  # read from the model's config
    assert report["metrics"]["validation"] == pytest.approx(m["student"], abs=1e-9)

    submission = tmp_path / "MRPC.tsv"
    status, _, err = run(
        capsys,
        "predict",
        "--model",
        out / "student",
        "--data-dir",
        glue_dir / "MRPC",
        "--split",
        "dev",
        "--max-length",
        "32",
        "--output",
        submission,
    )
    assert status == 0, err
    lines = submission.read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == len(texts) + 1
    assert [int(line.split("\t")[1]) for line in lines[1:]] == preds.tolist()
    assert [line.split("\t")[0] for line in lines[1:4]] == ["0", "1", "2"]

    for png in (out / "plots").iterdir():
        png.unlink()
    status, stdout, err = run(capsys, "plot", out)
    assert status == 0, err
    assert {Path(p).name for p in stdout.split()} >= {"dev_metrics.png", "influence_mean.png"}


def test_predict_writes_label_names_for_text_label_tasks(tiny_teacher_dir, tmp_path, capsys):
    train_file = tmp_path / "train.csv"
    train_file.write_text(
        "id,premise,hypothesis,label\n"
        + "".join(
            f"{i},a film,{'good' if i % 2 else 'bad'},"
            f"{'entailment' if i % 2 else 'not_entailment'}\n"
            for i in range(20)
        )
    )
    out = tmp_path / "rte"
    status, _, err = run(
        capsys,
        "distill",
        "--task",
        "rte",
        "--train-file",
        train_file,
        "--text-columns",
        "premise,hypothesis",
        "--teacher",
        tiny_teacher_dir,
        "--student-layers",
        "1",
        "--method",
        "kd",
        "--epochs",
        "1",
        "--output-dir",
        out,
        "--quiet",
    )
    assert status == 0, err
    test_file = tmp_path / "test.tsv"
    test_file.write_text("index\tsentence1\tsentence2\n7\ta film\tgood\n9\ta film\tbad\n")
    status, _, err = run(
        capsys,
        "predict",
        "--model",
        out / "student",
        "--input",
        test_file,
        "--output",
        tmp_path / "RTE.tsv",
    )
    assert status == 0, err
    lines = (tmp_path / "RTE.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["index", "7", "9"]
    assert {line.split("\t")[1] for line in lines[1:]} <= {"entailment", "not_entailment"}


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def user_files(tmp_path) -> dict[str, Path]:
    good = "".join(f"nice film {i}\t{i % 2}\n" for i in range(12))
    head = "sentence\tlabel\n"
    return {
        "train": write(tmp_path / "train.tsv", head + good),
        "dev": write(tmp_path / "dev.tsv", head + good),
        "bad_label": write(tmp_path / "bad_label.tsv", head + good + "odd one\tmaybe\n"),
        "empty": write(tmp_path / "empty.tsv", head),
        "stsb": write(
            tmp_path / "stsb.tsv", "sentence1\tsentence2\tscore\na\tb\t3.5\nc\td\thigh\n"
        ),
    }


def test_bad_inputs_exit_2_with_one_line_naming_file_line_and_field(
    capsys, tmp_path, user_files, tiny_teacher_dir, tiny_other_vocab_dir
):
    teacher = ["--teacher", str(tiny_teacher_dir), "--student-layers", "1"]
    user = [
        "--task",
        "sst2",
        "--train-file",
        str(user_files["train"]),
        "--eval-file",
        str(user_files["dev"]),
        "--text-columns",
        "sentence",
        "--output-dir",
        str(tmp_path / "o"),
        "--quiet",
        *teacher,
    ]

    # an output directory that already holds a run
    held = tmp_path / "held"
    held.mkdir()
    (held / "metrics.json").write_text("{}")
    line = one_line_error(capsys, "distill", *user, "--output-dir", held)
    assert f"{held}: field 'output_dir': output directory already holds a finished run" in line
    assert "--overwrite" in line

    # a missing folder
    line = one_line_error(
        capsys,
        "distill",
        "--task",
        "sst2",
        "--data-dir",
        tmp_path / "nowhere",
        *teacher,
        "--output-dir",
        tmp_path / "o2",
    )
    assert f"{tmp_path / 'nowhere'}" in line and "not found" in line

    # a missing or misnamed column
    line = one_line_error(capsys, "distill", *user, "--text-columns", "text")
    assert f"{user_files['train']}:1: field 'text': missing column 'text'" in line

    # a label outside the task's labels
    line = one_line_error(capsys, "distill", *user, "--train-file", user_files["bad_label"])
    assert f"{user_files['bad_label']}:14: field 'label':" in line and "'maybe'" in line

    # a non-numeric regression score
    line = one_line_error(
        capsys,
        "distill",
        "--task",
        "stsb",
        "--train-file",
        user_files["stsb"],
        "--eval-file",
        user_files["stsb"],
        "--text-columns",
        "sentence1,sentence2",
        "--label-column",
        "score",
        *teacher,
        "--output-dir",
        tmp_path / "o3",
    )
    assert f"{user_files['stsb']}:3: field 'score':" in line and "'high'" in line

    # an empty split
    line = one_line_error(capsys, "distill", *user, "--eval-file", user_files["empty"])
    assert f"{user_files['empty']}" in line and "empty" in line

    # a teacher and a student with different vocabularies
    line = one_line_error(
        capsys,
        "distill",
        "--task",
        "sst2",
        "--train-file",
        user_files["train"],
        "--eval-file",
        user_files["dev"],
        "--text-columns",
        "sentence",
        "--teacher",
        tiny_teacher_dir,
        "--student",
        tiny_other_vocab_dir,
        "--output-dir",
        tmp_path / "o4",
    )
    assert "field 'student'" in line and "different vocabularies" in line

    # an unknown key in a config file
    config = tmp_path / "run.yaml"
    config.write_text("task: sst2\nepochs: 2\nlearning-rate: 0.1\n")
    line = one_line_error(capsys, "distill", "--config", config)
    assert line == f"lgtm: error: {config}:3: field 'learning-rate': unknown configuration key"

    # a setting refused with the others (not for its value) from a config file: its line too,
    # and no file:line when the flag gave it (it named only the field)
    config.write_text("method: ce\nstudent-weighting: influence\n")
    line = one_line_error(capsys, "distill", "--config", config)
    assert line.startswith(f"lgtm: error: {config}:2: field 'student_weighting': --method ce")
    config.write_text("method: ce\n")
    line = one_line_error(capsys, "distill", "--config", config, "--student-weighting", "influence")
    assert line.startswith("lgtm: error: field 'student_weighting': --method ce"), line
    config.write_text("method: kd\nlr: 0.001\n")  # lgtm tune locates its settings too
    tune = ["tune", "--trials", "2", "--selection-fraction", "0.2", "--output-dir", tmp_path / "t"]
    line = one_line_error(capsys, *tune, "--config", config)
    assert line.startswith(f"lgtm: error: {config}:2: field 'lr': lr is searched"), line
    assert not (tmp_path / "t").exists()

    # a hub name while offline
    line = one_line_error(capsys, "distill", *user, "--teacher", "bert-base-uncased")
    assert "bert-base-uncased" in line and "local folder" in line

    # usage errors: unknown option, bad value, missing config file, no command
    assert "unrecognized arguments: --frobnicate" in one_line_error(
        capsys, "distill", "--frobnicate"
    )
    assert "--max-length" in one_line_error(capsys, "distill", "--max-length", "abc")
    assert "config file not found" in one_line_error(
        capsys, "distill", "--config", tmp_path / "none.yaml"
    )
    one_line_error(capsys)
    # nothing was trained by any of these
    assert not (tmp_path / "o").exists() or not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize(
    "text, line, field, message",
    [
        ("lr: 0.001\nepochs: 2\nlr: 0.5\n", 3, "lr", "given twice (first on line 1)"),
        (
            "epochs: 2\nmax-length: 16\nmax_length: 32\n",
            3,
            "max_length",
            "the same option as 'max-length' (line 2)",
        ),
        ("lr: 0.1\ntext_columns: {a: 1,\n  a: 2}\n", 3, "a", "given twice (first on line 2)"),
        ("text_columns:\n- {x: 1}\n- {y: 1, y: 2}\n", 3, "y", "given twice (first on line 3)"),
    ],
)
def test_a_key_given_twice_in_a_config_file_names_the_repeat(
    tmp_path, capsys, text, line, field, message
):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    # a teacher that is not there: were the file taken, the run would stop there at once
    got = one_line_error(capsys, "distill", "--config", config, "--teacher", tmp_path / "no")
    assert got.startswith(f"lgtm: error: {config}:{line}: field '{field}': {message}"), got


def test_resume_from_the_command_line_needs_only_the_folder(
    glue_dir, tiny_teacher_dir, tmp_path, capsys
):
    from lgtm import train

    args = [
        "--task",
        "sst2",
        "--data-dir",
        str(glue_dir / "SST-2"),
        "--teacher",
        str(tiny_teacher_dir),
        "--student-layers",
        "1",
        "--save-steps",
        "2",
        "--lr",
        "1e-3",
    ]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run(capsys, "distill", *args, *tiny_budget(whole))[0] == 0

    class Killed(Exception):
        pass

    def kill(phase: str, step: int) -> None:
        if step == 3:
            raise Killed

    parsed = cli.build_parser().parse_args(["distill", *args, *tiny_budget(cut)])
    with pytest.raises(Killed):
        train.distill(cli.distill_config(parsed), callback=kill)
    assert not (cut / "metrics.json").exists()
    status, _, err = run(capsys, "distill", "--output-dir", cut, "--resume", "--quiet")
    assert status == 0, err
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["student"] == b["student"]
    assert (whole / "influence.jsonl").read_text() == (cut / "influence.jsonl").read_text()
    from safetensors.torch import load_file

    sa, sb = (load_file(d / "student" / "model.safetensors") for d in (whole, cut))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
