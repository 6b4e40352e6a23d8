"""Per-sample distillation objectives against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from lgtm.objectives import dist, distill_objective, kl, mse, task_loss


def test_kl_hand_computed():
    t = torch.tensor([[math.log(0.5), math.log(0.5)]], dtype=torch.float64)
    s = torch.tensor([[math.log(0.25), math.log(0.75)]], dtype=torch.float64)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl(t, s).item() == pytest.approx(expected, rel=1e-12)
    # τ² scaling and softening: τ = 2 divides the logits by 2
    assert kl(t, s, 2.0).item() == pytest.approx(4 * kl(t / 2, s / 2).item(), rel=1e-12)


def test_mse_per_sample():
    t = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    s = torch.tensor([[1.0, 4.0], [3.0, 1.0]])
    assert mse(t, s).tolist() == [2.0, 5.0]


def test_dist_against_scipy_pearson():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    p = np.exp(t) / np.exp(t).sum(1, keepdims=True)
    q = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    inter = np.array([1 - pearsonr(p[i], q[i])[0] for i in range(6)])
    intra = np.mean([1 - pearsonr(p[:, c], q[:, c])[0] for c in range(4)])
    got = dist(torch.tensor(t), torch.tensor(s)).numpy()
    np.testing.assert_allclose(got, inter + intra, rtol=1e-9)
    # the mean of the per-sample values is the DIST loss
    assert got.mean() == pytest.approx(inter.mean() + intra, rel=1e-9)


def test_regression_forces_mse_and_task_loss():
    fn = distill_objective("kl", 2.0, regression=True)
    t, s = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [2.5]])
    assert fn(t, s).tolist() == [1.0, 0.25]
    assert task_loss(s, torch.tensor([1.0, 2.0])).tolist() == [1.0, 0.25]
    ce = task_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1]))
    assert ce.item() == pytest.approx(-math.log(0.75), rel=1e-6)


def test_unknown_objective():
    with pytest.raises(ValueError, match="kl, mse, dist"):
        distill_objective("cosine", 1.0)
