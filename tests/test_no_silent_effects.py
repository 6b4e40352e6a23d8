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
