"""Models checked against the task and against each other, before anything trains or predicts.

``lgtm distill``, ``evaluate`` and ``predict`` run these on every model they load, from the
models' own metadata:

- **the number of labels** of a fine-tuned head (:func:`check_label_count`, run by
  ``models.load_model`` on the configuration, before the weights load);
- **label names and their order** (:func:`align_labels`): a head fine-tuned with the task's
  class names in another order is used by name (its classifier rows are put in the task's
  order, once); other names are refused; generic ``LABEL_k`` names keep their ids;
- **regression vs classification** (:func:`align_labels` too);
- **a trained head** where one is needed (:func:`require_trained_head`), and **embedding
  tables** the tokenizer's ids fit (:func:`check_embeddings`);
- **teacher and student share one tokenizer** (:func:`check_compatible`): distillation here
  feeds the same ``input_ids`` to both;
- **the longest input** the models and the tokenizer take (:func:`max_input_length`), so that
  ``--max-length`` beyond it is lowered before the first batch, never a crash mid-run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lgtm.data.tasks import normalize_name
from lgtm.errors import LgtmInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_GENERIC = re.compile(r"LABEL_(\d+)")
# Architectures whose position ids start after the padding index (RoBERTa's embeddings).
_POSITION_OFFSET_TYPES = {"roberta", "xlm-roberta", "camembert", "longformer"}
# A tokenizer without a limit of its own reports this (transformers' VERY_LARGE_INTEGER).
_NO_LIMIT = 10**12


def has_trained_head(model: Any) -> bool:
    """True when ``model`` (or a model configuration) was saved with a sequence-classification
    head (not a new one)."""
    archs = getattr(getattr(model, "config", model), "architectures", None) or []
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def require_trained_head(model: Any, role: str, shown: str, hint: str) -> None:
    """Refuse a model saved without a sequence-classification head where one is needed (a
    teacher said to be fine-tuned, a model to evaluate): its head would be random.
    Raises :class:`LgtmInputError` ending with ``hint``."""
    if not has_trained_head(model):
        archs = getattr(model.config, "architectures", None) or ["no architecture"]
        raise LgtmInputError(
            f"{role} '{shown}' has no trained classification head (saved as {archs[0]}): {hint}",
            field=role,
        )


def check_label_count(config: Any, num_labels: int, shown: str) -> None:
    """Refuse a model saved with a classification head of another size than the task's
    ``num_labels`` (checked on its configuration, before its weights load). A model without
    a trained head is not refused: its head is new. Raises :class:`LgtmInputError`."""
    if has_trained_head(config) and config.num_labels != num_labels:
        raise LgtmInputError(
            f"model '{shown}' has a classification head with {config.num_labels} labels but the "
            f"task has {num_labels}: give a model fine-tuned on this task or a pre-trained one"
        )


_PROBE = "Hello World! Distillation isn't magic: 3.14 naïve Zürich résumé, un-believable."


def check_compatible(
    teacher_tokenizer: PreTrainedTokenizerBase,
    student_tokenizer: PreTrainedTokenizerBase,
    teacher_name: str,
    student_name: str,
) -> None:
    """Refuse a teacher and student with different vocabularies (or tokenisation).

    Distillation here feeds the same ``input_ids`` to both models, so the token ids must mean
    the same thing to both.
    """
    tv, sv = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    names = f"teacher '{teacher_name}' and student '{student_name}'"
    if len(tv) != len(sv):
        raise LgtmInputError(
            f"{names} have different vocabularies ({len(tv)} vs {len(sv)} tokens): "
            "both models must use the same tokenizer",
            field="student",
        )
    if tv != sv:
        _, diff = min((idx, tok) for tok, idx in tv.items() if sv.get(tok) != idx)
        raise LgtmInputError(
            f"{names} have different vocabularies (token {diff!r} has id {tv[diff]} vs "
            f"{sv.get(diff)}): both models must use the same tokenizer",
            field="student",
        )
    # Same vocabulary, but casing / accent stripping / special tokens may still differ: compare
    # the ids of a probe text that includes capitalised words of the vocabulary itself.
    words = [tok for tok in sorted(tv) if tok.isalpha()][:300]
    probe = _PROBE + " " + " ".join(w.capitalize() for w in words)
    t_ids = teacher_tokenizer(probe)["input_ids"]
    s_ids = student_tokenizer(probe)["input_ids"]
    if t_ids != s_ids:
        raise LgtmInputError(
            f"{names} share a vocabulary but tokenise text differently (casing or special "
            "tokens): both models must use the same tokenizer",
            field="student",
        )


def check_embeddings(model: Any, tokenizer: Any, task: Any, role: str, shown: str) -> None:
    """Refuse a model whose embedding tables the tokenizer's ids would overrun: fewer token
    embeddings than the tokenizer's vocabulary, or one token type where the tokenizer marks
    the second text of a pair with type 1. Raises :class:`LgtmInputError`."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        raise LgtmInputError(
            f"{role} '{shown}' has {rows} token embeddings but its tokenizer has {len(tokenizer)} "
            "tokens: save the model with the tokenizer it was trained with",
            field=role,
        )
    types = getattr(model.config, "type_vocab_size", None)
    if len(task.text_columns) == 2 and isinstance(types, int) and types < 2:
        marks = tokenizer("a", "b").get("token_type_ids") or []
        if max(marks, default=0) >= types:
            raise LgtmInputError(
                f"{role} '{shown}' has {types} token type(s) but its tokenizer marks the second "
                f"text of a pair with type {max(marks)}: it cannot read this task's text pairs",
                field=role,
            )


