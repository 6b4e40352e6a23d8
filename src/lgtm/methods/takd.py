"""Teacher Assistant KD (Mirzadeh et al., AAAI 2020): teacher → assistant → student.

Three stages, each vanilla ``kd``: the teacher is fine-tuned (unless given fine-tuned); an
assistant — the pre-trained teacher's first ``ta_layers`` layers (default ⌈(Nt + Ns) / 2⌉),
built as students are — is distilled from it with the student's budget; then the student is
distilled from the frozen assistant. The assistant is saved in ``assistant/``.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import LgtmInputError
from ..plans import TRACKS_PER_RUN, Plan, RunParts, Stage, cacheable_teacher, register_plan
from .base import register
from .kd import KD
from .options import Option


@register("takd")
class TAKD(KD):
    """Each stage's step is ``kd``'s; the run's shape is the ``takd`` plan."""

    plan = "takd"
    options = (
        Option(
            "ta_layers",
            None,
            int,
            "takd: layers of the teacher assistant (the teacher's first N; default "
            "⌈(Nt + Ns) / 2⌉)",
            "N",
            low=1,
            optional=True,
            to_method=False,
        ),
    )


@register_plan("takd")
class TAKDPlan(Plan):
    """``[teacher,] assistant, distill``: the student learns from the assistant."""

    step_method = "kd"

    def build_models(self, teacher: Any, student: Any) -> None:
        """The assistant: the pre-trained teacher's first ``ta_layers`` layers."""
        from ..models import student_from_teacher

        n_t, n_s = teacher.config.num_hidden_layers, student.config.num_hidden_layers
        layers = self.config.ta_layers or math.ceil((n_t + n_s) / 2)
        if not 1 <= layers <= n_t:
            raise LgtmInputError(
                f"an assistant of {layers} layers is impossible: the teacher has {n_t} "
                f"(choose 1..{n_t})",
                field="ta_layers",
            )
        self.assistant = student_from_teacher(teacher, layers)

    def prepare(self, parts: RunParts) -> None:
        """The assistant on the device, with its own optimizer and a student's schedule."""
        acc = parts.acc
        self.assistant = acc.prepare_model(self.assistant, evaluation_mode=True)
        self.optimizer, self.schedule = parts.make_optimizer(
            self.assistant, self.config.lr, parts.distill_total
        )

    def stages(self, parts: RunParts, method: Any) -> list[Stage]:
        """Teacher → assistant (kd), then assistant → student (kd)."""
        out = [parts.teacher_stage()] if self.fine_tunes_teacher(type(method)) else []
        total = parts.distill_total
        eval_d, save_d = parts.periods(total)
        assistant_kd = parts.make_method(
            "kd",
            teacher=parts.teacher,
            student=self.assistant,
            student_optimizer=self.optimizer,
        )
        out.append(
            Stage(
                "assistant",
                assistant_kd,
                total,
                eval_d,
                save_d,
                evaluate_teacher=False,
                evaluate_student=True,
                schedulers=[self.schedule],
                trains="assistant",
                learns_from="teacher",
                label="teacher assistant (kd from the teacher)",
                teacher_model=parts.teacher,
                student_model=self.assistant,
                uses_transfer=True,
                frozen_teacher=cacheable_teacher(assistant_kd, parts.teacher),
            )
        )
        out.append(
            Stage(
                "distill",
                method,
                total,
                eval_d,
                save_d,
                evaluate_teacher=False,
                evaluate_student=True,
                schedulers=[parts.student_schedule],
                learns_from="assistant",
                label=f"distill ({self.config.method})",
                teacher_model=self.assistant,
                track_every=self.track_every(total) if method.computes_influence else 0,
                uses_transfer=True,
                frozen_teacher=cacheable_teacher(method, self.assistant),
            )
        )
        return out

    def track_every(self, total: int) -> int:
        """Steps between two logs of the tracked samples' influence (``--student-weighting
        influence``), as in the ``single`` plan."""
        return self.config.track_steps or max(1, math.ceil(total / TRACKS_PER_RUN))

    def distill_teacher(self, teacher: Any) -> Any:
        """The student's teacher: the assistant."""
        return self.assistant

    def finish(self, metrics: dict[str, Any], state: Any, stages: list[Stage]) -> None:
        """The distill stage's "teacher" is the assistant: report both."""
        metrics["assistant"] = metrics["teacher"]
        metrics["teacher"] = (
            state.teacher_history[-1]["teacher_eval"]
            if state.teacher_history
            else state.frozen_evals.get("assistant")
        )

    def saved_models(self, parts: RunParts) -> dict[str, Any]:
        """``assistant/`` beside the student and the teacher."""
        return {"assistant": parts.acc.unwrap_model(self.assistant)}
