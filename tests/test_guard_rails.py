"""Guard rails: models checked against the task, numbers finite, no run left half-done, and a
Python API that fails clearly and safely. Tiny models and files written here (seconds each)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import (
    bundled_tokenizer,
    make_batch,
    one_line_error,
    run,
    run_config,
    tiny_bert,
    write_table,
)
from transformers import BertConfig, BertForSequenceClassification

import lgtm
from lgtm import config as cfg
from lgtm import rundir, train
from lgtm.errors import LgtmInputError

NLI = ("entailment", "neutral", "contradiction")  # the teacher's own order (as MNLI's)
PREMISES = "a man plays|the cat sleeps|two kids run|a woman sings|the dog barks|rain falls"


@pytest.fixture(scope="module")
def nli_csv(tmp_path_factory) -> Path:
    """premise,hypothesis,label with the label *names*; sorted they are (contradiction,
    entailment, neutral), which is not the teacher's order."""
    path = tmp_path_factory.mktemp("nli") / "nli.csv"
    rows = ["premise,hypothesis,label"]
    for i, premise in enumerate(PREMISES.split("|") * 4):
        label = NLI[(0, 0, 0, 1, 1, 2)[i % 6]]  # unbalanced: a permutation changes scores
        rows.append(f"{premise},{premise.split()[-1]} {i},{label}")
    rows.append(f"{'a very long premise ' * 60},short,neutral")  # 240 words: past 128 positions
    path.write_text("\n".join(rows) + "\n")
    return path


def save_classifier(folder: Path, names, *, order=None, seed: int = 0, **config) -> Path:
    """A tiny fine-tuned-style BERT classifier with ``id2label = names``; with ``order``, the
    same model (seed) with its classes stored in that order (new class k = old class order[k])."""
    torch.manual_seed(seed)
    config = {"vocab_size": 30522, **config}
    bert = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **config,
    )
    model = BertForSequenceClassification(bert)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 2.0)
        model.classifier.bias.normal_(0, 1.0)
        if order is not None:
            model.classifier.weight.copy_(model.classifier.weight[list(order)].clone())
            model.classifier.bias.copy_(model.classifier.bias[list(order)].clone())
            model.config.id2label = {k: names[o] for k, o in enumerate(order)}
            model.config.label2id = {n: k for k, n in model.config.id2label.items()}
    model.save_pretrained(folder)
    bundled_tokenizer().save_pretrained(folder)
    return folder


def nli_args(nli_csv: Path, teacher: Path, out: Path, *more) -> list:
    return [
        "distill",
        "--train-file",
        nli_csv,
        "--eval-file",
        nli_csv,
        "--text-columns",
        "premise,hypothesis",
        "--label-column",
        "label",
        "--teacher",
        teacher,
        "--teacher-finetuned",
        "--method",
        "kd",
        "--student-layers",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "16",
        "--quiet",
        "--output-dir",
        out,
        *more,
    ]


def logits_of(folder: Path, batch: dict) -> torch.Tensor:
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**batch).logits


# --------------------------------------------------------------------------- 1. models vs task


def test_one_teacher_in_two_label_orders_distils_identically(nli_csv, tmp_path, capsys):
    # the same teacher, saved in its own order (MNLI's) and in the data's sorted order
    own = save_classifier(tmp_path / "own", NLI)
    data_order = save_classifier(tmp_path / "sorted", NLI, order=[2, 0, 1])
    runs = {}
    for name, teacher in (("own", own), ("sorted", data_order)):
        status, _, err = run(capsys, *nli_args(nli_csv, teacher, tmp_path / f"run-{name}"))
        assert status == 0, err
        runs[name] = json.loads((tmp_path / f"run-{name}" / "metrics.json").read_text())
        notices = runs[name]["notices"]
        if name == "own":
            assert len(notices) == 1 and "put in the task's order" in notices[0]
            assert "(entailment, neutral, contradiction), the task (contradiction," in notices[0]
        else:
            assert notices == []
    a, b = runs["own"], runs["sorted"]
    assert a["teacher"]["accuracy"] == pytest.approx(b["teacher"]["accuracy"], abs=1e-6)
    assert a["student"]["accuracy"] == pytest.approx(b["student"]["accuracy"], abs=1e-6)
    losses_a = [h["student_loss"] for h in a["history"] if "student_loss" in h]
    losses_b = [h["student_loss"] for h in b["history"] if "student_loss" in h]
    assert len(losses_a) == 3 and losses_a == pytest.approx(losses_b, abs=1e-6)
    # the soft targets: both saved teachers give the same logits, in the data's order
    tok = bundled_tokenizer()
    pairs = (["a man plays", "rain falls"], ["plays", "falls"])
    batch = dict(tok(*pairs, padding=True, return_tensors="pt"))
    t_a, t_b = logits_of(tmp_path / "run-own/teacher", batch), logits_of(data_order, batch)
    assert torch.allclose(t_a, t_b, atol=1e-6, rtol=0)
    names = json.loads((tmp_path / "run-own/teacher/config.json").read_text())["id2label"]
    assert list(names.values()) == ["contradiction", "entailment", "neutral"]
    # the check can fail: the teacher's raw logits are *not* in the data's order
    assert not torch.allclose(logits_of(own, batch), t_b, atol=1e-3)


def test_evaluate_and_predict_read_a_teacher_by_its_label_names(nli_csv, tmp_path, capsys):
    own = save_classifier(tmp_path / "own", NLI)
    shuffled = save_classifier(tmp_path / "shuffled", NLI, order=[1, 2, 0])
    scores, predictions = [], []
    for model in (own, shuffled):
        common = ["--model", model, "--task", "mnli", "--text-columns", "premise,hypothesis"]
        status, out, err = run(capsys, "evaluate", *common, "--eval-file", nli_csv)
        assert status == 0, err
        scores.append(json.loads(out)["metrics"])
        target = tmp_path / f"pred-{model.name}.tsv"
        status, _, err = run(capsys, "predict", *common, "--input", nli_csv, "--output", target)
        assert status == 0, err
        predictions.append(target.read_text())
    assert scores[0] == scores[1]
    assert predictions[0] == predictions[1]


