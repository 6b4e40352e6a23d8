"""The baselines of BASELINES.md (ce, pkd, dml, prokt, pesf and the skd objective) against
independent references written here with torch only.

As in test_methods.py: float64 tiny BERTs, dropout off, SGD optimizers (an update is
``-lr · gradient``), α < 1 and τ ≠ 1. The references use ``functional_call``, ``F.kl_div``,
``F.cross_entropy`` and ``torch.autograd.grad``; the LoRA of ``pesf`` is written out by hand
(``W + (lora_alpha / r) · B A``), not taken from peft. The last tests break each method on
purpose and check that its reference test notices.
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
from torch.func import functional_call
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

import lgtm
import lgtm.models as models
import lgtm.objectives as objectives
from lgtm.methods import ce as ce_module
from lgtm.methods import pesf as pesf_module
from lgtm.methods.base import Method
from lgtm.methods.dml import DML
from lgtm.methods.pkd import PKD, parse_layer_pairs, pkd_skip_layers
from lgtm.objectives import distill_objective, skd, spherical_normalize

TOL = 1e-10  # relative error of a one-step update against its reference
BETA = 7.0  # PKD's β in the reference tests (not the default, so that it is really read)


def optimizers(teacher, student):
    opt_t = (
        None
        if teacher is None
        else torch.optim.SGD([p for p in teacher.parameters() if p.requires_grad], lr=LR_T)
    )
    return opt_t, torch.optim.SGD(student.parameters(), lr=LR_S)


def build(name, teacher, student, **opts):
    opt_t, opt_s = optimizers(teacher, student)
    options = {"alpha": ALPHA, "teacher_alpha": TEACHER_ALPHA, "temperature": TAU, **opts}
    return lgtm.make_method(
        name,
        teacher=teacher,
        student=student,
        teacher_optimizer=opt_t,
        student_optimizer=opt_s,
        **options,
    )


label_ref = ce_mean_ref  # the mixed-batch tests swap in the mean over the labelled samples


def student_loss_ref(s, t, y, kd=kl_ref):
    """``Ls = α · mean kd(t, s) + (1 − α) · mean ce(y, s)``."""
    return ALPHA * kd(t, s).mean() + (1 - ALPHA) * label_ref(s, y)


def aux_loss_ref(t, s, y):
    """``L_aux = αt · mean kd(s.detach(), t) + (1 − αt) · mean ce(y, t)``."""
    return TEACHER_ALPHA * kl_ref(s.detach(), t).mean() + (1 - TEACHER_ALPHA) * label_ref(t, y)


def delta_error(now, ref, before):
    """‖Δ − Δ_ref‖ / ‖Δ_ref‖ over the given parameter names (Δ = new − before)."""
    d = torch.cat([(now[n].detach() - before[n]).flatten() for n in ref])
    r = torch.cat([(ref[n].detach() - before[n]).flatten() for n in ref])
    return ((d - r).norm() / r.norm()).item()


# ---- ce: the student alone ----------------------------------------------------------------
def ce_error(with_teacher=False, unlabelled=()):
    teacher = tiny_bert(2, 0) if with_teacher else None
    student, batch = tiny_bert(1, 1), make_batch(5, 2, unlabelled=unlabelled)
    ps = params_of(student)
    ref = sgd(ps, label_ref(logits(student, ps, batch), batch["labels"]), LR_S)
    before = snapshot(student)
    t_before = snapshot(teacher) if with_teacher else {}
    out = build("ce", teacher, student).step(batch)
    assert set(out) == {"student_loss", "student_logits"}
    if with_teacher:  # a teacher given anyway is never touched
        assert all(torch.equal(p, t_before[n]) for n, p in teacher.named_parameters())
    return rel_err(student, ref, before)


@pytest.mark.parametrize("with_teacher", [False, True])
def test_ce_matches_reference(with_teacher):
    assert ce_error(with_teacher) < TOL


def test_ce_needs_no_teacher_and_the_others_refuse_none():
    student = tiny_bert(1, 1)
    opt_s = torch.optim.SGD(student.parameters(), lr=LR_S)
    method = lgtm.make_method("ce", student=student, student_optimizer=opt_s)
    assert method.teacher is None and not method.trains_teacher and method.teacher_params == []
    for name in ("kd", "pkd", "online", "dml"):
        with pytest.raises(ValueError, match=f"'{name}' needs a teacher.*teacher=None"):
            lgtm.make_method(name, teacher=None, student=student, student_optimizer=opt_s)


# ---- pkd ----------------------------------------------------------------------------------
def hidden_and_logits(model, params, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = functional_call(model, params, args=(), kwargs={**inputs, "output_hidden_states": True})
    return out.hidden_states, out.logits


def pkd_error(layers, unlabelled=()):
    """One pkd step (teacher 3 layers, student 2) against the reference: the student's relative
    error, and the logged and reference ``L_PT``."""
    teacher, student = tiny_bert(3, 0), tiny_bert(2, 1)
    batch = make_batch(5, 2, unlabelled=unlabelled)
    pt, ps = params_of(teacher), params_of(student)
    h_t, t = hidden_and_logits(teacher, pt, batch)
    h_s, s = hidden_and_logits(student, ps, batch)
    t, h_t = t.detach(), [h.detach() for h in h_t]
    pt_loss = 0.0
    for j, k in layers:  # mean_i ‖h_s/‖h_s‖ − h_t/‖h_t‖‖², [CLS] after layer j / k
        a = h_s[j][:, 0] / h_s[j][:, 0].norm(dim=-1, keepdim=True)
        b = h_t[k][:, 0] / h_t[k][:, 0].norm(dim=-1, keepdim=True)
        pt_loss = pt_loss + ((a - b) ** 2).sum(-1).mean()
    loss = student_loss_ref(s, t, batch["labels"]) + BETA * pt_loss
    ref = sgd(ps, loss, LR_S)
    before_t, before_s = snapshot(teacher), snapshot(student)
    method = build("pkd", teacher, student, pkd_beta=BETA, pkd_layers=layers)
    assert not method.trains_teacher
    out = method.step(batch)
    assert all(torch.equal(p, before_t[n]) for n, p in teacher.named_parameters())  # frozen
    return rel_err(student, ref, before_s), out["pt_loss"], pt_loss.item()


PKD_LAYERS = [(1, 3), (2, 1)]  # not the default map ([(1, 2)]): two pairs, one of them crossed


def test_pkd_matches_reference_with_a_custom_layer_map():
    err, pt_logged, pt_ref = pkd_error(PKD_LAYERS)
    assert err < TOL
    assert pt_logged == pytest.approx(pt_ref, rel=1e-12) and pt_ref > 0.1  # a real term


def test_pkd_default_layer_map_pkd_skip():
    # by hand: k = round(j · Nt / Ns) for j = 1 … Ns − 1
    assert pkd_skip_layers(3, 6) == [(1, 2), (2, 4)]
    assert pkd_skip_layers(2, 4) == [(1, 2)]
    assert pkd_skip_layers(4, 6) == [(1, 2), (2, 3), (3, 5)]  # 1.5 → 2, 3 → 3, 4.5 → 5
    assert pkd_skip_layers(1, 6) == []  # a one-layer student: kd's term covers its only layer
    for nt, ns, pairs in [(6, 3, [(1, 2), (2, 4)]), (4, 2, [(1, 2)])]:
        method = build("pkd", tiny_bert(nt, 0), tiny_bert(ns, 1))
        assert method.pkd_layers == pairs and method.pkd_beta == 100.0


def test_pkd_refuses_mismatched_sizes_and_layers():
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    wide = BertForSequenceClassification(config).double()
    with pytest.raises(ValueError, match="hidden size 32 differs from the teacher's 16"):
        build("pkd", tiny_bert(2, 0), wide)
    with pytest.raises(ValueError, match=r"pair \(3, 1\) is out of range.*student layers are 1..2"):
        build("pkd", tiny_bert(2, 0), tiny_bert(2, 1), pkd_layers=[(1, 1), (3, 1)])
    with pytest.raises(ValueError, match=r"pair \(1, 0\) is out of range"):
        build("pkd", tiny_bert(2, 0), tiny_bert(2, 1), pkd_layers=[(1, 0)])
    with pytest.raises(ValueError, match="pkd_beta"):
        build("pkd", tiny_bert(2, 0), tiny_bert(2, 1), pkd_beta=-1.0)
    method = build("pkd", tiny_bert(2, 0), tiny_bert(2, 1), pkd_layers="1:2, 2:1")
    assert method.pkd_layers == [(1, 2), (2, 1)]


def test_parse_layer_pairs():
    assert parse_layer_pairs("1:3,2:6") == [(1, 3), (2, 6)]
    assert parse_layer_pairs(" 1 : 3 , 2:6 ") == [(1, 3), (2, 6)]
    for bad, message in [
        ("", "expected comma-separated"),
        ("1:3,", "expected comma-separated"),
        ("1-3", "bad layer pair '1-3'"),
        ("1:3:5", "bad layer pair"),
        ("a:b", "bad layer pair 'a:b'"),
        ("1:-2", "bad layer pair"),
        ("0:2", "numbered from 1"),
        ("1:3,1:3", "given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_layer_pairs(bad)


# ---- dml ----------------------------------------------------------------------------------
def dml_errors(unlabelled=()):
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    batch = make_batch(5, 2, unlabelled=unlabelled)
    pt, ps, y = params_of(teacher), params_of(student), batch["labels"]
    t, s = logits(teacher, pt, batch), logits(student, ps, batch)
    # unweighted sums; the teacher first, the student then sees the updated teacher
    new_t = detached(sgd(pt, label_ref(t, y) + kl_ref(s.detach(), t).mean(), LR_T))
    t_new = logits(teacher, new_t, batch).detach()
    new_s = sgd(ps, label_ref(s, y) + kl_ref(t_new, s).mean(), LR_S)
    before_t, before_s = snapshot(teacher), snapshot(student)
    build("dml", teacher, student).step(batch)  # α = 0.7, αt = 0.4: unused by dml
    return rel_err(teacher, new_t, before_t), rel_err(student, new_s, before_s)


def test_dml_matches_reference():
    err_t, err_s = dml_errors()
    assert err_t < TOL and err_s < TOL, (err_t, err_s)


# ---- prokt --------------------------------------------------------------------------------
def online_ref(teacher, student, pt, ps, batch):
    """One step of online distillation from parameters ``pt``, ``ps``."""
    y = batch["labels"]
    t, s = logits(teacher, pt, batch), logits(student, ps, batch)
    new_t = detached(sgd(pt, aux_loss_ref(t, s, y), LR_T))
    t_new = logits(teacher, new_t, batch).detach()
    return new_t, detached(sgd(ps, student_loss_ref(s, t_new, y), LR_S))


def zeroed(model):
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    return model


def prokt_errors(unlabelled=((), ())):
    """Two prokt steps against two online reference steps from zeroed heads; ``unlabelled``:
    the samples without a label of each batch."""
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    batches = [make_batch(5, seed, unlabelled=u) for seed, u in zip((2, 4), unlabelled)]
    ref_teacher, ref_student = zeroed(teacher), zeroed(student)
    pt, ps = params_of(ref_teacher), params_of(ref_student)
    for batch in batches:
        pt, ps = online_ref(ref_teacher, ref_student, pt, ps, batch)
    start_t, start_s = snapshot(ref_teacher), snapshot(ref_student)  # the reference's start
    method = build("prokt", teacher, student)
    for batch in batches:
        method.step(batch)
    return rel_err(teacher, pt, start_t), rel_err(student, ps, start_s)


def test_prokt_zeroes_both_heads_at_construction():
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    assert teacher.classifier.weight.abs().sum() > 0 and student.classifier.weight.abs().sum() > 0
    before = snapshot(teacher), snapshot(student)
    build("prokt", teacher, student)
    for model, old in zip((teacher, student), before):
        for name, p in model.named_parameters():
            if name.startswith("classifier."):
                assert p.abs().sum() == 0, name
            else:  # the rest as given
                assert torch.equal(p, old[name]), name


def test_prokt_is_online_from_zero_heads():
    err_t, err_s = prokt_errors()
    assert err_t < TOL and err_s < TOL, (err_t, err_s)
    # and bit for bit the online method run on zeroed copies
    teacher, student, batch = tiny_bert(2, 0), tiny_bert(1, 1), make_batch(5, 2)
    a_t, a_s = zeroed(teacher), zeroed(student)
    build("online", a_t, a_s).step(batch)
    build("prokt", teacher, student).step(batch)
    for x, y in ((a_t, teacher), (a_s, student)):
        assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))


# ---- pesf ---------------------------------------------------------------------------------
RANK = 4  # not the default 8: lora_alpha / r = 4 is then checked


def lora_reference_names(wrapped):
    """peft's parameter name → the reference's name, for every trainable teacher parameter."""
    out = {}
    for name, p in wrapped.named_parameters():
        if not p.requires_grad:
            continue
        short = name.removeprefix("base_model.model.")
        if ".lora_" in short:  # …attention.self.query.lora_A.default.weight → …query:A
            module, rest = short.split(".lora_")
            out[name] = f"{module}:{rest[0]}"
        else:  # classifier.modules_to_save.default.weight → classifier.weight
            out[name] = short.replace(".modules_to_save.default", "")
    return out


def pesf_setup():
    base = tiny_bert(2, 0)
    plain = copy.deepcopy(base)  # the reference's frozen base weights
    wrapped = pesf_module.wrap_teacher(base, rank=RANK)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # B = 0 at start would leave A without a gradient: move B off zero
        for name, p in wrapped.named_parameters():
            if ".lora_B." in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return plain, wrapped


def lora_logits(plain, frozen, trainable, batch):
    """The adapted teacher by hand: query/value weight ``W + (16 / r) · B A``, trained head."""
    weights = dict(frozen)
    for name, value in trainable.items():
        if ":" not in name:
            weights[name] = value
    for name in {n.split(":")[0] for n in trainable if ":" in n}:
        a, b = trainable[name + ":A"], trainable[name + ":B"]
        weights[name + ".weight"] = frozen[name + ".weight"] + (16 / RANK) * b @ a
    return logits(plain, weights, batch)


def pesf_errors(unlabelled=()):
    plain, wrapped = pesf_setup()
    student, batch = tiny_bert(1, 1), make_batch(5, 2, unlabelled=unlabelled)
    names = lora_reference_names(wrapped)
    adapted = {v.split(":")[0].rsplit(".", 1)[-1] for v in names.values() if ":" in v}
    assert adapted == {"query", "value"} and len(names) == 2 * 2 * 2 + 2  # 2 layers, A and B
    frozen = {n: p.detach() for n, p in plain.named_parameters()}
    trainable = {
        names[n]: p.detach().clone().requires_grad_()
        for n, p in wrapped.named_parameters()
        if n in names
    }
    ps, y = params_of(student), batch["labels"]
    t, s = lora_logits(plain, frozen, trainable, batch), logits(student, ps, batch)
    new_trainable = detached(sgd(trainable, aux_loss_ref(t, s, y), LR_T))
    t_new = lora_logits(plain, frozen, new_trainable, batch).detach()
    new_s = sgd(ps, student_loss_ref(s, t_new, y), LR_S)

    before_t, before_s = snapshot(wrapped), snapshot(student)
    method = build("pesf", wrapped, student, pesf_rank=RANK)
    assert sorted(method.teacher_names) == sorted(names)
    method.step(batch)
    now = dict(wrapped.named_parameters())
    for n, p in now.items():  # everything outside the adapter and the head: bit-identical
        if n not in names:
            assert torch.equal(p, before_t[n]), n
    err_t = delta_error(
        {names[n]: now[n] for n in names},
        new_trainable,
        {names[n]: before_t[n] for n in names},
    )
    return err_t, rel_err(student, new_s, before_s), method, batch


def test_pesf_trains_only_adapter_and_head_and_matches_reference():
    err_t, err_s, _, _ = pesf_errors()
    assert err_t < TOL and err_s < TOL, (err_t, err_s)


def test_pesf_merged_teacher_is_a_plain_model_with_the_same_logits(tmp_path):
    _, _, method, batch = pesf_errors()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        adapted = method.teacher(**inputs).logits
        merged = method.merged_teacher()
        assert type(merged) is BertForSequenceClassification
        assert not any("lora" in n or "modules_to_save" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**inputs).logits, adapted, rtol=0, atol=1e-10)
        torch.testing.assert_close(method.teacher(**inputs).logits, adapted, rtol=0, atol=0)
        merged.save_pretrained(tmp_path)
        loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).double()
        torch.testing.assert_close(loaded(**inputs).logits, adapted, rtol=0, atol=1e-10)


def test_pesf_wrapping_defaults_and_errors():
    wrapped = pesf_module.wrap_teacher(tiny_bert(2, 0))
    config = wrapped.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.0)
    assert set(config.target_modules) == {"query", "value"}
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert all(("lora_" in n and (".query." in n or ".value." in n)) or "classifier" in n
               for n in trainable)  # fmt: skip
    assert sum("classifier" in n for n in trainable) == 2
    student = tiny_bert(1, 1)
    with pytest.raises(ValueError, match="wrap_teacher"):
        build("pesf", tiny_bert(2, 0), student)
    with pytest.raises(ValueError, match="pesf_rank is 4 but the teacher's adapter has rank 8"):
        build("pesf", wrapped, student, pesf_rank=4)
    with pytest.raises(ValueError, match="wrap it only once"):
        pesf_module.wrap_teacher(wrapped)
    with pytest.raises(ValueError, match="merged_teacher needs"):
        pesf_module.merged_teacher(tiny_bert(2, 0))


# ---- batches mixing labelled and unlabelled samples (a transfer set) ---------------------
# Every label term (ce's loss, the student's and the teacher's in Ls and L_aux, dml's) is the
# mean over the batch's labelled samples, 0 when none is labelled; the distillation terms,
# pkd's patient term and the teacher's kd' term range over all samples.
@pytest.fixture
def masked_label_term(monkeypatch):
    """The reference's label terms become ``mean_labelled ce`` (boolean indexing)."""
    monkeypatch.setattr(sys.modules[__name__], "label_ref", labelled_ce_mean_ref)


