"""Scoring a model on encoded evaluation splits with the task's metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lgtm.batches import to_device


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    features: list[dict],
    collate: Callable,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Logits of ``model`` on encoded examples, in order (eval mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(features), batch_size):
            batch = collate(features[start : start + batch_size])
            batch.pop("example_id", None)
            batch.pop("labels", None)
            out.append(model(**to_device(batch, torch.device(device))).logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 1), dtype=np.float32)


def evaluate(
    model: torch.nn.Module,
    task: Any,
    evals: dict[str, list[dict]],
    collate: Callable,
    batch_size: int,
    device: torch.device | str = "cpu",
    undefined: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The task's metrics: ``{metric: value}`` for one evaluation split, or
    ``{split: {metric: value}}`` for several (MNLI matched and mismatched). A metric undefined
    on a split is ``None`` (``lgtm.metrics.undefined_reason``), and ``undefined`` (when given)
    gets ``"<split> <metric>"`` -> the reason."""
    from lgtm.metrics import compute_metrics

    out: dict[str, Any] = {}
    for split, features in evals.items():
        logits = predict_logits(model, features, collate, batch_size, device)
        labels = np.asarray([f["labels"] for f in features])
        why: dict[str, str] = {}
        out[split] = compute_metrics(task, logits, labels, why)
        if undefined is not None:
            undefined.update({f"{split} {name}": reason for name, reason in why.items()})
    return next(iter(out.values())) if len(out) == 1 else out


def undefined_notice(undefined: dict[str, str]) -> str | None:
    """One line naming the metrics that were undefined (``evaluate``'s ``undefined``), or
    None when none was."""
    if not undefined:
        return None
    items = "; ".join(f"{name}: {why}" for name, why in sorted(undefined.items()))
    return f"lgtm: note: undefined metrics, recorded as null: {items}"


def majority_class(task: Any, train_labels: list, evals: dict[str, list]) -> dict[str, Any] | None:
    """What always answering the training set's most frequent class scores, shaped like
    :func:`evaluate`'s output (the floor a student must rise above); None for regression.

    ``train_labels``: class indices; ``evals``: split -> examples or encoded features (each
    with ``label`` / ``labels``). Ties go to the smaller class index.
    """
    from lgtm.metrics import compute_metrics

    if task.is_regression or not train_labels:
        return None
    counts = np.bincount(np.asarray(train_labels, dtype=int), minlength=len(task.label_names))
    top = int(counts.argmax())
    out: dict[str, Any] = {}
    for split, rows in evals.items():
        labels = np.asarray([r["labels"] if isinstance(r, dict) else r.label for r in rows])
        logits = np.zeros((len(labels), len(task.label_names)), dtype=np.float32)
        logits[:, top] = 1.0
        out[split] = compute_metrics(task, logits, labels)
    return next(iter(out.values())) if len(out) == 1 else out
