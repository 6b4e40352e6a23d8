"""What a run leaves behind: metrics.json, influence.jsonl, plots/ and the summary table.

One module per job: :mod:`~lgtm.report.records` (the files: metrics.json with package versions,
the influence log, the tracked samples), :mod:`~lgtm.report.plots` (the figures, drawn from the
files alone so ``lgtm plot`` can redraw them for any finished or interrupted run) and
:mod:`~lgtm.report.summary` (the table printed at the end of a run). Every name callers use is
importable from ``lgtm.report`` itself.
"""

from __future__ import annotations

from lgtm.report.plots import PLOTS_DIR, loss_caption, make_plots
from lgtm.report.records import (
    INFLUENCE_FILE,
    METRICS_FILE,
    InfluenceLog,
    choose_tracked_ids,
    package_versions,
    read_influence,
    write_json_atomic,
    write_metrics,
)
from lgtm.report.summary import summary_table

__all__ = [
    "INFLUENCE_FILE",
    "METRICS_FILE",
    "PLOTS_DIR",
    "InfluenceLog",
    "choose_tracked_ids",
    "loss_caption",
    "make_plots",
    "package_versions",
    "read_influence",
    "summary_table",
    "write_json_atomic",
    "write_metrics",
]