def test_other_label_names_are_refused_showing_both_sets(nli_csv, tmp_path, capsys):
    other = save_classifier(tmp_path / "sentiment", ("negative", "neutral", "positive"))
    line = one_line_error(capsys, *nli_args(nli_csv, other, tmp_path / "o"))
    assert "field 'teacher'" in line
    assert "{negative, neutral, positive}" in line
    assert "{contradiction, entailment, neutral}" in line
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_generic_label_names_keep_their_ids_with_a_notice(nli_csv, tmp_path, capsys):
    generic = save_classifier(tmp_path / "generic", ("LABEL_0", "LABEL_1", "LABEL_2"))
    args = [a for a in nli_args(nli_csv, generic, tmp_path / "o") if a != "--quiet"]
    status, _, err = run(capsys, *args)
    assert status == 0, err
    notice = [line for line in err.splitlines() if "does not name its classes" in line]
    assert len(notice) == 1 and "contradiction, entailment, neutral" in notice[0]
    # ids kept: the saved teacher's classifier is the original one, row for row
    saved = BertForSequenceClassification.from_pretrained(tmp_path / "o" / "teacher")
    original = BertForSequenceClassification.from_pretrained(generic)
    assert torch.equal(saved.classifier.weight, original.classifier.weight)


def test_multi_label_head_is_refused(nli_csv, tmp_path, capsys):
    multi = save_classifier(tmp_path / "multi", NLI, problem_type="multi_label_classification")
    line = one_line_error(capsys, *nli_args(nli_csv, multi, tmp_path / "o"))
    assert "multi label classification" in line and "single-label" in line


def test_reorder_classes_permutes_logits_exactly():
    from lgtm.checks import reorder_classes

    model = tiny_bert(1, seed=0, num_labels=3).eval()
    batch = {k: v for k, v in make_batch(4, 0).items() if k != "labels"}
    before = model(**batch).logits.detach()
    reorder_classes(model, [2, 0, 1])
    assert torch.equal(model(**batch).logits.detach(), before[:, [2, 0, 1]])
    with pytest.raises(ValueError, match="not a permutation"):
        reorder_classes(model, [0, 0, 1])


def test_max_length_beyond_the_models_is_lowered_with_a_notice(nli_csv, tmp_path, capsys):
    teacher = save_classifier(tmp_path / "t", NLI)  # 128 position embeddings
    status, _, err = run(
        capsys, *nli_args(nli_csv, teacher, tmp_path / "o", "--max-length", "4096")
    )
    assert status == 0, err
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["max_length"] == 128
    assert (
        "--max-length 4096 is more than the models take: lowered to 128" in metrics["notices"][-1]
    )
    # the tokenizer's own limit counts too, and evaluate/predict lower theirs the same way
    short = save_classifier(tmp_path / "short", NLI)
    settings = json.loads((short / "tokenizer_config.json").read_text())
    settings["model_max_length"] = 24
    (short / "tokenizer_config.json").write_text(json.dumps(settings))
    status, out, err = run(
        capsys,
        "evaluate",
        "--model",
        short,
        "--task",
        "mnli",
        "--text-columns",
        "premise,hypothesis",
        "--eval-file",
        nli_csv,
        "--max-length",
        "1000",
    )
    assert status == 0, err
    assert "lowered to 24 (the tokenizer's model_max_length)" in err


def test_max_input_length_reads_positions_and_offsets():
    from lgtm.checks import max_input_length

    class Tok:
        model_max_length = 10**30  # transformers' "no limit"

    bert = tiny_bert(1, seed=0)  # 32 positions
    assert max_input_length([bert], Tok())[0] == 32

    class Roberta:
        config = type(
            "C", (), {"max_position_embeddings": 514, "model_type": "roberta", "pad_token_id": 1}
        )()

    assert max_input_length([Roberta()], Tok())[0] == 512
    Tok.model_max_length = 20
    assert max_input_length([bert], Tok()) == (20, "the tokenizer's model_max_length")


# --------------------------------------------------------------------------- 2. numbers


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "nan", "argument --lr: expected a finite number, got 'nan'"),
        ("--lr", "inf", "argument --lr: expected a finite number, got 'inf'"),
        ("--temperature", "nan", "argument --temperature: expected a finite number"),
        ("--teacher-lr", "-1e-5", "field 'teacher_lr': must be positive"),
        ("--weight-decay", "-inf", "argument --weight-decay: expected a finite number"),
        ("--fd-radius", "1e999", "argument --fd-radius: expected a finite number"),
        ("--seed", "-3", "field 'seed': must lie in 0..4294967295"),
        ("--max-length", "1", "field 'max_length': must be at least 2"),
        ("--feedback-fraction", "nan", "argument --feedback-fraction: expected a finite"),
        # finite, but float32 degenerates silently beyond these (KL < 0, influence exactly 0)
        ("--temperature", "1e5", "field 'temperature': must lie in [0.05, 100] (the softened"),
        ("--temperature", "1e-30", "field 'temperature': must lie in [0.05, 100]"),
        ("--fd-radius", "1e-30", "field 'fd_radius': must lie in [0.0001, 1] (the finite"),
        ("--fd-radius", "1e3", "field 'fd_radius': must lie in [0.0001, 1]"),
    ],
)
def test_numeric_flags_are_finite_and_in_range(capsys, tmp_path, flag, value, message):
    line = one_line_error(capsys, "distill", f"{flag}={value}", "--output-dir", tmp_path / "o")
    assert message in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["temperature: .nan", "lr: .inf", "alpha: .nan", "seed: -1"])
