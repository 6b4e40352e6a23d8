"""Nothing silently wrong (issue #19, part 2): a setting that has no effect is refused, a metric
undefined on its data is reported as undefined, labels written as ``0.0`` are the labels 0.

The declarations are checked against the steps themselves: one step of every method with each
shared option changed leaves both models exactly as they were when the method declares that
option ignored, and moves them otherwise.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_batch, one_line_error, tiny_bert

import lgtm
from lgtm import config as cfg
from lgtm.errors import LgtmInputError
from lgtm.methods import METHOD_NAMES, method_class
from lgtm.methods.options import SHARED

# --------------------------------------------------------------------------- 1. no effect

#: Another value of each shared option than its default.
OTHER = {
    "alpha": 0.5,
    "teacher_alpha": 0.9,
    "temperature": 3.0,
    "objective": "dist",
    "fd_radius": 0.1,
    "lookahead": "sgd",
    "influence_objective": "teacher",
    "influence_step": "teacher_lr",
}
STEP_METHODS = [m for m in METHOD_NAMES if m not in ("takd", "rco")]  # their steps are kd's


def one_step(method: str, **options) -> list[torch.Tensor]:
    """Both models' parameters after one step of ``method`` (and a probe's influence)."""
    teacher, student = tiny_bert(2, seed=0), tiny_bert(1, seed=1)
    extra = {"pkd": {"pkd_layers": "1:2"}, "pesf": {"pesf_rank": 2}}.get(method, {})
    if method == "pesf":
        from lgtm.methods.pesf import wrap_teacher

        teacher = wrap_teacher(teacher, rank=2)
    cls = method_class(method)
    params_t = [p for p in teacher.parameters() if p.requires_grad]
    step = lgtm.make_method(
        method,
        teacher=teacher,
        student=student,
        student_optimizer=torch.optim.AdamW(student.parameters(), lr=1e-2),
        teacher_optimizer=torch.optim.AdamW(params_t, lr=3e-3) if cls.trains_teacher else None,
        **extra,
        **options,
    )
    stats = step.step(make_batch(6, 1), make_batch(6, 2), probe=make_batch(4, 3))
    out = [p.detach().clone() for p in (*teacher.parameters(), *student.parameters())]
    if "probe_influence" in stats:  # lgtm-exact's fd_radius acts on the tracked influence only
        out.append(stats["probe_influence"])
    return out


@pytest.mark.parametrize("method", STEP_METHODS)
def test_a_method_declares_exactly_the_shared_options_it_ignores(method):
    """Changing an option the method declares ignored leaves its step bit for bit as it was;
    changing any other moves the models (or the influence): no option is silently inert."""
    base = one_step(method)
    defaults = cfg.RunConfig().to_dict()
    for option in SHARED:
        if option.name == "student_weighting":  # a mode, not a value: tests/test_weighting.py
            continue
        values = {**defaults, option.name: OTHER[option.name]}
        ignored = method_class(method).ignored_settings(values)
        changed = one_step(method, **{option.name: OTHER[option.name]})
        same = all(torch.equal(a, b) for a, b in zip(base, changed, strict=True))
        assert same == (option.name in ignored), (method, option.name, ignored.get(option.name))


@pytest.mark.parametrize("method", [m for m in STEP_METHODS if m != "ce"])
def test_temperature_is_ignored_under_mse_only(method):
    mse = one_step(method, objective="mse")
    assert all(
        torch.equal(a, b)
        for a, b in zip(mse, one_step(method, objective="mse", temperature=100.0), strict=True)
    )
    values = {**cfg.RunConfig().to_dict(), "objective": "mse", "method": method}
    assert "temperature" in method_class(method).ignored_settings(values)
    values["objective"] = "kl"
    assert "temperature" not in method_class(method).ignored_settings(values)


@pytest.mark.parametrize(
    "settings, field, words",
    [
        ({"objective": "mse", "temperature": 0.05}, "temperature", "--objective mse"),
        ({"objective": "mse", "temperature": 100.0}, "temperature", "--objective mse"),
        ({"method": "dml", "alpha": 0.3}, "alpha", "unweighted sums"),
        ({"method": "ce", "alpha": 0.3}, "alpha", "it distils nothing"),
        ({"method": "ce", "objective": "dist"}, "objective", "it distils nothing"),
        ({"method": "ce", "teacher_lr": 1e-3}, "teacher_lr", "has no teacher"),
        ({"method": "kd", "teacher_alpha": 0.7}, "teacher_alpha", "no auxiliary loss"),
        ({"method": "meta", "teacher_alpha": 0.7}, "teacher_alpha", "from the feedback"),
        ({"method": "kd", "fd_radius": 0.1}, "fd_radius", "finite difference"),
        ({"method": "online", "lookahead": "sgd"}, "lookahead", "look ahead"),
        ({"method": "pkd", "influence_step": "teacher_lr"}, "influence_step", "influence"),
        ({"method": "lgtm", "teacher_epochs": 2}, "teacher_epochs", "no fine-tuning stage"),
        ({"method": "kd", "teacher_finetuned": True, "teacher_lr": 1e-3}, "teacher_lr", ""),
        ({"method": "takd", "teacher_finetuned": True, "teacher_epochs": 2}, "teacher_epochs", ""),
        ({"method": "kd", "track_steps": 5}, "track_steps", "computes no influence"),
        ({"method": "prokt", "init_classifier": "zero"}, "init_classifier", "zero-initialises"),
    ],
)
def test_a_setting_without_effect_is_refused(settings, field, words):
    with pytest.raises(LgtmInputError, match=f"field '{field}'.*has no effect.*{words}"):
        cfg.resolve({"task": "sst2", **settings})


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "ce"},  # the default run's alpha 0.5 and teacher lr are not the user's
        {"method": "ce", "preset": "official-code"},  # nor are the preset's
        {"method": "kd", "preset": "official-code"},
        {"method": "kd", "objective": "mse"},
        {"method": "kd", "teacher_epochs": 2, "teacher_lr": 1e-4},
        {"method": "lgtm", "teacher_lr": 1e-4, "track_steps": 3, "lookahead": "sgd"},
        {"method": "meta", "lookahead": "sgd", "alpha": 0.5},
        {"method": "dml", "objective": "dist", "temperature": 2.0},
    ],
)
def test_settings_that_act_are_accepted_and_a_saved_config_runs_again(settings):
    config = cfg.resolve(settings)
    again = cfg.resolve(config.to_dict(saved=True))  # what `--config config.yaml` does
    assert again == config


def test_the_command_line_refuses_a_temperature_under_mse(capsys, tmp_path):
    out = tmp_path / "o"
    args = ["distill", "--objective", "mse", "--temperature", "100", "--output-dir", out]
    line = one_line_error(capsys, *args)
    assert "field 'temperature'" in line and "--objective mse" in line
    assert not out.exists()


def test_a_regression_task_refuses_objective_and_temperature():
    values = {**cfg.RunConfig().to_dict(), "method": "kd"}
    ignored = method_class("kd").ignored_settings(values, regression=True)
    assert {"objective", "temperature"} <= ignored.keys()
    assert "objective" not in method_class("kd").ignored_settings(
        {**values, "objective": "mse"}, regression=True
    )
    config = cfg.resolve({"task": "stsb", "method": "kd", "objective": "dist"})
    with pytest.raises(LgtmInputError, match="field 'objective'.*always distils with mse"):
        cfg.refuse_ignored(config, regression=True, names=("objective", "temperature"))
    cfg.refuse_ignored(cfg.resolve({"task": "stsb", "method": "kd"}), regression=True)


def test_drop_ignored_keeps_what_acts():
    values = {"method": "ce", "alpha": 0.5, "teacher_lr": 1e-4, "lr": 1e-3}
    assert cfg.drop_ignored(values) == {"method": "ce", "lr": 1e-3}
    assert cfg.drop_ignored({**values, "method": "kd"}) == {**values, "method": "kd"}


def test_every_method_is_audited():
    """Each registered method's ignored settings name real fields, with a reason."""
    defaults = cfg.RunConfig().to_dict()
    for name in METHOD_NAMES:
        ignored = method_class(name).ignored_settings({**defaults, "method": name})
        assert ignored and all(k in defaults and why for k, why in ignored.items()), name
    assert copy.copy(method_class("lgtm").unread) == {}


