"""What a run leaves behind: metrics.json, influence.jsonl, plots/ and the summary table.

Everything is written so that a killed run never leaves a half-written file behind
(:func:`write_json_atomic`), and the plots are made from the files alone, so ``lgtm plot``
can redraw them for any finished or interrupted run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from lgtm.errors import LgtmInputError

__all__ = [
    "InfluenceLog",
    "choose_tracked_ids",
    "make_plots",
    "package_versions",
    "read_influence",
    "summary_table",
    "write_json_atomic",
    "write_metrics",
]

METRICS_FILE = "metrics.json"
INFLUENCE_FILE = "influence.jsonl"
PLOTS_DIR = "plots"

STUDENT_COLOR = "#1f77b4"
TEACHER_COLOR = "#ff7f0e"
RIGHT_COLOR = "#2ca02c"
WRONG_COLOR = "#d62728"


# --------------------------------------------------------------------------- JSON files


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy/torch scalars and arrays to Python, NaN/inf to null, Path to str.

    NaN is not valid JSON; ``null`` keeps the file readable by any JSON parser.
    """
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return _plain(obj.tolist())
    if hasattr(obj, "item"):
        return _plain(obj.item())
    return str(obj)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same folder and
    ``os.replace``, so readers (and a resumed run) never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_plain(obj), f, indent=2, ensure_ascii=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour shapes the results."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "accelerate", "lgtm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = _module_version(name)
    return versions


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


def write_metrics(output_dir: str | os.PathLike[str], metrics: Mapping[str, Any]) -> Path:
    """Write ``output_dir/metrics.json`` atomically, adding ``"versions"`` if the caller did not.

    The caller's dict holds ``student``, ``teacher``, ``history``, ``method``, ``feedback``,
    ``seed``, ``samples_per_second``, ``wall_seconds``... (see the README).
    """
    data = dict(metrics)
    data.setdefault("versions", package_versions())
    path = Path(output_dir) / METRICS_FILE
    write_json_atomic(path, data)
    return path


# --------------------------------------------------------------------------- influence log


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor, on any device / dtype
        values = values.detach().float().cpu().numpy()
    return np.asarray(values)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class InfluenceLog:
    """influence.jsonl: one JSON line per (logging step, tracked sample).

    Each line: ``{"step", "epoch", "id", "influence", "label", "teacher_pred", "student_pred",
    "teacher_prob", "student_prob"}``. For classification ``*_pred`` is the predicted class and
    ``*_prob`` the probability the model gives to the *gold* label (so a sample's difficulty can
    be read off directly); for regression ``*_pred`` is the predicted score and ``*_prob`` null.

    A new log starts an empty file. ``resume_step=k`` keeps the lines of steps ``<= k`` of an
    existing file (those before the checkpoint a run resumes from) and appends after them, so a
    resumed run's log equals an uninterrupted run's.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        tracked_ids: Sequence[int],
        *,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.tracked_ids = frozenset(int(i) for i in tracked_ids)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_step is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= resume_step:
                        kept.append(line + "\n")
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line of a killed run
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, self.path)
            self._file = open(self.path, "a", encoding="utf-8")
        else:
            self._file = open(self.path, "w", encoding="utf-8")

    def log(
        self,
        step: int,
        epoch: float,
        ids: Sequence[int],
        influence: Sequence[float] | None,
        labels: Any,
        teacher_logits: Any,
        student_logits: Any,
    ) -> None:
        """Append (and flush) one line per tracked id among ``ids``; the others are ignored.

        Arguments are per-sample and aligned with ``ids``; tensors on any device are accepted.
        ``influence`` may be None (methods without per-sample influence): logged as null.
        """
        id_list = [int(i) for i in _to_numpy(ids).reshape(-1)]
        rows = [r for r, i in enumerate(id_list) if i in self.tracked_ids]
        if not rows:
            return
        infl = None if influence is None else _to_numpy(influence).reshape(-1)
        y = _to_numpy(labels).reshape(-1)
        t_logits = _to_numpy(teacher_logits).astype(np.float64)
        s_logits = _to_numpy(student_logits).astype(np.float64)
        regression = t_logits.ndim == 1 or t_logits.shape[-1] == 1
        if regression:
            t_pred, s_pred = t_logits.reshape(-1), s_logits.reshape(-1)
        else:
            t_prob, s_prob = _softmax(t_logits), _softmax(s_logits)
        lines = []
        for r in rows:
            record: dict[str, Any] = {
                "step": int(step),
                "epoch": float(epoch),
                "id": id_list[r],
                "influence": None if infl is None else float(infl[r]),
            }
            if regression:
                record |= {
                    "label": float(y[r]),
                    "teacher_pred": float(t_pred[r]),
                    "student_pred": float(s_pred[r]),
                    "teacher_prob": None,
                    "student_prob": None,
                }
            else:
                gold = int(y[r])
                record |= {
                    "label": gold,
                    "teacher_pred": int(t_prob[r].argmax()),
                    "student_pred": int(s_prob[r].argmax()),
                    "teacher_prob": float(t_prob[r, gold]),
                    "student_prob": float(s_prob[r, gold]),
                }
            lines.append(json.dumps(_plain(record)) + "\n")
        self._file.write("".join(lines))
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> InfluenceLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def choose_tracked_ids(train_ids: Sequence[int], n: int = 64, seed: int = 0) -> list[int]:
    """``n`` training ids drawn at random (seeded; independent of the input order), sorted.

    The paper follows 64 random training samples' influence over training.
    """
    pool = sorted({int(i) for i in train_ids})
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    return sorted(picked)


def read_influence(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of an influence.jsonl file (a torn last line of a killed run is skipped)."""
    records = []
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):
                break
            raise LgtmInputError("not a JSON line", file=path, line=number) from None
    return records


