"""``lgtm tune``: the search space, runs that never read dev, a seeded study that continues
after a kill and is shared by two processes, and its outputs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import one_line_error, run, write_table

from lgtm import config as cfg
from lgtm import train
from lgtm.errors import LgtmInputError
from lgtm.tune import TuneSettings, default_space, parse_search, tune
from lgtm.tune import study as S

WORDS = "good bad great awful fine dull superb boring lovely weak".split()


def rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    pos, neg = WORDS[0::2], WORDS[1::2]
    return [(" ".join(rng.choice(pos if i % 2 else neg, size=4)), str(i % 2)) for i in range(n)]


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    return write_table(tmp_path / "train.tsv", rows(80)), write_table(
        tmp_path / "dev.tsv", rows(20, 1)
    )


def explicit(tiny_teacher_dir, data, **over) -> dict:
    """A tiny run's settings as a user gives them (kd: a teacher stage, then the student)."""
    train_file, eval_file = data
    return {
        "train_file": str(train_file),
        "eval_file": str(eval_file),
        "text_columns": ["sentence"],
        "teacher": str(tiny_teacher_dir),
        "student_layers": 1,
        "method": "kd",
        "max_length": 16,
        "epochs": 2,
        "teacher_epochs": 1,
        "batch_size": 8,
        "selection_fraction": 0.25,
        "eval_steps": 3,
        "quiet": True,
        **over,
    }


# --------------------------------------------------------------------------- the search space


def test_default_space_holds_what_the_method_reads():
    def names(**over) -> list[str]:
        return [r.name for r in default_space(cfg.resolve({"task": "sst2", **over}))]

    assert names(method="kd") == ["lr", "teacher_lr", "alpha", "temperature"]
    assert names(method="lgtm") == ["lr", "teacher_lr", "alpha", "temperature"]
    assert names(method="ce") == ["lr"]
    assert names(method="kd", objective="mse") == ["lr", "teacher_lr", "alpha"]
    assert names(method="kd", teacher_finetuned=True) == ["lr", "alpha", "temperature"]


def test_search_syntax_gives_ranges_and_default_ranges():
    base = cfg.resolve({"task": "sst2", "method": "lgtm"})
    space = parse_search("lr=1e-5:1e-3:log, alpha, epochs=1:3", base)
    assert [(r.name, r.low, r.high, r.log, r.kind) for r in space] == [
        ("lr", 1e-5, 1e-3, True, float),
        ("alpha", 0.1, 0.9, False, float),
        ("epochs", 1, 3, False, int),
    ]
    assert [r.text() for r in space] == ["lr=1e-05:0.001:log", "alpha=0.1:0.9", "epochs=1:3:int"]


@pytest.mark.parametrize(
    "search, method, words",
    [
        ("lr=1e-5:3e-3:log,momentum=0.1:0.9", "kd", "unknown setting 'momentum'"),
        ("lr=1e-5", "kd", "expected NAME=LOW:HIGH"),
        ("lr=a:b", "kd", "expected NAME=LOW:HIGH"),
        ("lr=1e-5:1e-3:cubic", "kd", "expected NAME=LOW:HIGH"),
        ("lr=1e-5:1e-3:log:log", "kd", "expected NAME=LOW:HIGH"),
        ("lr=1e-3:1e-5", "kd", "is empty"),
        ("lr=1e-3:1e-3", "kd", "is empty"),
        ("lr=0:1e-3:log", "kd", "positive low end"),
        ("lr=1e-5:inf", "kd", "must be finite"),
        ("lr=nan:1", "kd", "must be finite"),
        ("alpha=0.2:1.5", "kd", "alpha = 1.5 is refused"),
        ("alpha", "ce", "cannot search alpha: --method ce has no teacher"),
        ("teacher_alpha", "kd", "no teacher loss towards the student"),
        ("lr,lr", "kd", "given twice"),
        ("lr,,alpha", "kd", "empty entry"),
        ("epochs=1.5:3", "kd", "whole"),
    ],
)
def test_bad_search_spaces_are_refused_in_one_line(search, method, words):
    with pytest.raises(LgtmInputError) as err:
        parse_search(search, cfg.resolve({"task": "sst2", "method": method}))
    assert err.value.field == "search" and words in err.value.message, err.value.message


