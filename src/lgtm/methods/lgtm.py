"""LGTM (Ren et al., ACL 2023): the teacher learns from each sample's distillation influence.

One step, as in ALGORITHMS.md:

1. ``t = T(x; θt)``, keeping the graph.
2. ``g_s = ∇θs Ls(θs; t.detach())``; look-ahead ``θs' = θs − ηs · step(g_s)``.
3. ``g_e = ∇θs' ce(y^e, S(x^e; θs'))``.
4. ``ε = r / ‖g_e‖``, ``θs± = θs ± ε g_e``; student forwards at ``θs±`` without a graph.
5. ``w_i = [kd(t_i, s+_i) − kd(t_i, s−_i)] / (2ε)``, differentiable in θt through ``t``.
6. ``Lt = L_aux − ηs · α · mean_i w_i``; one teacher backward, one optimizer step.
7. Teacher forward with the new θt (no graph); the real student step on ``Ls``.

Steps 2–5 are shared with every distilling method (``methods/influence.py``); with
``student_weighting="influence"`` step 7 weighs each sample's distillation term by
``λ_i ∝ max(w_i, 0)``, the ``w_i`` of step 5 (before the teacher's update).
"""

from __future__ import annotations

from typing import Any

import torch

from ..lookahead import current_lr
from .base import AUX_WORDS, Batch, Method, register
from .influence import StudentInfluence

Tensor = torch.Tensor


@register("lgtm")
class LGTM(StudentInfluence, Method):
    """LGTM with the finite-difference approximation of the meta-gradient."""

    needs_feedback = True
    computes_influence = True
    unread = {}  # every shared option acts
    teacher_loss_words = (
        AUX_WORDS + " (the influence term it also follows, measured on a feedback batch, is not "
        "in this curve)"
    )

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        t, s, g_e = self.look_ahead_feedback(batch, feedback_batch)  # 1-3
        w = self.influence(batch, t, g_e)  # 4-5
        probed = self.probe(probe, g_e) if probe is not None else {}
        del g_e
        aux = self.teacher_aux_loss(t, s, batch["labels"])  # 6
        lt = aux - self.scale() * w.mean()
        self.apply(self.teacher_optimizer, self.teacher_params, self.grad_teacher(lt))
        return self.finish(batch, t, s, aux, w, probed)  # 7

    def look_ahead_feedback(
        self, batch: Batch, feedback_batch: Batch | None
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Steps 1–3: ``t`` (with graph), ``s`` (with graph, reused in step 7) and ``g_e``."""
        if feedback_batch is None:
            raise ValueError(f"{self.name} needs a feedback batch")
        t = self.teacher_logits(batch)
        s = self.student_logits(batch)
        loss = self.student_loss(s, t.detach(), batch["labels"])
        return t, s, self.feedback_direction(loss, feedback_batch)

    def finish(
        self, batch: Batch, t: Tensor, s: Tensor, aux: Tensor, w: Tensor, probed: dict
    ) -> dict[str, Any]:
        """Step 7, the real student step (its distillation term weighted by ``λ`` from ``w``
        with ``student_weighting="influence"``), and the statistics of this step."""
        weights, found = None, {"influence": w.detach(), **probed}
        if self.student_weighting == "influence":
            weights, found = self.weigh(w, found)
        student_loss = self.real_student_step(batch, s, weights)
        return {
            "student_loss": student_loss,
            "teacher_loss": aux.item(),
            "student_logits": s.detach(),
            "teacher_logits": t.detach(),
            **found,
        }

    def scale(self) -> float:
        """The factor of ``mean_i w_i`` in the teacher's objective: ``ηs · α`` by the
        derivation, or ``ηt · αt`` as the released code has it."""
        weight = self.alpha if self.influence_objective == "student" else self.teacher_alpha
        if self.influence_step == "student_lr":
            return current_lr(self.student_optimizer) * weight
        return current_lr(self.teacher_optimizer) * weight