def test_numeric_yaml_values_are_finite_and_in_range(capsys, tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(f"task: sst2\n{text}\n")
    line = one_line_error(capsys, "distill", "--config", path)
    assert f"field '{text.split(':')[0]}'" in line


@pytest.mark.parametrize(
    "option", [{"temperature": float("nan")}, {"fd_radius": float("inf")}, {"alpha": float("nan")}]
)
def test_api_refuses_non_finite_options(option):
    t, s = tiny_bert(1, 0), tiny_bert(1, 1)
    with pytest.raises(ValueError, match=next(iter(option))):
        lgtm.make_method(
            "lgtm",
            teacher=t,
            student=s,
            teacher_optimizer=torch.optim.SGD(t.parameters(), 0.1),
            student_optimizer=torch.optim.SGD(s.parameters(), 0.1),
            **option,
        )


# --------------------------------------------------------------------------- 3. non-finite runs


@pytest.fixture
def tiny_files(tmp_path) -> tuple[Path, Path]:
    words = "good bad great awful fine dull superb boring lovely weak".split()
    rows = [(f"{words[i % 10]} {words[(3 * i) % 10]}", str(i % 2)) for i in range(48)]
    train_file = write_table(tmp_path / "train.tsv", rows)
    return train_file, train_file


def tiny_config(teacher: Path, files, out: Path, **over) -> cfg.RunConfig:
    """``conftest.run_config`` with online distillation as the default method."""
    return run_config(teacher, files, out, **{"method": "online", **over})


@pytest.mark.parametrize(
    "over, step, message",
    [
        # a student step of size 1e20 (AdamW): its outputs overflow, caught before the checkpoint
        ({"lr": 1e20}, 1, "distill: the student's outputs are not finite; try a lower --lr (now"),
        # the teacher is updated first: the student's loss of the same step is NaN
        ({"teacher_lr": 1e20}, 1, "or --teacher-lr (now 1e+20)"),
        ({"lr": 1e20, "method": "lgtm"}, 1, "not finite; try a lower --lr (now 1e+20) or"),
        # kd's stage one: only the teacher's learning rate is named
        ({"teacher_lr": 1e20, "method": "kd"}, 1, "of teacher: the teacher's outputs are not"),
        ({"lr": 1e20, "save_steps": 5}, 2, "of distill: the student's loss is not finite"),
    ],
)
def test_non_finite_training_stops_with_one_line(
    tiny_teacher_dir, tiny_files, tmp_path, over, step, message
):
    out = tmp_path / "o"
    config = tiny_config(tiny_teacher_dir, tiny_files, out, **{"save_steps": 1, **over})
    with pytest.raises(LgtmInputError, match=f"training diverged at step {step} of ") as err:
        train.distill(config)
    text = str(err.value)
    assert message in text and "--overwrite" in text and "\n" not in text
    assert "no checkpoint had been written, and no model was" in text
    assert not rundir.checkpoints(out) and not (out / "student").exists()
    assert not (out / "metrics.json").exists()


def test_non_finite_loss_keeps_the_last_good_checkpoint(
    tiny_teacher_dir, tiny_files, tmp_path, monkeypatch
):
    from lgtm.methods.online import Online

    step = Online.step

    def nan_at_third(self, *args, **kwargs):
        stats = step(self, *args, **kwargs)
        self.calls = getattr(self, "calls", 0) + 1
        return {**stats, "teacher_loss": float("nan")} if self.calls == 3 else stats

    monkeypatch.setattr(Online, "step", nan_at_third)
    out = tmp_path / "o"
    with pytest.raises(LgtmInputError, match="step 3 of distill: the teacher's loss is not") as err:
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=1))
    kept = rundir.checkpoints(out)
    assert f"the last good checkpoint is kept ({kept[0]}); no model was written" in str(err.value)
    assert [c.name for c in kept] == ["ckpt-00000002", "ckpt-00000001"]
    assert not (out / "student").exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(Online, "step", step)
    with pytest.raises(LgtmInputError, match="pass --resume"):  # and it can be resumed
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=1))
    resumed = train.distill(
        tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=1, resume=True)
    )
    whole = train.distill(tiny_config(tiny_teacher_dir, tiny_files, tmp_path / "w", save_steps=1))
    assert resumed.metrics["history"] == whole.metrics["history"]


def test_non_finite_update_on_the_last_step_is_caught_before_saving(
    tiny_teacher_dir, tiny_files, tmp_path
):
    out = tmp_path / "o"
    # finite weights (an AdamW step is about ±lr at first) whose outputs overflow
    config = tiny_config(tiny_teacher_dir, tiny_files, out, max_steps=1, lr=1e30)
    with pytest.raises(LgtmInputError, match="step 1 of distill: the student's outputs are not"):
        train.distill(config)
    assert not (out / "student").exists() and not (out / "metrics.json").exists()


