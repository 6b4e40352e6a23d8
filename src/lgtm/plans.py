"""A run is a plan: a list of stages, each a piece of data the loop runs.

A :class:`Stage` says which models it trains, with which stepper (a teaching method, or the
teacher's fine-tuning), for how many steps, what it is scored on and which learning-rate
schedules it advances. A plan, registered by name, turns a run's parts (:class:`RunParts`:
configuration, models, optimizers) into its stages; a method names its plan in
``Method.plan``. This module holds the plans every method shares:

* ``single`` — one ``distill`` stage; when the method's teacher is frozen
  (``trains_teacher = False``: kd, pkd) and not given fine-tuned, a ``teacher`` stage
  fine-tunes it first (stage one of vanilla KD).

Methods with a run shape of their own register their plan beside their step
(``methods/takd.py``, ``methods/rco.py``). The idea is torchdistill's multi-stage
configuration, without its hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgtm.errors import LgtmInputError

EVALS_PER_RUN = 5
TRACKS_PER_RUN = 50  # influence of the tracked samples, computed this many times per run
#: Seeds of the per-stage batch orders (a stage's ``stream``): fixed, so that resume and the
#: checkpoints of earlier versions redraw the same batches.
STREAMS = {"teacher": 1, "distill": 2, "assistant": 3}


@dataclass
class Stage:
    """One stretch of training, run by ``loop.run_stage``."""

    name: str  # "teacher", "distill", or a plan's own ("assistant", "distill-2")
    stepper: Any  # .step(batch, feedback_batch, probe); .needs_feedback, .trains_teacher
    total: int  # steps
    eval_every: int
    save_every: int
    evaluate_teacher: bool  # the stage trains the teacher: score it at each evaluation
    evaluate_student: bool  # ...the student (or the model in ``student_model``)
    schedulers: list = field(default_factory=list)  # advanced after every step
    trains: str = "student"  # what it trains, in words (metrics.json "stages")
    learns_from: str = "teacher"  # from what
    label: str = ""  # the progress bar's
    track_every: int = 0  # 0: no tracked-sample influence in this stage
    # The models of this stage when they are not the run's teacher and student (takd's
    # assistant learns from the teacher, then teaches the student).
    teacher_model: Any = None
    student_model: Any = None
    # rco: its distillation is K stages over one pass of the data (batch index and reported
    # step continue from ``offset``), each loading its anchor first (``on_start``); its
    # stage one saves the teacher at the steps of ``snapshots`` (step → folder).
    offset: int = 0
    stream: str | None = None  # the batch stream (a STREAMS key); default: the stage's name
    on_start: Callable[[], None] | None = None
    snapshots: dict[int, Path] | None = None
    # Distillation stages also take the transfer set's samples (a teacher labels them); the
    # teacher's fine-tuning, which learns from labels alone, does not.
    uses_transfer: bool = False
    # A teacher that no longer learns and that the stepper reads only through its logits (and
    # pkd's [CLS] states): the loop computes them once and hands them over (teacher_cache).
    frozen_teacher: Any = None


@dataclass
class RunParts:
    """What a plan builds stages from: the run's settings, models and optimizers."""

    config: Any  # RunConfig
    acc: Any  # accelerate.Accelerator
    method_cls: type
    teacher: Any
    student: Any
    out: Path
    per_epoch: int  # training batches per epoch
    teacher_total: int  # steps of the teacher's fine-tuning (stage one)
    distill_total: int  # steps of distillation
    teacher_optimizer: Any
    student_optimizer: Any
    teacher_schedule: Any
    student_schedule: Any
    make_method: Callable[..., Any]  # lgtm.make_method with the run's options
    make_optimizer: Callable[[Any, float, int], tuple[Any, Any]]  # model, lr, steps
    load_weights: Callable[[Any, Path], None]  # a saved model folder into a model
    extra: dict[str, Any] = field(default_factory=dict)  # a plan's own models

    def periods(self, total: int) -> tuple[int, int]:
        """Evaluate and checkpoint every ... steps of a stage of ``total`` steps."""
        every = self.config.eval_steps or max(1, math.ceil(total / EVALS_PER_RUN))
        return every, self.config.save_steps or every

    def teacher_stage(self, snapshots: dict[int, Path] | None = None) -> Stage:
        """Stage one of kd: the teacher fine-tuned on the labels alone."""
        from lgtm.finetune import TeacherFinetune

        eval_t, save_t = self.periods(self.teacher_total)
        return Stage(
            "teacher",
            TeacherFinetune(self.teacher, self.teacher_optimizer),
            self.teacher_total,
            eval_t,
            save_t,
            evaluate_teacher=True,
            evaluate_student=False,
            schedulers=[self.teacher_schedule],
            trains="teacher",
            learns_from="labels",
            label="teacher fine-tuning (stage one)",
            snapshots=snapshots,
        )


