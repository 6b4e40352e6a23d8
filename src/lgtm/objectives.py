"""Losses of teaching, per sample.

The distillation influence needs one value per training sample, so every distillation
objective here returns a tensor of shape ``[B]``; a method takes the mean where the
equations take it. Argument order is always ``(target, prediction)``: ``kd(t, s)`` is the
student's loss towards the teacher, and the teacher's loss towards the student is the same
function with the roles swapped, ``kd'(s, t) = kd(s.detach(), t)`` (ALGORITHMS.md, online
distillation and LGTM step 6).

Losses are computed in at least float32, and never below the models' own dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lgtm import distributed

Tensor = torch.Tensor
Objective = Callable[[Tensor, Tensor], Tensor]

OBJECTIVES = ("kl", "mse", "dist", "skd")

#: ε of the spherical normalisation, ``n(z) = (z − mean z) / sqrt(var z + ε)``.
SKD_EPS = 1e-6


def promote(logits: Tensor) -> Tensor:
    """Logits in float32 at least (half and bfloat16 are promoted; float64 stays float64)."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def kl(target: Tensor, pred: Tensor, temperature: float = 1.0) -> Tensor:
    """``τ² · KL(softmax(target/τ) ‖ softmax(pred/τ))`` per sample (Hinton et al. 2015)."""
    log_p = F.log_softmax(promote(target) / temperature, dim=-1)
    log_q = F.log_softmax(promote(pred) / temperature, dim=-1)
    return temperature**2 * (log_p.exp() * (log_p - log_q)).sum(-1)


def mse(target: Tensor, pred: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean squared error between logits per sample (temperature does not apply)."""
    return (promote(pred) - promote(target)).pow(2).mean(-1)


def _pearson_distance(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """``1 − Pearson(a, b)`` along ``dim``."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return 1.0 - F.cosine_similarity(a, b, dim=dim, eps=1e-8)


def dist(target: Tensor, pred: Tensor, temperature: float = 1.0) -> Tensor:
    """DIST (Huang et al., NeurIPS 2022): inter-class plus intra-class Pearson distance.

    The inter-class term (correlation of one sample's class probabilities) is per sample.
    The intra-class term correlates each class's probabilities *across the batch*, so it has
    no per-sample form: every sample carries the batch's intra-class value. The mean of the
    returned values is exactly the DIST loss, so every update is exact; the per-sample
    influence under ``dist`` contains that shared batch-level component. On several
    processes the batch is the global one, its rows gathered (``distributed.gather_rows``).
    """
    p = F.softmax(promote(target) / temperature, dim=-1)
    q = F.softmax(promote(pred) / temperature, dim=-1)
    inter = _pearson_distance(p, q, dim=1)
    p_all, q_all = distributed.gather_rows(p), distributed.gather_rows(q)
    intra = _pearson_distance(p_all, q_all, dim=0).mean() if p_all.shape[0] > 1 else p.new_zeros(())
    return temperature**2 * (inter + intra)


def spherical_normalize(logits: Tensor, eps: float = SKD_EPS) -> Tensor:
    """``n(z) = (z − mean_c z) / sqrt(var_c z + ε)`` over the classes of each sample.

    ``logits``: ``[B, C]`` → ``[B, C]``, zero mean and unit population standard deviation per
    row (up to ``ε``, which keeps equal logits, e.g. those of a zero-initialised head, finite:
    they map to zeros with a finite gradient). Every logit vector is put on one sphere of
    radius ``sqrt(C)``, so its magnitude (the model's confidence) is removed. With two classes
    ``n(z) = ±1``: ``(−1, +1)`` when the second logit is larger, whatever the margin.
    """
    z = promote(logits)
    return F.layer_norm(z, z.shape[-1:], eps=eps)  # population variance, no affine part


def skd(target: Tensor, pred: Tensor, temperature: float = 1.0) -> Tensor:
    """Spherical KD (Guo et al. 2020, arXiv 2010.07485), per sample ``[B, C], [B, C] → [B]``:
    ``τ² · KL(softmax(n(target)/τ) ‖ softmax(n(pred)/τ))`` with ``n`` of
    :func:`spherical_normalize`.

    The teacher's and student's confidences (their logits' magnitudes) no longer have to
    match; ``τ`` sets the one confidence both are compared at. With two classes ``n(z) = ±1``
    (up to ``ε``), so ``skd`` only transfers *which* class the teacher prefers, at the fixed
    confidence ``softmax((−1, 1)/τ)``: 0 when both prefer the same class, ``2τ · tanh(1/τ)``
    otherwise. Not defined for regression (:func:`distill_objective` refuses it).
    """
    return kl(spherical_normalize(target), spherical_normalize(pred), temperature)


def distill_objective(name: str, temperature: float, regression: bool = False) -> Objective:
    """The per-sample distillation loss ``kd(target, pred)`` named ``name``.

    Regression tasks (one output) always use ``mse``; ``skd``, which normalises the logits
    over the classes, raises ``ValueError`` for them (as does an unknown ``name``).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    if regression and name == "skd":
        raise ValueError(
            "objective 'skd' normalises the logits over the classes and is not defined for "
            "regression (one output): choose kl or mse (regression distils with mse)"
        )
    fn = {"kl": kl, "mse": mse, "dist": dist, "skd": skd}["mse" if regression else name]
    return lambda target, pred: fn(target, pred, temperature)


#: The label of a sample without one (a transfer-set sample): PyTorch's and Hugging Face's
#: ignore index for classes; NaN for a regression score.
IGNORE_INDEX = -100


def is_labelled(labels: Tensor) -> Tensor:
    """``[B]`` bool: which samples carry a label (not :data:`IGNORE_INDEX`, not NaN)."""
    if labels.is_floating_point():
        return ~torch.isnan(labels)
    return labels != IGNORE_INDEX


def task_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample ``ce(y, logits)``: cross-entropy, or squared error for one output;
    ``[B, C], [B] → [B]``. A sample without a label (:func:`is_labelled`) gives 0 with a zero
    gradient (never NaN)."""
    logits = promote(logits)
    known = is_labelled(labels)
    if logits.shape[-1] == 1:
        target = torch.where(known, labels, torch.zeros_like(labels)).to(logits.dtype)
        return (logits.squeeze(-1) - target).pow(2) * known
    return F.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE_INDEX)
