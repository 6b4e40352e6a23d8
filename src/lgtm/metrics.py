"""Task metrics as GLUE tooling names them, computed with scikit-learn and scipy.

Values are fractions (0.91, not 91). A metric whose formula divides zero by zero on the rows
scored (a correlation over fewer than 2 rows or over constant labels or predictions; Matthews'
over a single class; F1 with no positive label nor prediction) is undefined: ``None`` (null in
metrics.json, "undefined" in the summary), never a number that looks like a score
(:func:`undefined_reason` says why).
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


def undefined_reason(name: str, preds: np.ndarray, labels: np.ndarray) -> str | None:
    """Why metric ``name`` is undefined on these predictions and labels (a phrase), or None
    when it is defined. Correlations and Matthews' coefficient divide by the spread of both
    sides; F1 divides by the positives labelled and predicted."""
    if name in ("pearson", "spearmanr", "matthews_correlation"):
        if len(labels) < 2:
            return f"{len(labels)} row: a correlation needs 2"
        if np.ptp(labels) == 0:
            return "every label is the same"
        if np.ptp(preds) == 0:
            return "every prediction is the same"
    if name == "f1" and not (np.any(labels == 1) or np.any(preds == 1)):
        return "no positive label nor prediction"
    return None


def _correlation(fn, preds: np.ndarray, labels: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(preds, labels)[0])


def compute_metrics(
    task: Task, logits: np.ndarray, labels: np.ndarray, undefined: dict[str, str] | None = None
) -> dict[str, float | None]:
    """The task's metrics, in the task's order (the main metric first); ``None`` for one
    undefined on these rows, its reason then added to ``undefined`` (metric -> reason) when
    given."""
    preds = predictions(task, logits)
    labels = np.asarray(labels)
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no predictions to score")
    if not task.is_regression:
        labels = labels.astype(int)
    out: dict[str, float | None] = {}
    for name in task.metrics:
        if name not in ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr"):
            raise ValueError(f"unknown metric {name!r}")
        why = undefined_reason(name, preds, labels)
        if why is not None:
            out[name] = None
            if undefined is not None:
                undefined[name] = why
        elif name == "accuracy":
            out[name] = float(accuracy_score(labels, preds))
        elif name == "f1":
            out[name] = float(f1_score(labels, preds, pos_label=1, average="binary"))
        elif name == "matthews_correlation":
            out[name] = float(matthews_corrcoef(labels, preds))
        elif name == "pearson":
            out[name] = _correlation(stats.pearsonr, preds, labels.astype(float))
        else:
            out[name] = _correlation(stats.spearmanr, preds, labels.astype(float))
    return out