def pkd_mixed_errors(unlabelled):
    err, pt_logged, pt_ref = pkd_error(PKD_LAYERS, unlabelled)
    assert pt_logged == pytest.approx(pt_ref, rel=1e-12) and pt_ref > 0.1  # over all samples
    return err


MIXED_CHECKS = {
    "ce": lambda case: ce_error(unlabelled=UNLABELLED[case]),
    "ce-with-teacher": lambda case: ce_error(True, UNLABELLED[case]),
    "pkd": lambda case: pkd_mixed_errors(UNLABELLED[case]),
    "dml": lambda case: dml_errors(UNLABELLED[case]),
    # from zeroed heads a batch without labels moves nothing: label the first batch in part
    "prokt": lambda case: prokt_errors((UNLABELLED["some"], UNLABELLED[case])),
    "pesf": lambda case: pesf_errors(UNLABELLED[case])[:2],
}


@pytest.mark.parametrize("case", ["some", "none"])
@pytest.mark.parametrize("name", list(MIXED_CHECKS))
def test_mixed_batch_matches_reference(name, case, masked_label_term):
    errors = MIXED_CHECKS[name](case)
    assert _max(errors) < TOL, errors


@pytest.mark.parametrize("name", list(MIXED_CHECKS))
def test_mixed_batch_reference_detects_an_unmasked_label_term(monkeypatch, masked_label_term, name):
    """A label term averaged over the whole batch (the unlabelled samples counted as 0)."""
    monkeypatch.setattr(Method, "labelled_mean", staticmethod(lambda values, labels: values.mean()))
    errors = MIXED_CHECKS[name]("some")
    assert _max(errors) > 1e-6, errors  # ≥ 10⁴ times the tolerance


