"""The export report: for each model (the teacher, the PyTorch student, each exported file), the
task metric on the evaluation set, size on disk, parameters, and latency per batch of 1 and of
64 (median of repeats, the same texts for all); and the check that no exported file loses more
than ``--max-metric-drop`` points against the PyTorch student."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

LATENCY_BATCHES = (1, 64)


@dataclass
class Row:
    """One model of the report."""

    name: str  # "teacher", "student" (PyTorch) or an exported file's name
    runtime: str  # "PyTorch" | "ONNX Runtime"
    metrics: dict[str, Any]  # the task's metrics, as lgtm evaluate prints them
    main: float  # the main metric of the first evaluation split (a fraction)
    size_bytes: int
    parameters: int
    latency_seconds: dict[str, float]  # batch size -> median seconds per forward pass


def weights_size(folder: str | os.PathLike[str]) -> int:
    """Bytes of the weight files of a ``save_pretrained`` folder (safetensors or bin)."""
    folder = Path(folder)
    files = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return sum(f.stat().st_size for f in files)


def main_value(metrics: dict[str, Any], main_metric: str) -> float:
    """The main metric from :func:`lgtm.evaluation.evaluate`'s output (one split or several:
    the first)."""
    if main_metric in metrics:
        return float(metrics[main_metric])
    return float(next(iter(metrics.values()))[main_metric])


def latency(
    model: Any, tokenizer: Any, texts: Sequence[tuple[str, ...]], max_length: int, repeats: int
) -> dict[str, float]:
    """Median seconds per forward pass on the first 1 and the first 64 of ``texts`` (padded to
    the longest of the batch), after one warm-up pass (``models.measure_latency``)."""
    from lgtm.models import measure_latency

    out = {}
    for size in LATENCY_BATCHES:
        chosen = list(texts[:size])
        while len(chosen) < size:  # fewer texts than the batch: the same texts again
            chosen += list(texts[: size - len(chosen)])
        columns = list(zip(*chosen))
        batch = tokenizer(
            *[list(c) for c in columns],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        out[str(size)] = measure_latency(model, dict(batch), repeats)
    return out


def measure(
    name: str,
    runtime: str,
    model: Any,
    tokenizer: Any,
    task: Any,
    evals: dict[str, list],
    *,
    size_bytes: int,
    parameters: int,
    max_length: int,
    batch_size: int,
    repeats: int,
) -> tuple[Row, Any]:
    """A report row for ``model`` (PyTorch or :class:`~lgtm.export.onnx.OnnxClassifier`) and
    its logits on the first evaluation split (``[N, C]`` numpy)."""
    from lgtm.data.encode import encode, make_collator
    from lgtm.evaluation import evaluate, predict_logits

    features = {k: encode(v, tokenizer, max_length) for k, v in evals.items()}
    collate = make_collator(tokenizer)
    metrics = evaluate(model, task, features, collate, batch_size)
    logits = predict_logits(model, next(iter(features.values())), collate, batch_size)
    texts = [e.texts for e in next(iter(evals.values()))]
    with torch.inference_mode():
        times = latency(model, tokenizer, texts, max_length, repeats)
    row = Row(
        name,
        runtime,
        metrics,
        main_value(metrics, task.main_metric),
        size_bytes,
        parameters,
        times,
    )
    return row, logits


def drop_checks(
    rows: Sequence[Row], reference: str, exported: Sequence[str], max_drop: float
) -> list[dict[str, Any]]:
    """For each exported file: its main metric's drop against ``reference``'s, in points
    (hundredths), and whether it stays within ``max_drop``."""
    by_name = {r.name: r for r in rows}
    base = by_name[reference].main
    out = []
    for name in exported:
        drop = round(100 * (base - by_name[name].main), 6)
        out.append({"file": name, "drop_points": drop, "max": max_drop, "ok": drop <= max_drop})
    return out


def change_words(drop_points: float, metric: str) -> str:
    """A file's change of the main metric against the PyTorch student, in words by its sign:
    ``1.50 points of accuracy lost``, ``+0.40 points of accuracy gained``, ``no accuracy
    lost`` (``drop_points``: points lost, negative when gained)."""
    if drop_points > 0:
        return f"{drop_points:.2f} points of {metric} lost"
    if drop_points < 0:
        return f"+{-drop_points:.2f} points of {metric} gained"
    return f"no {metric} lost"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table with its checks."""
    metric = report["main_metric"]
    student = next(r for r in report["rows"] if r["name"] == "student")
    lines = [
        f"# Export of {report['source']}",
        "",
        f"Task {report['task']}, {metric} on {report['eval_split']} "
        f"({report['eval_examples']} examples); latency: median of {report['repeats']} "
        f"forward passes, threads {report['threads'] or 'default'}, the same texts for all.",
        "",
        f"| model | runtime | {metric} | size MB | size vs student | parameters "
        "| batch 1 ms | batch 64 ms | batch 1 speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lat = r["latency_seconds"]
        smaller = student["size_bytes"] / max(r["size_bytes"], 1)
        lines.append(
            f"| {r['name']} | {r['runtime']} | {100 * r['main']:.2f} "
            f"| {r['size_bytes'] / 1e6:.1f} | {_times(smaller)} "
            f"| {r['parameters']:,} | {1000 * lat['1']:.2f} | {1000 * lat['64']:.1f} "
            f"| {student['latency_seconds']['1'] / max(lat['1'], 1e-12):.2f}x |"
        )
    lines.append("")
    if report.get("pruning"):
        p = report["pruning"]
        lines.append(
            f"Vocabulary pruned to {p['kept_tokens']:,} of {p['original_tokens']:,} tokens "
            f"(the tokens of {p['corpus_texts']:,} text{'' if p['corpus_texts'] == 1 else 's'}, "
            "and the special tokens)."
        )
    if report.get("onnx_max_abs_diff") is not None:
        lines.append(
            f"{report['fp32_file']} against the PyTorch model it was exported from: largest "
            f"logit difference {report['onnx_max_abs_diff']:.2e} on the evaluation set."
        )
    if report.get("evaluate_flags"):
        flags = " ".join(shlex.quote(f) for f in report["evaluate_flags"])
        lines.append(
            f"`lgtm evaluate --model FILE {flags}` scores the same "
            f"{report['eval_examples']:,} examples (FILE: this folder, one of its files, or "
            "the PyTorch student)."
        )
    elif "evaluate_flags" in report:
        lines.append(
            "These examples are not ones `lgtm evaluate` can read alone (the run carved its "
            "feedback set from them, or held them out of its training file)."
        )
    for check in report["checks"]:
        verdict = "within" if check["ok"] else "MORE THAN"
        lines.append(
            f"- {check['file']}: {change_words(check['drop_points'], metric)} against the "
            f"PyTorch student, {verdict} --max-metric-drop {check['max']:g}"
        )
    return "\n".join(lines) + "\n"


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """``export.json`` and ``export.md`` in ``folder``."""
    (folder / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "export.md").write_text(markdown(report))


def row_dict(row: Row) -> dict[str, Any]:
    """A row as JSON holds it."""
    return asdict(row)


def _times(smaller: float) -> str:
    """How many times smaller than the student, in words for a larger model:
    ``7.93x``, ``0.69x (1.45x larger)``."""
    return f"{smaller:.2f}x" if smaller >= 1 else f"{smaller:.2f}x ({1 / smaller:.2f}x larger)"
