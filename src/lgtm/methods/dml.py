"""Deep Mutual Learning (Zhang et al., CVPR 2018): two networks teach each other from the start.

Each step, in this order (BASELINES.md, ``dml``), with unweighted sums as in the paper:

    Lt = mean ce(y, t) + mean kd(s.detach(), t)      update the teacher
    Ls = mean ce(y, s) + mean kd(t', s)              t' = T(x) after the teacher's update

``online`` is the weighted form (α, αt); here ``alpha`` and ``teacher_alpha`` are accepted and
unused (a run that sets them is refused), ``temperature`` and ``objective`` define ``kd`` as
everywhere.
"""

from __future__ import annotations

from typing import Any

import torch

from ..objectives import task_loss
from .base import LGTM_OPTIONS, Batch, Method, register
from .influence import StudentInfluence

Tensor = torch.Tensor


@register("dml")
class DML(StudentInfluence, Method):
    """Teacher step on ``Lt``, then student step on ``Ls`` with the updated teacher."""

    unread = {
        **LGTM_OPTIONS,
        **dict.fromkeys(("alpha", "teacher_alpha"), "its losses are unweighted sums"),
    }
    student_loss_words = "cross-entropy on the labels + a distillation term"
    teacher_loss_words = (
        "the teacher's loss: cross-entropy on the labels + its distance to the student"
    )

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        """One mutual step; ``batch`` tensors ``[B, L]``, labels ``[B]``. Returns both losses
        and the ``[B, C]`` logits of this batch before the updates."""
        labels = batch["labels"]
        t = self.teacher_logits(batch)
        s = self.student_logits(batch)  # its graph also serves the student's step
        weights, found = None, {}  # student_weighting="influence": λ before the teacher moves
        if self.student_weighting == "influence":
            uniform = self.mutual_loss(s, t.detach(), labels)
            weights, found = self.student_weights(batch, uniform, t, feedback_batch, probe)
        teacher_loss = self.mutual_loss(t, s.detach(), labels)
        self.apply(self.teacher_optimizer, self.teacher_params, self.grad_teacher(teacher_loss))
        with torch.no_grad():
            t_new = self.teacher_logits(batch)
        student_loss = self.mutual_loss(s, t_new, labels, weights)
        self.apply(self.student_optimizer, self.student_params, self.grad_student(student_loss))
        return {
            "student_loss": student_loss.item(),
            "teacher_loss": teacher_loss.item(),
            "student_logits": s.detach(),
            "teacher_logits": t.detach(),
            **found,
        }

    def mutual_loss(
        self, own: Tensor, peer: Tensor, labels: Tensor, weights: Tensor | None = None
    ) -> Tensor:
        """``mean_labelled ce(y, own) + mean kd(peer, own)``: a network's task loss plus its
        distance to its (detached) peer; ``own``, ``peer`` ``[B, C]``, ``labels`` ``[B]``, returns a
        scalar (Zhang et al. 2018: ``L_Θ1 = L_C1 + D_KL(p2 ‖ p1)``, τ-softened here). With
        ``weights`` ``λ`` ``[B]`` the distance is ``Σ_i λ_i kd_i`` (the student's weighting)."""
        ce = self.labelled_mean(task_loss(own, labels), labels)
        kd = self.kd(peer.detach(), own)
        return ce + (kd.mean() if weights is None else self.weighted_sum(kd, weights))