# ---- skd ----------------------------------------------------------------------------------
EPS = objectives.SKD_EPS


def skd_hand_errors():
    """Relative errors of ``skd`` against the hand computation, at τ = 2 and τ = 1."""
    errors = []
    # t = [1, 2, 4]: mean 7/3, deviations [-4/3, -1/3, 5/3], population variance 14/9
    # s = [0, 1, 0]: mean 1/3, deviations [-1/3, 2/3, -1/3], population variance 2/9
    n_t = [d / math.sqrt(14 / 9 + EPS) for d in (-4 / 3, -1 / 3, 5 / 3)]
    n_s = [d / math.sqrt(2 / 9 + EPS) for d in (-1 / 3, 2 / 3, -1 / 3)]
    # without ε: n_t = [-4, -1, 5] / √14, n_s = [-1, 2, -1] / √2
    assert n_t == pytest.approx([-1.0690449676, -0.2672612419, 1.3363062096], rel=1e-5)
    assert n_s == pytest.approx([-0.7071067812, 1.4142135624, -0.7071067812], rel=1e-5)
    for tau, value in [(2.0, 1.3745251058561736), (1.0, 1.3321570018471385)]:  # numpy, ε = 0
        z_p = sum(math.exp(x / tau) for x in n_t)
        z_q = sum(math.exp(x / tau) for x in n_s)
        p = [math.exp(x / tau) / z_p for x in n_t]
        q = [math.exp(x / tau) / z_q for x in n_s]
        expected = tau**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        t = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
        s = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
        assert expected == pytest.approx(value, rel=1e-5)  # ε moves it by ~1e-6 only
        got = objectives.distill_objective("skd", tau)(t, s)
        assert got.shape == (1,)
        errors.append(abs(got.item() - expected) / expected)
    return errors