def align_labels(model: Any, task: Any, role: str, shown: str) -> str | None:
    """Check a loaded classifier's head against ``task`` and put its classes in task order.

    ``model`` is a ``*ForSequenceClassification`` whose ``config.id2label`` holds the class
    names it was fine-tuned with. When they are the task's names (compared without case,
    spaces, ``-`` and ``_``) in another order, the rows of its final classification layer are
    permuted in place, so that logit ``k`` is the task's class ``k`` from then on. Generic
    names (``LABEL_0``, ``LABEL_1``, ...) and data whose labels are class ids (``0``, ``1``,
    ...) keep the model's ids. A model without a trained head (a pre-trained encoder) is not
    checked: its head is new.

    Returns a one-line notice for the user, or ``None`` when nothing needs saying.
    Raises :class:`LgtmInputError` when the names differ from the task's, or when the model
    was trained for another kind of problem (regression, multi-label).
    """
    if not has_trained_head(model):
        return None
    config = model.config
    kind = getattr(config, "problem_type", None)
    wanted = "regression" if task.is_regression else "single-label classification"
    if kind == "multi_label_classification" or (
        kind is not None
        and (kind == "regression") != task.is_regression
        and config.num_labels == task.num_labels
    ):
        raise LgtmInputError(
            f"{role} '{shown}' was fine-tuned for {kind.replace('_', ' ')}, the task "
            f"{task.name!r} is {wanted}: give a model fine-tuned for it, or a pre-trained one",
            field=role,
        )
    if task.is_regression or task.num_labels != config.num_labels:
        return None  # a count mismatch is refused where the model is loaded
    names = [
        str(config.id2label.get(i, config.id2label.get(str(i), f"LABEL_{i}")))
        for i in range(config.num_labels)
    ]
    task_names = [str(n) for n in task.label_names]
    if all(_GENERIC.fullmatch(n) and int(n[6:]) == i for i, n in enumerate(names)):
        return (
            f"lgtm: {role} '{shown}' does not name its classes ({names[0]}..{names[-1]}): "
            f"taken to be in the task's order ({', '.join(task_names)})"
        )
    if task_names == [str(i) for i in range(len(task_names))]:
        return (
            f"lgtm: the data's labels are class ids: {role} '{shown}' reads them as "
            + ", ".join(f"{i} = {n}" for i, n in enumerate(names))
        )
    position = {normalize_name(n): i for i, n in enumerate(names)}
    if len(position) != len(names) or {normalize_name(n) for n in task_names} != set(position):
        raise LgtmInputError(
            f"{role} '{shown}' was fine-tuned on the labels {{{', '.join(names)}}} but the task "
            f"has {{{', '.join(task_names)}}}: give a model fine-tuned on this task's labels, "
            "or a pre-trained one",
            field=role,
        )
    order = [position[normalize_name(n)] for n in task_names]
    if order == list(range(len(order))):
        return None
    reorder_classes(model, order)
    return (
        f"lgtm: {role} '{shown}' orders its classes ({', '.join(names)}), the task "
        f"({', '.join(task_names)}): its classifier was put in the task's order"
    )


