"""Online distillation: teacher and student learn at once, each towards the other."""

from __future__ import annotations

from typing import Any

from .base import AUX_WORDS, LGTM_OPTIONS, Batch, Method, register
from .influence import StudentInfluence


@register("online")
class Online(StudentInfluence, Method):
    """Teacher step on ``L_aux``, then student step on ``Ls`` with the updated teacher."""

    teacher_loss_words = AUX_WORDS
    unread = LGTM_OPTIONS

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        labels = batch["labels"]
        t = self.teacher_logits(batch)
        s = self.student_logits(batch)  # its graph also serves the real student step
        weights, found = None, {}  # student_weighting="influence": λ before the teacher moves
        if self.student_weighting == "influence":
            uniform = self.student_loss(s, t.detach(), labels)
            weights, found = self.student_weights(batch, uniform, t, feedback_batch, probe)
        teacher_loss = self.teacher_aux_loss(t, s, labels)
        self.apply(self.teacher_optimizer, self.teacher_params, self.grad_teacher(teacher_loss))
        student_loss = self.real_student_step(batch, s, weights)
        return {
            "student_loss": student_loss,
            "teacher_loss": teacher_loss.item(),
            "student_logits": s.detach(),
            "teacher_logits": t.detach(),
            **found,
        }
