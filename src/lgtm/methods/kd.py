"""Vanilla knowledge distillation, stage two: a frozen teacher, the student trained on ``Ls``.

Stage one (fine-tuning the teacher with ``ce``) is a plain training run driven by the loop.
With ``student_weighting="influence"`` the distillation term of ``Ls`` is ``Σ_i λ_i kd_i``, the
``λ`` from each sample's influence on a feedback batch (``methods/influence.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Batch, Method, register
from .influence import StudentInfluence


@register("kd")
class KD(StudentInfluence, Method):
    """``θs ← θs − ηs ∇θs Ls(θs; T(x))`` with the teacher frozen."""

    trains_teacher = False
    teacher_outputs_cacheable = True

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        with torch.no_grad():
            t = self.teacher_logits(batch)
        s = self.student_logits(batch)
        loss = self.student_loss(s, t, batch["labels"])
        weights, found = self.student_weights(batch, loss, t, feedback_batch, probe)
        if weights is not None:
            loss = self.student_loss(s, t, batch["labels"], weights)
        self.apply(self.student_optimizer, self.student_params, self.grad_student(loss))
        return {
            "student_loss": loss.item(),
            "student_logits": s.detach(),
            "teacher_logits": t,
            **found,
        }