# --------------------------------------------------------------------------- trials never read dev


def test_a_run_without_dev_trains_and_selects_exactly_as_one_with_it(
    tiny_teacher_dir, data, tmp_path
):
    """--do-eval false changes nothing but what is scored: the same student, the same
    selection scores; and it opens no evaluation file (a missing one is fine)."""
    with_dev = train.distill(
        cfg.resolve(
            explicit(tiny_teacher_dir, data, output_dir=str(tmp_path / "a"), select_on="selection")
        )
    )
    no_dev = explicit(tiny_teacher_dir, data, output_dir=str(tmp_path / "b"), select_on="selection")
    no_dev.update(do_eval=False, eval_file=str(tmp_path / "no-such-dev.tsv"))
    without = train.distill(cfg.resolve(no_dev))
    a = [h.get("student_selection") for h in with_dev.metrics["history"]]
    b = [h.get("student_selection") for h in without.metrics["history"]]
    assert a == b and any(x is not None for x in a)
    assert without.metrics["eval_split"] == "selection"
    for k, v in with_dev.student.state_dict().items():
        assert torch.equal(v, without.student.state_dict()[k]), k


def test_do_eval_false_needs_a_selection_set(capsys):
    from conftest import one_line_error as err

    message = err(capsys, "distill", "--task", "sst2", "--do-eval", "false")
    assert "--selection-fraction" in message


# --------------------------------------------------------------------------- the study


def run_tune(tiny_teacher_dir, data, out: Path, trials: int = 3, **over) -> dict:
    """A study over the student lr of ``ce`` (the cheapest runs) unless ``over`` says else."""
    over = {"method": "ce", "teacher_epochs": None, **over}
    search = over.pop("search", "lr=1e-4:1e-1:log")
    return tune(
        explicit(tiny_teacher_dir, data, **over),
        TuneSettings(trials=trials, output_dir=out, search=search),
    )


def params_and_scores(result: dict) -> list[tuple]:
    return [(r["lr"], r["state"], r["selection_score"]) for r in result["table"]]


def test_tune_writes_its_outputs_and_best_yaml_runs_as_is(tiny_teacher_dir, data, tmp_path):
    out = tmp_path / "t"
    result = run_tune(tiny_teacher_dir, data, out, trials=4, method="kd", search="lr,alpha")
    assert len(result["table"]) == 4 and result["trial_steps"] > 0
    complete = [r for r in result["table"] if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["selection_score"])
    assert result["best"]["trial"] == best["trial"]
    # each trial's score is its run's kept student's selection score, and it read no dev
    m = json.loads((out / "trials" / f"{best['trial']:04d}" / "metrics.json").read_text())
    assert m["selection"]["score"] == best["selection_score"]
    assert m["eval_split"] == "selection" and m["config"]["do_eval"] is False
    saved = yaml.safe_load((out / "best.yaml").read_text())
    assert math.isclose(saved["lr"], best["lr"]) and math.isclose(saved["alpha"], best["alpha"])
    assert saved["do_eval"] is True and saved["output_dir"] == str(out / "best")
    again = cfg.resolve(cfg.load_yaml(out / "best.yaml"))
    assert again.lr == best["lr"] and again.method == "kd"
    # the run keeps the student the trial kept and was scored by (it kept the last one)
    rerun = train.distill(again).metrics
    assert rerun["selection"]["score"] == best["selection_score"]
    assert rerun["selection"]["step"] == m["selection"]["step"]
    assert rerun["eval_split"] != "selection"  # and it scores dev
    for name in ("trials.csv", "tune.png", "tune.json", "study.db"):
        assert (out / name).is_file(), name
    assert len((out / "trials.csv").read_text().splitlines()) == 5


def test_trials_keep_no_models_unless_asked(tiny_teacher_dir, data, tmp_path):
    """A trial's saved models (student, fine-tuned teacher) are removed after it, its records
    stay; --keep-trial-models keeps them, and the scores are the same either way."""

    def folders(out: Path) -> set[str]:
        return {p.name for p in (out / "trials" / "0000").iterdir()}

    dropped = run_tune(tiny_teacher_dir, data, tmp_path / "d", trials=2, method="kd")
    assert {"config.yaml", "metrics.json"} <= folders(tmp_path / "d")
    assert not {"student", "teacher"} & folders(tmp_path / "d")
    kept = tune(
        explicit(tiny_teacher_dir, data, method="kd", teacher_epochs=None),
        TuneSettings(
            trials=2, output_dir=tmp_path / "k", search="lr=1e-4:1e-1:log", keep_trial_models=True
        ),
    )
    assert {"student", "teacher"} <= folders(tmp_path / "k")
    assert (tmp_path / "k" / "trials" / "0000" / "student" / "model.safetensors").is_file()
    assert params_and_scores(kept) == params_and_scores(dropped)