class Plan:
    """A run's shape. Subclasses registered with :func:`register_plan`; hooks in run order."""

    name = ""
    #: The registered method whose ``step`` the distillation takes (None: the run's method).
    step_method: str | None = None

    def __init__(self, config: Any) -> None:
        self.config = config

    def check(self, method_cls: type) -> None:
        """Refuse settings this plan cannot honour (:class:`LgtmInputError`), before any
        model is loaded."""

    def build_models(self, teacher: Any, student: Any) -> None:
        """Models of the plan's own, built right after the teacher and student."""

    def prepare(self, parts: RunParts) -> None:
        """Put the plan's own models and optimizers on ``parts.acc`` (into ``parts.extra``)."""

    def fine_tunes_teacher(self, method_cls: type) -> bool:
        """True when the teacher is fine-tuned in a stage of its own first."""
        frozen = method_cls.needs_teacher and not method_cls.trains_teacher
        return frozen and not self.config.teacher_finetuned

    def distill_teacher(self, teacher: Any) -> Any:
        """The model the distillation's method learns from (default: the run's teacher)."""
        return teacher

    def stages(self, parts: RunParts, method: Any) -> list[Stage]:
        """The stages, in order; ``method`` is the distillation's teaching method."""
        raise NotImplementedError

    def finish(self, metrics: dict[str, Any], state: Any, stages: list[Stage]) -> None:
        """Adjust ``metrics.json``'s content to the plan (what a stage's "teacher" was)."""

    def saved_models(self, parts: RunParts) -> dict[str, Any]:
        """Models saved beside ``student/`` and ``teacher/``: folder name → model."""
        return {}


PLANS: dict[str, type[Plan]] = {}


def register_plan(name: str) -> Callable[[type[Plan]], type[Plan]]:
    """Class decorator: make a plan available to methods under ``name``."""

    def add(cls: type[Plan]) -> type[Plan]:
        cls.name = name
        PLANS[name] = cls
        return cls

    return add


def make_plan(method_cls: type, config: Any) -> Plan:
    """The plan ``method_cls.plan`` for ``config``, its settings checked."""
    plan = PLANS[method_cls.plan](config)
    plan.check(method_cls)
    return plan


@register_plan("single")
class Single(Plan):
    """One distillation stage, after the teacher's fine-tuning when its teacher is frozen."""

    def stages(self, parts: RunParts, method: Any) -> list[Stage]:
        """``[teacher,] distill``."""
        out = [parts.teacher_stage()] if self.fine_tunes_teacher(type(method)) else []
        total, config = parts.distill_total, parts.config
        eval_d, save_d = parts.periods(total)
        track = config.track_steps or max(1, math.ceil(total / TRACKS_PER_RUN))
        schedulers = [parts.student_schedule]
        if method.trains_teacher:
            schedulers.append(parts.teacher_schedule)
        trains = "student and teacher" if method.trains_teacher else "student"
        out.append(
            Stage(
                "distill",
                method,
                total,
                eval_d,
                save_d,
                evaluate_teacher=method.trains_teacher,
                evaluate_student=True,
                schedulers=schedulers,
                trains=trains,
                learns_from="teacher" if method.needs_teacher else "labels",
                label=f"distill ({config.method})",
                track_every=track if method.computes_influence else 0,
                uses_transfer=method.needs_teacher,
                frozen_teacher=cacheable_teacher(method, parts.teacher),
            )
        )
        return out


def cacheable_teacher(stepper: Any, teacher: Any) -> Any:
    """``teacher`` when ``stepper`` learns from it frozen and through outputs that can be
    cached (its logits, pkd's ``[CLS]`` states), else None."""
    frozen = stepper.needs_teacher and not stepper.trains_teacher
    return teacher if frozen and stepper.teacher_outputs_cacheable else None


def refuse_unless(condition: bool, message: str, field: str) -> None:
    """Raise :class:`LgtmInputError` with ``message`` for ``field`` unless ``condition``."""
    if not condition:
        raise LgtmInputError(message, field=field)
