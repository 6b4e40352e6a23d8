"""The summary table a user reads at the end of a run: how good the student is against its
teacher, how small and fast, and how the run was done."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from lgtm.report.records import feedback_leaks, flatten_eval

__all__ = ["summary_table"]


def _metric_rows(result: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(row name, student value, teacher value) for each split and metric; a value is a
    number, :data:`UNDEFINED`, or None (no such model or metric)."""
    default_split = str(result.get("eval_split") or "dev")

    def by_split(values: Any) -> dict[str, dict[str, float]]:
        if not isinstance(values, Mapping):
            return {}
        if any(isinstance(v, Mapping) for v in values.values()):
            return {
                str(s): flatten_eval(v, undefined=True)
                for s, v in values.items()
                if isinstance(v, Mapping)
            }
        return {default_split: flatten_eval(values, undefined=True)}

    student, teacher = by_split(result.get("student")), by_split(result.get("teacher"))
    rows = []
    for split in list(student) + [s for s in teacher if s not in student]:
        s_vals, t_vals = student.get(split, {}), teacher.get(split, {})
        for metric in list(s_vals) + [m for m in t_vals if m not in s_vals]:
            s, t = (_defined(vals, metric) for vals in (s_vals, t_vals))
            rows.append((f"{split} {metric}", s, t))
    return rows


#: How a metric undefined on its data (null in metrics.json) reads in the summary.
UNDEFINED = "undefined"


def _defined(values: Mapping[str, float | None], metric: str) -> float | str | None:
    """The value of ``metric``: a number, :data:`UNDEFINED` (present as null), or None."""
    if metric in values and values[metric] is None:
        return UNDEFINED
    return values.get(metric)


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

    ``result`` is the metrics dict (see :func:`lgtm.report.write_metrics`) plus, when known:
    ``"parameters": {"student": n, "teacher": n}``, ``"latency_seconds": {"student": s,
    "teacher": s}`` (from :func:`lgtm.models.measure_latency`), ``"latency_batch_size"``,
    ``"task"``, ``"eval_split"`` (name of the split when ``student``/``teacher`` are flat
    ``{metric: value}``; they may also be ``{split: {metric: value}}``). A feedback set that
    leaks into evaluation is flagged in red.
    """
    table = _new_table(result)
    _add_score_rows(table, result)
    _add_size_rows(table, result)
    # How the run was done: left-aligned lines under the table, a loud warning if it leaked.
    lines = _caption_lines(result)
    if lines:
        caption = Text(justify="left")
        for n, (line, style) in enumerate(lines):
            caption.append(("\n" if n else "") + line, style=style)
        table.caption = caption
        table.caption_justify = "left"
    return table


def _new_table(result: Mapping[str, Any]) -> Table:
    """The empty table: its title (task and method) and its four columns."""
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
    return table


def _add_score_rows(table: Table, result: Mapping[str, Any]) -> None:
    """One row per split and metric, in red when the feedback set leaked into evaluation."""
    leaks = feedback_leaks(result)
    rows = _metric_rows(result)
    for n, (name, s, t) in enumerate(rows):
        numbers = isinstance(s, float) and isinstance(t, float)
        diff = f"{s - t:+.4f}" if numbers else "–"
        label = Text(name + (" (leaked)" if leaks else ""), style="bold red" if leaks else "")
        table.add_row(label, _fmt(s), _fmt(t), diff, end_section=n == len(rows) - 1)


def _add_size_rows(table: Table, result: Mapping[str, Any]) -> None:
    """Parameters and latency of both models, when known, as a section of their own."""
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


def _caption_lines(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(text, rich style) of each line under the table: method, feedback, majority class,
    stages, selection, wall time, throughput, seed (each when known)."""
    lines: list[tuple[str, str]] = []
    method = result.get("method")
    if method:
        lines.append((f"method: {method}", ""))
    weighting = result.get("student_weighting")
    if isinstance(weighting, Mapping):
        kept = weighting.get("weights_kept_mean")
        share = f"; {kept:.0%} of each batch kept on average" if isinstance(kept, float) else ""
        lines.append(
            (
                "student weighting: each sample's distillation term weighted by its positive "
                f"influence on the feedback loss{share}",
                "",
            )
        )
    feedback = _feedback_line(result)
    if feedback is not None:
        lines.append(feedback)
    transfer = result.get("transfer")
    if isinstance(transfer, Mapping):
        lines.append((_transfer_text(transfer), ""))
    lr_search = result.get("lr_search")
    if isinstance(lr_search, Mapping):
        lines.append(
            (
                f"lr auto: {lr_search['lr']:.3g}, chosen by {len(lr_search['trials'])} trials "
                f"on the selection set ({lr_search['study']})",
                "",
            )
        )
    gain = result.get("default_run_gain")
    if isinstance(gain, Mapping):
        lines.append((_gain_text(gain), ""))
    floor = flatten_eval(result.get("majority_class"), undefined=True)
    if floor:
        values = ", ".join(
            f"{k} {UNDEFINED if v is None else format(v, '.4f')}" for k, v in floor.items()
        )
        lines.append((f"majority class: {values}", ""))
    stages = result.get("stages")
    if isinstance(stages, list) and len(stages) > 1:  # a run of several stages
        lines.append((_stages_text(stages, result.get("main_metric")), ""))
    selection = result.get("selection")
    if isinstance(selection, Mapping):  # --select-on selection
        lines.append((_selection_text(selection, result.get("student_last")), ""))
    if result.get("wall_seconds") is not None:
        lines.append((f"wall time: {_duration(result['wall_seconds'])}", ""))
    if result.get("samples_per_second") is not None:
        lines.append((f"throughput: {float(result['samples_per_second']):.1f} samples/s", ""))
    if result.get("seed") is not None:
        lines.append((f"seed: {result['seed']}", ""))
    return lines