def test_skd_hand_computed():
    assert max(skd_hand_errors()) < 1e-12
    n_t = [d / math.sqrt(14 / 9 + EPS) for d in (-4 / 3, -1 / 3, 5 / 3)]
    torch.testing.assert_close(
        spherical_normalize(torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)),
        torch.tensor([n_t], dtype=torch.float64),
        rtol=1e-12,
        atol=0,
    )


def test_skd_two_classes_is_plus_minus_one():
    z = torch.tensor([[0.3, 2.0], [5.0, -1.0], [-3.0, 7.0]], dtype=torch.float64)
    expected = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(spherical_normalize(z), expected, rtol=0, atol=1e-5)
    tau = 2.0
    # opposite preferences: τ² KL(softmax([-1, 1]/τ) ‖ softmax([1, -1]/τ)) = 2τ · tanh(1/τ)
    assert skd(z[:1], z[1:2], tau).item() == pytest.approx(2 * tau * math.tanh(1 / tau), rel=1e-5)
    assert 2 * tau * math.tanh(1 / tau) == pytest.approx(1.848468629040039, rel=1e-12)
    # the same preference, whatever the margins: nothing to distil
    assert skd(z[:1], z[2:3], tau).item() < 1e-10


def test_skd_refuses_regression_and_stays_finite_on_equal_logits():
    with pytest.raises(ValueError, match="not defined for regression"):
        distill_objective("skd", 2.0, regression=True)
    with pytest.raises(ValueError, match="not defined for regression"):
        build("kd", tiny_bert(2, 0, num_labels=1), tiny_bert(1, 1, num_labels=1), objective="skd")
    s = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)  # e.g. zero-init heads
    t = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    loss = skd(t, s, 2.0)
    (grad,) = torch.autograd.grad(loss.sum(), s)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all() and loss[1] == 0
    half = torch.randn(4, 3, dtype=torch.bfloat16)
    assert skd(half, half.flip(0)).dtype == torch.float32


