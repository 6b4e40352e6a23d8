"""The training loop and the run configuration, on tiny random BERTs (seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_config, write_table

from lgtm import config as cfg
from lgtm import train
from lgtm.errors import LgtmInputError

# --------------------------------------------------------------------------- helpers


WORDS = "good bad great awful fine dull superb boring lovely weak".split()


@pytest.fixture
def tiny_data(tmp_path) -> tuple[Path, Path]:
    """A learnable two-class TSV task: 'positive' words vs 'negative' words."""
    rng = np.random.default_rng(0)
    pos, neg = WORDS[0::2], WORDS[1::2]

    def rows(n: int) -> list[tuple[str, str]]:
        out = []
        for i in range(n):
            label = i % 2
            words = rng.choice(pos if label else neg, size=4)
            out.append((" ".join(words), str(label)))
        return out

    train_file = write_table(tmp_path / "train.tsv", rows(60))
    eval_file = write_table(tmp_path / "dev.tsv", rows(20))
    return train_file, eval_file


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def untimed(stages: list[dict]) -> list[dict]:
    """A run's stage records without their wall-clock fields, which no two runs share."""
    return [{k: v for k, v in s.items() if not k.endswith("seconds")} for s in stages]


def same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- configuration


def test_resolve_layers_defaults_default_run_preset_and_explicit():
    plain = cfg.resolve({"task": "sst2"})
    assert (plain.method, plain.max_length, plain.epochs, plain.feedback_from) == (
        "lgtm",
        128,
        3,
        "train",
    )
    assert plain.init_classifier == "random" and plain.max_train_samples is None

    default = cfg.resolve({})  # no data named: the offline default's budget
    assert default.uses_default_data
    for key, value in cfg.DEFAULT_RUN.items():
        assert getattr(default, key) == value
    assert cfg.resolve({"epochs": 7}).epochs == 7  # a flag beats the default budget
    # the demonstration distils with kd and the unlabelled text the default data ships
    assert (default.method, default.transfer_from_train, default.lr) == ("kd", True, 3e-4)
    assert default.is_default_run and cfg.resolve({"seed": 3}).is_default_run
    assert not cfg.resolve({"lr": 1e-3}).is_default_run
    assert not cfg.resolve({"task": "sst2", **cfg.DEFAULT_RUN}).is_default_run
    # --task rotten_tomatoes alone names the default's data (it was refused as "not a GLUE
    # task"): the same run, budget and all; with a data folder or file it is the user's data
    named = cfg.resolve({"task": "rotten_tomatoes"})
    assert named.uses_default_data and named.is_default_run
    assert {k: getattr(named, k) for k in cfg.DEFAULT_RUN} == cfg.DEFAULT_RUN
    own = cfg.resolve({"task": "rotten_tomatoes", "train_file": "x.csv"})
    assert not own.uses_default_data and own.max_train_samples is None
    # another method named without data takes the earlier budget, without a transfer set
    for method in ("lgtm", "ce"):
        other = cfg.resolve({"method": method})
        assert (other.batch_size, other.lr, other.transfer_from_train) == (16, 1e-3, False)
        assert other.max_train_samples == 2000 and not other.is_default_run

    official = cfg.resolve({"task": "mrpc", "preset": "official-code"})
    assert official.feedback_from == "validation" and official.init_classifier == "zero"
    assert (official.influence_objective, official.influence_step) == ("teacher", "teacher_lr")
    # data-level choices of the preset may be overridden, method-level ones may not
    clean = cfg.resolve({"task": "mrpc", "preset": "official-code", "feedback_from": "train"})
    assert clean.feedback_from == "train"
    with pytest.raises(LgtmInputError, match="alpha"):
        cfg.resolve({"task": "mrpc", "preset": "official-code", "alpha": 0.5})


