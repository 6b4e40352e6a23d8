"""Every method's updates against an independent autograd reference written here.

Float64 tiny BERTs, dropout off, SGD optimizers (an update is ``-lr · gradient``), α < 1 and
τ ≠ 1. The references use only torch: ``functional_call``, ``F.kl_div``, ``F.cross_entropy``
and ``torch.autograd.grad`` (double backward for the meta-gradients).
"""

from __future__ import annotations

import copy
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    ALPHA,
    LR_S,
    LR_T,
    TAU,
    TEACHER_ALPHA,
    UNLABELLED,
    ce_mean_ref,
    ce_ref,
    detached,
    kl_ref,
    labelled_ce_mean_ref,
    logits,
    make_batch,
    params_of,
    rel_err,
    sgd,
    snapshot,
    tiny_bert,
)

import lgtm
from lgtm.methods.base import Method

# ---- the reference, independent of lgtm's code (its building blocks: conftest.py) --------
distill_ref = kl_ref  # the regression tests swap in MSE
label_ref = ce_mean_ref  # the mixed-batch tests swap in the mean over the labelled samples


def mse_ref(a, b, tau=TAU):
    return F.mse_loss(b, a, reduction="none").mean(-1)


def student_loss_ref(s, t, y, alpha=ALPHA):
    return alpha * distill_ref(t, s).mean() + (1 - alpha) * label_ref(s, y)


def aux_loss_ref(t, s, y):
    return TEACHER_ALPHA * distill_ref(s.detach(), t).mean() + (1 - TEACHER_ALPHA) * label_ref(t, y)


def reference(method, teacher, student, batch, fb):
    """The updated (teacher, student) parameters of one step of ``method``."""
    pt, ps = params_of(teacher), params_of(student)
    y = batch["labels"]
    if method in ("kd", "takd", "rco"):  # takd and rco: kd's step (their own run plans)
        t = logits(teacher, pt, batch).detach()
        return pt, sgd(ps, student_loss_ref(logits(student, ps, batch), t, y), LR_S)
    if method == "online":
        t, s = logits(teacher, pt, batch), logits(student, ps, batch)
        new_t = detached(sgd(pt, aux_loss_ref(t, s, y), LR_T))
    elif method == "meta":
        t, s = logits(teacher, pt, batch), logits(student, ps, batch)
        pilot = sgd(ps, student_loss_ref(s, t, y), LR_S, create_graph=True)
        feedback = ce_ref(logits(student, pilot, fb), fb["labels"]).mean()
        new_t = detached(sgd(pt, feedback, LR_T))
    elif method in ("lgtm", "lgtm-exact"):
        # the true meta-gradient of the feedback loss through an SGD look-ahead in which only
        # the distillation term depends on θt, plus the auxiliary loss
        t, s = logits(teacher, pt, batch), logits(student, ps, batch)
        look = sgd(ps, student_loss_ref(s, t, y), LR_S, create_graph=True)
        feedback = ce_ref(logits(student, look, fb), fb["labels"]).mean()
        new_t = detached(sgd(pt, aux_loss_ref(t, s, y) + feedback, LR_T))
    t_new = logits(teacher, new_t, batch).detach()
    return new_t, sgd(ps, student_loss_ref(logits(student, ps, batch), t_new, y), LR_S)


def run_method(name, teacher, student, batch, fb, probe=None, **opts):
    method = lgtm.make_method(
        name,
        teacher=teacher,
        student=student,
        teacher_optimizer=torch.optim.SGD(teacher.parameters(), lr=LR_T),
        student_optimizer=torch.optim.SGD(student.parameters(), lr=LR_S),
        alpha=ALPHA,
        teacher_alpha=TEACHER_ALPHA,
        temperature=TAU,
        **opts,
    )
    return method.step(batch, fb, probe=probe)


TOLERANCE = {"kd": 1e-9, "online": 1e-9, "meta": 1e-9, "lgtm-exact": 1e-9, "lgtm": 1e-4}
TOLERANCE |= {"takd": TOLERANCE["kd"], "rco": TOLERANCE["kd"]}