def skd_ref(target, pred, tau=TAU):
    def n(z):
        d = z - z.mean(-1, keepdim=True)
        return d / torch.sqrt((d * d).mean(-1, keepdim=True) + EPS)

    return kl_ref(n(target), n(pred), tau)


def skd_kd_error():
    """kd with the skd objective (the baseline "SKD"; the student's ce stays on raw logits)."""
    teacher, student, batch = tiny_bert(2, 0), tiny_bert(1, 1), make_batch(5, 2)
    pt, ps = params_of(teacher), params_of(student)
    t = logits(teacher, pt, batch).detach()
    loss = student_loss_ref(logits(student, ps, batch), t, batch["labels"], kd=skd_ref)
    ref = sgd(ps, loss, LR_S)
    before = snapshot(student)
    build("kd", teacher, student, objective="skd").step(batch)
    return rel_err(student, ref, before)


def test_kd_with_skd_objective_matches_reference():
    assert skd_kd_error() < TOL


# ---- the reference tests can fail: break each method on purpose ---------------------------
def _dml_student_first(self, batch, feedback_batch=None, probe=None):
    y = batch["labels"]
    t, s = self.teacher_logits(batch), self.student_logits(batch)
    loss_s = self.mutual_loss(s, t.detach(), y)
    self.apply(self.student_optimizer, self.student_params, self.grad_student(loss_s))
    loss_t = self.mutual_loss(t, s.detach(), y)
    self.apply(self.teacher_optimizer, self.teacher_params, self.grad_teacher(loss_t))
    return {}


