"""Route-Constrained Optimization (Jin et al., ICCV 2019): the student follows the teacher's route.

The teacher is fine-tuned while ``rco_anchors`` = K snapshots of it are saved, evenly spaced,
the last the final teacher. The student's budget is split into K parts; part ``k`` is vanilla
``kd`` from anchor ``k`` (easy targets first, the final teacher's last). The anchors are kept
(``anchors/``) only with ``--keep-checkpoints``.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import rundir
from ..errors import LgtmInputError
from ..plans import Plan, RunParts, Stage, cacheable_teacher, register_plan
from .base import register
from .kd import KD
from .options import Option


@register("rco")
class RCO(KD):
    """Each part's step is ``kd``'s; the run's shape is the ``rco`` plan."""

    plan = "rco"
    options = (
        Option(
            "rco_anchors",
            4,
            int,
            "rco: snapshots of the teacher's fine-tuning, evenly spaced, the last the final "
            "teacher; the student's budget is split into as many parts, one per anchor",
            "K",
            low=1,
            to_method=False,
        ),
    )


def anchor_steps(total: int, k: int) -> dict[int, int]:
    """Anchor ``j`` (1..k) is the teacher after step ``round(j · total / k)`` of its
    fine-tuning. Raises :class:`LgtmInputError` when it has fewer steps than anchors."""
    if k > total:
        raise LgtmInputError(
            f"{k} anchors need at least {k} steps of the teacher's fine-tuning, it has {total}",
            field="rco_anchors",
        )
    return {j: round(j * total / k) for j in range(1, k + 1)}


@register_plan("rco")
class RCOPlan(Plan):
    """``teacher`` (saving K anchors), then ``distill-1`` … ``distill-K``."""

    step_method = "kd"

    def check(self, method_cls: type) -> None:
        """The route is the teacher's fine-tuning: a fine-tuned teacher has none."""
        if self.config.teacher_finetuned:
            raise LgtmInputError(
                "rco follows the teacher's route while it is fine-tuned: drop --teacher-finetuned",
                field="teacher_finetuned",
            )

    def prepare(self, parts: RunParts) -> None:
        """One frozen model that each part loads its anchor into."""
        acc = parts.acc
        self.anchor = acc.prepare_model(
            copy.deepcopy(acc.unwrap_model(parts.teacher)), evaluation_mode=True
        )

    def distill_teacher(self, teacher: Any) -> Any:
        """The student's teacher: the anchor model."""
        return self.anchor

    def stages(self, parts: RunParts, method: Any) -> list[Stage]:
        """The teacher's fine-tuning, then the student's budget in K parts."""
        k_parts, total = self.config.rco_anchors, parts.distill_total
        folders = {k: parts.out / rundir.ANCHORS / f"anchor-{k}" for k in range(1, k_parts + 1)}
        anchors = anchor_steps(parts.teacher_total, k_parts)
        out = [parts.teacher_stage({s: folders[k] for k, s in anchors.items()})]
        eval_d, save_d = parts.periods(total)
        sizes = [total // k_parts + (j < total % k_parts) for j in range(k_parts)]
        model = parts.acc.unwrap_model(self.anchor)
        for k, size in enumerate(sizes, start=1):
            out.append(
                Stage(
                    f"distill-{k}",
                    method,
                    size,
                    eval_d,
                    save_d,
                    evaluate_teacher=False,
                    evaluate_student=True,
                    schedulers=[parts.student_schedule],
                    learns_from=f"teacher anchor {k}",
                    label=f"distill ({self.config.method})",
                    teacher_model=self.anchor,
                    offset=sum(sizes[: k - 1]),
                    stream="distill",
                    on_start=lambda folder=folders[k]: parts.load_weights(model, folder),
                    uses_transfer=True,
                    frozen_teacher=cacheable_teacher(method, self.anchor),
                )
            )
        return out

    def finish(self, metrics: dict[str, Any], state: Any, stages: list[Stage]) -> None:
        """Each part's "teacher" was an anchor: report the final teacher, and the route."""
        metrics["teacher"] = state.teacher_history[-1]["teacher_eval"]
        metrics["anchors"] = [state.frozen_evals.get(s.name) for s in stages[1:]]