def test_yaml_round_trip_and_errors_name_line_and_key(tmp_path):
    config = cfg.resolve(
        {
            "task": "rte",
            "lr": 3e-5,
            "student_layers": [0, 2, 4],
            "text_columns": ["a", "b"],
            "output_dir": "x",
        }
    )
    path = tmp_path / "config.yaml"
    cfg.save_yaml(config, path)
    assert "overwrite" not in yaml.safe_load(path.read_text())
    assert cfg.resolve(cfg.load_yaml(path)) == config

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: sst2\nmax-length: 64\nlearning_rate: 1e-4\n")
    with pytest.raises(LgtmInputError) as err:
        cfg.load_yaml(bad)
    assert str(err.value) == f"{bad}:3: field 'learning_rate': unknown configuration key"

    bad.write_text("task: sst2\nepochs: many\n")
    with pytest.raises(LgtmInputError, match=r"bad.yaml:2: field 'epochs'"):
        cfg.load_yaml(bad)
    bad.write_text("lr: 1e-4\nmax-length: 64\n")  # YAML reads 1e-4 as a string: still a number
    assert cfg.load_yaml(bad) == {"lr": 1e-4, "max_length": 64}


def test_parse_layers():
    assert cfg.parse_layers("3") == 3
    assert cfg.parse_layers("0,2,4") == [0, 2, 4]
    assert cfg.parse_layers([1, 3]) == [1, 3]


# --------------------------------------------------------------------------- batches and data


def test_batches_cover_each_epoch_once_and_can_be_redrawn():
    features = [{"x": i} for i in range(10)]

    def collate(items):
        return {"example_id": torch.tensor([f["x"] for f in items])}

    batches = train.Batches(features, collate, 4, seed=3, stream=2)
    assert batches.per_epoch == 3
    epoch0 = torch.cat([batches.get(i)["example_id"] for i in range(3)]).tolist()
    epoch1 = torch.cat([batches.get(i)["example_id"] for i in range(3, 6)]).tolist()
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1  # a new order every epoch
    again = train.Batches(features, collate, 4, seed=3, stream=2)  # a restarted process
    assert again.get(4)["example_id"].tolist() == batches.get(4)["example_id"].tolist()
    in_order = train.Batches(features, collate, 4, seed=3, stream=2, shuffle=False)
    assert [in_order.get(i)["example_id"].tolist() for i in (0, 2, 3)] == [
        [0, 1, 2, 3],
        [8, 9],
        [0, 1, 2, 3],
    ]  # restarts when exhausted


def test_feedback_carved_from_train_is_disjoint_and_the_same_for_every_method(tiny_data, tmp_path):
    sizes = set()
    for method in ("kd", "lgtm"):
        config = run_config(
            "unused", tiny_data, tmp_path / "o", method=method, max_train_samples=50
        )
        data = train.load_data(config)
        ids_train = {e.id for e in data.train}
        ids_feedback = {e.id for e in data.feedback}
        assert not ids_train & ids_feedback
        assert len(ids_train) + len(ids_feedback) == 50 and len(ids_feedback) == 5
        assert not data.leaks_into_evaluation
        sizes.add((tuple(sorted(ids_train)), tuple(sorted(ids_feedback))))
    assert len(sizes) == 1  # kd trains on exactly what lgtm trains on

    leaky = train.load_data(
        run_config("unused", tiny_data, tmp_path / "o", feedback_from="validation")
    )
    assert leaky.leaks_into_evaluation
    assert [e.texts for e in leaky.feedback] == [e.texts for e in leaky.evals["validation"]]
    assert len(leaky.train) == 60


