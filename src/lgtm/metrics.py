"""Task metrics as GLUE tooling names them, computed with scikit-learn and scipy.

Values are fractions (0.91, not 91). Correlations of a constant prediction are undefined;
they are reported as 0.0 so that every value stays a finite number that JSON can hold.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from lgtm.data.tasks import Task


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class indices (argmax) for classification, the score (first output) for regression."""
    logits = np.asarray(logits)
    if task.is_regression:
        return (logits[:, 0] if logits.ndim == 2 else logits).astype(float)
    if logits.ndim != 2:
        raise ValueError(f"classification logits must be (n, num_labels), got {logits.shape}")
    return logits.argmax(axis=-1)


def _correlation(fn, preds: np.ndarray, labels: np.ndarray) -> float:
    if len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(preds, labels)[0])
    return value if np.isfinite(value) else 0.0


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics, in the task's order (the main metric first)."""
    preds = predictions(task, logits)
    labels = np.asarray(labels)
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no predictions to score")
    if not task.is_regression:
        labels = labels.astype(int)
    out: dict[str, float] = {}
    for name in task.metrics:
        if name == "accuracy":
            out[name] = float(accuracy_score(labels, preds))
        elif name == "f1":
            out[name] = float(
                f1_score(labels, preds, pos_label=1, average="binary", zero_division=0)
            )
        elif name == "matthews_correlation":
            out[name] = float(matthews_corrcoef(labels, preds))
        elif name == "pearson":
            out[name] = _correlation(stats.pearsonr, preds, labels.astype(float))
        elif name == "spearmanr":
            out[name] = _correlation(stats.spearmanr, preds, labels.astype(float))
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out
