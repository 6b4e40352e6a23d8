"""``student_weighting="influence"`` (issue #22): the student's distillation term weighted by
``λ_i = max(w_i, 0) / Σ_j max(w_j, 0)``, ``w_i`` each sample's distillation influence.

References independent of lgtm's code (float64 tiny BERTs, SGD, an SGD look-ahead): the
influence is ``−1/(α·ηs)`` times autograd's derivative of the feedback loss after the
look-ahead with respect to per-sample weights of the distillation term, at uniform weights
(Ren et al. 2018); the student's update is autograd's step on the weighted loss. Then the
option end to end: refused where it has no meaning, resumed bit for bit, reported.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch
from conftest import (
    ALPHA,
    LR_S,
    LR_T,
    TAU,
    TEACHER_ALPHA,
    ce_ref,
    kl_ref,
    labelled_ce_mean_ref,
    logits,
    make_batch,
    one_line_error,
    params_of,
    rel_err,
    run_config,
    sgd,
    snapshot,
    tiny_bert,
    write_table,
)
from rich.console import Console

import lgtm
from lgtm import train
from lgtm.methods.base import Method
from lgtm.methods.influence import StudentInfluence
from lgtm.report import read_influence, summary_table

BATCH, FEEDBACK = (6, 8), (4, 108)  # (size, seed): influences of both signs (checked below)


# ---- the references ---------------------------------------------------------------------
def influence_ref(teacher, student, batch, fb):
    """``w_i = −1/(α·ηs) · ∂ ce(y^e, S(x^e; θs'(ε))) / ∂ε_i`` at ``ε_i = 1/B``, where
    ``θs'(ε) = θs − ηs ∇θs [α Σ_i ε_i kd_i + (1 − α) mean_labelled ce]``."""
    ps, y = params_of(student), batch["labels"]
    t = logits(teacher, params_of(teacher), batch).detach()
    size = y.shape[0]
    eps = torch.full((size,), 1.0 / size, dtype=torch.float64, requires_grad=True)
    s = logits(student, ps, batch)
    loss = ALPHA * (eps * kl_ref(t, s)).sum() + (1 - ALPHA) * labelled_ce_mean_ref(s, y)
    ahead = sgd(ps, loss, LR_S, create_graph=True)
    feedback = ce_ref(logits(student, ahead, fb), fb["labels"]).mean()
    (d,) = torch.autograd.grad(feedback, eps)
    return (-d / (ALPHA * LR_S)).detach()


def weights_ref(w):
    positive = w.clamp_min(0)
    return positive / positive.sum() if positive.sum() > 0 else torch.zeros_like(w)


def weighted_student_ref(student, batch, t, w):
    """The student after one SGD step on ``α Σ λ_i kd(t_i, s_i) + (1 − α) mean_labelled ce``."""
    ps, y = params_of(student), batch["labels"]
    s = logits(student, ps, batch)
    loss = ALPHA * (weights_ref(w) * kl_ref(t, s)).sum() + (1 - ALPHA) * labelled_ce_mean_ref(s, y)
    return sgd(ps, loss, LR_S)


def online_teacher_ref(teacher, student, batch):
    """online's (and prokt's) teacher after its step on ``L_aux`` (unchanged by the option)."""
    pt, y = params_of(teacher), batch["labels"]
    t, s = logits(teacher, pt, batch), logits(student, params_of(student), batch).detach()
    aux = TEACHER_ALPHA * kl_ref(s, t).mean() + (1 - TEACHER_ALPHA) * labelled_ce_mean_ref(t, y)
    return sgd(pt, aux, LR_T)


def make(name, teacher, student, **opts):
    return lgtm.make_method(
        name,
        teacher=teacher,
        student=student,
        teacher_optimizer=torch.optim.SGD(teacher.parameters(), lr=LR_T),
        student_optimizer=torch.optim.SGD(student.parameters(), lr=LR_S),
        alpha=ALPHA,
        teacher_alpha=TEACHER_ALPHA,
        temperature=TAU,
        lookahead="sgd",
        fd_radius=1e-3,
        **opts,
    )


def models():
    return tiny_bert(2, 0), tiny_bert(1, 1)


def batches(unlabelled=(), batch=BATCH):
    return make_batch(batch[0], batch[1], unlabelled=unlabelled), make_batch(*FEEDBACK)


TOL = {"kd": 1e-4, "lgtm": 1e-4, "lgtm-exact": 1e-9, "online": 1e-4}  # finite difference: 1e-4


# ---- exactness --------------------------------------------------------------------------
@pytest.mark.parametrize("unlabelled", [(), (1, 3)])
@pytest.mark.parametrize("name", ["kd", "lgtm", "lgtm-exact", "online"])
def test_influence_is_the_derivative_in_the_sample_weights(name, unlabelled):
    teacher, student = models()
    batch, fb = batches(unlabelled)
    ref = influence_ref(teacher, student, batch, fb)
    assert (ref > 0.05).any() and (ref < -0.05).any()  # some samples kept, some dropped
    out = make(name, teacher, student, student_weighting="influence").step(batch, fb)
    w = out["influence"]
    assert w.shape == ref.shape and not w.requires_grad
    assert ((w - ref).norm() / ref.norm()).item() < TOL[name]
    torch.testing.assert_close(out["student_weights"], weights_ref(ref), rtol=1e-4, atol=1e-7)
    assert out["weights_kept"] == pytest.approx(float((ref > 0).double().mean()))


@pytest.mark.parametrize("unlabelled", [(), (1, 3)])
@pytest.mark.parametrize("name", ["kd", "online"])
def test_student_update_is_the_weighted_loss_step(name, unlabelled):
    teacher, student = models()
    batch, fb = batches(unlabelled)
    w = influence_ref(teacher, student, batch, fb)
    if name == "kd":  # a frozen teacher
        t = logits(teacher, params_of(teacher), batch).detach()
    else:  # the student learns from the teacher after its update
        new_t = online_teacher_ref(teacher, student, batch)
        t = logits(teacher, new_t, batch).detach()
    ref = weighted_student_ref(student, batch, t, w)
    s = logits(student, params_of(student), batch).detach()
    loss_ref = ALPHA * (weights_ref(w) * kl_ref(t, s)).sum()
    loss_ref = loss_ref + (1 - ALPHA) * labelled_ce_mean_ref(s, batch["labels"])
    before_t, before = snapshot(teacher), snapshot(student)
    out = make(name, teacher, student, student_weighting="influence").step(batch, fb)
    assert rel_err(student, ref, before) < TOL[name]
    assert out["student_loss"] == pytest.approx(loss_ref.item(), rel=1e-4)  # the weighted loss
    if name == "online":  # the teacher's own step does not see the option
        assert rel_err(teacher, new_t, before_t) < 1e-9


@pytest.mark.parametrize("name", ["lgtm", "lgtm-exact"])
def test_lgtm_teacher_unchanged_and_student_on_the_updated_teacher(name):
    batch, fb = batches()
    plain_t, plain_s = models()
    make(name, plain_t, plain_s).step(batch, fb)
    teacher, student = models()
    w = influence_ref(teacher, student, batch, fb)
    before = snapshot(student)
    make(name, teacher, student, student_weighting="influence").step(batch, fb)
    for a, b in zip(teacher.parameters(), plain_t.parameters(), strict=True):
        assert torch.equal(a, b)  # the teacher's update does not see the option
    t_new = logits(teacher, params_of(teacher), batch).detach()
    ref = weighted_student_ref(tiny_bert(1, 1), batch, t_new, w)
    assert rel_err(student, ref, before) < TOL[name]
    assert rel_err(student, params_of(plain_s), before) > 1e-2  # the weighting changed it


def test_no_positive_influence_leaves_the_label_term_alone():
    """Every ``w_i ≤ 0``: all ``λ = 0``, the student steps on ``(1 − α) · mean ce`` alone."""
    teacher, student = models()
    batch, fb = make_batch(6, 7), make_batch(4, 107)
    assert (influence_ref(teacher, student, batch, fb) < 0).all()
    ps = params_of(student)
    ref = sgd(
        ps, (1 - ALPHA) * labelled_ce_mean_ref(logits(student, ps, batch), batch["labels"]), LR_S
    )
    before = snapshot(student)
    out = make("kd", teacher, student, student_weighting="influence").step(batch, fb)
    assert out["weights_kept"] == 0.0 and not out["student_weights"].any()
    assert rel_err(student, ref, before) < 1e-12


def _unclamped(self, w, *, local=False):  # λ ∝ w, negative influence kept (and flipped)
    return w.detach() / w.detach().sum(), 1.0


@pytest.mark.parametrize(
    "owner,attr,broken",
    [
        (StudentInfluence, "distillation_weights", _unclamped),
        (Method, "weighted_sum", staticmethod(lambda values, weights: values.mean())),
    ],
)
def test_reference_detects_a_broken_weighting(monkeypatch, owner, attr, broken):
    monkeypatch.setattr(owner, attr, broken)
    teacher, student = models()
    batch, fb = batches()
    t = logits(teacher, params_of(teacher), batch).detach()
    ref = weighted_student_ref(student, batch, t, influence_ref(teacher, student, batch, fb))
    before = snapshot(student)
    make("kd", teacher, student, student_weighting="influence").step(batch, fb)
    assert rel_err(student, ref, before) > 1e-2


DISTILLING = ["kd", "pkd", "online", "prokt", "dml", "meta", "lgtm", "lgtm-exact", "takd", "rco"]


@pytest.mark.parametrize("name", DISTILLING)
def test_every_distilling_method_weighs_its_student(name):
    teacher, student = models()
    batch, probe = make_batch(6, 8), make_batch(5, 9)
    method = make(name, teacher, student, student_weighting="influence")
    assert method.needs_feedback and method.computes_influence
    out = method.step(batch, make_batch(*FEEDBACK), probe=probe)
    lam, w = out["student_weights"], out["influence"]
    assert lam.shape == w.shape == (6,) and (lam[w <= 0] == 0).all() and (lam[w > 0] > 0).all()
    assert float(lam.sum()) == pytest.approx(1.0 if (w > 0).any() else 0.0)
    assert out["weights_kept"] == pytest.approx(float((w > 0).double().mean()))
    assert out["probe_weights"].shape == (5,) and out["probe_influence"].shape == (5,)
    with pytest.raises(ValueError, match="feedback"):
        make(name, *models(), student_weighting="influence").step(batch, None)


def test_methods_without_a_distillation_term_refuse_the_option():
    with pytest.raises(ValueError, match="student_weighting: method 'ce' has no distillation"):
        lgtm.make_method(
            "ce",
            student=tiny_bert(1, 1),
            student_optimizer=torch.optim.SGD(tiny_bert(1, 1).parameters(), lr=0.1),
            student_weighting="influence",
        )
    with pytest.raises(ValueError, match="student_weighting: 'mean' is not one of none"):
        make("kd", *models(), student_weighting="mean")
    assert not Method.uses_feedback({"student_weighting": "none"})
    assert lgtm.methods.method_class("kd").uses_feedback({"student_weighting": "influence"})


# ---- runs ---------------------------------------------------------------------------------
def test_bad_input_is_one_line(capsys, tiny_teacher_dir, tmp_path):
    line = one_line_error(
        capsys,
        "distill",
        "--method",
        "ce",
        "--student-weighting",
        "influence",
        "--output-dir",
        tmp_path / "ce",
    )
    assert "student_weighting" in line and "no distillation term" in line
    line = one_line_error(capsys, "distill", "--method", "kd", "--student-weighting", "lambda")
    assert "student_weighting" in line or "student-weighting" in line
    assert not (tmp_path / "ce").exists()


@pytest.mark.parametrize("method", ["kd", "lgtm", "pkd"])
def test_weighting_without_a_distillation_term_is_refused(capsys, tmp_path, method):
    """``--alpha 0`` leaves the student no distillation term: weighting it would cost the
    look-ahead every step and change nothing, so the pair is refused as a setting without
    effect (one line, exit 2), and ``drop_ignored`` drops it from a shared budget."""
    from lgtm.config import drop_ignored, resolve
    from lgtm.errors import LgtmInputError

    with pytest.raises(LgtmInputError, match="student-weighting influence has no effect"):
        resolve({"method": method, "alpha": 0.0, "student_weighting": "influence"})
    args = ["distill", "--method", method, "--student-weighting", "influence", "--alpha", "0"]
    args += ["--task", "sst2", "--data-dir", tmp_path / "no-such-glue"]  # refused before read
    line = one_line_error(capsys, *args, "--output-dir", tmp_path / "out")
    assert "--student-weighting influence has no effect" in line and "--alpha 0" in line
    assert not (tmp_path / "out").exists()
    values = resolve({"method": method, "alpha": 0.5, "student_weighting": "influence"})
    assert values.student_weighting == "influence"  # any other α weighs a distillation term
    kept = drop_ignored({"method": method, "alpha": 0.0, "student_weighting": "influence"})
    assert "student_weighting" not in kept and kept["alpha"] == 0.0
    resolve({"method": "dml", "student_weighting": "influence"})  # dml reads no α


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def tiny_data(tmp_path):
    """A learnable two-class TSV task: 'positive' words vs 'negative' words."""
    rng = np.random.default_rng(0)
    words = "good bad great awful fine dull superb boring lovely weak".split()

    def rows(n: int) -> list[tuple[str, str]]:
        picked = [(rng.choice(words[i % 2 :: 2], size=4), i % 2) for i in range(n)]
        return [(" ".join(w), str(label)) for w, label in picked]

    return write_table(tmp_path / "train.tsv", rows(60)), write_table(
        tmp_path / "dev.tsv", rows(20)
    )


@pytest.mark.parametrize("method", ["kd", "lgtm"])
def test_resume_after_a_kill_is_bit_identical(method, tiny_teacher_dir, tiny_data, tmp_path):
    over = dict(
        method=method,
        student_weighting="influence",
        save_steps=3,
        eval_steps=4,
        track_steps=2,
        alpha=0.5,
        **({"teacher_epochs": 1} if method == "kd" else {}),  # lgtm has no fine-tuning stage
    )
    whole = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "a", **over))

    class Killed(Exception):
        pass

    def kill(stage: str, step: int) -> None:
        if stage == "distill" and step == 7:
            raise Killed

    with pytest.raises(Killed):
        train.distill(
            run_config(tiny_teacher_dir, tiny_data, tmp_path / "b", **over), callback=kill
        )
    resumed = train.distill(
        run_config(tiny_teacher_dir, tiny_data, tmp_path / "b", resume=True, **over)
    )
    assert same(params(whole.student), params(resumed.student))
    assert same(params(whole.teacher), params(resumed.teacher))
    assert whole.metrics["history"] == resumed.metrics["history"]
    a, b = (tmp_path / "a" / "influence.jsonl"), (tmp_path / "b" / "influence.jsonl")
    assert a.read_text() and a.read_text() == b.read_text()

    # what the run reports: the weights in the history, influence.jsonl, metrics, summary, plot
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["student_weighting"]["scheme"] == "influence"
    kept = [h["weights_kept"] for h in metrics["history"] if "weights_kept" in h]
    assert kept and all(0 <= k <= 1 for k in kept)
    assert metrics["student_weighting"]["weights_kept_mean"] == pytest.approx(sum(kept) / len(kept))
    records = [json.loads(line) for line in a.read_text().splitlines()]
    assert all(0 <= r["weight"] <= 1 and 0 <= r["weights_kept"] <= 1 for r in records)
    steps = {r["step"] for r in records}
    for step in steps:  # the tracked samples' λ: one batch of their own
        total = sum(r["weight"] for r in records if r["step"] == step)
        assert total == pytest.approx(1.0, abs=1e-5) or total == 0.0
    assert (tmp_path / "a" / "plots" / "student_weights.png").is_file()
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(summary_table(metrics))
    assert "student weighting: each sample's distillation term weighted" in console.export_text()

    # the comparison can fail: without the weighting the student differs
    plain = {**over, "student_weighting": "none"}
    if method == "kd":  # kd computes no influence without the weighting: nothing to track
        del plain["track_steps"]
    other = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "c", **plain))
    assert not same(params(whole.student), params(other.student))
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["student_weighting"] is None