def test_evaluate_matches_hand_computed_accuracy():
    class Fixed(torch.nn.Module):
        def forward(self, input_ids, **_):
            out = torch.stack([input_ids[:, 0].float(), -input_ids[:, 0].float()], dim=1)
            return type("O", (), {"logits": out})()

    from lgtm.data import get_task

    def collate(items):
        return {
            "input_ids": torch.tensor([[f["v"]] for f in items]),
            "labels": torch.tensor([f["labels"] for f in items]),
        }

    features = [{"v": v, "labels": y} for v, y in [(1, 0), (-1, 1), (2, 1), (-3, 1), (5, 0)]]
    metrics = train.evaluate(Fixed(), get_task("sst2"), {"validation": features}, collate, 2)
    assert metrics == {"accuracy": pytest.approx(4 / 5)}  # predicts 0 for v > 0


# --------------------------------------------------------------------------- whole runs


def test_run_writes_loadable_models_and_complete_outputs(tiny_teacher_dir, tiny_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out = tmp_path / "run"
    result = train.distill(run_config(tiny_teacher_dir, tiny_data, out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "lgtm" and m["feedback"]["source"] == "train"
    assert m["leaks_into_evaluation"] is False
    assert m["train_samples"] == 54 and m["feedback"]["size"] == 6
    steps = m["steps"]["distill"]
    assert steps == 2 * 7  # ceil(54 / 8) batches, 2 epochs
    assert [h["step"] for h in m["history"]] == list(range(steps + 1))
    evals = [h["step"] for h in m["history"] if "student_eval" in h]
    assert evals[0] == 0 and evals[-1] == steps and len(evals) >= 4
    assert m["student"] == m["history"][-1]["student_eval"]
    assert all("influence_mean" in h for h in m["history"][1:])
    rows = [json.loads(line) for line in (out / "influence.jsonl").read_text().splitlines()]
    train_ids = {e.id for e in train.load_data(run_config(tiny_teacher_dir, tiny_data, out)).train}
    # the tracked samples (all 54 here: fewer than 64) get an influence at every tracked step
    # (ceil(14 / 50) = every step), whether or not they are in that step's batch
    assert {r["step"] for r in rows} == set(range(1, steps + 1))
    assert all({r["id"] for r in rows if r["step"] == k} == train_ids for k in range(1, steps + 1))
    assert all(isinstance(r["influence"], float) for r in rows)
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "dev_metrics.png",
        "influence_mean.png",
        "influence_samples.png",
        "losses.png",
    ]
    assert not (out / "checkpoints").exists()

    # the saved student is the trained one, loadable by transformers alone
    loaded = AutoModelForSequenceClassification.from_pretrained(out / "student").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    assert loaded.config.id2label == {0: "0", 1: "1"} and loaded.config.num_hidden_layers == 1
    batch = tokenizer(["good great fine", "bad awful dull weak"], padding=True, return_tensors="pt")
    result.student.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, result.student(**batch).logits, atol=1e-6)
    labels = pipeline("text-classification", model=str(out / "student"))(["good great"])
    assert labels[0]["label"] in {"0", "1"}
    # and the trained student differs from the teacher's first layer it started from
    start = train.build_models(
        run_config(tiny_teacher_dir, tiny_data, out),
        train.load_data(run_config(tiny_teacher_dir, tiny_data, out)).task,
    )
    assert not same_params(params(start[1]), params(result.student))

    # config.yaml re-runs the same configuration
    saved = cfg.resolve(cfg.load_yaml(out / "config.yaml"))
    assert saved == run_config(tiny_teacher_dir, tiny_data, out)


def test_training_learns_the_tiny_task(tiny_teacher_dir, tiny_data, tmp_path):
    result = train.distill(
        run_config(
            tiny_teacher_dir,
            tiny_data,
            tmp_path / "r",
            method="online",
            epochs=6,
            lr=1e-2,
            teacher_lr=1e-2,
        )
    )
    history = result.metrics["history"]
    assert history[-1]["teacher_eval"]["accuracy"] >= 0.9  # the words decide the label
    assert history[-1]["student_eval"]["accuracy"] >= 0.9
    assert history[0]["teacher_eval"]["accuracy"] <= 0.75


@pytest.mark.parametrize("method", ["lgtm", "kd"])
def test_resume_after_a_kill_is_bit_identical(method, tiny_teacher_dir, tiny_data, tmp_path):
    over = dict(method=method, save_steps=3, eval_steps=4)
    if method == "kd":  # lgtm has no stage one: --teacher-epochs is refused there
        over["teacher_epochs"] = 1
    whole = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "a", **over))

    class Killed(Exception):
        pass

    def kill(phase: str, step: int) -> None:
        if phase == "distill" and step == 8:
            raise Killed

    with pytest.raises(Killed):
        train.distill(
            run_config(tiny_teacher_dir, tiny_data, tmp_path / "b", **over), callback=kill
        )
    assert len(list((tmp_path / "b" / "checkpoints").glob("ckpt-*"))) == 2  # the last two
    with pytest.raises(LgtmInputError, match="unfinished run with a checkpoint: pass --resume"):
        train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "b", **over))
    resumed = train.distill(
        run_config(tiny_teacher_dir, tiny_data, tmp_path / "b", resume=True, **over)
    )
    assert same_params(params(whole.student), params(resumed.student))
    assert same_params(params(whole.teacher), params(resumed.teacher))
    assert whole.metrics["history"] == resumed.metrics["history"]
    assert whole.metrics["student"] == resumed.metrics["student"]
    a, b = (tmp_path / "a" / "influence.jsonl"), (tmp_path / "b" / "influence.jsonl")
    if method == "lgtm":
        assert a.read_text() and a.read_text() == b.read_text()
    else:  # no per-sample influence, no file
        assert not a.exists() and not b.exists()

    # the comparison can fail: another seed gives other parameters
    other = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "c", seed=1, **over))
    assert not same_params(params(whole.student), params(other.student))