# --------------------------------------------------------------------------- plots


def _flatten_eval(values: Any, prefix: str = "") -> dict[str, float]:
    """``{metric: v}`` or ``{split: {metric: v}}`` -> ``{"metric" | "split metric": v}``."""
    flat: dict[str, float] = {}
    if not isinstance(values, Mapping):
        return flat
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_eval(value, prefix=f"{name} "))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


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


def _leaks(metrics: Mapping[str, Any]) -> bool:
    feedback = metrics.get("feedback")
    return isinstance(feedback, Mapping) and bool(feedback.get("leaks_into_evaluation"))


def _finish(fig: Any, path: Path, metrics: Mapping[str, Any], *, dev: bool = False) -> Path:
    """Save and close; figures of dev scores say when the feedback set leaked into them."""
    if dev and _leaks(metrics):
        fig.text(
            0.5,
            0.005,
            "Warning: the feedback set is the evaluation set, so these dev scores are not clean.",
            ha="center",
            va="bottom",
            color=WRONG_COLOR,
            fontsize=9,
        )
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _plot_dev_metrics(
    plt: Any, history: Sequence[Mapping], metrics: Mapping, out: Path
) -> Path | None:
    names: list[str] = []
    for entry in history:
        for who in ("student_eval", "teacher_eval"):
            for name in _flatten_eval(entry.get(who)):
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
                value = _flatten_eval(entry.get(who)).get(name)
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
        floor = _flatten_eval(metrics.get("majority_class")).get(name)
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
        ax.set_title(f"sample #{sample_id} (label {label}) — {why}", fontsize=9.5, loc="left")
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


