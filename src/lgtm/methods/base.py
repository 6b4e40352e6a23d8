"""The interface every teaching method implements, and the pieces they share.

A method is one class registered by name. ``step(batch, feedback_batch)`` performs one
training step: the teacher's update where the method has one, then the real student update,
both through the optimizers given at construction. The loop around it knows nothing else.

Notation follows ALGORITHMS.md: ``t = T(x; θt)``, ``s = S(x; θs)``,
``Ls = α · mean kd(t, s) + (1 − α) · mean ce(y, s)``,
``L_aux = αt · mean kd'(s, t) + (1 − αt) · mean ce(y, t)`` with ``kd'(s, t) = kd(s.detach(), t)``.
With ``student_weighting="influence"`` the mean of ``Ls``'s distillation term becomes
``Σ_i λ_i kd(t_i, s_i)`` (``methods/influence.py``).

A method that teaches without a teacher (``ce``, the student alone) sets ``needs_teacher =
False``; only such a method accepts ``teacher=None``.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch.func import functional_call

from .. import distributed
from ..objectives import distill_objective, is_labelled, task_loss
from .options import SHARED, Option

Tensor = torch.Tensor
Batch = Mapping[str, Tensor]

REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make a method available to ``make_method`` under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        import inspect

        accepted = inspect.signature(cls.__init__).parameters
        missing = [o.name for o in cls.options if o.to_method and o.name not in accepted]
        if missing:  # a mistake in the method's file: say so when it is imported, not mid-run
            raise TypeError(
                f"method {name!r} declares options {missing} that its __init__ does not take: "
                "add them as keyword arguments, or declare them with to_method=False"
            )
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


#: A batch's key for the frozen teacher's logits ``[B, C]`` when the loop has them cached.
CACHED_TEACHER = "teacher_logits"
#: ...and for its ``[CLS]`` states ``[B, K, H]`` after ``Method.cached_teacher_layers`` (pkd's).
CACHED_TEACHER_CLS = "teacher_cls"


#: The shared options only LGTM reads (``Method.unread`` of the other methods).
LGTM_OPTIONS = {
    "fd_radius": "only lgtm's influence takes a finite difference",
    "lookahead": "only lgtm, lgtm-exact and meta look ahead",
    "influence_objective": "only lgtm and lgtm-exact compute an influence",
    "influence_step": "only lgtm and lgtm-exact compute an influence",
}


def model_inputs(batch: Batch) -> dict[str, Tensor]:
    """The batch without its labels (the models must not compute a loss of their own),
    without cached teacher outputs and without a stand-in's mark (``distributed.PADDING``)."""
    return {
        k: v
        for k, v in batch.items()
        if k not in ("labels", CACHED_TEACHER, CACHED_TEACHER_CLS, distributed.PADDING)
    }


