"""One-step look-ahead of the student: where its optimizer would take it, without going there.

``look_ahead`` returns new tensors ``θs'``; it never changes the real parameters or the
optimizer's state. Two kinds (ALGORITHMS.md, "The look-ahead"):

- ``"sgd"``: ``θs' = θs − ηs · g``, the step the derivation of LGTM assumes.
- ``"adam"``: replay one step of the student's own optimizer on copies of its state
  (AdamW/Adam with bias correction and weight decay, or SGD with momentum; any other
  optimizer is replayed by running its own ``step`` on cloned parameters and state).

With ``create_graph=True`` the result stays differentiable in ``grads`` (meta distillation's
pilot update); that needs a replay written here, so only SGD and Adam/AdamW are supported.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

Tensor = torch.Tensor
LOOKAHEADS = ("adam", "sgd")


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The optimizer's current learning rate (its first parameter group's)."""
    return float(optimizer.param_groups[0]["lr"])


def look_ahead(
    params: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    optimizer: torch.optim.Optimizer,
    kind: str = "adam",
    *,
    create_graph: bool = False,
    out: Sequence[Tensor] | None = None,
    scratch: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Parameters after one step of ``kind`` from ``params`` with gradients ``grads``.

    Parameters with no gradient, or not handled by ``optimizer``, are returned unchanged.
    ``out`` and ``scratch`` (parameter-shaped buffers) are reused by the multi-tensor Adam
    replay instead of fresh memory.
    """
    if kind not in LOOKAHEADS:
        raise ValueError(f"unknown lookahead {kind!r}; choose one of {', '.join(LOOKAHEADS)}")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    if kind == "adam" and not isinstance(optimizer, torch.optim.Adam | torch.optim.SGD):
        if create_graph:
            raise ValueError(
                "a differentiable look-ahead replays SGD or Adam/AdamW, not "
                f"{type(optimizer).__name__}; use lookahead='sgd'"
            )
        return _replay_copy(params, grads, optimizer)
    if not create_graph and kind == "adam" and isinstance(optimizer, torch.optim.Adam):
        return _adam_foreach(params, grads, optimizer, out, scratch)
    out = []
    with torch.set_grad_enabled(create_graph):
        for p, g in zip(params, grads, strict=True):
            group = group_of.get(id(p))
            if g is None or group is None:
                out.append(p.detach())
                continue
            p0 = p.detach()
            if kind == "sgd":
                out.append(p0 - float(group["lr"]) * g)
            elif isinstance(optimizer, torch.optim.Adam):
                out.append(_adam(p0, g, group, optimizer.state.get(p, {}), optimizer))
            else:
                out.append(_sgd(p0, g, group, optimizer.state.get(p, {})))
    return out


def _adam(
    p: Tensor, g: Tensor, group: dict, state: dict, optimizer: torch.optim.Optimizer
) -> Tensor:
    """One Adam/AdamW step from ``p`` (torch's update rule, written out of place)."""
    if group.get("maximize", False):
        g = -g
    lr, (beta1, beta2), eps, wd = (
        float(group["lr"]),
        group["betas"],
        group["eps"],
        group["weight_decay"],
    )
    decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get(
        "decoupled_weight_decay", False
    )
    step = float(state["step"]) + 1 if "step" in state else 1.0
    if wd != 0:
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
    m = state["exp_avg"] * beta1 + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
    v = (
        state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g
        if "exp_avg_sq" in state
        else (1 - beta2) * g * g
    )
    if group.get("amsgrad", False) and "max_exp_avg_sq" in state:
        v = torch.maximum(state["max_exp_avg_sq"], v)
    if torch.is_grad_enabled():  # keep d sqrt(v)/dv finite where v == 0 (unused embedding rows)
        v = v.clamp_min(torch.finfo(v.dtype).tiny)
    bias1, bias2 = 1 - beta1**step, 1 - beta2**step
    denom = v.sqrt() / math.sqrt(bias2) + eps
    return p - (lr / bias1) * m / denom


@torch.no_grad()
def _adam_foreach(
    params: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    optimizer: torch.optim.Optimizer,
    out: Sequence[Tensor] | None = None,
    scratch: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """``_adam`` for all tensors of a group at once (fused multi-tensor kernels), written into
    ``out`` with ``scratch`` as working memory when given (reused buffers: on CPU a fresh
    parameter-sized allocation costs more than the arithmetic). Falls back to ``_adam`` for
    the rare options."""
    out = [torch.empty_like(p) for p in params] if out is None else list(out)
    scratch = [torch.empty_like(p) for p in params] if scratch is None else list(scratch)
    index = {id(p): i for i, p in enumerate(params)}
    result = [p.detach() for p in params]
    grad_of = {id(p): g for p, g in zip(params, grads, strict=True) if g is not None}
    for group in optimizer.param_groups:
        todo = [p for p in group["params"] if id(p) in grad_of and id(p) in index]
        if group.get("amsgrad", False) or group.get("maximize", False):
            for p in todo:
                state = optimizer.state.get(p, {})
                result[index[id(p)]] = _adam(p.detach(), grad_of[id(p)], group, state, optimizer)
            continue
        for step, same in _by_step(todo, optimizer).items():
            at = [index[id(p)] for p in same]
            _adam_group(
                same,
                [grad_of[id(p)] for p in same],
                group,
                optimizer,
                step,
                [out[i] for i in at],
                [scratch[i] for i in at],
            )
            for i in at:
                result[i] = out[i]
    return result


def _by_step(params: list[Tensor], optimizer: torch.optim.Optimizer) -> dict[float, list[Tensor]]:
    """Parameters grouped by their optimizer step count (normally all share one)."""
    groups: dict[float, list[Tensor]] = {}
    for p in params:
        state = optimizer.state.get(p, {})
        groups.setdefault(float(state["step"]) + 1 if "step" in state else 1.0, []).append(p)
    return groups


def _adam_group(
    params: list[Tensor],
    g: list[Tensor],
    group: dict,
    optimizer: torch.optim.Optimizer,
    step: float,
    out: list[Tensor],
    m: list[Tensor],
) -> None:
    """``out ← p − lr · m̂' / (√v̂' + eps)`` (after weight decay), with ``m`` as scratch."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    lr = float(lr)
    decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get(
        "decoupled_weight_decay", False
    )
    p0 = [p.detach() for p in params]
    if wd != 0 and not decoupled:
        g = torch._foreach_add(g, p0, alpha=wd)
    state = [optimizer.state.get(p, {}) for p in params]
    v = out  # out holds the denominator until the very end
    if all("exp_avg" in s for s in state):
        torch._foreach_copy_(m, [s["exp_avg"] for s in state])
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1 - beta1)
        torch._foreach_copy_(v, [s["exp_avg_sq"] for s in state])
        torch._foreach_mul_(v, beta2)
    else:
        torch._foreach_copy_(m, g)
        torch._foreach_mul_(m, 1 - beta1)
        torch._foreach_zero_(v)
    torch._foreach_addcmul_(v, g, g, value=1 - beta2)
    torch._foreach_sqrt_(v)
    torch._foreach_div_(v, math.sqrt(1 - beta2**step))
    torch._foreach_add_(v, eps)
    torch._foreach_div_(m, v)  # m'/denominator; v is free from here on
    torch._foreach_copy_(out, p0)
    if wd != 0 and decoupled:
        torch._foreach_mul_(out, 1 - lr * wd)
    torch._foreach_add_(out, m, alpha=-lr / (1 - beta1**step))


def _sgd(p: Tensor, g: Tensor, group: dict, state: dict) -> Tensor:
    """One SGD step from ``p`` (momentum, dampening, Nesterov and weight decay as torch does)."""
    if group.get("maximize", False):
        g = -g
    lr, wd, mom = float(group["lr"]), group["weight_decay"], group["momentum"]
    if wd != 0:
        g = g + wd * p
    if mom != 0:
        buf = state.get("momentum_buffer")
        buf = g if buf is None else buf * mom + (1 - group["dampening"]) * g
        g = g + mom * buf if group["nesterov"] else buf
    return p - lr * g


@torch.no_grad()
def _replay_copy(
    params: Sequence[Tensor], grads: Sequence[Tensor | None], optimizer: torch.optim.Optimizer
) -> list[Tensor]:
    """Run ``optimizer``'s own step on clones of the parameters and of its state."""
    clone = {id(p): p.detach().clone() for p in params}
    for p, g in zip(params, grads, strict=True):
        clone[id(p)].grad = None if g is None else g.detach().clone()
    groups = []
    for group in optimizer.param_groups:
        hyper = {k: v for k, v in group.items() if k != "params"}
        groups.append(
            {**hyper, "params": [clone[id(p)] for p in group["params"] if id(p) in clone]}
        )
    shadow = type(optimizer)([g for g in groups if g["params"]], **optimizer.defaults)
    for p in params:
        if p in optimizer.state:
            shadow.state[clone[id(p)]] = copy.deepcopy(optimizer.state[p])
    shadow.step()
    return [clone[id(p)] for p in params]