def test_trials_keep_the_student_the_run_will_keep(tiny_teacher_dir, data, tmp_path):
    """With --select-on last the trials keep (and are scored by) their last student, as the run
    from best.yaml will; the pruner still reads the selection set at every evaluation."""
    import optuna

    out = tmp_path / "last"
    result = run_tune(tiny_teacher_dir, data, out, trials=3, select_on="last")
    study = optuna.load_study(study_name="lgtm-tune", storage=f"sqlite:///{out / 'study.db'}")
    for row in result["table"]:
        m = json.loads((out / "trials" / f"{row['trial']:04d}" / "metrics.json").read_text())
        assert m["config"]["select_on"] == "last" and not isinstance(m["selection"], dict)
        assert row["selection_score"] == m["student"][m["main_metric"]]  # the last student's
        reported = study.trials[row["trial"]].intermediate_values
        history = [h for h in m["history"] if "student_eval" in h and h["step"] > 0]
        assert reported == {h["step"]: h["student_eval"][m["main_metric"]] for h in history}
    assert yaml.safe_load((out / "best.yaml").read_text())["select_on"] == "last"


def test_a_study_is_continued_only_with_its_own_pruning(tiny_teacher_dir, data, tmp_path):
    out = tmp_path / "p"
    first = run_tune(tiny_teacher_dir, data, out, trials=1)
    with pytest.raises(LgtmInputError, match="made with --pruning true") as e:
        tune(
            explicit(tiny_teacher_dir, data, method="ce", teacher_epochs=None),
            TuneSettings(trials=2, output_dir=out, search="lr=1e-4:1e-1:log", pruning=False),
        )
    assert e.value.field == "pruning"
    again = run_tune(tiny_teacher_dir, data, out, trials=1)  # unchanged: still its one trial
    assert params_and_scores(again) == params_and_scores(first)


def test_the_same_command_gives_the_same_trials_and_dev_changes_none(
    tiny_teacher_dir, data, tmp_path
):
    a = run_tune(tiny_teacher_dir, data, tmp_path / "a")
    b = run_tune(tiny_teacher_dir, data, tmp_path / "b")
    assert params_and_scores(a) == params_and_scores(b)
    flipped = write_table(tmp_path / "flipped.tsv", [(t, str(1 - int(y))) for t, y in rows(20, 1)])
    c = run_tune(tiny_teacher_dir, (data[0], flipped), tmp_path / "c")
    assert params_and_scores(c) == params_and_scores(a)
    gone = run_tune(tiny_teacher_dir, (data[0], tmp_path / "no-dev.tsv"), tmp_path / "gone")
    assert params_and_scores(gone) == params_and_scores(a)  # the dev file is never opened
    d = run_tune(tiny_teacher_dir, data, tmp_path / "d", trials=1, seed=7)
    assert d["table"][0]["lr"] != a["table"][0]["lr"]