# --------------------------------------------------------------------------- 2. undefined


def sentence_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    words = "good bad film plot actor scene long dull fine great".split()
    rng = __import__("random").Random(seed)
    return [
        (" ".join(rng.choices(words, k=4)), " ".join(rng.choices(words, k=4)), f"{i % 5}.5")
        for i in range(n)
    ]


def write_rows(path, header, rows) -> str:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return str(path)


def test_a_one_row_sts_b_evaluation_reports_undefined_not_zero(capsys, tmp_path, tiny_teacher_dir):
    import json

    from lgtm.report import summary_table

    header = ("sentence1", "sentence2", "label")
    train = write_rows(tmp_path / "train.tsv", header, sentence_pairs(20, 0))
    dev = write_rows(tmp_path / "dev.tsv", header, sentence_pairs(1, 1))
    out = tmp_path / "o"
    args = ["distill", "--task", "stsb", "--train-file", train, "--eval-file", dev]
    args += ["--text-columns", "sentence1,sentence2", "--teacher", str(tiny_teacher_dir)]
    args += ["--method", "kd", "--student-layers", "1", "--epochs", "1", "--batch-size", "8"]
    args += ["--max-length", "16", "--output-dir", str(out)]
    from conftest import run

    status, printed, err = run(capsys, *args)
    assert status == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["student"] == {"pearson": None, "spearmanr": None}
    assert {"temperature", "fd_radius", "track_steps"} <= set(m["settings_without_effect"])
    assert "objective" in m["settings_without_effect"]  # regression: always mse
    assert m["teacher"] == {"pearson": None, "spearmanr": None}
    notes = [line for line in err.splitlines() if "undefined metrics" in line]
    assert len(notes) == 1 and "validation pearson: 1 row: a correlation needs 2" in notes[0]
    assert notes[0] in m["notices"]
    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(summary_table(m))
    text = console.export_text()
    assert "validation pearson" in text and "undefined" in text and "0.0000" not in text