class Method:
    """One way of teaching a student: holds both models, their optimizers and the options."""

    name: ClassVar[str] = ""
    needs_feedback: ClassVar[bool] = False  # step() needs a feedback batch
    trains_teacher: ClassVar[bool] = True  # step() updates the teacher
    computes_influence: ClassVar[bool] = False  # step() returns per-sample "influence"
    needs_double_backward: ClassVar[bool] = False  # True: second-order gradients (eager attention)
    needs_teacher: ClassVar[bool] = True  # False: teacher=None is accepted (and ignored)
    #: True: the student's loss has a distillation term (``influence.StudentInfluence``), which
    #: ``student_weighting="influence"`` weighs per sample; the others refuse that option.
    distills: ClassVar[bool] = False
    #: True: with a frozen teacher, step() reads the teacher only through
    #: :meth:`teacher_logits` and the ``[CLS]`` states after ``cached_teacher_layers``, so the
    #: loop may give them cached (kd and its stages, pkd).
    teacher_outputs_cacheable: ClassVar[bool] = False
    #: The teacher layers (indices of ``output_hidden_states``) whose ``[CLS]`` states step()
    #: reads: given cached as ``CACHED_TEACHER_CLS`` with the logits (pkd's).
    cached_teacher_layers: tuple[int, ...] = ()
    #: The run's shape (a registered plan of ``lgtm.plans``): ``"single"`` (one stage), or a
    #: plan of the method's own (takd, rco). A frozen teacher (``trains_teacher = False``) is
    #: fine-tuned first by every plan unless the user says it already is.
    plan: ClassVar[str] = "single"
    #: This method's own options (those every method shares: ``options.SHARED``).
    options: ClassVar[tuple[Option, ...]] = ()
    #: The shared options its steps never read, each with the reason in a few words (a run
    #: that sets one is refused, see :meth:`ignored_settings`). Default: LGTM's own and the
    #: teacher's auxiliary weight (the teacher does not learn).
    unread: ClassVar[dict[str, str]] = {
        **LGTM_OPTIONS,
        "teacher_alpha": "its teacher has no auxiliary loss",
    }
    #: The losses it logs, in plain words (the caption of ``losses.png``).
    student_loss_words: ClassVar[str] = (
        "α · distillation term + (1 − α) · cross-entropy on the labels"
    )
    #: None: a frozen teacher (its logged loss is its fine-tuning's, stage one).
    teacher_loss_words: ClassVar[str | None] = None

    def __init__(
        self,
        teacher: torch.nn.Module | None,
        student: torch.nn.Module,
        teacher_optimizer: torch.optim.Optimizer | None,
        student_optimizer: torch.optim.Optimizer,
        *,
        alpha: float = 1.0,
        teacher_alpha: float = 0.4,
        temperature: float = 1.0,
        objective: str = "kl",
        fd_radius: float = 0.01,
        lookahead: str = "adam",
        influence_objective: str = "student",
        influence_step: str = "student_lr",
        student_weighting: str = "none",
    ) -> None:
        if teacher is None and self.needs_teacher:
            raise ValueError(
                f"method {self.name!r} needs a teacher: give teacher=<model> (only a method "
                "without a teacher, such as 'ce', accepts teacher=None)"
            )
        if self.trains_teacher and teacher_optimizer is None:
            raise ValueError(f"method {self.name!r} trains the teacher: give a teacher_optimizer")
        given = {
            "alpha": alpha,
            "teacher_alpha": teacher_alpha,
            "temperature": temperature,
            "objective": objective,
            "fd_radius": fd_radius,
            "lookahead": lookahead,
            "influence_objective": influence_objective,
            "influence_step": influence_step,
            "student_weighting": student_weighting,
        }
        for option in SHARED:
            problem = option.check(given[option.name])
            if problem is not None:
                raise ValueError(f"{option.name}: {problem}")
        if student_weighting != "none" and not self.distills:
            raise ValueError(
                f"student_weighting: method {self.name!r} has no distillation term to weight; "
                "use a method that distils (kd, lgtm, ...)"
            )
        if self.needs_double_backward:
            for role, model in (("teacher", teacher), ("student", student)):
                if model is not None:
                    use_eager_attention(model, role, self.name)
        self.teacher, self.student = teacher, student
        self.teacher_optimizer, self.student_optimizer = teacher_optimizer, student_optimizer
        self.alpha, self.teacher_alpha, self.temperature = alpha, teacher_alpha, temperature
        self.objective, self.fd_radius, self.lookahead = objective, fd_radius, lookahead
        self.influence_objective, self.influence_step = influence_objective, influence_step
        self.student_weighting = student_weighting
        if student_weighting == "influence":  # its influence needs feedback, and is tracked
            self.needs_feedback = self.computes_influence = True
        regression = getattr(getattr(student, "config", None), "num_labels", 2) == 1
        self.kd = distill_objective(objective, temperature, regression)
        self.student_names, self.student_params = _trainable(student)
        self.teacher_names, self.teacher_params = (
            _trainable(teacher) if teacher is not None else ([], [])
        )

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        """One training step; returns losses (floats) and detached logits of this batch.

        Methods that compute a distillation influence also return it for ``probe`` samples
        (``probe_influence``, ``probe_teacher_logits``, ``probe_student_logits``); the others
        ignore ``probe``.

        All or nothing: a step that raises (out of memory, a bad batch, an interrupt) leaves
        both models and both optimizers exactly as they were before it (``safe_step``; every
        subclass's ``step`` is wrapped so, see :meth:`apply`)."""
        raise NotImplementedError

    #: Keep a copy of what each optimizer step changes until the step has finished, so that a
    #: step that raises can be undone. Costs one copy of the parameters and optimizer state of
    #: the models a step updates; the training loop, which never reuses a failed step's models,
    #: turns it off.
    safe_step: bool = True
    _journal: list | None = None
    _samples: int | None = None  # this process's share of the step's batch

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            cls.step = _all_or_nothing(cls.__dict__["step"])

    @classmethod
    def option_values(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of this method's constructor, read from ``values`` (a
        ``RunConfig``'s fields by name): the shared options and its own."""
        names = [o.name for o in (*SHARED, *cls.options) if o.to_method]
        return {name: values[name] for name in names}

    @classmethod
    def ignored_settings(
        cls, values: Mapping[str, Any], regression: bool = False
    ) -> dict[str, str]:
        """The settings that have no effect on a run of this method with ``values`` (a
        ``RunConfig``'s fields by name), each with the reason: its :attr:`unread` options,
        the temperature under ``mse``, objective and temperature on a ``regression`` task
        (always ``mse``), the teacher's learning rate and epochs when no step trains the
        teacher, the tracked influence's period when nothing computes it, the student's
        weighting when ``α = 0`` leaves it no distillation term to weigh."""
        out = {k: f"--method {cls.name}: {why}" for k, why in cls.unread.items()}
        if "objective" not in cls.unread:
            if regression:
                why = "a regression task (one output) always distils with mse"
                if values["objective"] != "mse":
                    out.setdefault("objective", why)
                out.setdefault("temperature", why)
            elif values["objective"] == "mse":
                out.setdefault("temperature", "--objective mse compares logits, unsoftened")
        frozen = not cls.trains_teacher
        fine_tuned = values["teacher_finetuned"] and cls.plan != "rco"  # rco refuses it
        if not cls.needs_teacher:
            out["teacher_lr"] = out["teacher_epochs"] = f"--method {cls.name} has no teacher"
        elif not frozen:
            out["teacher_epochs"] = (
                f"--method {cls.name} trains its teacher with the student: it has no "
                "fine-tuning stage"
            )
        elif fine_tuned:
            why = "--teacher-finetuned: the teacher is not trained"
            out["teacher_lr"] = out["teacher_epochs"] = why
        if not cls.computes_influence:
            out["track_steps"] = f"--method {cls.name} computes no influence"
        weighs = values.get("student_weighting", "none") != "none" and cls.distills
        if weighs and "alpha" not in cls.unread and values.get("alpha") == 0:
            # Ls = α · Σ λ_i kd_i + (1 − α) · ce: at α = 0 the weights multiply nothing
            out["student_weighting"] = "--alpha 0 leaves the student no distillation term"
        elif weighs:
            # the student's weights are this influence: its look-ahead, radius and objective act
            for name in ("fd_radius", "lookahead", "influence_objective", "track_steps"):
                out.pop(name, None)
        return out

    @classmethod
    def uses_feedback(cls, values: Mapping[str, Any]) -> bool:
        """Whether a run of this method with the options ``values`` (a ``RunConfig``'s fields
        by name) draws feedback batches: its own need, or the student's weighting's."""
        return cls.needs_feedback or values.get("student_weighting", "none") != "none"

    @classmethod
    def prepare_teacher(cls, teacher: torch.nn.Module, values: Mapping[str, Any]) -> Any:
        """The teacher as this method trains it, before its optimizer is built (pesf: a LoRA
        adapter added). Default: unchanged."""
        return teacher

    @classmethod
    def loss_caption(cls) -> str:
        """A plain account of the curves in ``losses.png`` (one or two lines)."""
        if not cls.needs_teacher:
            return f"student loss: {cls.student_loss_words} (no teacher)."
        target = _MOVING if cls.trains_teacher else _FROZEN
        lines = [f"student loss: {cls.student_loss_words}; the distillation term is {target}."]
        if cls.teacher_loss_words is not None:
            lines.append(cls.teacher_loss_words + ".")
        else:
            lines.append("teacher loss (stage one): its cross-entropy while it is fine-tuned.")
        return "\n".join(lines)

    # ---- the pieces the methods are written in -------------------------------------------
    def student_logits(self, batch: Batch, params: Sequence[Tensor] | None = None) -> Tensor:
        """``S(x; θs)``, or ``S(x; params)`` evaluated functionally (no copy of the model)."""
        if params is None:
            return self.student(**model_inputs(batch)).logits
        weights = dict(zip(self.student_names, params, strict=True))
        return functional_call(self.student, weights, args=(), kwargs=model_inputs(batch)).logits

    def teacher_logits(self, batch: Batch) -> Tensor:
        """``T(x; θt)``; a frozen teacher's outputs cached by the loop (the batch's
        ``teacher_logits``, see :data:`CACHED_TEACHER`) are used as they are."""
        if CACHED_TEACHER in batch:
            return batch[CACHED_TEACHER]
        return self.teacher(**model_inputs(batch)).logits

    def student_loss(
        self, s: Tensor, t: Tensor, labels: Tensor, weights: Tensor | None = None
    ) -> Tensor:
        """``Ls = α · mean kd(t, s) + (1 − α) · mean_labelled ce(y, s)``: the distillation
        term over every sample, the label term over those with a label. With ``weights``
        ``λ`` ``[B]`` (summing to 1 over the global batch) the distillation term is
        ``Σ_i λ_i kd(t_i, s_i)`` (:meth:`weighted_sum`)."""
        kd = self.kd(t, s)
        term = kd.mean() if weights is None else self.weighted_sum(kd, weights)
        loss = self.alpha * term
        if self.alpha < 1:
            loss = loss + (1 - self.alpha) * self.labelled_mean(task_loss(s, labels), labels)
        return loss

    def teacher_aux_loss(self, t: Tensor, s: Tensor, labels: Tensor) -> Tensor:
        """``L_aux = αt · mean kd'(s, t) + (1 − αt) · mean_labelled ce(y, t)``: the teacher
        moves towards the (detached) student and keeps learning the task."""
        loss = self.teacher_alpha * self.kd(s.detach(), t).mean()
        if self.teacher_alpha < 1:
            ce = self.labelled_mean(task_loss(t, labels), labels)
            loss = loss + (1 - self.teacher_alpha) * ce
        return loss

    @staticmethod
    def labelled_mean(values: Tensor, labels: Tensor) -> Tensor:
        """``mean_labelled values``: the mean of ``values`` ``[B]`` over the samples of the
        global batch that carry a label (``objectives.is_labelled``), 0 when none does.

        A term of a loss that the step's gradients average over processes weighted by their
        sample counts ``n_p`` (:meth:`average`); so this process returns
        ``Σ_(i∈p, labelled) v_i · N / (n_p · N_lab)``, whose weighted average over processes is
        the global ``Σ_labelled v_i / N_lab`` (on one process: the mean over its labelled
        samples). One all-reduce of two counts on several processes.
        """
        known = is_labelled(labels)
        n_local = 0 if distributed.stand_in() else labels.shape[0]  # a stand-in weighs nothing
        n_global, labelled_global = distributed.global_sums(n_local, int(known.sum()))
        total = (values * known).sum()
        if labelled_global == 0 or n_local == 0:
            return total * 0.0
        return total * (n_global / (n_local * labelled_global))

    @staticmethod
    def weighted_sum(values: Tensor, weights: Tensor) -> Tensor:
        """``Σ_i λ_i v_i`` over the global batch, ``values`` and ``weights`` ``[B]`` (this
        process's samples; the weights normalised over the global batch).

        As :meth:`labelled_mean`, a term of a loss whose gradients are averaged over processes
        weighted by their sample counts ``n_p``: this process returns
        ``Σ_(i∈p) λ_i v_i · N / n_p``, whose weighted average over processes is the global
        sum (on one process: ``Σ_i λ_i v_i``). One all-reduce of a count on several processes.
        """
        n_local = 0 if distributed.stand_in() else values.shape[0]  # a stand-in weighs nothing
        (n_global,) = distributed.global_sums(n_local)
        total = (values * weights).sum()
        if n_local == 0:
            return total * 0.0
        return total if n_local == n_global else total * (n_global / n_local)

    def apply(
        self,
        optimizer: torch.optim.Optimizer,
        params: Sequence[Tensor],
        grads: Sequence[Tensor | None],
    ) -> None:
        """Take one step of ``optimizer`` with ``grads`` as the gradients, then free them.

        Inside a safe step, what the optimizer is about to change (the parameters, their
        ``.grad`` and their optimizer state) is copied first, to be put back if the step fails.
        """
        if self._journal is not None:
            self._journal.append(_Snapshot(optimizer, params))
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()
        for p in params:
            p.grad = None

    def grad_student(
        self, loss: Tensor, *, samples: int | None = None, local: bool = False, **kw: Any
    ) -> tuple[Tensor | None, ...]:
        """``∇θs loss`` of the global batch (see :meth:`average`); ``local``: this process's."""
        grads = torch.autograd.grad(loss, self.student_params, allow_unused=True, **kw)
        return grads if local else self.average(grads, samples, kw.get("create_graph", False))

    def grad_teacher(
        self, loss: Tensor, *, samples: int | None = None, local: bool = False, **kw: Any
    ) -> tuple[Tensor | None, ...]:
        """``∇θt loss`` of the global batch (see :meth:`average`); ``local``: this process's."""
        grads = torch.autograd.grad(loss, self.teacher_params, allow_unused=True, **kw)
        return grads if local else self.average(grads, samples, kw.get("create_graph", False))

    def average(
        self, grads: Sequence[Tensor | None], samples: int | None = None, in_graph: bool = False
    ) -> tuple[Tensor | None, ...]:
        """Data parallelism: the gradient of a loss that is a mean over this process's
        ``samples`` (default: the step's batch), averaged over processes with those weights,
        so that it is the gradient of the mean over the global batch (``lgtm.distributed``).
        ``in_graph`` keeps it differentiable. On one process: ``grads`` unchanged."""
        weight = samples if samples is not None else self._samples
        combine = distributed.average_in_graph if in_graph else distributed.average
        return tuple(combine(grads, 1 if weight is None else weight))

    def real_student_step(
        self, batch: Batch, s: Tensor, weights: Tensor | None = None, **kw: Any
    ) -> float:
        """The last step of every method: teacher forward with its current θt (no graph),
        then the student's update on ``Ls`` (its distillation term weighted by ``weights``
        ``[B]`` when given). ``s`` is the student's forward at the current θs on this batch
        (its graph is reused, saving a forward)."""
        with torch.no_grad():
            t = self.teacher_logits(batch)
        loss = self.student_loss(s, t, batch["labels"], weights)
        self.apply(self.student_optimizer, self.student_params, self.grad_student(loss, **kw))
        return loss.item()


class _Snapshot:
    """A copy of some parameters, their gradients and their optimizer state, to restore."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        self.optimizer, self.params = optimizer, list(params)
        self.data = [p.detach().clone() for p in self.params]
        self.grads = [p.grad for p in self.params]
        self.state = {
            id(p): {
                k: v.clone() if isinstance(v, Tensor) else copy.deepcopy(v)
                for k, v in optimizer.state[p].items()
            }
            for p in self.params
            if p in optimizer.state
        }

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.params], self.data)
        for p, grad in zip(self.params, self.grads, strict=True):
            p.grad = grad
            if id(p) in self.state:
                self.optimizer.state[p] = self.state[id(p)]
            else:
                self.optimizer.state.pop(p, None)


def _all_or_nothing(step: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Wrap a method's ``step``: note the size of its batch (the weight of this process's
    gradients, ``Method.average``; 0 for a stand-in, ``distributed.samples_in``), and undo a
    step that raises (``Method.safe_step``)."""

    @functools.wraps(step)
    def safe(self: Method, *args: Any, **kwargs: Any) -> dict[str, Any]:
        batch = args[0] if args else kwargs.get("batch")
        if batch is None or "labels" not in batch:
            return _undoable(self, step, args, kwargs)
        self._samples = distributed.samples_in(batch)
        with distributed.step_on(batch):
            return _undoable(self, step, args, kwargs)

    return safe


def _undoable(
    self: Method, step: Callable[..., dict[str, Any]], args: tuple, kwargs: dict
) -> dict[str, Any]:
    """``step`` run so that it leaves everything as it was if it raises (``safe_step``)."""
    if self._journal is not None or not self.safe_step:  # nested, or switched off
        return step(self, *args, **kwargs)
    self._journal = []
    try:
        return step(self, *args, **kwargs)
    except BaseException:
        for snapshot in reversed(self._journal):
            snapshot.restore()
        raise
    finally:
        self._journal = None


def use_eager_attention(model: torch.nn.Module, role: str, method: str) -> None:
    """Switch a Hugging Face ``model`` to eager attention if it uses another implementation.

    Methods with second-order gradients (``meta``, ``lgtm-exact``) back-propagate twice
    through attention, and PyTorch's fused attention kernels (``sdpa``, flash) have no double
    backward. Eager attention computes the same function. Raises ``ValueError`` naming the fix
    when ``transformers`` cannot switch the model.
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager"):
        return
    problem = ValueError(
        f"method {method!r} needs second-order gradients, which the {role}'s {current!r} "
        f"attention does not provide: load the {role} with attn_implementation='eager'"
    )
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise problem
    try:
        setter("eager")
    except (ValueError, ImportError, NotImplementedError) as err:
        raise problem from err
    if getattr(model.config, "_attn_implementation", None) != "eager":
        raise problem
    warnings.warn(
        f"lgtm: method {method!r}: the {role} now uses eager attention (was {current!r}): "
        "second-order gradients need it",
        stacklevel=3,
    )


def _trainable(model: torch.nn.Module) -> tuple[list[str], list[Tensor]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, _ in named], [p for _, p in named]


#: The distillation term's target, in plain words (``loss_caption``).
_FROZEN = "the distance to a fine-tuned teacher that no longer changes"
_MOVING = (
    "the distance to a teacher that is still learning: its target moves, so this loss may rise "
    "while the student gets better"
)
#: The auxiliary teacher loss of online-style methods (``teacher_loss_words``).
AUX_WORDS = (
    "the teacher's loss: αt · its distance to the student + (1 − αt) · cross-entropy on the "
    "labels, on the training batch"
)
