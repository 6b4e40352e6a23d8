"""The figures of a run, drawn from its files alone (metrics.json, influence.jsonl), so
``lgtm plot`` can redraw them for any finished or interrupted run: dev metrics, losses (with a
caption each method gives), the influence of single samples and the mean influence, and the
student's weights when its distillation term is weighted by influence.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lgtm.fileio import atomic_write
from lgtm.report.records import (
    INFLUENCE_FILE,
    feedback_leaks,
    flatten_eval,
    read_influence,
    read_metrics,
)

__all__ = ["PLOTS_DIR", "loss_caption", "make_plots"]

PLOTS_DIR = "plots"

STUDENT_COLOR = "#1f77b4"
TEACHER_COLOR = "#ff7f0e"
RIGHT_COLOR = "#2ca02c"
WRONG_COLOR = "#d62728"


def _series(history: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    for entry in history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(entry.get("step", len(steps)))
            values.append(float(value))
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _add_epoch_axis(ax: Any, history: Sequence[Mapping]) -> None:
    """A second x axis on top in epochs, when the history says how steps map to epochs."""
    pairs = sorted(
        {
            (float(e["step"]), float(e["epoch"]))
            for e in history
            if isinstance(e.get("step"), (int, float)) and isinstance(e.get("epoch"), (int, float))
        }
    )
    steps = np.asarray([p[0] for p in pairs])
    epochs = np.asarray([p[1] for p in pairs])
    if len(pairs) < 2 or np.any(np.diff(steps) <= 0) or np.any(np.diff(epochs) <= 0):
        return
    # epoch = step / steps_per_epoch: a straight line, also outside the logged range.
    slope, intercept = np.polyfit(steps, epochs, 1)
    if slope <= 0:
        return
    top = ax.secondary_xaxis(
        "top",
        functions=(
            lambda s: np.asarray(s, dtype=float) * slope + intercept,
            lambda e: (np.asarray(e, dtype=float) - intercept) / slope,
        ),
    )
    top.set_xlabel("epoch", fontsize=9)
    top.tick_params(labelsize=8)


def _smooth(values: np.ndarray) -> np.ndarray | None:
    """Moving average for noisy per-step losses (None when there are too few points)."""
    if len(values) < 20:
        return None
    window = max(3, len(values) // 20)
    kernel = np.ones(window) / window
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _run_label(metrics: Mapping[str, Any]) -> str:
    parts = [str(metrics[k]) for k in ("task", "method") if metrics.get(k)]
    return " · ".join(parts)


def _finish(fig: Any, path: Path, metrics: Mapping[str, Any], *, dev: bool = False) -> Path:
    """Save and close; figures of dev scores say when the feedback set leaked into them."""
    if dev and feedback_leaks(metrics):
        fig.text(
            0.5,
            0.005,
            "Warning: the feedback set is the evaluation set, so these dev scores are not clean.",
            ha="center",
            va="bottom",
            color=WRONG_COLOR,
            fontsize=9,
        )
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    atomic_write(path, image.getvalue())  # a failed write never leaves half a figure
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _plot_dev_metrics(
    plt: Any, history: Sequence[Mapping], metrics: Mapping, out: Path
) -> Path | None:
    names: list[str] = []
    for entry in history:
        for who in ("student_eval", "teacher_eval"):
            for name in flatten_eval(entry.get(who)):
                if name not in names:
                    names.append(name)
    if not names:
        return None
    names = names[:6]
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows + 0.6), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for who, color, label in (
            ("student_eval", STUDENT_COLOR, "student"),
            ("teacher_eval", TEACHER_COLOR, "teacher"),
        ):
            steps, values = [], []
            for entry in history:
                value = flatten_eval(entry.get(who)).get(name)
                if value is not None and math.isfinite(value):
                    steps.append(entry.get("step", len(steps)))
                    values.append(value)
            if steps:
                ax.plot(steps, values, "o-", color=color, label=label, markersize=4, linewidth=1.8)
                ax.annotate(
                    f"{values[-1]:.3f}",
                    (steps[-1], values[-1]),
                    textcoords="offset points",
                    xytext=(5, 5 if label == "student" else -12),
                    fontsize=8,
                    color=color,
                )
        floor = flatten_eval(metrics.get("majority_class")).get(name)
        if floor is not None:
            ax.axhline(floor, ls="--", color="grey", lw=1, label="majority class")
        ax.margins(x=0.08, y=0.12)  # room for the final-value labels
        ax.set_title(f"Dev {name}", fontsize=11)
        ax.set_xlabel("training step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        _add_epoch_axis(ax, history)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    run = _run_label(metrics)
    fig.suptitle(
        "Student and teacher on the dev set during training" + (f"\n{run}" if run else ""),
        fontsize=11 if cols == 1 else 12,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _finish(fig, out / "dev_metrics.png", metrics, dev=True)


def loss_caption(method: str) -> str:
    """A plain account of the curves in ``losses.png`` for ``method`` (one or two lines), as
    the method declares it (``Method.loss_caption``); empty for a name no method has."""
    from lgtm.methods import method_class

    try:
        return method_class(method).loss_caption()
    except ValueError:
        return ""


def _plot_losses(plt: Any, history: Sequence[Mapping], metrics: Mapping, out: Path) -> Path | None:
    curves = [
        (key, color, label, *_series(history, key))
        for key, color, label in (
            ("student_loss", STUDENT_COLOR, "student"),
            ("teacher_loss", TEACHER_COLOR, "teacher"),
        )
    ]
    curves = [c for c in curves if len(c[3])]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for _, color, label, steps, values in curves:
        smooth = _smooth(values)
        if smooth is None:
            ax.plot(steps, values, "o-", color=color, label=f"{label} loss", markersize=3)
        else:
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth, color=color, linewidth=2, label=f"{label} loss (moving average)")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    run = _run_label(metrics)
    ax.set_title("Training losses" + (f" ({run})" if run else ""), fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    _add_epoch_axis(ax, history)
    import textwrap

    caption = "\n".join(
        textwrap.fill(line, 120)
        for line in loss_caption(str(metrics.get("method") or "")).split("\n")
    )
    lines = caption.count("\n") + 1
    height = 4.6 + 0.16 * lines  # inches: the plot keeps its size, the caption gets its own
    fig.set_size_inches(8, height)
    fig.text(0.01, 0.01, caption, ha="left", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, (0.16 * lines + 0.1) / height, 1, 1))
    return _finish(fig, out / "losses.png", metrics)


def _correct(record: Mapping, who: str) -> bool | None:
    pred, label = record.get(f"{who}_pred"), record.get("label")
    if pred is None or label is None:
        return None
    if record.get(f"{who}_prob") is None and isinstance(pred, float):
        return abs(pred - float(label)) <= 0.5  # regression: "right" = within half a point
    return int(pred) == int(label)


def _by_sample(records: Iterable[Mapping]) -> dict[int, list[Mapping]]:
    samples: dict[int, list[Mapping]] = defaultdict(list)
    for record in records:
        if record.get("influence") is not None:
            samples[int(record["id"])].append(record)
    for series in samples.values():
        series.sort(key=lambda r: r["step"])
    return dict(samples)


def _pick_samples(samples: Mapping[int, list[Mapping]], k: int = 4) -> list[tuple[int, str]]:
    """Up to ``k`` samples worth looking at, each with why it was chosen.

    easy: both models right most of the time, highest mean influence; hard: both models wrong
    early in training; then the most negative mean influence and a typical (median) sample.
    """
    if not samples:
        return []

    def mean_infl(i: int) -> float:
        return float(np.mean([r["influence"] for r in samples[i]]))

    def both_right(i: int, part: slice = slice(None)) -> float:
        series = samples[i][part]
        return float(
            np.mean([bool(_correct(r, "teacher")) and bool(_correct(r, "student")) for r in series])
        )

    def both_wrong_early(i: int) -> float:
        series = samples[i]
        early = series[: max(1, len(series) // 3)]
        return float(
            np.mean(
                [_correct(r, "teacher") is False and _correct(r, "student") is False for r in early]
            )
        )

    chosen: list[tuple[int, str]] = []
    ids = sorted(samples)

    def take(candidates: list[int], key: Any, why: str) -> None:
        rest = [i for i in candidates if i not in {c for c, _ in chosen}]
        if rest and len(chosen) < k:
            chosen.append((max(rest, key=key), why))

    easy = [i for i in ids if both_right(i) >= 0.5]
    if easy:
        take(easy, mean_infl, "easy: both right most of the time, highest mean influence")
    hard = [i for i in ids if both_wrong_early(i) > 0]
    if hard:
        take(
            hard, lambda i: (both_wrong_early(i), -mean_infl(i)), "hard: both models wrong early on"
        )
    take(ids, lambda i: -mean_infl(i), "lowest mean influence")
    remaining = sorted((i for i in ids if i not in {c for c, _ in chosen}), key=mean_infl)
    if remaining and len(chosen) < k:
        chosen.append((remaining[len(remaining) // 2], "typical: median mean influence"))
    for i in sorted(ids, key=lambda i: -np.std([r["influence"] for r in samples[i]])):
        if len(chosen) >= k:
            break
        if i not in {c for c, _ in chosen}:
            chosen.append((i, "most variable influence"))
    return chosen


def _plot_influence_samples(
    plt: Any, samples: Mapping[int, list[Mapping]], metrics: Mapping, out: Path
) -> Path | None:
    picks = _pick_samples(samples)
    if not picks:
        return None
    from matplotlib.lines import Line2D

    cols = 2 if len(picks) > 1 else 1
    rows = math.ceil(len(picks) / cols)
    fig = plt.figure(figsize=(6.6 * cols, 3.9 * rows + 0.9))
    outer = fig.add_gridspec(rows, cols, hspace=0.34, wspace=0.2)
    for n, (sample_id, why) in enumerate(picks):
        r, c = divmod(n, cols)
        inner = outer[r, c].subgridspec(2, 1, height_ratios=[4, 1], hspace=0.06)
        ax = fig.add_subplot(inner[0])
        strip = fig.add_subplot(inner[1], sharex=ax)
        series = samples[sample_id]
        steps = np.asarray([rec["step"] for rec in series], dtype=float)
        infl = np.asarray([rec["influence"] for rec in series], dtype=float)
        ax.axhline(0, color="0.4", linewidth=0.8, linestyle="--")
        ax.plot(steps, infl, "-o", color="#6a3d9a", markersize=3.5, linewidth=1.6)
        label = series[0].get("label")
        label = "unlabelled" if label is None else f"label {label}"
        ax.set_title(f"sample #{sample_id} ({label}) — {why}", fontsize=9.5, loc="left")
        ax.set_ylabel("influence")
        ax.grid(alpha=0.3)
        ax.tick_params(labelbottom=False)
        for row, who in ((1, "teacher"), (0, "student")):
            colors = [
                {True: RIGHT_COLOR, False: WRONG_COLOR, None: "0.7"}[_correct(rec, who)]
                for rec in series
            ]
            strip.scatter(steps, np.full(len(steps), row), c=colors, marker="s", s=22, linewidths=0)
        strip.set_yticks([1, 0], ["teacher", "student"], fontsize=8)
        strip.set_ylim(-0.7, 1.7)
        if r == rows - 1 or n + cols >= len(picks):
            strip.set_xlabel("training step", fontsize=9)
        strip.grid(axis="x", alpha=0.3)
    handles = [
        Line2D([], [], color="#6a3d9a", marker="o", markersize=4, label="distillation influence"),
        Line2D(
            [], [], color=RIGHT_COLOR, marker="s", linestyle="", label="model predicts it right"
        ),
        Line2D(
            [], [], color=WRONG_COLOR, marker="s", linestyle="", label="model predicts it wrong"
        ),
    ]
    fig.legend(
        handles=handles,
        loc="upper right",
        ncol=3,
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.99, 0.985),
    )
    run = _run_label(metrics)
    fig.suptitle(
        "Distillation influence of single training samples" + (f" ({run})" if run else ""),
        x=0.01,
        ha="left",
        fontsize=12,
    )
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.8 / height, bottom=0.55 / height + 0.02)
    return _finish(fig, out / "influence_samples.png", metrics)


def _plot_influence_mean(
    plt: Any, samples: Mapping[int, list[Mapping]], metrics: Mapping, out: Path
) -> Path | None:
    per_step: dict[float, list[float]] = defaultdict(list)
    for series in samples.values():
        for rec in series:
            per_step[float(rec["step"])].append(float(rec["influence"]))
    if not per_step:
        return None
    steps = np.asarray(sorted(per_step))
    mean = np.asarray([np.mean(per_step[s]) for s in steps])
    std = np.asarray([np.std(per_step[s]) for s in steps])
    fig, ax = plt.subplots(figsize=(8, 4.6))
    ax.axhline(0, color="0.4", linewidth=0.8, linestyle="--")
    ax.fill_between(
        steps, mean - std, mean + std, color="#6a3d9a", alpha=0.18, label="± 1 standard deviation"
    )
    ax.plot(steps, mean, "-o", color="#6a3d9a", markersize=3.5, linewidth=2, label="mean")
    ax.set_xlabel("training step")
    ax.set_ylabel("distillation influence")
    run = _run_label(metrics)
    ax.set_title(
        f"Mean influence of {len(samples)} tracked training samples" + (f" ({run})" if run else ""),
        fontsize=12,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    history = metrics.get("history") or []
    _add_epoch_axis(
        ax,
        history
        if history
        else [{"step": rec["step"], "epoch": rec["epoch"]} for s in samples.values() for rec in s],
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _finish(fig, out / "influence_mean.png", metrics)


def _plot_student_weights(
    plt: Any, samples: Mapping[int, list[Mapping]], metrics: Mapping, out: Path
) -> Path | None:
    """``--student-weighting influence``: the share of each batch kept (``λ > 0``) and the
    tracked samples' ``λ`` over training, relative to uniform weights (``λ`` times their
    number: median, 10th–90th percentiles, largest), and the share of them weighted."""
    kept: dict[float, float] = {}
    per_step: dict[float, list[float]] = defaultdict(list)
    for series in samples.values():
        for rec in series:
            if rec.get("weight") is None:
                continue
            per_step[float(rec["step"])].append(float(rec["weight"]))
            if rec.get("weights_kept") is not None:
                kept[float(rec["step"])] = float(rec["weights_kept"])
    if not per_step:
        return None
    steps = np.asarray(sorted(per_step))
    weights = [np.asarray(per_step[s]) * len(per_step[s]) for s in steps]  # 1: uniform
    low, median, high = (np.asarray([np.percentile(w, q) for w in weights]) for q in (10, 50, 90))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
    share = np.asarray([kept.get(s, np.nan) for s in steps])
    top.plot(steps, share, "-o", color=STUDENT_COLOR, markersize=3.5, label="training batch")
    top.plot(
        steps,
        [float((w > 0).mean()) for w in weights],
        "--",
        color="0.45",
        label="tracked samples",
    )
    top.set_ylim(-0.03, 1.03)
    top.set_ylabel("share kept (λ > 0)")
    top.legend(loc="best", fontsize=9)
    top.grid(alpha=0.3)
    bottom.fill_between(steps, low, high, color="#6a3d9a", alpha=0.18, label="10th–90th percentile")
    bottom.plot(steps, median, "-o", color="#6a3d9a", markersize=3.5, linewidth=2, label="median")
    bottom.plot(steps, [w.max() for w in weights], ":", color="#6a3d9a", label="largest")
    bottom.axhline(1, color="0.4", linewidth=0.8, linestyle="--", label="uniform")
    bottom.set_xlabel("training step")
    bottom.set_yscale("symlog", linthresh=1.0)  # a sample that takes all the weight stays legible
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("weight λ × samples (1: uniform)")
    bottom.legend(loc="best", fontsize=9)
    bottom.grid(alpha=0.3)
    run = _run_label(metrics)
    top.set_title(
        f"Student weights λ ∝ max(influence, 0) of {len(samples)} tracked samples"
        + (f" ({run})" if run else ""),
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _finish(fig, out / "student_weights.png", metrics)


def make_plots(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw ``output_dir/plots/*.png`` from ``metrics.json`` and ``influence.jsonl``.

    dev_metrics.png (student and teacher dev metrics over steps), losses.png (training losses),
    and, when influence.jsonl exists (LGTM methods), influence_samples.png (a few samples'
    influence with each model right/wrong) and influence_mean.png (mean ± std over the tracked
    samples); with ``--student-weighting influence`` also student_weights.png (the share of each
    batch kept and the tracked samples' weights λ). A figure without data is skipped. Returns
    the paths written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    metrics = read_metrics(output_dir)
    history = [h for h in metrics.get("history") or [] if isinstance(h, Mapping)]
    out = output_dir / PLOTS_DIR
    out.mkdir(parents=True, exist_ok=True)

    written: list[Path | None] = []
    with plt.style.context("default"):
        written.append(_plot_dev_metrics(plt, history, metrics, out))
        written.append(_plot_losses(plt, history, metrics, out))
        influence_path = output_dir / INFLUENCE_FILE
        if influence_path.is_file():
            samples = _by_sample(read_influence(influence_path))
            written.append(_plot_influence_samples(plt, samples, metrics, out))
            written.append(_plot_influence_mean(plt, samples, metrics, out))
            written.append(_plot_student_weights(plt, samples, metrics, out))
    return [p for p in written if p is not None]
