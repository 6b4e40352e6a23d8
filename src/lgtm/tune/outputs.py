"""What ``lgtm tune`` leaves in its folder: ``trials.csv`` (every trial's settings, selection
score, steps and state), ``best.yaml`` (``lgtm distill --config best.yaml`` runs it as is),
``tune.png`` (selection score against each setting) and ``tune.json``; and the summary."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

from lgtm.config import RunConfig, resolve, save_yaml
from lgtm.fileio import atomic_write, plain
from lgtm.tune.space import Range


def trial_rows(study: Any, space: list[Range]) -> list[dict[str, Any]]:
    """One row per trial, in order: number, outcome, selection score, steps, seconds, settings."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        outcome = t.user_attrs.get("outcome") or t.state.name.lower()
        if t.state.name == "FAIL" and outcome != "diverged":
            outcome = "failed"  # its process was killed: the trial is run again
        elif t.state.name == "RUNNING":
            outcome = "running"
        rows.append(
            {
                "trial": t.number,
                "state": outcome,
                # a pruned trial keeps no student (Optuna gives it its last reported score)
                "selection_score": t.value if t.state.name == "COMPLETE" else None,
                "last_selection_score": (
                    t.intermediate_values[max(t.intermediate_values)]
                    if t.intermediate_values
                    else None
                ),
                "steps": t.user_attrs.get("steps"),
                "seconds": t.user_attrs.get("seconds"),
                **{r.name: t.params.get(r.name) for r in space},
            }
        )
    return rows


def write(
    study: Any,
    explicit: dict[str, Any],
    base: RunConfig,
    space: list[Range],
    settings: Any,
    out: Path,
    show: bool = True,
) -> dict[str, Any]:
    """Write the study's outputs and print its summary (unless ``show`` is false; ``--quiet``
    too prints it, as ``lgtm distill --quiet`` does); returns ``tune.json``'s content."""
    rows = trial_rows(study, space)
    _write_csv(out / "trials.csv", rows)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    best_config = None
    if best is not None:
        best_config = best_run(explicit, best.params, out)
        save_yaml(best_config, out / "best.yaml")
        _figure(study, out / "tune.png")
    spent = [r["steps"] or 0 for r in rows]
    result = {
        "study_name": settings.study_name,
        "storage": settings.storage or f"sqlite:///{(out / 'study.db').resolve()}",
        "trials": settings.trials,
        "space": [r.text() for r in space],
        "pruning": settings.pruning,
        "seed": base.seed,
        "method": base.method,
        "scored_on": "selection set (dev neither read nor scored)",
        "best": None
        if best is None
        else {"trial": best.number, "selection_score": best.value, "params": best.params},
        "best_yaml": str(out / "best.yaml") if best is not None else None,
        "counts": {
            k: sum(r["state"] == k for r in rows) for k in ("complete", "pruned", "diverged")
        },
        "trial_steps": sum(spent),
        "table": rows,
    }
    atomic_write(out / "tune.json", _json(result))
    if show:
        _print_summary(result, out)
    return result


def best_run(explicit: dict[str, Any], params: dict[str, Any], out: Path) -> RunConfig:
    """The run ``best.yaml`` holds: the user's settings with the best trial's, dev read and
    scored as in any run, in ``<output_dir>/best``; it keeps the student as the trials did
    (``--select-on selection``, unless the user gave ``--select-on``)."""
    keep = {k: v for k, v in explicit.items() if k not in ("overwrite", "resume", "output_dir")}
    select_on = keep.pop("select_on", "selection")
    return resolve({**keep, **params, "select_on": select_on, "output_dir": str(out / "best")})


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def _json(obj: Any) -> str:
    import json

    return json.dumps(plain(obj), indent=2) + "\n"


def _figure(study: Any, path: Path) -> None:
    """``tune.png``: :func:`slice_figure`, saved."""
    import matplotlib.pyplot as plt

    figure = slice_figure(study)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def slice_figure(study: Any) -> Any:
    """Selection score against each searched setting (Optuna's slice plot), one panel each,
    log axes labelled so that no two labels collide (a matplotlib ``Figure``)."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from matplotlib.ticker import MaxNLocator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = optuna.visualization.matplotlib.plot_slice(study, target_name="selection score")
    panels = list(getattr(axes, "flat", [axes]))
    figure = panels[0].figure
    figure.set_size_inches(4 * max(1, len(panels)), 3.5)
    for ax in panels:
        if ax.get_xscale() == "log":
            _log_ticks(ax)
        ax.tick_params(axis="x", labelrotation=30)
    for ax in figure.axes:  # the colour bar: trial numbers are whole
        if ax not in panels:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def _log_ticks(ax: Any) -> None:
    """Labels a log axis can hold without collisions (matplotlib's own label minor ticks over
    less than a decade, and they overlap): the first of 10^k, then 1 and 3 × 10^k, then 1, 2,
    3 and 5 × 10^k, then finer, that gives at least three labels in the axis's range, at most
    six (every other one beyond)."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    low, high = ax.get_xlim()
    if not 0 < low < high:
        return
    powers = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for subs in ((1,), (1, 3), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 7)):
        ticks = sorted(m * 10.0**k for k in powers for m in subs if low <= m * 10.0**k <= high)
        if len(ticks) >= 3:
            break
    while len(ticks) > 6:
        ticks = ticks[::2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _short(value: float) -> str:
    """``1.5e-4`` for 0.00015, ``2`` for 2.0 and ``0.05`` for 0.05: a tick label."""
    if 0.01 <= abs(value) < 1000:
        return f"{value:.2g}" if abs(value) < 100 else f"{value:.0f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


#: Short column headers of the printed table (``trials.csv`` keeps the full names).
HEADERS = {"selection_score": "selection", "seconds": "s"}


def _print_summary(result: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    finished = sum(result["counts"].values())  # the study's, also beyond a smaller --trials
    table = Table(title=f"lgtm tune: {result['method']}, {finished} trials")
    rows = result["table"]
    names = [k for k in (rows[0] if rows else {}) if k not in ("last_selection_score",)]
    for name in names:
        table.add_column(HEADERS.get(name, name), justify="right", no_wrap=True)
    best = (result["best"] or {}).get("trial")
    for r in rows:
        cells = [_fmt(r[k]) for k in names]
        table.add_row(*cells, style="bold" if r["trial"] == best else None)
    console = Console()
    if not console.is_terminal:  # a file or a pipe: no terminal's width to fit, nothing cut
        console = Console(width=max(80, Console(width=400).measure(table).maximum))
    console.print(table)
    c = result["counts"]
    console.print(  # soft_wrap: a line longer than the table is not broken mid-sentence
        f"scored on the selection set; dev neither read nor scored. {c['complete']} complete, "
        f"{c['pruned']} pruned, {c['diverged']} diverged; {result['trial_steps']} trial-steps",
        soft_wrap=True,
    )
    failed = [str(r["trial"]) for r in rows if r["state"] == "failed"]
    if failed:  # what a reader of "failed" needs to know
        console.print(
            f"failed: {', '.join(failed)}: stopped (interrupted, killed or an error) and run again "
            "with the same settings as a later trial",
            soft_wrap=True,
        )
    if result["best_yaml"]:
        console.print(f"next: lgtm distill --config {result['best_yaml']}", soft_wrap=True)
    console.print(f"outputs in {out}/", soft_wrap=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
