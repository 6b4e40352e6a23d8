"""The look-ahead replays the optimizer's real step, and never touches the real student."""

from __future__ import annotations

import copy

import pytest
import torch

from lgtm.lookahead import current_lr, look_ahead


def model_and_grads(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)
    ).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    return model, x


def loss_of(model, x):
    return model(x).pow(2).mean() + model(x).sum() * 0.1


OPTIMIZERS = [
    lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
    lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1),
    lambda p: torch.optim.Adam(p, lr=0.05, amsgrad=True),
    lambda p: torch.optim.AdamW(
        [{"params": list(p)[:2], "weight_decay": 0.0}, {"params": list(p)[2:], "lr": 0.01}], lr=0.05
    ),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),  # replayed on copies
    lambda p: torch.optim.Adagrad(p, lr=0.1),
]


@pytest.mark.parametrize("make_opt", OPTIMIZERS)
def test_replay_equals_the_optimizers_real_step_and_changes_nothing(make_opt):
    model, x = model_and_grads()
    opt = make_opt(list(model.parameters()))
    for _ in range(2):  # build up optimizer state
        opt.zero_grad()
        loss_of(model, x).backward()
        opt.step()
    params = list(model.parameters())
    grads = [g.clone() for g in torch.autograd.grad(loss_of(model, x), params)]
    before = [p.detach().clone() for p in params]
    state_before = copy.deepcopy(opt.state_dict())

    ahead = look_ahead(params, grads, opt, "adam")

    # the real parameters and optimizer state are untouched, bit for bit
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    after = opt.state_dict()
    for key, st in state_before["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(after["state"][key][k]))
    # and the look-ahead is where the optimizer's own step goes
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    for a, p in zip(ahead, params):
        torch.testing.assert_close(a, p.detach(), rtol=1e-12, atol=1e-14)


def test_sgd_lookahead_is_a_plain_gradient_step():
    model, x = model_and_grads()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss_of(model, x), params)
    for a, p, g in zip(look_ahead(params, grads, opt, "sgd"), params, grads):
        torch.testing.assert_close(a, p.detach() - 0.05 * g, rtol=0, atol=0)
    assert current_lr(opt) == 0.05


@pytest.mark.parametrize("make_opt", [OPTIMIZERS[0], OPTIMIZERS[4]])
def test_differentiable_replay_has_the_right_derivative(make_opt):
    """d(look-ahead)/d(grads) by autograd against a central finite difference."""
    model, x = model_and_grads(1)
    opt = make_opt(list(model.parameters()))
    opt.zero_grad()
    loss_of(model, x).backward()
    opt.step()
    params = list(model.parameters())
    grads = [
        g.detach().clone().requires_grad_() for g in torch.autograd.grad(loss_of(model, x), params)
    ]
    direction = [torch.randn_like(g) for g in grads]

    def f(gs):
        return sum((a * a).sum() for a in look_ahead(params, gs, opt, "adam", create_graph=True))

    analytic = sum((d * g).sum() for d, g in zip(direction, torch.autograd.grad(f(grads), grads)))
    h = 1e-6
    with torch.no_grad():
        plus = f([g + h * d for g, d in zip(grads, direction)])
        minus = f([g - h * d for g, d in zip(grads, direction)])
    assert abs((plus - minus) / (2 * h) - analytic) < 1e-6 * abs(analytic)


def test_differentiable_replay_of_other_optimizers_is_refused():
    model, x = model_and_grads()
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss_of(model, x), params)
    with pytest.raises(ValueError, match="lookahead='sgd'"):
        look_ahead(params, grads, opt, "adam", create_graph=True)