# ---- two processes ------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torchrun on Linux")
@pytest.mark.parametrize("method", ["takd", "rco", "pkd", "pesf", "dml"])
def test_runs_of_other_methods_weigh_their_students(method, tiny_teacher_dir, tiny_data, tmp_path):
    """Runs of several stages (takd's assistant, rco's anchors) draw feedback in every
    distilling stage; every such run reports its weights."""
    over = dict(method=method, student_weighting="influence", epochs=1)
    if method in ("takd", "rco", "pkd"):  # the methods that fine-tune their teacher first
        over["teacher_epochs"] = 1
    result = train.distill(run_config(tiny_teacher_dir, tiny_data, tmp_path / "r", **over))
    assert result.metrics["student_weighting"]["scheme"] == "influence"
    kept = [h["weights_kept"] for h in result.metrics["history"] if "weights_kept" in h]
    assert kept and all(0 <= k <= 1 for k in kept)
    log = tmp_path / "r" / "influence.jsonl"
    if method == "rco":  # K parts of one pass, each a stage of its own: no tracked samples
        assert not log.exists()
    else:
        assert all("weight" in r for r in read_influence(log)) and log.read_text()


def test_transfer_rows_are_tracked_without_labels(tiny_teacher_dir, tiny_data, tmp_path):
    """With a transfer set, 64 of its rows are tracked beside 64 labelled samples (the
    weighting study reads their λ against the teacher's errors): seeded, logged without a
    label, with the frozen teacher's prediction (checked against the saved teacher run
    independently through transformers) and a share of the probe's λ."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lgtm.report import choose_tracked_ids

    rng = np.random.default_rng(5)
    words = "good bad great awful fine dull superb boring lovely weak".split()
    texts = [" ".join(rng.choice(words, size=4)) + f" {i}" for i in range(80)]
    extra = write_table(tmp_path / "extra.tsv", [(t, "0") for t in texts])
    over = dict(method="kd", teacher_epochs=1, transfer_file=str(extra), transfer_batch_size=5)
    over.update(student_weighting="influence", track_steps=2, alpha=0.5)
    config = run_config(tiny_teacher_dir, tiny_data, tmp_path / "r", **over)
    train.distill(config)
    records = read_influence(tmp_path / "r" / "influence.jsonl")
    unlabelled = [r for r in records if r["id"] < 0]
    expected = choose_tracked_ids([-1 - row for row in range(80)], n=64, seed=config.seed)
    assert sorted({r["id"] for r in unlabelled}) == expected
    assert all(r["label"] is None and r["teacher_prob"] is None for r in unlabelled)
    assert all(r["label"] in (0, 1) for r in records if r["id"] >= 0)

    folder = tmp_path / "r" / "teacher"
    teacher = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = sorted({r["id"] for r in unlabelled})
    enc = tokenizer([texts[-1 - i] for i in ids], padding=True, truncation=True, max_length=16)
    with torch.no_grad():
        pred = teacher(**{k: torch.tensor(v) for k, v in enc.items()}).logits.argmax(-1)
    expected_pred = dict(zip(ids, pred.tolist(), strict=True))
    assert all(r["teacher_pred"] == expected_pred[r["id"]] for r in unlabelled)

    for step in {r["step"] for r in records}:  # λ over the whole probe, transfer rows included
        total = sum(r["weight"] for r in records if r["step"] == step)
        assert total == pytest.approx(1.0, abs=1e-5) or total == 0.0
    assert any(r["weight"] > 0 for r in unlabelled)


def test_the_help_says_who_tracks_and_what_the_weighting_costs(capsys):
    """``--track-steps`` acts for every distilling method under the weighting, not only the
    LGTM methods; ``--student-weighting``'s help names where it is refused and what it costs."""
    import re

    from conftest import run

    code, out, _ = run(capsys, "distill", "--help")
    assert code == 0
    text = re.sub(r"-\s+", "-", re.sub(r"\s+", " ", out))  # argparse wraps at hyphens
    track = text[text.index("--track-steps N") :][:400]
    assert "--student-weighting influence" in track and "transfer rows" in track
    weighting = text[text.index("--student-weighting {none,influence}") :][:500]
    assert "not ce" in weighting and "look-ahead" in weighting


def test_the_mean_share_kept_weighs_each_logged_window_by_its_steps():
    """With ``--log-steps 3`` a window of three steps and one of a single step (an evaluation
    between) are not worth the same: the run's mean share kept is over steps."""
    from types import SimpleNamespace

    from lgtm.loop import LoopState
    from lgtm.outputs import weighting_metrics

    history = [{"step": 0, "student_eval": {"accuracy": 0.5}}]
    history += [{"step": 3, "student_loss": 0.1, "weights_kept": 1.0}]
    history += [{"step": 4, "student_loss": 0.1, "weights_kept": 0.0, "student_eval": {}}]
    found = weighting_metrics(
        SimpleNamespace(student_weighting="influence"), LoopState(history=history)
    )
    assert found["weights_kept_mean"] == pytest.approx(0.75)
