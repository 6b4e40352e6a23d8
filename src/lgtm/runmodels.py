"""The models of one run: teacher, student and tokenizer built for the task, and the model
folders a run writes and reads back (the selected student, rco's anchors, pesf's merge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lgtm.config import RunConfig
from lgtm.loop import say


def build_models(
    config: RunConfig, task: Any, notices: list[str] | None = None
) -> tuple[Any, Any, Any]:
    """Teacher, student and the shared tokenizer, with label names and the chosen heads.

    Models with a trained head are checked against the task (``checks.align_labels``); what
    was adjusted is printed, and appended to ``notices`` when given. Raises
    :class:`LgtmInputError` for a model that cannot serve the task."""
    from lgtm import models as M
    from lgtm.checks import align_labels, check_compatible, check_embeddings, require_trained_head
    from lgtm.methods import method_class

    teacher, tokenizer = M.load_model(config.teacher, task.num_labels)
    if config.teacher_finetuned and method_class(config.method).needs_teacher:  # ce: no teacher
        require_trained_head(
            teacher,
            "teacher",
            config.teacher,
            "it is not fine-tuned; drop --teacher-finetuned (it is then fine-tuned first), or "
            "use --method ce for the student alone",
        )
    check_embeddings(teacher, tokenizer, task, "teacher", config.teacher)
    adjusted = [align_labels(teacher, task, "teacher", config.teacher)]
    if config.student is not None:
        student, s_tok = M.load_model(config.student, task.num_labels)
        check_compatible(tokenizer, s_tok, config.teacher, config.student)
        check_embeddings(student, s_tok, task, "student", config.student)
        adjusted.append(align_labels(student, task, "student", config.student))
    else:
        layers = config.student_layers
        if layers is None:
            layers = max(1, int(teacher.config.num_hidden_layers) // 2)
        student = M.student_from_teacher(teacher, layers)
    if config.init_classifier == "zero":
        if not config.teacher_finetuned:  # never wipe the head of a fine-tuned teacher
            M.zero_init_classifier(teacher)
        M.zero_init_classifier(student)
    for model in (teacher, student):
        set_label_names(model, task)
    for notice in filter(None, adjusted):
        say(config, notice)
        if notices is not None:
            notices.append(notice)
    return teacher, student, tokenizer


def set_label_names(model: Any, task: Any) -> None:
    """``id2label`` / ``label2id`` from the task, so that pipelines print label names."""
    names = list(task.label_names) if task.label_names is not None else ["score"]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.config.finetuning_task = task.name
    model.config.problem_type = (
        "regression" if task.is_regression else "single_label_classification"
    )


def plain_model(model: Any) -> Any:
    """The model as ``from_pretrained`` will load it: pesf's adapter merged into a copy."""
    if not type(model).__module__.startswith("peft"):  # (importing peft takes seconds)
        return model
    from lgtm.methods.pesf import merged_teacher

    return merged_teacher(model)


def load_weights(model: Any, folder: Path) -> None:
    """Put the weights saved in ``folder`` (``rundir.save_model``) into ``model``: the
    selected student (``loop``'s best by the selection set), or an rco anchor into the anchor
    model. Raises ``RuntimeError`` when they do not fit the model."""
    from safetensors.torch import load_file

    weights = {}
    for shard in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(shard, device=str(next(model.parameters()).device)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(
            f"the selected student in {folder} does not fit: {missing or unexpected}"
        )
