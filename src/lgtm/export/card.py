"""The model card (``README.md``) of an exported folder: what its files are and what they
scored, in Hugging Face's ``ModelCard`` conventions (YAML metadata with a ``model-index`` of
each file's measured scores, then Markdown). Every number comes from the export report
(``export.json``): the exported files' own parameters, sizes and metrics, never the PyTorch
student's, which the card names as the model they were exported from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _by_split(metrics: Mapping[str, Any], split: str) -> dict[str, dict[str, Any]]:
    """``{split: {metric: value}}`` from a report row's metrics (one split or several)."""
    if metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        return {str(k): dict(v) for k, v in metrics.items()}
    return {split: dict(metrics)}


def _student_card(text: str | None) -> tuple[Any, list[str]]:
    """The PyTorch student's card metadata (None without a card) and its warnings (the
    ``> **Warning`` paragraphs, such as a feedback set that leaks into the evaluation)."""
    if not text:
        return None, []
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    warnings = [line for line in card.text.splitlines() if line.startswith("> **Warning")]
    return card.data, warnings


def export_card(report: Mapping[str, Any], student_card: str | None = None) -> str:
    """The README.md of an exported folder whose report (``export.json``'s content) is
    ``report``. ``student_card``: the README.md of the PyTorch student it was exported from,
    if it has one (its dataset names and warnings are carried over; its scores are not)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from lgtm.export.report import change_words

    metric, split = report["main_metric"], report["eval_split"]
    rows = {r["name"]: r for r in report["rows"]}
    files = [c["file"] for c in report["checks"]]
    student = rows["student"]
    base, warnings = _student_card(student_card)
    known = list(getattr(base, "eval_results", None) or [])
    dataset = (
        {k: getattr(known[0], k) for k in ("dataset_type", "dataset_name", "dataset_config")}
        if known
        else {"dataset_type": report["task"], "dataset_name": report["task"]}
    )
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_split=name,
            metric_type=key,
            metric_name=f"{key} ({file})",
            metric_value=round(float(value), 6),
            **dataset,
        )
        for file in files
        for name, values in _by_split(rows[file]["metrics"], split).items()
        for key, value in values.items()
        if isinstance(value, int | float)
    ]
    data = ModelCardData(
        base_model=getattr(base, "base_model", None),
        datasets=getattr(base, "datasets", None),
        library_name="onnx",
        pipeline_tag="text-classification",
        tags=["lgtm", "onnx", *(["int8"] if len(files) > 1 else [])],
        model_name=f"lgtm export of {report['source']} ({report['task']})",
        eval_results=results or None,
    )
    pruning = report.get("pruning")
    lines = [
        f"# lgtm export of {report['source']} ({report['task']})",
        "",
        f"ONNX Runtime files written by `lgtm export` from the PyTorch student "
        f"`{report['source']}` (their base model: they compute what it computes, "
        + ("with its vocabulary pruned" if pruning else "translated")
        + (" and, in the int8 file, quantised" if len(files) > 1 else "")
        + "). The numbers below are the files' own, measured on "
        f"{split} ({report['eval_examples']} examples, max length {report['max_length']}); "
        "the student's own card, in its folder, describes its training and data.",
        "",
        *[w + "\n" for w in warnings],
        "## Files",
        "",
        f"| file | runtime | parameters | size MB | {metric} | against the PyTorch student |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for check in report["checks"]:
        row = rows[check["file"]]
        lines.append(
            f"| {row['name']} | {row['runtime']} | {row['parameters']:,} "
            f"| {row['size_bytes'] / 1e6:.1f} | {100 * row['main']:.2f} "
            f"| {change_words(check['drop_points'], metric)} |"
        )
    lines.append(
        f"| student (the base; not in this folder) | {student['runtime']} "
        f"| {student['parameters']:,} | {student['size_bytes'] / 1e6:.1f} "
        f"| {100 * student['main']:.2f} | |"
    )
    lines.append("")
    if pruning:
        lines += [
            f"The vocabulary is pruned to {pruning['kept_tokens']:,} of "
            f"{pruning['original_tokens']:,} tokens (those of the pruning corpus and the special "
            "tokens): a word outside that corpus that needs a dropped word piece becomes "
            "`[UNK]`.",
            "",
        ]
    lines += [
        "## Use",
        "",
        "`lgtm evaluate --model DIR` and `lgtm predict --model DIR` run `model.onnx` with ONNX "
        "Runtime on the CPU"
        + ("; `--model DIR/model_int8.onnx` runs the quantised file." if len(files) > 1 else "."),
        "The full report (latencies, the teacher) is `export.md` / `export.json`. Evaluate "
        "the files on your own data before relying on them, and do not use them for "
        "decisions about people.",
        "",
    ]
    return str(ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(lines)))