def _feedback_line(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """Where the feedback set came from, a loud warning when it leaked into evaluation."""
    feedback = result.get("feedback")
    if not isinstance(feedback, Mapping):
        return None
    source = feedback.get("source", "?")
    fraction = feedback.get("fraction")
    if feedback_leaks(result):
        return (
            f"feedback: {source} set, the same set as the evaluation: LEAKS INTO "
            "EVALUATION, the dev scores above are not clean (the paper's protocol)",
            "bold red",
        )
    if source == "train":
        share = f"{fraction:.0%} of train" if isinstance(fraction, (int, float)) else "train"
        return (f"feedback: {share}, held out; dev untouched until evaluation", "")
    return (f"feedback: {source}", "")


def _transfer_text(transfer: Mapping) -> str:
    """The transfer set: rows the teacher labelled, where they came from, what was dropped."""
    text = (
        f"transfer set: {transfer.get('rows')} rows without labels, labelled by the teacher, "
        f"{transfer.get('batch_size')} a step ({transfer.get('source')})"
    )
    if transfer.get("dropped_in_eval"):
        text += f"; {transfer['dropped_in_eval']} dropped: their text is in a scored set"
    return text


def _gain_text(gain: Mapping) -> str:
    """The demonstration's measured gain over the student alone (a committed benchmark)."""
    verdict = f": {gain['verdict']}" if gain.get("verdict") else ""
    return (
        f"measured: with these settings the student scored {gain['mean']:+.1f} points "
        f"[{gain['low']:+.1f}, {gain['high']:+.1f}] (95%, {gain['n']} paired seeds) against "
        f"the student alone{verdict} ({gain['source']})"
    )


def _stages_text(stages: list, main: Any) -> str:
    """The run's stages in order, each with what it trained and its dev ``main`` score at the
    stage's last step (the kept checkpoint's score, when one is chosen, is the table's)."""

    def score(stage: Mapping) -> str:
        dev = stage.get("dev")
        if isinstance(dev, Mapping) and isinstance(dev.get(main), (int, float)):
            return f" {dev[main]:.4f}"
        return ""

    return "stages (dev at each one's last step): " + " → ".join(
        f"{st.get('name')} ({st.get('trains')}{score(st)})" for st in stages
    )


def _selection_text(selection: Mapping, last: Any) -> str:
    """Which step's student was kept, and the last step's dev scores beside it."""
    last_text = (
        ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, (int, float)))
        if isinstance(last, Mapping)
        else "?"
    )
    return (
        f"student: the best on the selection set, at step {selection.get('step')} "
        f"(selection score {float(selection.get('score', float('nan'))):.4f}); "
        f"the last step's dev: {last_text}"
    )