def test_a_killed_tune_continues_with_the_trials_it_would_have_run(
    tiny_teacher_dir, data, tmp_path, monkeypatch
):
    whole = run_tune(tiny_teacher_dir, data, tmp_path / "whole", trials=4)

    real, calls = S._run, [0]

    def killed_in_the_third(*args, **kw):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a trial
        return real(*args, **kw)

    monkeypatch.setattr(S, "_run", killed_in_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_tune(tiny_teacher_dir, data, tmp_path / "cut", trials=4)
    monkeypatch.setattr(S, "_run", real)
    resumed = run_tune(tiny_teacher_dir, data, tmp_path / "cut", trials=4)
    finished = [r for r in resumed["table"] if r["state"] != "failed"]
    assert params_and_scores({"table": finished}) == params_and_scores(whole)
    assert sum(r["state"] == "failed" for r in resumed["table"]) == 1


HANG_IN_THIRD_TRIAL = """
import sys, threading
from lgtm import cli
from lgtm.tune import study as S
real, calls = S._run, [0]
def run(*args, **kw):
    calls[0] += 1
    if calls[0] == 3:
        print("in the third trial", flush=True)
        threading.Event().wait()
    return real(*args, **kw)
S._run = run
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_trial_killed_outright_is_run_again_before_new_trials_are_drawn(
    tiny_teacher_dir, data, tmp_path, monkeypatch
):
    """SIGKILL in a trial leaves it running in the database: the same command drew new trials
    without its result (not those the uninterrupted study draws: TPE saw one trial fewer), then
    waited a minute for its heartbeat to go stale. A running trial whose process on this
    machine is gone is failed at once and run again first, as after Ctrl-C."""
    import signal

    whole = run_tune(tiny_teacher_dir, data, tmp_path / "whole", trials=4)
    train_file, eval_file = data
    out = tmp_path / "cut"
    cmd = [
        sys.executable, "-c", HANG_IN_THIRD_TRIAL, "tune", "--trials", "4",
        "--output-dir", str(out), "--train-file", str(train_file), "--eval-file",
        str(eval_file), "--text-columns", "sentence", "--teacher", str(tiny_teacher_dir),
        "--student-layers", "1", "--method", "ce", "--max-length", "16", "--epochs", "2",
        "--batch-size", "8", "--selection-fraction", "0.25", "--eval-steps", "3", "--quiet",
        "--search", "lr=1e-4:1e-1:log",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "in the third trial"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    def sleep(seconds):
        raise AssertionError("waited for the killed trial to go stale")

    monkeypatch.setattr(S.time, "sleep", sleep)
    resumed = run_tune(tiny_teacher_dir, data, out, trials=4)
    assert [r["state"] for r in resumed["table"]].count("failed") == 1
    finished = [r for r in resumed["table"] if r["state"] != "failed"]
    assert params_and_scores({"table": finished}) == params_and_scores(whole)


def test_an_interrupted_tune_says_how_to_continue(tiny_teacher_dir, data, tmp_path, capsys):
    """Ctrl-C in a trial: exit 130 and a line saying that the same command continues the
    study (it said only 'interrupted')."""
    train_file, eval_file = data

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    out = tmp_path / "t"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "_run", interrupted)
        code, _, err = run(
            capsys, "tune", "--train-file", train_file, "--eval-file", eval_file,
            "--text-columns", "sentence", "--teacher", tiny_teacher_dir, "--method", "ce",
            "--selection-fraction", "0.25", "--trials", "1", "--output-dir", out, "--quiet",
        )  # fmt: skip
    assert code == 130
    assert err.strip() == f"lgtm: interrupted; the same command continues the study in {out}"


def test_waiting_for_a_running_trial_is_said(tiny_teacher_dir, data, tmp_path, capsys):
    """A study whose last trial is running (in another process, or killed and not yet stale)
    waited in silence, up to a minute after a kill; it says so once, and runs the trial again
    once it has failed."""
    import optuna

    out = tmp_path / "t"
    run_tune(tiny_teacher_dir, data, out, trials=1)
    study = optuna.load_study(study_name="lgtm-tune", storage=f"sqlite:///{out / 'study.db'}")
    running = study.ask()  # killed: no process will finish it
    waits = []

    def sleep(seconds):  # the killed trial goes stale while the command waits
        waits.append(seconds)
        study.tell(running, state=optuna.trial.TrialState.FAIL)

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S.time, "sleep", sleep)
        result = run_tune(tiny_teacher_dir, data, out, trials=2, quiet=False)
    said = [ln for ln in capsys.readouterr().out.splitlines() if "waiting for" in ln]
    assert said == [
        "lgtm tune: waiting for 1 running trial(s): another process's, or a killed one, run "
        f"again once silent for {S.GRACE_SECONDS} s"
    ]
    assert len(waits) == 1 and [r["state"] for r in result["table"]][1:] == ["failed", "complete"]


def test_tune_help_gives_its_own_output_folder_and_no_refused_flags(capsys):
    """``lgtm tune --help`` gave distill's default folder (runs/lgtm-...) and listed
    --overwrite and --resume, which lgtm tune refuses."""
    code, out, _ = run(capsys, "tune", "--help")
    assert code == 0 and "runs/tune-<task>-<method>" in " ".join(out.split())
    assert "runs/lgtm-" not in out and "--overwrite" not in out and "--resume" not in out


def test_quiet_tune_still_prints_its_summary(tiny_teacher_dir, data, tmp_path, capsys):
    """--quiet is 'no progress bar or messages (the summary is still printed)': lgtm tune
    --quiet printed nothing at all; its trial lines stay silent."""
    train_file, eval_file = data
    code, out, err = run(
        capsys, "tune", "--train-file", train_file, "--eval-file", eval_file,
        "--text-columns", "sentence", "--teacher", tiny_teacher_dir, "--method", "ce",
        "--student-layers", "1", "--max-length", "16", "--selection-fraction", "0.25",
        "--trials", "1", "--output-dir", tmp_path / "t", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "lgtm tune: ce, 1 trials" in out and "1 complete, 0 pruned" in out
    assert "lgtm tune: trial 0" not in out


def test_lr_auto_inside_a_study_is_refused(tiny_teacher_dir, data, tmp_path):
    """--lr auto with a --search that leaves lr out ran a study of 6 trials inside every
    trial (trials/NNNN/lr-search), silently 7 times the cost; it is refused."""
    out = tmp_path / "t"
    with pytest.raises(LgtmInputError) as err:
        run_tune(tiny_teacher_dir, data, out, trials=1, method="kd", search="alpha", lr="auto")
    assert err.value.field == "lr" and "--search lr" in err.value.message
    assert not out.exists()
    with pytest.raises(LgtmInputError) as err:  # lr searched: said so, not "lr is searched"
        run_tune(tiny_teacher_dir, data, out, trials=1, method="kd", lr="auto")
    assert err.value.field == "lr" and "searches the student lr itself" in err.value.message
    assert not out.exists()


def test_tune_refuses_bad_input_in_one_line_and_loses_nothing(
    tiny_teacher_dir, data, tmp_path, capsys
):
    train_file, eval_file = data
    common = [
        "tune", "--train-file", str(train_file), "--eval-file", str(eval_file),
        "--text-columns", "sentence", "--teacher", str(tiny_teacher_dir),
        "--student-layers", "1", "--method", "ce", "--quiet", "--max-length", "16",
    ]  # fmt: skip
    out = tmp_path / "t"
    sel = ["--selection-fraction", "0.25", "--output-dir", str(out)]
    assert "at least 1" in one_line_error(capsys, *common, *sel, "--trials", "0")
    assert "whole number" in one_line_error(capsys, *common, *sel, "--trials", "two")
    for flag, field in (("--pruning", "pruning"), ("--keep-trial-models", "keep_trial_models")):
        said = one_line_error(capsys, *common, *sel, "--trials", "1", flag, "maybe")
        assert f"field '{field}'" in said and "'maybe'" in said
    assert "--selection-fraction" in one_line_error(
        capsys, *common, "--trials", "2", "--output-dir", str(out)
    )
    bad = ("--search", "lr=1e-3:1e-5")
    assert "is empty" in one_line_error(capsys, *common, *sel, "--trials", "2", *bad)
    storage = ("--storage", "nosuchdb://x/y")
    assert "cannot open the study storage" in one_line_error(
        capsys, *common, *sel, "--trials", "2", *storage
    )
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert "did not write" in one_line_error(
        capsys, *common, "--selection-fraction", "0.25", "--output-dir", str(user), "--trials", "2"
    )
    assert (user / "notes.txt").read_text() == "mine"
    # an existing study made for other settings is refused, and left as it was
    code, _, err = run(capsys, *common, *sel, "--trials", "1", "--epochs", "1")
    assert code == 0, err
    before = (out / "study.db").read_bytes()
    message = one_line_error(capsys, *common, *sel, "--trials", "3", "--epochs", "2")
    assert "made for other settings (differing: epochs)" in message
    message = one_line_error(capsys, *common, *sel, "--trials", "3", "--epochs", "1", "--lr", "0.5")
    assert "lr is searched" in message
    assert (out / "study.db").read_bytes() == before


@pytest.mark.parametrize("storage", ["notaurl", "sqlite:////nonexistent/dir/x.db"])
def test_a_storage_that_cannot_be_opened_leaves_no_folder(
    tiny_teacher_dir, data, tmp_path, capsys, storage
):
    """The output folder (and the folders above it) made for the study are removed again when
    its storage cannot be opened; they were left behind, empty."""
    train_file, eval_file = data
    out = tmp_path / "new" / "tune"
    message = one_line_error(
        capsys, "tune", "--train-file", train_file, "--eval-file", eval_file,
        "--text-columns", "sentence", "--teacher", tiny_teacher_dir, "--method", "ce",
        "--selection-fraction", "0.25", "--trials", "1", "--storage", storage,
        "--output-dir", out,
    )  # fmt: skip
    assert "cannot open the study storage" in message
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("shared_db", [False, True])
def test_another_study_in_a_study_folder_is_refused_and_changes_nothing(
    tiny_teacher_dir, data, tmp_path, shared_db
):
    """Trial folders are numbered per study: a second --study-name in the same --output-dir
    ran, writing its trials over the first study's trials/0000... and its trials.csv, best.yaml
    and tune.json; it is refused, every file left as it was."""
    out = tmp_path / "t"
    run_tune(tiny_teacher_dir, data, out, trials=1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    storage = f"sqlite:///{out / 'study.db'}" if shared_db else None
    settings = TuneSettings(1, out, "lr=1e-4:1e-1:log", storage, study_name="other")
    with pytest.raises(LgtmInputError) as err:
        tune(explicit(tiny_teacher_dir, data, method="ce", teacher_epochs=None), settings)
    assert err.value.field == "output_dir" and "holds the study 'lgtm-tune'" in err.value.message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_study_folder_is_refused_to_a_study_in_another_storage(tiny_teacher_dir, data, tmp_path):
    """A study folder continued with another --storage (or without the one it was made with)
    started a second study there, writing its trials over the first's trials/0000... and its
    trials.csv, best.yaml and tune.json; it is refused, every file left as it was, and the
    folder's own storage, however spelt, continues it."""
    settings = explicit(tiny_teacher_dir, data, method="ce", teacher_epochs=None)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    for out, made_with, other in (
        (tmp_path / "own", None, elsewhere),
        (tmp_path / "shared", elsewhere, None),
    ):
        tune(settings, TuneSettings(1, out, "lr=1e-4:1e-1:log", made_with))
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        with pytest.raises(LgtmInputError) as err:
            tune(settings, TuneSettings(1, out, "lr=1e-4:1e-1:log", other))
        assert err.value.field == "output_dir" and "--storage" in err.value.message
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    relative = f"sqlite:///{os.path.relpath(tmp_path / 'own' / 'study.db')}"
    again = tune(settings, TuneSettings(2, tmp_path / "own", "lr=1e-4:1e-1:log", relative))
    assert len(again["table"]) == 2


def test_a_setting_only_a_run_finds_wrong_leaves_no_study(tiny_teacher_dir, data, tmp_path, capsys):
    """A head-less teacher given as fine-tuned is found wrong inside the first trial: one line,
    exit 2, and no study kept, so the corrected command starts afresh (it was refused as "made
    for other settings" when the failed study stayed)."""
    train_file, eval_file = data
    common = [
        "tune", "--train-file", str(train_file), "--eval-file", str(eval_file),
        "--text-columns", "sentence", "--teacher", str(tiny_teacher_dir),
        "--student-layers", "1", "--method", "kd", "--quiet", "--max-length", "16",
        "--selection-fraction", "0.25", "--trials", "1", "--search", "lr=1e-4:1e-1:log",
    ]  # fmt: skip
    out = tmp_path / "t"
    message = one_line_error(capsys, *common, "--teacher-finetuned", "--output-dir", str(out))
    assert "head" in message
    assert not out.exists()
    code, _, err = run(capsys, *common, "--teacher-epochs", "1", "--output-dir", str(out))
    assert code == 0, err
    assert len(json.loads((out / "tune.json").read_text())["table"]) == 1


def test_two_processes_share_one_study(tiny_teacher_dir, data, tmp_path):
    """Two ``lgtm tune`` processes on one SQLite study: together they run --trials trials,
    each trial once."""
    train_file, eval_file = data
    out = tmp_path / "shared"
    out.mkdir()
    storage = f"sqlite:///{out / 'study.db'}"
    cmd = [
        sys.executable, "-m", "lgtm.cli", "tune", "--trials", "6", "--storage", storage,
        "--output-dir", str(out), "--train-file", str(train_file), "--eval-file", str(eval_file),
        "--text-columns", "sentence", "--teacher", str(tiny_teacher_dir), "--student-layers", "1",
        "--method", "ce", "--max-length", "16", "--epochs", "2",
        "--batch-size", "8", "--selection-fraction", "0.25", "--quiet",
        "--search", "lr=1e-4:1e-1:log",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    import optuna

    study = optuna.load_study(study_name="lgtm-tune", storage=storage)
    states = [t.state.name for t in study.trials]
    # six trials, or one more when both processes start the last one at the same moment
    assert 6 <= states.count("COMPLETE") + states.count("PRUNED") <= 7, states
    assert "RUNNING" not in states and "WAITING" not in states
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert len(folders) == len(study.trials)


def test_lr_auto_runs_a_small_study_first_and_records_it(tiny_teacher_dir, data, tmp_path):
    out = tmp_path / "auto"
    settings = explicit(tiny_teacher_dir, data, method="ce", teacher_epochs=None)
    result = train.distill(cfg.resolve({**settings, "lr": "auto", "output_dir": str(out)}))
    search = result.metrics["lr_search"]
    assert len(search["trials"]) == 6 and search["study"] == str(out / "lr-search")
    finished = [t for t in search["trials"] if t["state"] == "complete"]
    best = max(finished, key=lambda t: (t["selection_score"], -t["trial"]))
    assert search["lr"] == best["lr"] and result.metrics["config"]["lr"] == best["lr"]
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == "auto"  # as asked
    # the run is the one --lr <chosen> gives
    plain = train.distill(
        cfg.resolve({**settings, "lr": best["lr"], "output_dir": str(tmp_path / "plain")})
    )
    assert plain.metrics["history"] == result.metrics["history"]


def test_lr_auto_needs_a_selection_set(capsys):
    message = one_line_error(capsys, "distill", "--task", "sst2", "--lr", "auto")
    assert "--selection-fraction" in message and "'lr'" in message


@pytest.mark.parametrize("low, high", [(1e-4, 3e-4), (2e-4, 6e-4), (1e-5, 1e-3), (1e-6, 1e-1)])
def test_the_figures_log_axes_are_labelled_without_collisions(low, high):
    """tune.png: a log axis over less than a decade got colliding minor-tick labels from
    matplotlib; each is now labelled at least twice and no two labels overlap on the canvas."""
    import itertools

    import matplotlib.pyplot as plt
    import optuna
    from optuna.distributions import FloatDistribution

    from lgtm.tune.outputs import slice_figure

    study = optuna.create_study(direction="maximize")
    rng = np.random.default_rng(0)
    space = {"lr": FloatDistribution(low, high, log=True), "alpha": FloatDistribution(0, 1)}
    for lr, alpha, score in zip(np.exp(rng.uniform(math.log(low), math.log(high), 12)),
                                rng.random(12), rng.random(12), strict=True):  # fmt: skip
        params = {"lr": float(lr), "alpha": float(alpha)}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=space, value=float(score))
        )
    figure = slice_figure(study)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (ax,) = [a for a in figure.axes if a.get_xscale() == "log"]
    left, right = ax.get_xlim()
    shown = [
        t
        for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
        if t.get_visible() and t.get_text() and left <= t.get_position()[0] <= right
    ]
    assert len(shown) >= 2, [t.get_text() for t in shown]
    boxes = [t.get_window_extent(renderer) for t in shown]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    plt.close(figure)


