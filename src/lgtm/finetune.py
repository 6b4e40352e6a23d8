"""Stage one of vanilla KD as a stepper: the teacher fine-tuned on its labels alone."""

from __future__ import annotations

from typing import Any

import torch

from lgtm import distributed
from lgtm.objectives import task_loss


class TeacherFinetune:
    """Plain task-loss training of the teacher alone (``θt ← θt − ηt ∇θt mean ce(y, t)``)."""

    needs_feedback = False
    trains_teacher = True

    def __init__(self, teacher: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.teacher, self.optimizer = teacher, optimizer
        self.params = [p for p in teacher.parameters() if p.requires_grad]

    def step(
        self, batch: dict, feedback_batch: dict | None = None, probe: dict | None = None
    ) -> dict[str, Any]:
        """One cross-entropy (regression: squared error) step of the teacher on ``batch``
        (tensors ``[B, L]``, labels ``[B]``); returns ``teacher_loss`` and ``[B, C]`` logits."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", distributed.PADDING)}
        logits = self.teacher(**inputs).logits
        loss = task_loss(logits, batch["labels"]).mean()
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = distributed.average(grads, distributed.samples_in(batch))  # the global batch's
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        for p in self.params:
            p.grad = None
        return {"teacher_loss": loss.item(), "teacher_logits": logits.detach()}
