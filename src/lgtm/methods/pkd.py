"""Patient Knowledge Distillation (Sun et al., EMNLP 2019), "PKD-skip" by default.

A frozen, fine-tuned teacher, as in ``kd`` (the loop fine-tunes it first unless it is already
fine-tuned). The student also matches the teacher's intermediate ``[CLS]`` representations
(BASELINES.md, ``pkd``):

    Ls = (1 − α) · mean ce(y, s) + α · mean kd(t, s) + β · L_PT
    L_PT = mean_i Σ_(j,k)∈M ‖ ĥ_s,j,i − ĥ_t,k,i ‖²₂,      ĥ = h / ‖h‖₂

``h_·,j,i`` is sample ``i``'s hidden state at position 0 after transformer layer ``j``
(1-based: index ``j`` of ``output_hidden_states``, whose index 0 is the embeddings). ``M`` pairs
student layer ``j`` with teacher layer ``k``; by default ``j = 1 … Ns − 1`` (the last layer is
covered by ``kd``) with ``k = round(j · Nt / Ns)``, halves rounded up (:func:`pkd_skip_layers`).
Options: ``pkd_beta`` (β, default 100; the paper tries 10–1000) and ``pkd_layers`` (the pairs
``M``, a list of ``(student_layer, teacher_layer)`` or the text ``"1:3,2:6"`` of
:func:`parse_layer_pairs`). Both models are run with ``output_hidden_states=True``; a run
computes the frozen teacher's logits and ``[CLS]`` states once (``lgtm.teacher_cache``) and
hands them to :meth:`PKD.step` in the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..objectives import promote
from .base import CACHED_TEACHER, CACHED_TEACHER_CLS, Batch, Method, model_inputs, register
from .influence import StudentInfluence
from .options import Option

Tensor = torch.Tensor
LayerPairs = list[tuple[int, int]]


def parse_layer_pairs(text: str) -> LayerPairs:
    """``"1:3,2:6"`` → ``[(1, 3), (2, 6)]``: comma-separated ``student:teacher`` layer pairs,
    1-based (layer ``j`` is index ``j`` of ``output_hidden_states``).

    Raises ``ValueError`` for empty text, an item that is not two integers around ``:``, a
    layer below 1, or a pair given twice. Whether the layers exist is checked by :class:`PKD`.
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise ValueError(
            f"bad layer pairs {text!r}: expected comma-separated student:teacher pairs, "
            "e.g. '1:3,2:6'"
        )
    pairs: LayerPairs = []
    for item in items:
        parts = [part.strip() for part in item.split(":")]
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise ValueError(
                f"bad layer pair {item!r} in {text!r}: expected student:teacher with two "
                "layer numbers, e.g. '1:3'"
            )
        pair = (int(parts[0]), int(parts[1]))
        if min(pair) < 1:
            raise ValueError(
                f"bad layer pair {item!r}: layers are numbered from 1 (0 is the embeddings)"
            )
        if pair in pairs:
            raise ValueError(f"layer pair {item!r} is given twice in {text!r}")
        pairs.append(pair)
    return pairs


def layer_pairs_text(value: Any) -> str:
    """``"1:3,2:6"`` or a YAML list of pairs (``[[1, 3], "2:6"]``) as the canonical text
    ``"1:3,2:6"``, checked by :func:`parse_layer_pairs` (raises ``ValueError``)."""
    if isinstance(value, list | tuple):
        value = ",".join(
            f"{a}:{b}"
            for a, b in (p if isinstance(p, list | tuple) else str(p).split(":") for p in value)
        )
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    parse_layer_pairs(value)
    return value.replace(" ", "")