def check(name, num_labels=3, unlabelled=(), outputs=None, **opts):
    """Relative errors of the teacher's and the student's update against the reference, on a
    batch of 5 whose samples ``unlabelled`` carry no label (the feedback batch: all labelled).
    ``outputs``: a list that receives the step's outputs."""
    teacher, student = tiny_bert(2, 0, num_labels), tiny_bert(1, 1, num_labels)
    batch = make_batch(5, 2, num_labels, unlabelled=unlabelled)
    fb = make_batch(4, 3, num_labels)
    ref_t, ref_s = reference(name, teacher, student, batch, fb)
    before_t, before_s = snapshot(teacher), snapshot(student)
    out = run_method(name, teacher, student, batch, fb, **opts)
    if outputs is not None:
        outputs.append(out)
    return rel_err(teacher, ref_t, before_t), rel_err(student, ref_s, before_s)


@pytest.mark.parametrize("lookahead", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["kd", "online", "meta", "lgtm", "lgtm-exact"])
def test_updates_match_autograd_reference(name, lookahead):
    opts = {"fd_radius": 1e-3, "lookahead": lookahead}  # SGD optimizer: replay == sgd step
    err_t, err_s = check(name, **opts)
    assert err_t < TOLERANCE[name], f"teacher relative error {err_t:.2e}"
    assert err_s < TOLERANCE[name], f"student relative error {err_s:.2e}"


@pytest.mark.parametrize("name", ["online", "meta", "lgtm", "lgtm-exact"])
def test_regression_task_uses_mse(name, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "distill_ref", mse_ref)
    err_t, err_s = check(name, num_labels=1, fd_radius=1e-3)
    assert err_t < TOLERANCE[name] and err_s < TOLERANCE[name], (err_t, err_s)


# ---- batches mixing labelled and unlabelled samples (a transfer set) ---------------------
# Every label term is the mean over the batch's labelled samples (0 when none is labelled);
# the distillation terms, the teacher's kd' term and the influence range over all samples.
@pytest.fixture
def masked_label_term(monkeypatch):
    """The reference's label terms become ``mean_labelled ce`` (boolean indexing)."""
    monkeypatch.setattr(sys.modules[__name__], "label_ref", labelled_ce_mean_ref)


MIXED_METHODS = ["kd", "takd", "rco", "online", "meta", "lgtm", "lgtm-exact"]


def check_mixed(name, case, num_labels=3):
    outputs = []
    errors = check(
        name,
        num_labels,
        unlabelled=UNLABELLED[case],
        outputs=outputs,
        fd_radius=1e-3,
        lookahead="sgd",
    )
    losses = {k: v for k, v in outputs[0].items() if k.endswith("_loss")}
    assert all(math.isfinite(v) for v in losses.values()), losses  # never NaN
    return errors


@pytest.mark.parametrize("case", ["some", "none"])
@pytest.mark.parametrize("name", MIXED_METHODS)
def test_mixed_batch_updates_match_reference(name, case, masked_label_term):
    err_t, err_s = check_mixed(name, case)
    assert err_t < TOLERANCE[name], f"teacher relative error {err_t:.2e}"
    assert err_s < TOLERANCE[name], f"student relative error {err_s:.2e}"


@pytest.mark.parametrize("case", ["some", "none"])
@pytest.mark.parametrize("name", ["kd", "online", "meta", "lgtm", "lgtm-exact"])
def test_mixed_regression_batch_updates_match_reference(name, case, monkeypatch, masked_label_term):
    """One output: a sample without a label has a NaN score, which must reach nothing."""
    monkeypatch.setattr(sys.modules[__name__], "distill_ref", mse_ref)
    err_t, err_s = check_mixed(name, case, num_labels=1)
    assert err_t < TOLERANCE[name] and err_s < TOLERANCE[name], (err_t, err_s)


@pytest.mark.parametrize("name", MIXED_METHODS)
def test_mixed_batch_reference_detects_an_unmasked_label_term(monkeypatch, masked_label_term, name):
    """A label term averaged over the whole batch (the unlabelled samples counted as 0)."""
    monkeypatch.setattr(Method, "labelled_mean", staticmethod(lambda values, labels: values.mean()))
    err_t, err_s = check_mixed(name, "some")
    assert max(err_t, err_s) > 100 * TOLERANCE[name], (err_t, err_s)


