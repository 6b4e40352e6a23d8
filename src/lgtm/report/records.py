"""The files a run leaves: metrics.json (with package versions), influence.jsonl (the influence
log, written while training and read back), and the choice of the training samples it tracks.

Whole files (metrics.json, a resumed run's rewritten influence log) are written atomically
through :mod:`lgtm.fileio`, so a killed run never leaves a half-written one behind;
``write_json_atomic`` is that module's, importable from here as before.
"""

from __future__ import annotations

import json
import os
import platform
import random
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lgtm.errors import LgtmInputError
from lgtm.fileio import atomic_write, plain, write_json_atomic

__all__ = [
    "INFLUENCE_FILE",
    "METRICS_FILE",
    "InfluenceLog",
    "choose_tracked_ids",
    "feedback_leaks",
    "flatten_eval",
    "package_versions",
    "read_influence",
    "read_metrics",
    "write_json_atomic",
    "write_metrics",
]

METRICS_FILE = "metrics.json"
INFLUENCE_FILE = "influence.jsonl"


# --------------------------------------------------------------------------- metrics.json


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


def read_metrics(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The content of ``output_dir/metrics.json``.

    Raises :class:`LgtmInputError` when the folder has none (not the output folder of a run)
    or it is not valid JSON."""
    output_dir = Path(output_dir)
    metrics_path = output_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise LgtmInputError(
            "no metrics.json here: not the output folder of a run", file=output_dir
        )
    try:
        return json.loads(metrics_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise LgtmInputError(f"not valid JSON ({err})", file=metrics_path) from None


# --------------------------------------------------------------------------- metrics.json's values


def flatten_eval(
    values: Any, prefix: str = "", *, undefined: bool = False
) -> dict[str, float | None]:
    """Scores of metrics.json as one flat dict: ``{metric: v}`` or ``{split: {metric: v}}``
    -> ``{"metric" | "split metric": v}`` (what is not a number is left out; ``undefined``:
    a metric undefined on its data, null, is kept as None)."""
    flat: dict[str, float | None] = {}
    if not isinstance(values, Mapping):
        return flat
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_eval(value, prefix=f"{name} ", undefined=undefined))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
        elif value is None and undefined:
            flat[name] = None
    return flat


def feedback_leaks(metrics: Mapping[str, Any]) -> bool:
    """Whether metrics.json says the feedback set leaked into evaluation (its dev scores are
    then not clean)."""
    feedback = metrics.get("feedback")
    return isinstance(feedback, Mapping) and bool(feedback.get("leaks_into_evaluation"))


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
    A run with ``--student-weighting influence`` adds ``"weight"`` (the sample's ``λ`` among the
    tracked samples taken as one batch) and ``"weights_kept"`` (the share of that step's
    training batch with ``λ > 0``). A tracked transfer row (of a transfer file: id < 0) has
    ``"label"`` and the ``*_prob`` null: the run never has its label.

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
            atomic_write(self.path, "".join(kept))
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
        *,
        weights: Any = None,
        kept: float | None = None,
    ) -> None:
        """Append (and flush) one line per tracked id among ``ids``; the others are ignored.

        Arguments are per-sample and aligned with ``ids``; tensors on any device are accepted.
        ``influence`` may be None (methods without per-sample influence): logged as null.
        ``weights`` (per sample) and ``kept`` (the step's share of its batch kept), given by a
        run whose student is weighted, are logged as ``weight`` and ``weights_kept``.
        """
        id_list = [int(i) for i in _to_numpy(ids).reshape(-1)]
        rows = [r for r, i in enumerate(id_list) if i in self.tracked_ids]
        if not rows:
            return
        infl = None if influence is None else _to_numpy(influence).reshape(-1)
        lam = None if weights is None else _to_numpy(weights).astype(np.float64).reshape(-1)
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
            if lam is not None:
                record |= {"weight": float(lam[r]), "weights_kept": kept}
            if regression:
                record |= {
                    "label": None if np.isnan(y[r]) else float(y[r]),  # NaN: a transfer row
                    "teacher_pred": float(t_pred[r]),
                    "student_pred": float(s_pred[r]),
                    "teacher_prob": None,
                    "student_prob": None,
                }
            else:
                gold = int(y[r])  # < 0: a transfer row, whose label the run does not have
                record |= {
                    "label": gold if gold >= 0 else None,
                    "teacher_pred": int(t_prob[r].argmax()),
                    "student_pred": int(s_prob[r].argmax()),
                    "teacher_prob": float(t_prob[r, gold]) if gold >= 0 else None,
                    "student_prob": float(s_prob[r, gold]) if gold >= 0 else None,
                }
            lines.append(json.dumps(plain(record)) + "\n")
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
