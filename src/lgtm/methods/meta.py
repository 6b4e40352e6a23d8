"""Meta distillation (MetaDistil, Zhou et al. ACL 2022), with the exact second-order gradient.

θs' = θs − ηs ∇θs Ls(θs, θt)                  pilot update, kept in the graph to θt
θt  ← θt − ηt ∇θt ce(y^e, S(x^e; θs'))         the teacher learns only from the feedback
θs  ← θs − ηs ∇θs Ls(θs, θt)                  the real student step, updated teacher

The teacher's gradient is taken in two backwards, ``v = ∇θs' ce(y^e, S(x^e; θs'))`` and then
``∇θt (v · θs')``: the same chain rule, in a form that stays exact when the batch and the
feedback batch are spread over several processes (``lgtm.distributed``).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import distributed
from ..lookahead import look_ahead
from ..objectives import task_loss
from .base import LGTM_OPTIONS, Batch, Method, register
from .influence import StudentInfluence


@register("meta")
class Meta(StudentInfluence, Method):
    """The teacher's update back-propagates through the student's pilot update."""

    needs_feedback = True
    needs_double_backward = True
    unread = {
        **{k: why for k, why in LGTM_OPTIONS.items() if k != "lookahead"},
        "teacher_alpha": "its teacher learns from the feedback alone",
    }
    teacher_loss_words = (
        "the teacher's loss: the looked-ahead student's cross-entropy on a feedback batch"
    )

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        if feedback_batch is None:
            raise ValueError("meta distillation needs a feedback batch")
        t = self.teacher_logits(batch)
        s = self.student_logits(batch)
        weights, found = None, {}  # student_weighting="influence": λ before the teacher moves
        if self.student_weighting == "influence":
            uniform = self.student_loss(s, t.detach(), batch["labels"])
            weights, found = self.student_weights(batch, uniform, t, feedback_batch, probe)
        pilot_grads = self.grad_student(self.student_loss(s, t, batch["labels"]), create_graph=True)
        pilot = look_ahead(
            self.student_params,
            pilot_grads,
            self.student_optimizer,
            self.lookahead,
            create_graph=True,
        )
        feedback_loss = task_loss(
            self.student_logits(feedback_batch, pilot), feedback_batch["labels"]
        )
        feedback_loss = feedback_loss.mean()
        v = self.average(
            torch.autograd.grad(feedback_loss, pilot, retain_graph=True, allow_unused=True),
            samples=distributed.samples_in(feedback_batch),
        )
        through_pilot = sum((p * g).sum() for p, g in zip(pilot, v, strict=True) if g is not None)
        self.apply(
            self.teacher_optimizer,
            self.teacher_params,
            distributed.sum_up(self.grad_teacher(through_pilot, local=True, retain_graph=True)),
        )
        del pilot, pilot_grads
        student_loss = self.real_student_step(batch, s, weights)
        return {
            "student_loss": student_loss,
            # the feedback batch's global mean: the loop weighs by the step's batch
            "teacher_loss": distributed.global_mean(
                feedback_loss.item(), distributed.samples_in(feedback_batch)
            ),
            "student_logits": s.detach(),
            "teacher_logits": t.detach(),
            **found,
        }