def pkd_skip_layers(n_student: int, n_teacher: int) -> LayerPairs:
    """PKD-skip: student layers ``j = 1 … Ns − 1`` paired with teacher layers
    ``k = round(j · Nt / Ns)`` (halves rounded up, at least 1); e.g. ``Nt = 6, Ns = 3`` →
    ``[(1, 2), (2, 4)]``. Empty for a one-layer student."""
    return [
        (j, max(1, (2 * j * n_teacher + n_student) // (2 * n_student))) for j in range(1, n_student)
    ]


def _sizes(model: torch.nn.Module) -> tuple[int, int]:
    config = getattr(getattr(model, "module", model), "config", None)
    layers, hidden = (getattr(config, k, None) for k in ("num_hidden_layers", "hidden_size"))
    if not isinstance(layers, int) or not isinstance(hidden, int):
        raise ValueError(
            "pkd needs models with config.num_hidden_layers and config.hidden_size "
            "(Hugging Face transformers)"
        )
    return layers, hidden


@register("pkd")
class PKD(StudentInfluence, Method):
    """``θs ← θs − ηs ∇θs (Ls + β · L_PT)`` with the teacher frozen."""

    trains_teacher = False
    teacher_outputs_cacheable = True
    options = (
        Option(
            "pkd_beta",
            100.0,
            float,
            "pkd: weight β of the intermediate [CLS] representations' distance",
            "B",
            low=0,
        ),
        Option(
            "pkd_layers",
            None,
            str,
            "pkd: student:teacher layer pairs, 1-based (default PKD-skip: j with round(j·Nt/Ns))",
            "J:K,..",
            optional=True,
            parse=layer_pairs_text,
        ),
    )
    student_loss_words = (
        Method.student_loss_words + " + β · distance of intermediate [CLS] representations"
    )

    def __init__(
        self,
        *args: Any,
        pkd_beta: float = 100.0,
        pkd_layers: Sequence[Sequence[int]] | str | None = None,
        **kwargs: Any,
    ) -> None:
        """As :class:`Method`, plus β (``pkd_beta`` ≥ 0) and the layer map ``pkd_layers``
        (default :func:`pkd_skip_layers`). Raises ``ValueError`` when the hidden sizes of
        teacher and student differ, β is negative, or a pair names a layer the model lacks."""
        super().__init__(*args, **kwargs)
        problem = self.options[0].check(pkd_beta)  # pkd_beta's declared range
        if problem is not None:
            raise ValueError(f"pkd_beta: {problem}")
        (n_t, h_t), (n_s, h_s) = _sizes(self.teacher), _sizes(self.student)
        if h_t != h_s:
            raise ValueError(
                f"pkd compares hidden states: the student's hidden size {h_s} differs from the "
                f"teacher's {h_t}; give models of one hidden size, or use kd"
            )
        if pkd_layers is None:
            pairs = pkd_skip_layers(n_s, n_t)
        elif isinstance(pkd_layers, str):
            pairs = parse_layer_pairs(pkd_layers)
        else:
            pairs = [tuple(int(x) for x in pair) for pair in pkd_layers]
        for pair in pairs:
            if len(pair) != 2 or not (1 <= pair[0] <= n_s and 1 <= pair[1] <= n_t):
                raise ValueError(
                    f"pkd layer pair {pair} is out of range: student layers are 1..{n_s}, "
                    f"teacher layers 1..{n_t} (student:teacher, 1-based)"
                )
        self.pkd_beta, self.pkd_layers = float(pkd_beta), [(j, k) for j, k in pairs]
        self.cached_teacher_layers = tuple(sorted({k for _, k in self.pkd_layers}))

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        """One student step; ``batch`` tensors ``[B, L]``, labels ``[B]``. Returns the losses
        (``student_loss`` is ``Ls + β · L_PT``, ``pt_loss`` is ``L_PT``) and ``[B, C]`` logits.
        The teacher's outputs cached by the loop (``CACHED_TEACHER``, ``CACHED_TEACHER_CLS``)
        are used as they are."""
        inputs = model_inputs(batch)
        if CACHED_TEACHER in batch:
            t, states = batch[CACHED_TEACHER], batch.get(CACHED_TEACHER_CLS)
            cls = {k: states[:, n] for n, k in enumerate(self.cached_teacher_layers)}
        else:
            with torch.no_grad():
                out_t = self.teacher(**inputs, output_hidden_states=True)
            t = out_t.logits
            cls = {k: out_t.hidden_states[k][:, 0] for k in self.cached_teacher_layers}
        out_s = self.student(**inputs, output_hidden_states=True)
        s = out_s.logits
        pt = self.patient_loss(out_s.hidden_states, cls)
        loss = self.student_loss(s, t, batch["labels"]) + self.pkd_beta * pt
        weights, found = self.student_weights(batch, loss, t, feedback_batch, probe)
        if weights is not None:  # student_weighting="influence": Σ λ_i kd_i
            loss = self.student_loss(s, t, batch["labels"], weights) + self.pkd_beta * pt
        self.apply(self.student_optimizer, self.student_params, self.grad_student(loss))
        return {
            "student_loss": loss.item(),
            "pt_loss": pt.item(),
            "student_logits": s.detach(),
            "teacher_logits": t,
            **found,
        }

    def patient_loss(
        self, student_hidden: Sequence[Tensor], teacher_cls: Mapping[int, Tensor]
    ) -> Tensor:
        """The patient loss of Sun et al. 2019, ``L_PT = mean_i Σ_(j,k)∈M ‖ĥ_s,j,i − ĥ_t,k,i‖²₂``,
        from the student's ``output_hidden_states`` (``N + 1`` tensors ``[B, L, H]``) and the
        teacher's ``[CLS]`` states ``[B, H]`` after each layer ``k`` of ``M``; returns a
        scalar (zero when ``M`` is empty)."""
        total = student_hidden[0].new_zeros((), dtype=promote(student_hidden[0]).dtype)
        for j, k in self.pkd_layers:
            h_s = F.normalize(promote(student_hidden[j][:, 0]), dim=-1)
            h_t = F.normalize(promote(teacher_cls[k]), dim=-1)
            total = total + (h_s - h_t).pow(2).sum(-1).mean()
        return total