def test_resume_refuses_other_settings_and_finished_runs(tiny_teacher_dir, tiny_data, tmp_path):
    out = tmp_path / "r"
    kd_run = {"epochs": 1, "method": "kd", "teacher_epochs": 1}
    train.distill(run_config(tiny_teacher_dir, tiny_data, out, **kd_run))
    with pytest.raises(LgtmInputError, match="already finished"):
        train.distill(run_config(tiny_teacher_dir, tiny_data, out, resume=True, **kd_run))
    (out / "metrics.json").unlink()
    (out / "checkpoints").mkdir()
    with pytest.raises(LgtmInputError, match=r"field 'lr': differs from the run being resumed"):
        train.distill(run_config(tiny_teacher_dir, tiny_data, out, resume=True, lr=0.5, **kd_run))


def test_official_code_preset_zero_heads_and_in_order_validation_feedback(
    tiny_teacher_dir, tiny_data, tmp_path
):
    config = run_config(
        tiny_teacher_dir, tiny_data, tmp_path / "o", preset="official-code", max_steps=1
    )
    data = train.load_data(config)
    teacher, student, _ = train.build_models(config, data.task)
    assert not teacher.classifier.weight.any() and not student.classifier.weight.any()
    result = train.distill(config)
    assert result.metrics["leaks_into_evaluation"] is True
    assert result.metrics["feedback"]["source"] == "validation"
    assert (
        json.loads((tmp_path / "o" / "metrics.json").read_text())["feedback"][
            "leaks_into_evaluation"
        ]
        is True
    )


def test_kd_fine_tunes_its_teacher_first_and_then_freezes_it(tiny_teacher_dir, tiny_data, tmp_path):
    result = train.distill(
        run_config(
            tiny_teacher_dir, tiny_data, tmp_path / "k", method="kd", teacher_epochs=3, epochs=1
        )
    )
    m = result.metrics
    assert m["steps"] == {"teacher": 21, "distill": 7}
    assert m["teacher_finetune_history"][-1]["step"] == 21
    # the teacher reported is the fine-tuned one, unchanged during distillation
    assert m["teacher"] == m["teacher_finetune_history"][-1]["teacher_eval"]
    assert all(h["teacher_eval"] == m["teacher"] for h in m["history"] if "teacher_eval" in h)


