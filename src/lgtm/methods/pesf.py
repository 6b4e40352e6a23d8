"""PESF-KD (Rao et al. 2022, "Parameter-efficient and student-friendly knowledge distillation",
arXiv 2205.15308): online distillation in which the teacher learns only through an adapter.

Each step is ``online``'s (BASELINES.md, ``pesf``): the teacher's update on
``L_aux = αt · mean kd'(s, t) + (1 − αt) · mean ce(y, t)``, then the student's on ``Ls`` with the
updated teacher. Only the teacher's LoRA adapter (rank ``pesf_rank``, default 8, ``lora_alpha``
16, no dropout, on the attention query and value projections) and its classification head
receive that update; every other teacher weight stays as loaded. The adapter comes from the
``peft`` library.

How a caller (the training loop) uses it, in this order:

1. ``teacher = wrap_teacher(teacher, rank)`` *before* building the teacher's optimizer (and
   before ``accelerate.prepare``): the adapter's parameters do not exist until then, and the
   optimizer must hold them. ``wrap_teacher`` freezes every other teacher parameter, so
   ``[p for p in teacher.parameters() if p.requires_grad]`` are exactly the adapter and the
   head, which is what the teacher optimizer should be given. The wrapping modifies the model
   given in place (its attention projections become LoRA layers) and returns the ``peft``
   model around it.
2. ``make_method("pesf", teacher=teacher, ..., pesf_rank=rank)`` with the wrapped teacher; an
   unwrapped one is refused with ``ValueError``.
3. Train, evaluate the teacher and checkpoint it as it is (``peft``'s forward takes the usual
   batch; a checkpoint of its ``state_dict`` has the ``peft`` parameter names, so a resumed run
   must wrap the loaded teacher again before loading it).
4. To save the teacher for use, ``merged_teacher(teacher)`` (or ``method.merged_teacher()``):
   a copy with the adapter merged into the weights and the trained head in place, a plain
   ``transformers`` model whose ``save_pretrained`` folder loads with
   ``AutoModelForSequenceClassification.from_pretrained``. The wrapped teacher is left as it is.

``peft`` is imported when first needed, so that ``import lgtm`` stays fast.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any

import torch

from .base import AUX_WORDS, register
from .online import Online
from .options import Option

if TYPE_CHECKING:
    from peft import PeftModel

#: The attention query and value projections of architectures ``peft`` has no entry for.
_QUERY_VALUE = {"distilbert": ["q_lin", "v_lin"], "mpnet": ["q", "v"]}
LORA_ALPHA = 16


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def _is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def wrap_teacher(teacher: torch.nn.Module, rank: int = 8) -> PeftModel:
    """Add a LoRA adapter (``rank``, ``lora_alpha`` 16, no dropout) to the attention query and
    value projections of ``teacher`` (a ``transformers`` sequence classifier) and freeze all of
    it but the adapter and the classification head (``peft``'s ``modules_to_save``).

    Returns the ``peft`` model; ``teacher`` itself is modified in place. The adapter starts as
    ``B = 0``, so the wrapped teacher's logits equal the original's. Raises ``ValueError`` for
    a rank below 1, an already wrapped teacher or an architecture whose query and value
    projections are unknown.
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    if rank < 1:
        raise ValueError(f"pesf_rank must be >= 1, got {rank}")
    if _is_peft(teacher):
        raise ValueError("the teacher already has a peft adapter: wrap it only once")
    model_type = getattr(getattr(teacher, "config", None), "model_type", None)
    targets = _QUERY_VALUE.get(
        model_type
    ) or TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if not targets:
        raise ValueError(
            f"pesf: no LoRA target modules known for a {model_type!r} teacher "
            "(its attention query and value projections); use another method"
        )
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # trains the head as modules_to_save
        r=rank,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=list(targets),
    )
    with warnings.catch_warnings():  # transformers' deprecation notice seen by peft
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        wrapped = get_peft_model(teacher, config)
    if not any("modules_to_save" in n for n, p in wrapped.named_parameters() if p.requires_grad):
        raise ValueError(f"pesf: the classification head of the {model_type!r} teacher not found")
    return wrapped


def merged_teacher(teacher: torch.nn.Module) -> torch.nn.Module:
    """A copy of the wrapped ``teacher`` with its LoRA adapter merged into the weights
    (``W + (lora_alpha / r) · B A``) and the trained head in place of the original: a plain
    ``transformers`` model, for ``save_pretrained``. Its logits equal the wrapped teacher's
    (to rounding). ``teacher`` is not changed; the copy costs one teacher of memory.
    Raises ``ValueError`` when ``teacher`` has no ``peft`` adapter."""
    teacher = _unwrap(teacher)
    if not _is_peft(teacher):
        raise ValueError("merged_teacher needs a teacher wrapped by wrap_teacher")
    return copy.deepcopy(teacher).merge_and_unload()


@register("pesf")
class PESF(Online):
    """``online`` in which the teacher's update reaches only its LoRA adapter and its head."""

    options = (Option("pesf_rank", 8, int, "pesf: rank of the teacher's LoRA adapter", "R", low=1),)
    teacher_loss_words = AUX_WORDS + " (only its adapter and head learn)"

    @classmethod
    def prepare_teacher(cls, teacher: torch.nn.Module, values: Any) -> Any:
        """Only a LoRA adapter (rank ``pesf_rank``) and the head of the teacher learn."""
        return wrap_teacher(teacher, values["pesf_rank"])

    def __init__(self, *args: Any, pesf_rank: int | None = None, **kwargs: Any) -> None:
        """As :class:`Method`, with a teacher wrapped by :func:`wrap_teacher`. Raises
        ``ValueError`` when it is not, when ``pesf_rank`` (if given) is not its adapter's rank,
        or when teacher parameters other than the adapter and the head are trainable."""
        super().__init__(*args, **kwargs)
        teacher = _unwrap(self.teacher)
        if not _is_peft(teacher):
            raise ValueError(
                "pesf trains only a LoRA adapter and the head of the teacher: wrap it first, "
                "teacher = lgtm.methods.pesf.wrap_teacher(teacher, rank), then build the "
                "teacher optimizer on its trainable parameters"
            )
        rank = teacher.peft_config[teacher.active_adapter].r
        if pesf_rank is not None and pesf_rank != rank:
            raise ValueError(f"pesf_rank is {pesf_rank} but the teacher's adapter has rank {rank}")
        other = [n for n in self.teacher_names if "lora_" not in n and "modules_to_save" not in n]
        if other:
            raise ValueError(
                f"pesf: teacher parameters outside the adapter and the head are trainable "
                f"({other[0]}, ...); wrap the teacher with wrap_teacher and leave them frozen"
            )
        self.pesf_rank = rank

    def merged_teacher(self) -> torch.nn.Module:
        """The teacher to save: :func:`merged_teacher` of this method's teacher."""
        return merged_teacher(self.teacher)