def test_an_undefined_selection_score_is_never_the_best():
    from types import SimpleNamespace

    from lgtm.data.tasks import TASKS
    from lgtm.loop import _keep_if_best

    saved = []
    acc = SimpleNamespace(is_main_process=False, unwrap_model=saved.append)
    ctx = SimpleNamespace(task=TASKS["stsb"], state=SimpleNamespace(best=None), acc=acc)
    _keep_if_best(ctx, 5, {"pearson": None, "spearmanr": None})
    assert ctx.state.best is None  # nothing to keep: the last student is reported
    _keep_if_best(ctx, 10, {"pearson": -0.2, "spearmanr": 0.1})
    _keep_if_best(ctx, 15, {"pearson": None, "spearmanr": None})
    assert ctx.state.best == {"step": 10, "score": -0.2}


# --------------------------------------------------------------------------- 3. labels 0.0


def test_labels_written_with_a_decimal_point_are_the_task_labels(tmp_path):
    from lgtm.data import read_table, table_task

    path = tmp_path / "train.csv"  # what pandas writes for a float column
    path.write_text("text,label\na fine film,1.0\na dull film,0.0\ngreat,1\nbad,0.00\n")
    task = table_task(path, text_columns=["text"], label_column="label")
    assert task.label_names == ("0", "1")
    rows = read_table(task, path, text_columns=["text"], label_column="label")
    assert [e.label for e in rows] == [1, 0, 1, 0]
    halves = tmp_path / "halves.csv"
    halves.write_text("text,label\na,0.5\nb,1.50\nc,.5\n")
    task = table_task(halves, text_columns=["text"], label_column="label")
    assert task.label_names == ("0.5", "1.5")  # one name per value
    rows = read_table(task, halves, text_columns=["text"], label_column="label")
    assert [e.label for e in rows] == [0, 1, 0]


def test_a_label_between_the_numbers_is_refused_with_its_line(tmp_path):
    from lgtm.data import read_table
    from lgtm.data.tasks import custom_task

    path = tmp_path / "eval.csv"
    path.write_text("text,label\nfine,1.0\nso-so,0.5\n")
    task = custom_task("c", ["text"], ["0", "1"])
    with pytest.raises(LgtmInputError) as err:
        read_table(task, path, text_columns=["text"], label_column="label")
    line = str(err.value)
    assert f"{path}:3" in line and "label '0.5' is not one of the task's labels: 0, 1" in line


def test_a_run_on_labels_written_as_floats(capsys, tmp_path, tiny_teacher_dir):
    from conftest import run

    rows = [(f"film {w} {i}", f"{i % 2}.0") for i, w in enumerate("good bad fine dull" * 5)]
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("text,label\n" + "".join(f"{a},{b}\n" for a, b in rows))
    args = ["distill", "--train-file", str(train_csv), "--eval-file", str(train_csv)]
    args += ["--text-columns", "text", "--teacher", str(tiny_teacher_dir), "--method", "ce"]
    args += ["--student-layers", "1", "--epochs", "1", "--max-length", "16"]
    args += ["--output-dir", str(tmp_path / "o"), "--quiet"]
    status, _, err = run(capsys, *args)
    assert status == 0, err


def test_the_students_weighting_makes_its_influence_settings_act():
    """kd reads LGTM's radius, look-ahead and influence objective once its student is weighted
    by the influence (they compute it), and refuses them otherwise."""
    from lgtm.errors import LgtmInputError

    over = {"task": "sst2", "method": "kd", "fd_radius": 0.05, "lookahead": "sgd"}
    config = cfg.resolve({**over, "student_weighting": "influence"})
    assert (config.fd_radius, config.lookahead) == (0.05, "sgd")
    with pytest.raises(LgtmInputError, match="has no effect"):
        cfg.resolve(over)