def test_output_dir_refused_then_overwritten(tiny_teacher_dir, tiny_data, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.json").write_text("{}")
    with pytest.raises(LgtmInputError) as err:
        train.prepare_output_dir(run_config(tiny_teacher_dir, tiny_data, out))
    assert str(err.value).startswith(
        f"{out}: field 'output_dir': output directory already holds a finished run"
    )
    train.prepare_output_dir(run_config(tiny_teacher_dir, tiny_data, out, overwrite=True))
    assert not (out / "metrics.json").exists() and (out / "notes.txt").read_text() == "mine"


def test_user_file_without_eval_file_holds_out_part_of_train(tiny_data, tmp_path):
    config = run_config("unused", tiny_data, tmp_path / "o", eval_file=None)
    data = train.load_data(config)
    held = {e.id for e in data.evals["validation"]}
    assert len(held) == 6 and not held & {e.id for e in data.train + data.feedback}


def test_label_names_are_written_to_the_models(tiny_teacher_dir, tmp_path):
    from lgtm.data import get_task

    config = cfg.resolve(
        {"task": "rte", "data_dir": "x", "teacher": str(tiny_teacher_dir), "student_layers": [1]}
    )
    teacher, student, _ = train.build_models(config, get_task("rte"))
    assert student.config.id2label == {0: "entailment", 1: "not_entailment"}
    assert teacher.config.label2id == {"entailment": 0, "not_entailment": 1}
    assert student.config.finetuning_task == "rte"


def test_tensorboard_logging(tiny_teacher_dir, tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    train.distill(run_config(tiny_teacher_dir, tiny_data, out, report_to="tensorboard", epochs=1))
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "distill/student_loss",
        "distill/teacher_loss",
        "distill/influence_mean",
        "distill/student_eval/accuracy",
    } <= tags
    assert len(acc.Scalars("distill/student_loss")) == 7  # one per step (log_steps 1)


# --------------------------------------------------------------------------- selection, warm-up


def test_selection_set_is_carved_from_train_the_same_for_every_method(tiny_data, tmp_path):
    ids = {}
    for method in ("lgtm", "kd", "ce"):
        config = run_config(
            "unused", tiny_data, tmp_path / method, method=method, selection_fraction=0.2
        )
        data = train.load_data(config)
        train_ids = {e.id for e in data.train}
        selection_ids = {e.id for e in data.selection}
        feedback_ids = {e.id for e in data.feedback}
        assert len(selection_ids) == 12 and not selection_ids & (train_ids | feedback_ids)
        assert len(train_ids | selection_ids | feedback_ids) == 60  # nothing dropped
        ids[method] = (train_ids, selection_ids, feedback_ids)
    assert ids["lgtm"] == ids["kd"] == ids["ce"]
    labels = [e.label for e in train.load_data(config).selection]
    assert sorted(set(labels)) == [0, 1] and abs(labels.count(0) - labels.count(1)) <= 1


def test_the_teacher_is_scored_on_the_selection_set(tiny_teacher_dir, tiny_data, tmp_path):
    """A teacher that barely moves (lr 1e-9) beside a student that learns the labels: the
    selection scores of the two differ, and the teacher's is the saved teacher's."""
    from transformers import AutoModelForSequenceClassification

    from lgtm.data.encode import encode, make_collator

    over = dict(method="online", alpha=0.0, teacher_lr=1e-9, lr=1e-2, epochs=8)
    over.update(selection_fraction=0.3, select_on="selection", eval_steps=8)
    config = run_config(tiny_teacher_dir, tiny_data, tmp_path / "t", **over)
    result = train.distill(config)
    last = result.metrics["history"][-1]
    teacher = AutoModelForSequenceClassification.from_pretrained(tmp_path / "t" / "teacher")
    data = train.load_data(config)
    selection = {"selection": encode(data.selection, result.tokenizer, 16)}
    scored = train.evaluate(teacher, data.task, selection, make_collator(result.tokenizer), 8)
    assert last["teacher_selection"] == scored
    assert last["teacher_selection"] != last["student_selection"]


def test_select_on_selection_keeps_the_best_student_by_the_selection_set(
    tiny_teacher_dir, tiny_data, tmp_path
):
    from transformers import AutoModelForSequenceClassification

    over = dict(selection_fraction=0.25, select_on="selection", eval_steps=2, epochs=3, lr=5e-3)
    result = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "s", **over))
    m = result.metrics
    scored = [h for h in m["history"] if "student_selection" in h and h["step"] > 0]
    evaluated = [h for h in m["history"] if "student_eval" in h]
    assert len(scored) >= 4 and all("student_selection" in h for h in evaluated)
    scores = [h["student_selection"]["accuracy"] for h in scored]
    best = scored[scores.index(max(scores))]  # the first of the best
    assert m["selection"]["step"] == best["step"] and m["selection"]["score"] == max(scores)
    assert m["student"] == best["student_eval"] == m["student_selected_eval"]
    assert m["student_last"] == m["history"][-1]["student_eval"]
    from rich.console import Console

    from lgtm.report import summary_table

    console = Console(width=200, record=True)
    console.print(summary_table(m))
    shown = console.export_text()
    assert f"the best on the selection set, at step {best['step']}" in shown
    assert f"the last step's dev: accuracy {m['student_last']['accuracy']:.4f}" in shown
    # the saved student is the selected one: it scores the selected step's dev accuracy
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s" / "student")
    data = train.load_data(run_config(tiny_teacher_dir, tiny_data, tmp_path / "s", **over))
    from lgtm.data.encode import encode, make_collator

    tok = result.tokenizer
    evals = {k: encode(v, tok, 16) for k, v in data.evals.items()}
    assert train.evaluate(saved, data.task, evals, make_collator(tok), 8) == m["student"]
    # the floor: always the most frequent class of the rows trained on, on dev
    top = max((0, 1), key=[e.label for e in data.train].count)
    dev = [e.label for e in next(iter(data.evals.values()))]
    assert m["majority_class"]["accuracy"] == pytest.approx(dev.count(top) / len(dev))
    assert not (tmp_path / "s" / "student-selected").exists()
    # without a selection set: the last step's student, as before
    last = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "l", epochs=1))
    assert last.metrics["selection"].startswith("none") and "student_last" not in last.metrics
    with pytest.raises(LgtmInputError, match="needs a selection set"):
        run_config(tiny_teacher_dir, tiny_data, tmp_path / "x", select_on="selection")