def test_non_finite_run_exits_2_from_the_command_line(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    args = ["distill", "--train-file", tiny_files[0], "--text-columns", "sentence"]
    args += ["--teacher", tiny_teacher_dir, "--student-layers", "1", "--method", "online"]
    args += ["--max-length", "16", "--epochs", "1", "--lr", "1e20", "--quiet"]
    line = one_line_error(capsys, *args, "--output-dir", tmp_path / "o")
    assert "field 'lr': training diverged at step" in line


# --------------------------------------------------------------------------- 4. half-done runs


def test_output_dir_that_cannot_be_made_fails_before_loading(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    # the teacher does not exist either: the folder is checked first, before any loading
    line = one_line_error(
        capsys,
        "distill",
        "--task",
        "sst2",
        "--teacher",
        tmp_path / "none/",
        "--output-dir",
        blocker / "run",
    )
    assert f"{blocker / 'run'}: field 'output_dir': cannot write the run's outputs here" in line
    line = one_line_error(capsys, "distill", "--output-dir", blocker)
    assert "exists and is not a folder" in line


def test_bad_input_after_the_folder_check_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "deep" / "run"
    line = one_line_error(
        capsys, "distill", "--task", "sst2", "--data-dir", tmp_path / "nowhere", "--output-dir", out
    )
    assert "not found" in line and not out.exists()


class Killed(Exception):
    pass


def kill_at(step: int):
    def callback(phase: str, at: int) -> None:
        if phase == "distill" and at == step:
            raise Killed

    return callback


def test_run_that_died_before_its_first_checkpoint_is_replaced(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    out = tmp_path / "o"
    config = tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=100, quiet=False)
    with pytest.raises(Killed):
        train.distill(config, callback=kill_at(2))
    assert (out / "config.yaml").exists() and not rundir.checkpoints(out)
    assert not (out / rundir.LOCK).exists()  # the dead run left no lock behind
    capsys.readouterr()
    result = train.distill(config)  # the same command, no --overwrite
    assert "stopped before its first checkpoint: replacing it" in capsys.readouterr().err
    fresh = train.distill(tiny_config(tiny_teacher_dir, tiny_files, tmp_path / "f"))
    assert result.metrics["history"] == fresh.metrics["history"]


def test_run_with_a_checkpoint_is_refused_with_the_resume_hint(
    tiny_teacher_dir, tiny_files, tmp_path
):
    out = tmp_path / "o"
    with pytest.raises(Killed):
        train.distill(
            tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=1), callback=kill_at(3)
        )
    with pytest.raises(LgtmInputError, match="pass --resume to continue it"):
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=1))


# A run started in another process that waits, as soon as it would load its data, until
# the file `go` exists (it first writes `started`): the folder must be its from that moment.
HELD_RUN = """
import sys, time
from pathlib import Path
import lgtm.run
from lgtm import cli

def wait(config):
    Path(sys.argv[1], "started").write_text("")
    while not Path(sys.argv[1], "go").exists():
        time.sleep(0.05)
    return load(config)

load, lgtm.run.load_data = lgtm.run.load_data, wait
sys.exit(cli.main(sys.argv[2:]))
"""


def subprocess_env() -> dict[str, str]:
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def start_held_run(signals: Path, args: list) -> subprocess.Popen:
    """``lgtm ARGS`` in another process, stopped before its data loads (see ``HELD_RUN``)."""
    import time

    signals.mkdir(exist_ok=True)
    command = [sys.executable, "-c", HELD_RUN, str(signals), *map(str, args)]
    held = subprocess.Popen(command, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (signals / "started").exists():
        assert held.poll() is None, held.communicate()[1]
        assert time.monotonic() < deadline, "the held run did not start"
        time.sleep(0.1)
    return held


def tiny_args(teacher: Path, files, out: Path) -> list:
    return [
        "distill", "--train-file", files[0], "--eval-file", files[1], "--text-columns",
        "sentence", "--teacher", teacher, "--student-layers", "1", "--method", "online",
        "--max-length", "16", "--epochs", "1", "--batch-size", "8", "--quiet",
        "--output-dir", out,
    ]  # fmt: skip


def test_a_second_run_into_a_folder_a_live_run_took_is_refused_from_its_first_moment(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    from lgtm.cli import _prediction_file

    out = tmp_path / "o"
    args = tiny_args(tiny_teacher_dir, tiny_files, out)
    held = start_held_run(tmp_path / "signals", args)  # has written nothing but its lock
    try:
        assert not (out / "config.yaml").exists()
        for more in ([], ["--overwrite"]):  # another process, from the command line
            second = subprocess.run(
                [sys.executable, "-m", "lgtm.cli", *map(str, args), *more],
                env=subprocess_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert second.returncode == 2, second.stderr
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
            assert f"{out}: field 'output_dir': a live run holds this folder (process " in (
                second.stderr
            )
            assert f"process {held.pid})" in second.stderr
        with pytest.raises(LgtmInputError, match="a live run holds this folder"):  # in-process
            train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, overwrite=True))
        line = one_line_error(capsys, "plot", out)  # no command writes into a held folder
        assert f"{out}: field 'run_dir': a live run holds this folder (process {held.pid})" in line
        for inside in (out / "predictions.tsv", out / "new" / "deeper" / "predictions.tsv"):
            with pytest.raises(LgtmInputError, match=f"{out}: field 'output': a live run holds"):
                _prediction_file(inside, overwrite=False)
        assert not (out / "new").exists()
        (tmp_path / "signals" / "go").write_text("")
        assert held.wait(timeout=600) == 0, held.communicate()[1]
    finally:
        held.kill()
        held.wait()
    metrics = json.loads((out / "metrics.json").read_text())  # the first run's, complete
    assert metrics["method"] == "online" and (out / "student" / "config.json").is_file()
    assert not (out / rundir.LOCK).exists()  # released at its end


def test_a_killed_run_leaves_no_lock_that_holds_its_folder(tiny_teacher_dir, tiny_files, tmp_path):
    import signal

    out = tmp_path / "o"
    held = start_held_run(tmp_path / "signals", tiny_args(tiny_teacher_dir, tiny_files, out))
    held.send_signal(signal.SIGKILL)
    held.wait()
    assert (out / rundir.LOCK).exists()  # its file stays, with a dead process's number in it
    assert rundir.live_holder(out) is None
    train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, max_steps=1))  # taken over
    assert (out / "metrics.json").exists() and not (out / rundir.LOCK).exists()


