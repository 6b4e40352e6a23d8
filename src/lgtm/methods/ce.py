"""The student alone: fine-tuned on its labels with no teacher (the reference of BASELINES.md).

``θs ← θs − ηs ∇θs mean ce(y, S(x))``, with the same budget, optimizer and schedule as every
distillation method, so that a distillation result can be read against it. ``teacher`` and
``teacher_optimizer`` may be ``None`` (a teacher given anyway is never run); ``alpha``,
``teacher_alpha``, ``temperature`` and ``objective`` are accepted and unused (a run that sets
them is refused, ``Method.unread``).
"""

from __future__ import annotations

from typing import Any

from ..objectives import task_loss
from .base import LGTM_OPTIONS, Batch, Method, register


@register("ce")
class CE(Method):
    """Plain fine-tuning of the student on ``L = mean ce(y, s)`` (no distillation)."""

    needs_teacher = False
    trains_teacher = False
    unread = {
        **LGTM_OPTIONS,
        **dict.fromkeys(
            ("alpha", "teacher_alpha", "temperature", "objective"), "it distils nothing"
        ),
    }
    student_loss_words = "cross-entropy on the labels"

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        """One student step on ``mean ce(y, S(x))``; ``batch`` tensors are ``[B, L]``, labels
        ``[B]``. Returns ``student_loss`` and the ``[B, C]`` ``student_logits``."""
        s = self.student_logits(batch)
        loss = self.labelled_mean(task_loss(s, batch["labels"]), batch["labels"])
        self.apply(self.student_optimizer, self.student_params, self.grad_student(loss))
        return {"student_loss": loss.item(), "student_logits": s.detach()}