def test_the_figures_colour_bar_counts_trials_in_whole_numbers():
    """tune.png's colour bar of trial numbers read 0.5, 1.5, 2.5 over a study of 4 trials."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.distributions import FloatDistribution

    from lgtm.tune.outputs import slice_figure

    study = optuna.create_study(direction="maximize")
    space = {"alpha": FloatDistribution(0, 1)}
    for alpha in (0.1, 0.4, 0.6, 0.9):
        study.add_trial(
            optuna.trial.create_trial(params={"alpha": alpha}, distributions=space, value=alpha)
        )
    figure = slice_figure(study)
    figure.canvas.draw()
    (bar,) = [a for a in figure.axes if a.get_ylabel() == "Trial"]
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert labels and all(t.lstrip("−-").isdigit() for t in labels), labels
    plt.close(figure)


def test_a_pruned_trial_has_no_selection_score_only_its_last():
    """A pruned trial keeps no student: trials.csv showed, as its selection score, the score
    at which it was pruned (Optuna's value for it), beside the complete trials' kept ones."""
    import optuna
    from optuna.distributions import FloatDistribution

    from lgtm.tune.outputs import trial_rows

    study = optuna.create_study(direction="maximize")
    space = {"lr": FloatDistribution(1e-5, 1e-3, log=True)}
    for state, value, steps in [("COMPLETE", 0.8, {0: 0.5, 4: 0.8}), ("PRUNED", 0.4, {0: 0.4})]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-4},
                distributions=space,
                value=value,
                intermediate_values=steps,
                state=optuna.trial.TrialState[state],
            )  # fmt: skip
        )
    rows = trial_rows(study, parse_search("lr=1e-5:1e-3:log", cfg.resolve({"task": "sst2"})))
    assert [(r["selection_score"], r["last_selection_score"]) for r in rows] == [
        (0.8, 0.8),
        (None, 0.4),
    ]


@pytest.mark.parametrize(
    "value, label",
    [(1.5e-4, "1.5e-4"), (3e-3, "3e-3"), (0.05, "0.05"), (1.0, "1"), (2.0, "2"), (5.0, "5"),
     (1.5, "1.5"), (30.0, "30"), (300.0, "300"), (3000.0, "3e3")],
)  # fmt: skip
def test_log_tick_labels_are_plain_numbers_between_0_01_and_1000(value, label):
    """tune.png labelled the temperature axis (1 to 8) '1e0 2e0 3e0 5e0'."""
    from lgtm.tune.outputs import _short

    assert _short(value) == label


def test_the_printed_table_is_not_cut_when_not_on_a_terminal(capsys, tmp_path):
    """Piped or redirected, rich's 80 columns cut the trial table's settings to '…'; the table
    is printed as wide as it needs (hand-made rows, values checked verbatim)."""
    from lgtm.tune.outputs import _print_summary

    row = {"trial": 0, "state": "complete", "selection_score": 0.81234, "steps": 375}
    row |= {"last_selection_score": 0.8, "seconds": 123.4, "lr": 0.000312345}
    row |= {"teacher_lr": 1.2345e-5, "alpha": 0.53421, "temperature": 2.3456}
    result = {"method": "lgtm", "trials": 12, "table": [row], "best": {"trial": 0}}
    result |= {"counts": {"complete": 1, "pruned": 0, "diverged": 0}, "trial_steps": 375}
    _print_summary({**result, "best_yaml": str(tmp_path / "best.yaml")}, tmp_path)
    out = capsys.readouterr().out
    assert "…" not in out
    for text in ("0.0003123", "1.234e-05", "0.5342", "2.346", "temperature", "teacher_lr"):
        assert text in out
    # the lines under the table, longer than it, are not broken mid-sentence either
    assert "1 complete, 0 pruned, 0 diverged; 375 trial-steps" in out.splitlines()[-3]
    deep = tmp_path / ("a-long-folder-name-" * 6)
    _print_summary({**result, "best_yaml": str(deep / "best.yaml")}, deep)
    assert f"next: lgtm distill --config {deep / 'best.yaml'}" in capsys.readouterr().out
    # a failed trial is explained: the table's 'failed' read as if the study had broken
    killed = {**row, "trial": 1, "state": "failed", "selection_score": None}
    _print_summary({**result, "table": [row, killed], "best_yaml": None}, tmp_path)
    assert (
        "failed: 1: stopped (interrupted, killed or an error) and run again with the same "
        "settings as a later trial"
    ) in capsys.readouterr().out.splitlines()
    # the title counts the study's finished trials, not --trials of a command that found more
    counts = {"complete": 3, "pruned": 1, "diverged": 1}
    _print_summary({**result, "trials": 2, "counts": counts, "best_yaml": None}, tmp_path)
    assert "lgtm tune: lgtm, 5 trials" in capsys.readouterr().out