def test_a_file_system_without_locks_is_said_not_hidden(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    try:
        rundir.take_lock(tmp_path / "o")
        err = capsys.readouterr().err
        assert f"lgtm: warning: {tmp_path / 'o'}: this file system cannot lock files" in err
        assert "a second run into this folder would not be refused" in err
    finally:
        rundir.release_lock(tmp_path / "o")
    assert not (tmp_path / "o" / rundir.LOCK).exists()


# ---- a full or read-only disk: one line naming what could not be written and what is kept


def full_disk(*names: str, after: int = 0):
    """``os.replace`` (the last step of every atomic write) that fails with ENOSPC onto a file
    called one of ``names``, after ``after`` such writes have succeeded."""
    import errno
    import os

    replace, done = os.replace, []

    def fake(src, dst, *args, **kwargs):
        if Path(dst).name in names:
            if len(done) >= after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done.append(dst)
        return replace(src, dst, *args, **kwargs)

    return fake


def failing_save_state(at: int):
    """``Accelerator.save_state`` that writes part of the checkpoint, then finds the disk full
    (as safetensors reports it) at its ``at``-th call."""
    from accelerate import Accelerator

    save, calls = Accelerator.save_state, []

    def fake(self, output_dir=None, *args, **kwargs):
        calls.append(output_dir)
        if len(calls) == at:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("Error while serializing: I/O error: No space left on device")
        return save(self, output_dir, *args, **kwargs)

    return fake


def raise_enospc(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def enospc_at(call: int, method):
    """``method`` that finds the disk full at its ``call``-th call."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise_enospc()
        return method(*args, **kwargs)

    return fake


@pytest.mark.parametrize(
    "point, method, target, kept",
    [
        ("config.yaml", "online", "config.yaml", None),
        ("first checkpoint", "online", "checkpoints/ckpt-00000001", None),
        ("third checkpoint", "online", "checkpoints/ckpt-00000003", "ckpt-00000002"),
        ("influence log", "lgtm", "influence.jsonl", "ckpt-00000002"),
        ("teacher outputs", "kd", "teacher_outputs/distill.pt", "ckpt-00000004"),
        ("student", "online", "student", "ckpt-00000004"),
        ("metrics.json", "online", "metrics.json", "ckpt-00000004"),
        ("plots", "online", "plots/losses.png", "ckpt-00000004"),
    ],
)
def test_a_full_disk_stops_the_run_with_one_line_keeping_what_is_good(
    tiny_teacher_dir, tiny_files, tmp_path, capsys, monkeypatch, point, method, target, kept
):
    import os

    from accelerate import Accelerator
    from transformers import PreTrainedModel

    out = tmp_path / "o"
    args = tiny_args(tiny_teacher_dir, tiny_files, out)
    args += ["--method", method, "--save-steps", "1", "--max-steps", "4", "--eval-steps", "2"]
    with monkeypatch.context() as patch:
        if point == "first checkpoint":
            patch.setattr(Accelerator, "save_state", failing_save_state(1))
        elif point == "third checkpoint":
            patch.setattr(Accelerator, "save_state", failing_save_state(3))
        elif point == "influence log":  # logged at every step: the third's fails
            log = enospc_at(3, lgtm.report.records.InfluenceLog.log)
            patch.setattr("lgtm.report.records.InfluenceLog.log", log)
        elif point == "student":
            patch.setattr(PreTrainedModel, "save_pretrained", raise_enospc)
        else:
            patch.setattr(os, "replace", full_disk(Path(target).name))
        line = one_line_error(capsys, *args)
    what = {"student": "the model", "influence log": "the influence log"}.get(point, "it")
    what = "the checkpoint" if "checkpoint" in point else what
    assert f"lgtm: error: {out / target}: cannot write {what}: " in line
    assert "No space left on device; " in line
    if kept is None:
        assert line.endswith("no checkpoint had been written yet: make room and run again")
        assert not rundir.checkpoints(out)
    else:
        assert f"the last complete checkpoint is kept ({out / 'checkpoints' / kept}): " in line
        assert rundir.checkpoints(out)[0].name == kept
        assert line.endswith("make room and continue with --resume")
    # nothing half-written is left where a good file would be
    left = [p.name for p in out.rglob("*") if p.name.startswith(".") and p.name != rundir.LOCK]
    assert left == [] and (point == "influence log" or not (out / target).exists())
    assert (out / "metrics.json").exists() == (point == "plots")  # written before its plots
    assert not (out / rundir.LOCK).exists()
    if kept is not None:  # room made: the run goes on to what an unbroken run gives
        assert run(capsys, *args, "--resume")[0] == 0
        whole = tmp_path / "whole"
        assert run(capsys, *tiny_args(tiny_teacher_dir, tiny_files, whole), *args[-8:])[0] == 0
        metrics = [json.loads((d / "metrics.json").read_text()) for d in (out, whole)]
        assert metrics[0]["history"] == metrics[1]["history"]
        if point == "influence log":
            assert (out / target).read_text() == (whole / target).read_text()


def test_a_read_only_checkpoint_folder_stops_the_run_with_one_line(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    import os
    import stat

    out = tmp_path / "o"
    with pytest.raises(Killed):
        config = tiny_config(tiny_teacher_dir, tiny_files, out, save_steps=1)
        train.distill(config, callback=kill_at(2))
    root = out / rundir.CHECKPOINTS
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(root, os.W_OK):  # root: permissions do not stop writes
            pytest.skip("permissions do not stop this user's writes")
        args = ["distill", "--config", out / "config.yaml", "--resume"]
        line = one_line_error(capsys, *args)
    finally:
        root.chmod(stat.S_IRWXU)
    assert f"{root / 'ckpt-00000003'}: cannot write the checkpoint: Permission denied" in line
    assert f"the last complete checkpoint is kept ({root / 'ckpt-00000002'})" in line


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a folder on a tmpfs of ``size`` (root only; skipped where it cannot be
    mounted), unmounted at the end."""
    import subprocess

    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk-{len(mounted)}"
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        if subprocess.run(command, capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_really_full_disk_stops_the_run_with_one_line(
    tiny_teacher_dir, tiny_files, tmpfs, capsys
):
    small_disk = tmpfs("3m")
    # room for config.yaml, not for a checkpoint of two models and their optimizers
    args = tiny_args(tiny_teacher_dir, tiny_files, small_disk / "o")
    line = one_line_error(capsys, *args, "--save-steps", "1")
    assert "ckpt-00000001: cannot write the checkpoint: No space left on device; " in line
    assert not any((small_disk / "o" / rundir.CHECKPOINTS).iterdir())  # its half removed


def test_a_folder_turned_read_only_mid_run_stops_it_with_one_line(
    tiny_teacher_dir, tiny_files, tmp_path
):
    import subprocess

    out = tmp_path / "o"
    root = out / rundir.CHECKPOINTS
    mounted = []

    def read_only_after(phase: str, step: int) -> None:
        if step == 2:  # checkpoints/ becomes a read-only file system of its own
            bind = subprocess.run(["mount", "--bind", root, root], capture_output=True)
            if bind.returncode != 0:
                pytest.skip("cannot bind-mount here (needs root)")
            mounted.append(root)
            subprocess.run(["mount", "-o", "remount,bind,ro", root], check=True)

    over = dict(save_steps=1, max_steps=4)
    config = tiny_config(tiny_teacher_dir, tiny_files, out, **over)
    try:
        with pytest.raises(LgtmInputError) as err:
            train.distill(config, callback=read_only_after)
    finally:
        for folder in mounted:
            subprocess.run(["umount", folder], check=True)
    text = str(err.value)
    assert text.startswith(f"{root / 'ckpt-00000003'}: cannot write the checkpoint: Read-only")
    assert f"the last complete checkpoint is kept ({root / 'ckpt-00000002'})" in text
    resumed = train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, resume=True, **over))
    whole = train.distill(tiny_config(tiny_teacher_dir, tiny_files, tmp_path / "w", **over))
    assert resumed.metrics["history"] == whole.metrics["history"]


# ---- --resume with other data or models than the run started from


def flip_labels(path: Path) -> None:
    """Edit a table in place: every label of ``sentence<TAB>label`` rows flipped."""
    head, *rows = path.read_text().splitlines()
    flipped = [f"{text}\t{1 - int(label)}" for text, label in (r.split("\t") for r in rows)]
    path.write_text("\n".join([head, *flipped]) + "\n")


@pytest.mark.parametrize("change", ["labels", "teacher"])
def test_resume_refuses_data_or_models_changed_since_the_run_started(
    tiny_teacher_dir, tmp_path, capsys, change
):
    import shutil

    words = "good bad great awful fine dull superb boring lovely weak".split()
    rows = [(f"{words[i % 10]} {words[(3 * i) % 10]}", str(i % 2)) for i in range(48)]
    train_file = write_table(tmp_path / "train.tsv", rows)
    eval_file = write_table(tmp_path / "dev.tsv", rows[:16])
    teacher = shutil.copytree(tiny_teacher_dir, tmp_path / "teacher")
    out = tmp_path / "o"
    config = tiny_config(teacher, (train_file, eval_file), out, save_steps=1)
    with pytest.raises(Killed):
        train.distill(config, callback=kill_at(3))
    if change == "labels":
        flip_labels(train_file)
        named = "the feedback rows, the training rows differ from those the run started from"
    else:
        weights = BertForSequenceClassification.from_pretrained(teacher)
        with torch.no_grad():
            weights.bert.embeddings.word_embeddings.weight[5, 0] += 1.0
        weights.save_pretrained(teacher)
        named = "the student's weights, the teacher's weights differ from those the run started"
    line = one_line_error(capsys, "distill", "--config", out / "config.yaml", "--resume")
    assert f"field 'resume': {named}" in line and "--overwrite" in line
    assert [c.name for c in rundir.checkpoints(out)] == ["ckpt-00000003", "ckpt-00000002"]


def test_resume_from_a_checkpoint_without_digests_says_the_data_was_not_checked(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    out = tmp_path / "o"
    over = dict(save_steps=1, max_steps=4)
    with pytest.raises(Killed):
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, **over), callback=kill_at(3))
    for checkpoint in rundir.checkpoints(out):  # as lgtm wrote them before it kept digests
        state_file = checkpoint / "custom_checkpoint_0.pkl"
        state = torch.load(state_file, weights_only=False)
        del state["inputs"]
        torch.save(state, state_file)
        rundir.write_manifest(checkpoint)
    capsys.readouterr()
    config = tiny_config(tiny_teacher_dir, tiny_files, out, resume=True, quiet=False, **over)
    resumed = train.distill(config)
    err = capsys.readouterr().err
    assert "records no digests of the run's data and models" in err
    assert "the data could not be checked" in err
    whole = train.distill(tiny_config(tiny_teacher_dir, tiny_files, tmp_path / "w", **over))
    assert resumed.metrics["history"] == whole.metrics["history"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "garble"])