def per_sample_influence_ref(teacher, student, batch, fb, kd=kl_ref, samples=None):
    """w_i = g_eᵀ ∇θs kd_i, one gradient per sample of ``samples`` (default: the batch),
    with an SGD look-ahead on ``batch``."""
    pt, ps = params_of(teacher), params_of(student)
    t = logits(teacher, pt, batch).detach()
    look = detached(sgd(ps, student_loss_ref(logits(student, ps, batch), t, batch["labels"]), LR_S))
    loss_e = ce_ref(logits(student, look, fb), fb["labels"]).mean()
    g_e = torch.autograd.grad(loss_e, list(look.values()))
    samples = batch if samples is None else samples
    t = logits(teacher, pt, samples).detach()
    out = []
    for i in range(samples["input_ids"].shape[0]):
        kd_i = kd(t, logits(student, ps, samples))[i]
        g_i = torch.autograd.grad(kd_i, list(ps.values()), allow_unused=True)
        out.append(sum((a * b).sum() for a, b in zip(g_e, g_i) if b is not None))
    return torch.stack(out).detach()


def influence_error(name, radius, unlabelled=(), num_labels=3):
    teacher, student = tiny_bert(2, 0, num_labels), tiny_bert(1, 1, num_labels)
    batch = make_batch(5, 2, num_labels, unlabelled=unlabelled)
    fb = make_batch(4, 3, num_labels)
    ref = per_sample_influence_ref(teacher, student, batch, fb, kd=distill_ref)
    w = run_method(name, teacher, student, batch, fb, fd_radius=radius, lookahead="sgd")[
        "influence"
    ]
    assert w.shape == (5,) and not w.requires_grad
    assert ref.abs().min() > 1e-2  # a non-trivial case
    return ((w - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("name,tol", [("lgtm", 1e-4), ("lgtm-exact", 1e-10)])
def test_per_sample_influence(name, tol):
    assert influence_error(name, 1e-3) < tol


@pytest.mark.parametrize("num_labels", [3, 1])
@pytest.mark.parametrize("case", ["some", "none"])
@pytest.mark.parametrize("name,tol", [("lgtm", 1e-4), ("lgtm-exact", 1e-10)])
def test_per_sample_influence_of_a_mixed_batch(
    name, tol, case, num_labels, monkeypatch, masked_label_term
):
    """Every sample, labelled or not, has its influence; the look-ahead's label term is the
    mean over the labelled samples."""
    if num_labels == 1:
        monkeypatch.setattr(sys.modules[__name__], "distill_ref", mse_ref)
    assert influence_error(name, 1e-3, UNLABELLED[case], num_labels) < tol


@pytest.mark.parametrize("name", ["lgtm", "lgtm-exact"])
def test_probe_influence_of_other_samples(name):
    """Tracked samples outside the batch get the same influence formula, same θ and g_e."""
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    batch, fb, probe = make_batch(5, 2), make_batch(4, 3), make_batch(6, 7)
    ref = per_sample_influence_ref(teacher, student, batch, fb, samples=probe)
    t_ref = logits(teacher, params_of(teacher), probe).detach()
    out = run_method(
        name, teacher, student, batch, fb, fd_radius=1e-3, lookahead="sgd", probe=probe
    )
    w = out["probe_influence"]
    assert w.shape == (6,) and ((w - ref).norm() / ref.norm()).item() < 1e-4
    torch.testing.assert_close(out["probe_teacher_logits"], t_ref, rtol=1e-12, atol=1e-12)


def test_finite_difference_error_is_second_order():
    """A central difference: ten times smaller r, a hundred times smaller error."""
    coarse, fine = influence_error("lgtm", 1e-2), influence_error("lgtm", 1e-3)
    assert 50 < coarse / fine < 200, (coarse, fine)


def test_official_code_preset_matches_released_update():
    """Adam look-ahead replayed on the student's AdamW state, the finite difference of the
    teacher's own term αt · kd'(s±, t), the influence term scaled by the teacher's lr."""
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    batch, fb, warm = make_batch(5, 2), make_batch(4, 3), make_batch(5, 4)
    opt_s = torch.optim.AdamW(student.parameters(), lr=1e-2, weight_decay=0.1)
    student(**{k: v for k, v in warm.items()}).loss.backward()  # give AdamW some state
    opt_s.step()
    opt_s.zero_grad()
    r, tau = 0.01, 1.0
    # --- reference, from ALGORITHMS.md ---
    pt, ps = params_of(teacher), params_of(student)
    y = batch["labels"]
    t, s = logits(teacher, pt, batch), logits(student, ps, batch)
    shadow = copy.deepcopy(student)
    shadow_opt = torch.optim.AdamW(shadow.parameters(), lr=1e-2, weight_decay=0.1)
    shadow_opt.load_state_dict(copy.deepcopy(opt_s.state_dict()))
    loss_s = kl_ref(t.detach(), s, tau).mean()
    for p, g in zip(shadow.parameters(), torch.autograd.grad(loss_s, list(ps.values()))):
        p.grad = g.clone()
    shadow_opt.step()
    look = {n: p.detach().requires_grad_() for n, p in shadow.named_parameters()}
    g_e = torch.autograd.grad(
        ce_ref(logits(student, look, fb), fb["labels"]).mean(), list(look.values())
    )
    eps = r / torch.sqrt(sum((g**2).sum() for g in g_e))
    plus = {n: p.detach() + eps * g for (n, p), g in zip(ps.items(), g_e)}
    minus = {n: p.detach() - eps * g for (n, p), g in zip(ps.items(), g_e)}
    s_plus, s_minus = logits(student, plus, batch).detach(), logits(student, minus, batch).detach()
    w = 0.4 * (kl_ref(s_plus, t, tau) - kl_ref(s_minus, t, tau)) / (2 * eps)
    aux = 0.4 * kl_ref(s.detach(), t, tau).mean() + 0.6 * ce_ref(t, y).mean()
    new_t = sgd(pt, aux - LR_T * w.mean(), LR_T)
    t_new = logits(teacher, new_t, batch).detach()
    real = copy.deepcopy(shadow)  # same architecture; load the pre-step student into it
    real.load_state_dict(student.state_dict())
    real_opt = torch.optim.AdamW(real.parameters(), lr=1e-2, weight_decay=0.1)
    real_opt.load_state_dict(copy.deepcopy(opt_s.state_dict()))
    real(**{k: v for k, v in batch.items() if k != "labels"})  # noqa: B018
    loss_real = kl_ref(t_new, logits(real, dict(real.named_parameters()), batch), tau).mean()
    loss_real.backward()
    real_opt.step()
    # --- the method ---
    before_t, before_s = snapshot(teacher), snapshot(student)
    method = lgtm.make_method(
        "lgtm",
        teacher=teacher,
        student=student,
        preset="official-code",
        teacher_optimizer=torch.optim.SGD(teacher.parameters(), lr=LR_T),
        student_optimizer=opt_s,
    )
    out = method.step(batch, fb)
    assert rel_err(teacher, new_t, before_t) < 1e-9
    assert rel_err(student, dict(real.named_parameters()), before_s) < 1e-9
    w_logged = out["influence"] * 0.4
    assert ((w_logged - w.detach()).norm() / w.norm()).item() < 1e-9


def test_preset_contradiction_is_an_error():
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    with pytest.raises(ValueError, match="contradicts"):
        lgtm.make_method(
            "lgtm",
            teacher=teacher,
            student=student,
            preset="official-code",
            alpha=0.5,
            teacher_optimizer=torch.optim.SGD(teacher.parameters(), lr=0.1),
            student_optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
        )


@pytest.mark.parametrize("name", ["kd", "online", "meta", "lgtm", "lgtm-exact"])
def test_same_seed_same_data_bit_identical(name):
    def train():
        teacher, student = tiny_bert(2, 0, dropout=0.1), tiny_bert(1, 1, dropout=0.1)
        method = lgtm.make_method(
            name,
            teacher=teacher,
            student=student,
            teacher_optimizer=torch.optim.AdamW(teacher.parameters(), lr=1e-3),
            student_optimizer=torch.optim.AdamW(student.parameters(), lr=1e-3),
        )
        torch.manual_seed(123)
        for i in range(3):
            method.step(make_batch(4, 10 + i), make_batch(4, 20 + i))
        return [p.detach().clone() for p in [*teacher.parameters(), *student.parameters()]]

    a, b = train(), train()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_losses_at_least_float32_and_never_below_model_dtype():
    from lgtm.objectives import dist, kl, mse, task_loss

    half = torch.randn(4, 3, dtype=torch.bfloat16)
    for fn in (kl, mse, dist):
        assert fn(half, half.flip(0)).dtype == torch.float32
        assert fn(half.double(), half.double().flip(0)).dtype == torch.float64
    assert task_loss(half, torch.tensor([0, 1, 2, 0])).dtype == torch.float32


@pytest.mark.parametrize("name", ["online", "lgtm", "lgtm-exact"])
def test_float64_models_train_in_float64(name):
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    out = run_method(name, teacher, student, make_batch(5, 2), make_batch(4, 3))
    assert out["student_logits"].dtype == torch.float64
    if "influence" in out:
        assert out["influence"].dtype == torch.float64


# ---- the reference tests can fail: break the method on purpose --------------------------
def _drop_alpha(self, s, t, labels, weights=None):
    return self.kd(t, s).mean() + (1 - self.alpha) * F.cross_entropy(s, labels)


def _stale_teacher(self, batch, s, weights=None, **kw):
    t = self.teacher_logits(batch).detach() * 1.01
    loss = self.student_loss(s, t, batch["labels"])
    self.apply(self.student_optimizer, self.student_params, self.grad_student(loss, **kw))
    return loss.item()


def _no_teacher_task_loss(self, t, s, labels):
    return self.teacher_alpha * self.kd(s.detach(), t).mean()


@pytest.mark.parametrize(
    "name,attr,broken",
    [
        ("kd", "student_loss", _drop_alpha),
        ("online", "real_student_step", _stale_teacher),
        ("online", "teacher_aux_loss", _no_teacher_task_loss),
        ("meta", "student_loss", _drop_alpha),
        ("lgtm", "scale", lambda self: 0.0),
        ("lgtm", "teacher_aux_loss", _no_teacher_task_loss),
        ("lgtm-exact", "scale", lambda self: 2 * LR_S * ALPHA),
    ],
)
def test_reference_detects_a_broken_method(monkeypatch, name, attr, broken):
    owner = lgtm.methods.base.REGISTRY[name] if attr == "scale" else Method
    monkeypatch.setattr(owner, attr, broken)
    err_t, err_s = check(name, fd_radius=1e-3, lookahead="sgd")
    assert max(err_t, err_s) > 100 * TOLERANCE[name], (err_t, err_s)


def test_a_method_must_take_the_options_it_declares():
    """A declared option reaches the method's constructor, or registration says which is not."""
    from lgtm.methods.base import REGISTRY, register
    from lgtm.methods.kd import KD
    from lgtm.methods.options import Option

    weight = Option("toy_weight", 1.0, float, "toy", low=0, high=1)
    with pytest.raises(TypeError, match=r"'toy' declares options \['toy_weight'\]"):

        @register("toy")
        class Toy(KD):
            options = (weight,)

    class Takes(KD):
        options = (weight,)

        def __init__(self, *args, toy_weight: float = 1.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.toy_weight = toy_weight

    from lgtm.methods.options import SHARED

    values = {o.name: o.default for o in SHARED} | {"toy_weight": 0.3, "pkd_beta": 7.0}
    try:
        register("toy")(Takes)
        assert REGISTRY["toy"] is Takes
        # the constructor gets the shared options and its own, nothing of another method's
        expected = {o.name: o.default for o in SHARED} | {"toy_weight": 0.3}
        assert Takes.option_values(values) == expected
    finally:
        REGISTRY.pop("toy", None)
    assert "toy" not in REGISTRY