def test_warmup_ratio_ramps_both_learning_rates(tiny_teacher_dir, tiny_data, tmp_path):
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, 4, 16)
    rates = []
    for _ in range(6):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == [0.0, 0.25, 0.5, 0.75, 1.0, pytest.approx(11 / 12)]
    alone = {"method": "ce"}  # step 1's loss comes before any update
    a = train.distill(
        run_config(tiny_teacher_dir, tiny_data, tmp_path / "a", warmup_ratio=0.5, **alone)
    )
    b = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "b", **alone))
    assert a.metrics["config"]["warmup_ratio"] == 0.5
    first_a = [h["student_loss"] for h in a.metrics["history"] if "student_loss" in h][:2]
    first_b = [h["student_loss"] for h in b.metrics["history"] if "student_loss" in h][:2]
    assert first_a[0] == first_b[0] and first_a[1] != first_b[1]  # lr 0 at the first step


# --------------------------------------------------------------------------- a run of stages


@pytest.fixture
def four_layer_teacher(tmp_path) -> Path:
    """A tiny 4-layer BERT without dropout (room for an assistant between it and a student)."""
    from conftest import bundled_tokenizer, save_tiny_bert

    teacher = save_tiny_bert(tmp_path / "t4", layers=4, tokenizer=bundled_tokenizer())
    config = json.loads((teacher / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (teacher / "config.json").write_text(json.dumps(config))
    return teacher


def staged_config(glue_dir: Path, teacher: Path, out: Path, **over) -> cfg.RunConfig:
    """A tiny staged run (takd, rco) on real SST-2 rows."""
    values = dict(
        task="sst2",
        data_dir=str(glue_dir / "SST-2"),
        teacher=str(teacher),
        student_layers=1,
        max_train_samples=72,
        max_eval_samples=32,
        max_length=32,
        epochs=1,
        batch_size=8,
        lr=1e-3,
        teacher_lr=1e-3,
        save_steps=2,
        output_dir=str(out),
        quiet=True,
    )
    return cfg.resolve({**values, **over})


def test_takd_runs_its_stages_in_order_and_resumes_mid_stage(
    glue_dir, four_layer_teacher, tmp_path, monkeypatch
):
    def takd(out: Path, **over) -> cfg.RunConfig:
        return staged_config(glue_dir, four_layer_teacher, out, **{"method": "takd", **over})

    import lgtm

    made, make = [], lgtm.make_method

    def recording(name, **kwargs):  # which model each stage's kd learns from and trains
        made.append((kwargs["teacher"], kwargs["student"]))
        return make(name, **kwargs)

    monkeypatch.setattr(lgtm, "make_method", recording)
    whole = train.distill(takd(tmp_path / "a"))
    (distill_teacher, student), (teacher_model, assistant) = made  # distill's is built first
    assert distill_teacher is assistant and student is not assistant
    assert teacher_model is not assistant and teacher_model is not student
    m = whole.metrics
    assert [s["name"] for s in m["stages"]] == ["teacher", "assistant", "distill"]
    assert [s["learns_from"] for s in m["stages"]] == ["labels", "teacher", "assistant"]
    assert m["steps"] == {"teacher": 9, "assistant": 9, "distill": 9}  # 65 rows, batches of 8
    saved = json.loads((tmp_path / "a" / "assistant" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 3  # ⌈(4 + 1) / 2⌉
    assert m["assistant"] == m["stages"][1]["dev"] and m["teacher"] == m["stages"][0]["dev"]
    from rich.console import Console

    from lgtm.report import summary_table

    console = Console(width=300, record=True)
    console.print(summary_table(m))
    shown = " ".join(console.export_text().split())  # lines wrapped in the table, joined
    assert "stages (dev at each one's last step): teacher (teacher 0.5" in shown
    assert "→ assistant (assistant 0.5" in shown

    class Killed(Exception):
        pass

    def kill(stage: str, step: int) -> None:
        if stage == "assistant" and step == 5:
            raise Killed

    with pytest.raises(Killed):
        train.distill(takd(tmp_path / "b"), callback=kill)
    resumed = train.distill(takd(tmp_path / "b", resume=True))
    assert resumed.metrics["history"] == m["history"]
    assert untimed(resumed.metrics["stages"]) == untimed(m["stages"])
    for name in ("student", "assistant", "teacher"):
        a = (tmp_path / "a" / name / "model.safetensors").read_bytes()
        assert a == (tmp_path / "b" / name / "model.safetensors").read_bytes(), name
    with pytest.raises(LgtmInputError, match="--ta-layers is for --method takd"):
        takd(tmp_path / "c", method="kd", ta_layers=2) and train.distill(
            takd(tmp_path / "c", method="kd", ta_layers=2)
        )


@pytest.mark.parametrize("kill_in", ["distill-1", "distill-2"])
def test_rco_follows_distinct_anchors_and_resumes_mid_stage(
    glue_dir, four_layer_teacher, tmp_path, kill_in
):
    import hashlib

    def rco(out: Path, **over) -> cfg.RunConfig:
        over = {"method": "rco", "rco_anchors": 3, "max_train_samples": 80, "save_steps": 1, **over}
        return staged_config(glue_dir, four_layer_teacher, out, **over)

    import lgtm

    taught_by, loads = [], []
    from lgtm import run

    make, load = lgtm.make_method, run.load_weights

    def recording_make(name, **kwargs):
        taught_by.append(kwargs["teacher"])
        return make(name, **kwargs)

    def recording_load(model, folder):
        loads.append((model, Path(folder).name))
        return load(model, folder)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lgtm, "make_method", recording_make)
        patch.setattr(run, "load_weights", recording_load)
        whole = train.distill(rco(tmp_path / "a", keep_checkpoints=True))
    # each part loads its anchor into the very model the student's kd learns from
    assert [name for _, name in loads] == ["anchor-1", "anchor-2", "anchor-3"]
    assert all(model is taught_by[0] for model, _ in loads) and len(taught_by) == 1
    m = whole.metrics
    assert [s["name"] for s in m["stages"]] == ["teacher", "distill-1", "distill-2", "distill-3"]
    assert [s["learns_from"] for s in m["stages"][1:]] == [f"teacher anchor {k}" for k in (1, 2, 3)]
    assert m["steps"] == {"teacher": 9, "distill-1": 3, "distill-2": 3, "distill-3": 3}
    anchors = sorted((tmp_path / "a" / "anchors").iterdir())
    digests = [hashlib.sha256((a / "model.safetensors").read_bytes()).hexdigest() for a in anchors]
    assert len(anchors) == 3 and len(set(digests)) == 3  # distinct snapshots
    # the last anchor is the final teacher; the student's steps run on as one pass
    assert (anchors[-1] / "model.safetensors").read_bytes() == (
        tmp_path / "a" / "teacher" / "model.safetensors"
    ).read_bytes()
    evaluated = [h["step"] for h in m["history"] if "student_eval" in h]
    assert evaluated == sorted(set(evaluated)) and evaluated[-1] == 9

    class Killed(Exception):
        pass

    def kill(stage: str, step: int) -> None:
        if stage == kill_in and step == 2:
            raise Killed

    with pytest.raises(Killed):
        train.distill(rco(tmp_path / "b"), callback=kill)
    resumed = train.distill(rco(tmp_path / "b", resume=True))
    assert resumed.metrics["history"] == m["history"]
    assert untimed(resumed.metrics["stages"]) == untimed(m["stages"])
    for name in ("student", "teacher"):
        a = (tmp_path / "a" / name / "model.safetensors").read_bytes()
        assert a == (tmp_path / "b" / name / "model.safetensors").read_bytes(), name
    assert not (tmp_path / "b" / "anchors").exists()  # K teachers are not kept without asking


def test_baseline_options_the_models_cannot_honour_are_refused(
    tiny_teacher_dir, tiny_data, tmp_path
):
    with pytest.raises(LgtmInputError, match="field 'pkd_layers': pkd layer pair .* out of range"):
        train.distill(
            run_config(tiny_teacher_dir, tiny_data, tmp_path / "p", method="pkd", pkd_layers="9:9")
        )
    with pytest.raises(LgtmInputError, match="field 'ta_layers': an assistant of 9 layers"):
        train.distill(
            run_config(tiny_teacher_dir, tiny_data, tmp_path / "t", method="takd", ta_layers=9)
        )
    # ce never runs the teacher: a headless one with --teacher-finetuned is fine there
    alone = train.distill(
        run_config(
            tiny_teacher_dir,
            tiny_data,
            tmp_path / "c",
            method="ce",
            teacher_finetuned=True,
            epochs=1,
        )
    )
    assert [s["learns_from"] for s in alone.metrics["stages"]] == ["labels"]