def test_resume_falls_back_from_a_damaged_last_checkpoint(
    tiny_teacher_dir, tiny_files, tmp_path, damage, capsys
):
    over = dict(method="lgtm", save_steps=2, eval_steps=4)
    whole = train.distill(tiny_config(tiny_teacher_dir, tiny_files, tmp_path / "a", **over))
    out = tmp_path / "b"
    with pytest.raises(Killed):
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, **over), callback=kill_at(5))
    newest, previous = rundir.checkpoints(out)
    target = newest / "optimizer_1.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "delete":
        target.unlink()
    else:  # same size, garbage inside: the manifest cannot see it, loading does
        target.write_bytes(b"\0" * target.stat().st_size)
    capsys.readouterr()
    config = tiny_config(tiny_teacher_dir, tiny_files, out, resume=True, quiet=False, **over)
    resumed = train.distill(config)
    err = capsys.readouterr().err
    assert "damaged checkpoint" in err and str(target if damage != "garble" else newest) in err
    assert f"resuming from {previous}" in err
    assert whole.metrics["history"] == resumed.metrics["history"]
    for a, b in zip(whole.student.parameters(), resumed.student.parameters()):
        assert torch.equal(a, b)


def test_resume_with_every_checkpoint_damaged_names_the_file(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    out = tmp_path / "b"
    over = dict(save_steps=2)
    with pytest.raises(Killed):
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, **over), callback=kill_at(5))
    for checkpoint in rundir.checkpoints(out):
        (checkpoint / "model.safetensors").write_bytes(b"short")
    newest = rundir.checkpoints(out)[0]
    args = ["distill", "--config", out / "config.yaml", "--resume"]
    line = one_line_error(capsys, *args)
    assert "field 'resume': no undamaged checkpoint to resume from" in line
    assert str(newest / "model.safetensors") in line and "truncated" in line