def reorder_classes(model: Any, order: Sequence[int]) -> None:
    """Permute the classes of ``model`` in place: new class ``k`` is old class ``order[k]``.

    Permutes the rows of the final classification layer (weight ``[C, H]``, bias ``[C]``) and
    ``config.id2label`` / ``label2id``, so that ``new_logits[..., k] == old_logits[...,
    order[k]]`` exactly. Raises ``ValueError`` if ``order`` is not a permutation of the classes.
    """
    from lgtm.models import final_classifier

    layer = final_classifier(model)
    if sorted(order) != list(range(layer.out_features)):
        raise ValueError(f"not a permutation of {layer.out_features} classes: {list(order)}")
    index = torch.as_tensor(list(order), device=layer.weight.device)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[index].clone())
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[index].clone())
    old = dict(model.config.id2label)
    model.config.id2label = {k: old.get(o, old.get(str(o))) for k, o in enumerate(order)}
    model.config.label2id = {n: k for k, n in model.config.id2label.items()}


def max_input_length(models: Sequence[Any], tokenizer: Any) -> tuple[int | None, str]:
    """The longest input, in tokens, that every model in ``models`` and ``tokenizer`` take.

    Absolute position embeddings bound it (``max_position_embeddings``, less RoBERTa's offset
    past the padding index), and so does the tokenizer's own ``model_max_length``. Returns the
    bound and what sets it (``(None, "")`` when nothing does: relative positions only).
    """
    limits: list[tuple[int, str]] = []
    for model in models:
        config = model.config
        positions = getattr(config, "max_position_embeddings", None)
        absolute = getattr(config, "position_embedding_type", "absolute") in (None, "absolute")
        if getattr(config, "model_type", "") == "deberta-v2":
            absolute = bool(getattr(config, "position_biased_input", True))
        if isinstance(positions, int) and positions > 0 and absolute:
            if getattr(config, "model_type", "") in _POSITION_OFFSET_TYPES:
                positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
            name = getattr(config, "_name_or_path", "") or type(model).__name__
            limits.append((positions, f"the position embeddings of '{name}'"))
    own = getattr(tokenizer, "model_max_length", None)
    if isinstance(own, int) and 0 < own < _NO_LIMIT:
        limits.append((own, "the tokenizer's model_max_length"))
    if not limits:
        return None, ""
    return min(limits)


def usable_max_length(asked: int, models: Sequence[Any], tokenizer: Any) -> tuple[int, str | None]:
    """``asked`` (``--max-length``), lowered to what the models take; and a notice if lowered.

    Raises :class:`LgtmInputError` when the models take fewer than 2 tokens (no room for the
    special tokens).
    """
    limit, why = max_input_length(models, tokenizer)
    if limit is None or asked <= limit:
        return asked, None
    if limit < 2:
        raise LgtmInputError(f"the models take at most {limit} tokens ({why})", field="max_length")
    return limit, (
        f"lgtm: --max-length {asked} is more than the models take: lowered to {limit} ({why})"
    )


def check_models(
    models: Sequence[tuple[Any, str, str]], task: Any, tokenizer: Any, max_length: int
) -> tuple[int, list[str]]:
    """Run every check on ``(model, role, shown name)`` triples; returns the usable max length
    and the notices to print (one line each). Raises :class:`LgtmInputError` on the first
    model that cannot serve the task."""
    notices = [align_labels(model, task, role, shown) for model, role, shown in models]
    length, lowered = usable_max_length(max_length, [m for m, _, _ in models], tokenizer)
    return length, [n for n in [*notices, lowered] if n]