def _dml_weighted(self, own, peer, labels, weights=None):  # online's weighted form
    return ALPHA * self.kd(peer.detach(), own).mean() + (1 - ALPHA) * ce_ref(own, labels).mean()


def _unbiased_normalize(logits, eps=EPS):  # sample instead of population standard deviation
    return (logits - logits.mean(-1, keepdim=True)) / torch.sqrt(logits.var(-1) + eps)[:, None]


def _max(errors):
    return max(errors) if isinstance(errors, tuple | list) else errors


@pytest.mark.parametrize(
    "target,attr,broken,check",
    [
        (ce_module, "task_loss", lambda z, y: -F.cross_entropy(z, y, reduction="none"), ce_error),
        (PKD, "patient_loss", lambda self, hs, ht: hs[0].new_zeros(()), "pkd"),
        (DML, "step", _dml_student_first, dml_errors),
        (DML, "mutual_loss", _dml_weighted, dml_errors),
        (models, "zero_init_classifier", lambda model: None, prokt_errors),
        (pesf_module, "LORA_ALPHA", 8, lambda: pesf_errors()[:2]),
        (objectives, "spherical_normalize", _unbiased_normalize, skd_hand_errors),
        (objectives, "spherical_normalize", _unbiased_normalize, skd_kd_error),
    ],
)
def test_reference_detects_a_broken_method(monkeypatch, target, attr, broken, check):
    monkeypatch.setattr(target, attr, broken)
    errors = pkd_error(PKD_LAYERS)[0] if check == "pkd" else check()
    assert _max(errors) > 1e-6, errors  # ≥ 10⁴ times the tolerance


def test_config_lists_every_method_and_objective():
    """The command line's choices (read from the method registry) match the registries."""
    from lgtm import config as cfg
    from lgtm.methods import METHOD_NAMES
    from lgtm.objectives import OBJECTIVES

    assert set(cfg.METHODS) == set(METHOD_NAMES) and set(cfg.OBJECTIVES) == set(OBJECTIVES)
    assert cfg.parse_value("pkd_layers", [[1, 3], "2:6"]) == "1:3,2:6"
    with pytest.raises(lgtm.errors.LgtmInputError, match="pkd_layers"):
        cfg.parse_value("pkd_layers", "1-3")