# --------------------------------------------------------------------------- 5. the Python API


def sdpa_pair():
    teacher, student = tiny_bert(1, 0), tiny_bert(1, 1)
    for model in (teacher, student):
        model.set_attn_implementation("sdpa")
    return teacher, student


@pytest.mark.parametrize("name", ["meta", "lgtm-exact"])
def test_double_backward_methods_switch_models_to_eager_attention(name):
    teacher, student = sdpa_pair()
    eager_t, eager_s = copy.deepcopy(teacher), copy.deepcopy(student)
    for model in (eager_t, eager_s):
        model.set_attn_implementation("eager")

    def build(t, s):
        return lgtm.make_method(
            name,
            teacher=t,
            student=s,
            teacher_optimizer=torch.optim.SGD(t.parameters(), 0.1),
            student_optimizer=torch.optim.SGD(s.parameters(), 0.1),
        )

    with pytest.warns(UserWarning, match="now uses eager attention"):
        method = build(teacher, student)
    assert teacher.config._attn_implementation == student.config._attn_implementation == "eager"
    batch, feedback = make_batch(4, 0), make_batch(4, 1)
    method.step(batch, feedback)
    build(eager_t, eager_s).step(batch, feedback)
    for a, b in zip(
        [*teacher.parameters(), *student.parameters()],
        [*eager_t.parameters(), *eager_s.parameters()],
    ):
        assert torch.equal(a, b)


def test_a_model_that_cannot_switch_is_a_value_error_naming_the_fix(monkeypatch):
    teacher, student = sdpa_pair()

    def refuse(*args, **kwargs):
        raise ValueError("this model does not support eager attention")

    monkeypatch.setattr(teacher, "set_attn_implementation", refuse)
    with pytest.raises(ValueError, match="load the teacher with attn_implementation='eager'"):
        lgtm.make_method(
            "meta",
            teacher=teacher,
            student=student,
            teacher_optimizer=torch.optim.SGD(teacher.parameters(), 0.1),
            student_optimizer=torch.optim.SGD(student.parameters(), 0.1),
        )
    # methods without second-order gradients leave the attention alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lgtm.make_method(
            "lgtm",
            teacher=teacher,
            student=student,
            teacher_optimizer=torch.optim.SGD(teacher.parameters(), 0.1),
            student_optimizer=torch.optim.SGD(student.parameters(), 0.1),
        )
    assert teacher.config._attn_implementation == "sdpa"


def everything(method) -> list:
    """Copies of both models' parameters and both optimizers' states."""
    out = [p.detach().clone() for p in [*method.teacher.parameters(), *method.student.parameters()]]
    for optimizer in (method.teacher_optimizer, method.student_optimizer):
        for state in optimizer.state.values():
            out += [v.clone() if torch.is_tensor(v) else v for _, v in sorted(state.items())]
        out.append(len(optimizer.state))
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in zip(a, b)
    )