def make_plots(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw ``output_dir/plots/*.png`` from ``metrics.json`` and ``influence.jsonl``.

    dev_metrics.png (student and teacher dev metrics over steps), losses.png (training losses),
    and, when influence.jsonl exists (LGTM methods), influence_samples.png (a few samples'
    influence with each model right/wrong) and influence_mean.png (mean ± std over the tracked
    samples). A figure without data is skipped. Returns the paths written.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    metrics_path = output_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise LgtmInputError(
            "no metrics.json here: not the output folder of a run", file=output_dir
        )
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise LgtmInputError(f"not valid JSON ({err})", file=metrics_path) from None
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
    return [p for p in written if p is not None]


# --------------------------------------------------------------------------- summary table


def _metric_rows(result: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """(row name, student value, teacher value) for each split and metric."""
    default_split = str(result.get("eval_split") or "dev")

    def by_split(values: Any) -> dict[str, dict[str, float]]:
        if not isinstance(values, Mapping):
            return {}
        if any(isinstance(v, Mapping) for v in values.values()):
            return {str(s): _flatten_eval(v) for s, v in values.items() if isinstance(v, Mapping)}
        return {default_split: _flatten_eval(values)}

    student, teacher = by_split(result.get("student")), by_split(result.get("teacher"))
    rows = []
    for split in list(student) + [s for s in teacher if s not in student]:
        s_vals, t_vals = student.get(split, {}), teacher.get(split, {})
        for metric in list(s_vals) + [m for m in t_vals if m not in s_vals]:
            rows.append((f"{split} {metric}", s_vals.get(metric), t_vals.get(metric)))
    return rows


def _pair(result: Mapping[str, Any], *keys: str) -> tuple[float | None, float | None]:
    """(student, teacher) from ``result[key] = {"student": x, "teacher": y}`` or
    ``result["student_<key>"]``."""
    for key in keys:
        value = result.get(key)
        if isinstance(value, Mapping):
            return value.get("student"), value.get("teacher")
        s, t = result.get(f"student_{key}"), result.get(f"teacher_{key}")
        if s is not None or t is not None:
            return s, t
    return None, None


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"


def summary_table(result: Mapping[str, Any]) -> Table:
    """The final summary a user reads: how good, how small and fast, how the run was done.

    ``result`` is the metrics dict (see :func:`write_metrics`) plus, when known:
    ``"parameters": {"student": n, "teacher": n}``, ``"latency_seconds": {"student": s,
    "teacher": s}`` (from :func:`lgtm.models.measure_latency`), ``"latency_batch_size"``,
    ``"task"``, ``"eval_split"`` (name of the split when ``student``/``teacher`` are flat
    ``{metric: value}``; they may also be ``{split: {metric: value}}``). A feedback set that
    leaks into evaluation is flagged in red.
    """
    task = result.get("task")
    method = result.get("method")
    title = (
        "Distillation summary" + (f": {task}" if task else "") + (f" ({method})" if method else "")
    )
    table = Table(title=title, title_style="bold", header_style="bold", show_lines=False)
    table.add_column("", style="bold")
    table.add_column("student", justify="right", style="cyan")
    table.add_column("teacher", justify="right", style="yellow")
    table.add_column("student vs teacher", justify="right")

    feedback = result.get("feedback")
    leaks = isinstance(feedback, Mapping) and bool(feedback.get("leaks_into_evaluation"))
    rows = _metric_rows(result)
    for n, (name, s, t) in enumerate(rows):
        diff = "–" if s is None or t is None else f"{s - t:+.4f}"
        label = Text(name + (" (leaked)" if leaks else ""), style="bold red" if leaks else "")
        table.add_row(label, _fmt(s), _fmt(t), diff, end_section=n == len(rows) - 1)

    s_params, t_params = _pair(result, "parameters", "params")
    if s_params is not None or t_params is not None:
        ratio = (
            f"{s_params / t_params:.2f}× ({t_params / s_params:.2f}× smaller)"
            if s_params and t_params
            else "–"
        )
        table.add_row(
            "parameters",
            _fmt(s_params and s_params / 1e6, ".1f") + " M",
            _fmt(t_params and t_params / 1e6, ".1f") + " M",
            ratio,
        )
    s_lat, t_lat = _pair(result, "latency_seconds", "latency")
    if s_lat is not None or t_lat is not None:
        batch = result.get("latency_batch_size")
        name = "latency / batch" + (f" of {batch}" if batch else "")
        speedup = f"{t_lat / s_lat:.2f}× faster" if s_lat and t_lat else "–"
        table.add_row(
            name,
            _fmt(s_lat and s_lat * 1e3, ".1f") + " ms",
            _fmt(t_lat and t_lat * 1e3, ".1f") + " ms",
            speedup,
            end_section=True,
        )
    elif s_params is not None or t_params is not None:
        table.rows[-1].end_section = True

    # How the run was done: left-aligned lines under the table, a loud warning if it leaked.
    lines: list[tuple[str, str]] = []
    if method:
        lines.append((f"method: {method}", ""))
    feedback = result.get("feedback")
    if isinstance(feedback, Mapping):
        source = feedback.get("source", "?")
        fraction = feedback.get("fraction")
        if leaks:
            lines.append(
                (
                    f"feedback: {source} set, the same set as the evaluation: LEAKS INTO "
                    "EVALUATION, the dev scores above are not clean (the paper's protocol)",
                    "bold red",
                )
            )
        elif source == "train":
            share = f"{fraction:.0%} of train" if isinstance(fraction, (int, float)) else "train"
            lines.append((f"feedback: {share}, held out; dev untouched until evaluation", ""))
        else:
            lines.append((f"feedback: {source}", ""))
    floor = _flatten_eval(result.get("majority_class"))
    if floor:
        values = ", ".join(f"{k} {v:.4f}" for k, v in floor.items())
        lines.append((f"majority class: {values}", ""))
    stages = result.get("stages")
    if isinstance(stages, list) and len(stages) > 1:  # kd's stage one, takd, rco
        main = result.get("main_metric")

        def score(stage: Mapping) -> str:
            dev = stage.get("dev")
            if isinstance(dev, Mapping) and isinstance(dev.get(main), (int, float)):
                return f" {dev[main]:.4f}"
            return ""

        lines.append(
            (
                "stages: "
                + " → ".join(f"{st.get('name')} ({st.get('trains')}{score(st)})" for st in stages),
                "",
            )
        )
    selection = result.get("selection")
    if isinstance(selection, Mapping):  # --select-on selection
        last = result.get("student_last")
        last_text = (
            ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, (int, float)))
            if isinstance(last, Mapping)
            else "?"
        )
        lines.append(
            (
                f"student: the best on the selection set, at step {selection.get('step')} "
                f"(selection score {float(selection.get('score', float('nan'))):.4f}); "
                f"the last step's dev: {last_text}",
                "",
            )
        )
    if result.get("wall_seconds") is not None:
        lines.append((f"wall time: {_duration(result['wall_seconds'])}", ""))
    if result.get("samples_per_second") is not None:
        lines.append((f"throughput: {float(result['samples_per_second']):.1f} samples/s", ""))
    if result.get("seed") is not None:
        lines.append((f"seed: {result['seed']}", ""))
    if lines:
        caption = Text(justify="left")
        for n, (line, style) in enumerate(lines):
            caption.append(("\n" if n else "") + line, style=style)
        table.caption = caption
        table.caption_justify = "left"
    return table
