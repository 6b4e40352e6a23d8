"""LGTM without the finite difference (the paper's ablation): the meta-gradient by autograd.

Steps 4–5 of LGTM become ``W = g_eᵀ ∇θs Σ_i c_i kd(t_i, S(x_i; θs))`` with ``create_graph``
and ``c_i = −ηs·α / B``, so that ``W = −ηs · α · mean_i w_i`` and one backward of
``L_aux + W`` gives the teacher's gradient and, as ``∂W/∂c_i``, each sample's exact
influence ``w_i = g_eᵀ ∇θs kd_i``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Batch, register
from .lgtm import LGTM


@register("lgtm-exact")
class LGTMExact(LGTM):
    """LGTM with the exact mixed second derivative from double backward."""

    needs_double_backward = True

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        t, s, g_e = self.look_ahead_feedback(batch, feedback_batch)
        probed = self.probe(probe, g_e) if probe is not None else {}  # by finite difference
        kd = self.kd(s, t) if self.influence_objective == "teacher" else self.kd(t, s)
        c = torch.full_like(kd, -self.scale() / kd.shape[0]).requires_grad_()
        g_kd = self.grad_student((c * kd).sum(), create_graph=True, retain_graph=True, local=True)
        meta = sum((g * e).sum() for g, e in zip(g_kd, g_e, strict=True) if g is not None)
        aux = self.teacher_aux_loss(t, s, batch["labels"])
        *grads, w = torch.autograd.grad(
            aux + meta, [*self.teacher_params, c], allow_unused=True, retain_graph=True
        )
        self.apply(self.teacher_optimizer, self.teacher_params, self.average(grads))
        del g_kd, meta, g_e
        return self.finish(batch, t, s, aux, w, probed)