@pytest.mark.parametrize("name", ["online", "meta", "lgtm", "lgtm-exact"])
@pytest.mark.parametrize("fail_in", ["student_step", "student_optimizer"])
def test_a_step_that_raises_leaves_models_and_optimizers_as_they_were(name, fail_in, monkeypatch):
    teacher, student = tiny_bert(1, 0), tiny_bert(1, 1)
    method = lgtm.make_method(
        name,
        teacher=teacher,
        student=student,
        teacher_optimizer=torch.optim.AdamW(teacher.parameters(), 1e-2),
        student_optimizer=torch.optim.AdamW(student.parameters(), 1e-2),
    )
    batch, feedback = make_batch(4, 0), make_batch(4, 1)
    method.step(batch, feedback)  # optimizer states exist: they must be restored, not dropped
    before = everything(method)

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    if fail_in == "student_step":  # after the teacher's update, before the student's
        monkeypatch.setattr(method, "real_student_step", boom)
    else:  # inside the student's optimizer step, after the teacher's update
        monkeypatch.setattr(method.student_optimizer, "step", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        method.step(batch, feedback)
    assert same(before, everything(method))
    assert all(p.grad is None for p in [*teacher.parameters(), *student.parameters()])
    # the check can fail: without the safe step the teacher has moved
    method.safe_step = False
    with pytest.raises(RuntimeError):
        method.step(batch, feedback)
    assert not same(before, everything(method))


# --------------------------------------------------------------------------- found by a review


def test_a_teacher_without_a_trained_head_is_not_taken_as_fine_tuned(
    nli_csv, tiny_teacher_dir, tmp_path, capsys
):
    line = one_line_error(capsys, *nli_args(nli_csv, tiny_teacher_dir, tmp_path / "o"))
    assert "field 'teacher'" in line and "has no trained classification head" in line
    assert "drop --teacher-finetuned" in line and not (tmp_path / "o").exists()
    for command in ("evaluate", "predict"):
        more = ["--eval-file", nli_csv] if command == "evaluate" else ["--input", nli_csv]
        if command == "predict":
            more += ["--output", tmp_path / "p.tsv"]
        line = one_line_error(
            capsys,
            command,
            "--model",
            tiny_teacher_dir,
            "--task",
            "mnli",
            "--text-columns",
            "premise,hypothesis",
            *more,
        )
        assert "has no trained classification head" in line


def test_predict_writes_the_tasks_label_names(nli_csv, tmp_path, capsys):
    upper = save_classifier(tmp_path / "upper", [n.upper() for n in NLI])
    generic = save_classifier(tmp_path / "generic", ("LABEL_0", "LABEL_1", "LABEL_2"))
    for model in (upper, generic):
        target = tmp_path / f"{model.name}.tsv"
        status, _, err = run(
            capsys,
            "predict",
            "--model",
            model,
            "--task",
            "mnli",
            "--text-columns",
            "premise,hypothesis",
            "--input",
            nli_csv,
            "--output",
            target,
        )
        assert status == 0, err
        predicted = {line.split("\t")[1] for line in target.read_text().splitlines()[1:]}
        assert predicted and predicted <= set(NLI)


def save_odd_model(folder: Path, **config) -> Path:
    """A classifier for SST-2-like pairs with one odd property."""
    nan = config.pop("nan", False)
    save_classifier(folder, ("negative", "positive"), **config)
    if nan:
        model = BertForSequenceClassification.from_pretrained(folder)
        with torch.no_grad():
            model.classifier.weight.fill_(float("nan"))
        model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "odd, message",
    [
        ({"nan": True}, "weights hold NaN or infinite values"),
        ({"vocab_size": 100}, "has 100 token embeddings but its tokenizer has 30522"),
        ({"type_vocab_size": 1}, "has 1 token type(s) but its tokenizer marks the second"),
    ],
)
def test_evaluate_and_predict_refuse_models_that_cannot_read_the_data(
    tmp_path, capsys, odd, message
):
    model = save_odd_model(tmp_path / "m", **odd)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,label\nnice,film,positive\nbad,film,negative\n")
    common = ["--model", model, "--task", "pairs", "--text-columns", "a,b"]
    line = one_line_error(capsys, "evaluate", *common, "--eval-file", pairs)
    assert message in line
    line = one_line_error(capsys, "predict", *common, "--input", pairs, "--output", tmp_path / "p")
    assert message in line and not (tmp_path / "p").exists()


def test_distill_refuses_a_teacher_that_cannot_read_the_data(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,label\n" + "nice,film,positive\nbad,film,negative\n" * 10)
    for odd, message in (
        ({"vocab_size": 100}, "token embeddings"),
        ({"type_vocab_size": 1}, "token type"),
        ({"nan": True}, "not finite before training: the model given holds NaN"),
    ):
        teacher = save_odd_model(tmp_path / f"t{len(odd)}{next(iter(odd))}", **odd)
        args = ["distill", "--train-file", pairs, "--text-columns", "a,b", "--teacher", teacher]
        args += ["--teacher-finetuned", "--method", "kd", "--student-layers", "1", "--quiet"]
        line = one_line_error(capsys, *args, "--output-dir", tmp_path / f"o-{next(iter(odd))}")
        assert message in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
        (["--batch-size=-1"], "argument --batch-size: expected a positive integer"),
        (["--seed=-1"], "argument --seed: must lie in 0..4294967295"),
        (["--max-eval-samples", "0"], "argument --max-eval-samples: expected a positive"),
        (["--max-length", "nan"], "argument --max-length: expected an integer, got 'nan'"),
    ],
)
def test_evaluate_numbers_are_checked(nli_csv, tmp_path, capsys, args, message):
    model = save_classifier(tmp_path / "m", NLI)
    line = one_line_error(
        capsys,
        "evaluate",
        "--model",
        model,
        "--task",
        "mnli",
        "--text-columns",
        "premise,hypothesis",
        "--eval-file",
        nli_csv,
        *args,
    )
    assert message in line


def test_predict_checks_its_output_before_predicting(nli_csv, tmp_path, capsys):
    model = save_classifier(tmp_path / "m", NLI)
    common = ["predict", "--model", model, "--task", "mnli", "--text-columns"]
    common += ["premise,hypothesis", "--input", nli_csv, "--output"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "cannot write here" in one_line_error(capsys, *common, blocker / "p.tsv")
    assert "is a folder" in one_line_error(capsys, *common, tmp_path)
    assert "exists: pass --overwrite" in one_line_error(capsys, *common, blocker)
    assert blocker.read_text() == "x"
    status, _, err = run(capsys, *common, blocker, "--overwrite")
    assert status == 0, err and blocker.read_text().startswith("index\tprediction")


def test_corruption_of_the_same_size_is_found_by_the_digest(
    tiny_teacher_dir, tiny_files, tmp_path, capsys
):
    out = tmp_path / "b"
    over = dict(save_steps=2)
    with pytest.raises(Killed):
        train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, **over), callback=kill_at(5))
    newest, previous = rundir.checkpoints(out)
    target = newest / "model_1.safetensors"
    data = bytearray(target.read_bytes())
    data[-4000:-2000] = b"\x3c" * 2000  # finite float32 values, same size: only a digest sees it
    target.write_bytes(bytes(data))
    assert "content changed since it was written" in rundir.damage(newest)
    capsys.readouterr()
    train.distill(tiny_config(tiny_teacher_dir, tiny_files, out, resume=True, quiet=False, **over))
    assert f"resuming from {previous}" in capsys.readouterr().err
