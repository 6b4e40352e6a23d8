"""Registry of the text-classification tasks lgtm knows: GLUE and the offline default.

A :class:`Task` says what a data row holds (one or two texts and a label), what the labels
mean and how predictions are scored, so that data sources, models and metrics agree on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lgtm.errors import LgtmInputError

METRIC_NAMES = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")


@dataclass(frozen=True)
class Task:
    """A text-classification (or regression) task.

    ``text_columns`` are the Hugging Face ``glue`` column names, ``label_names`` the class names
    in class-index order (``None`` for regression), ``metrics`` the names GLUE tooling writes,
    the first being the one used for model selection.
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    glue_dir: str | None = None
    eval_splits: tuple[str, ...] = ("validation",)

    def __post_init__(self) -> None:
        if not 1 <= len(self.text_columns) <= 2:
            raise ValueError(f"task {self.name!r}: one or two text columns: {self.text_columns}")
        if not self.metrics:
            raise ValueError(f"task {self.name!r}: at least one metric")
        unknown = [m for m in self.metrics if m not in METRIC_NAMES]
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown metrics {unknown}; known {METRIC_NAMES}")
        if self.label_names is not None and len(self.label_names) < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs two labels or more")

    @property
    def is_regression(self) -> bool:
        """True when the label is a real-valued score (STS-B), not a class."""
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        """Size of the classifier's output: the number of classes, 1 for regression."""
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def main_metric(self) -> str:
        """The metric reported first and used to pick a model."""
        return self.metrics[0]


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",), "CoLA"
        ),
        Task("sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "SST-2"),
        Task(
            "mrpc",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            ("f1", "accuracy"),
            "MRPC",
        ),
        Task(
            "qqp",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("f1", "accuracy"),
            "QQP",
        ),
        Task("stsb", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"), "STS-B"),
        Task(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            "MNLI",
            ("validation_matched", "validation_mismatched"),
        ),
        Task(
            "qnli",
            ("question", "sentence"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            "QNLI",
        ),
        Task(
            "rte",
            ("sentence1", "sentence2"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            "RTE",
        ),
        Task(
            "wnli",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            ("accuracy",),
            "WNLI",
        ),
        Task("rotten_tomatoes", ("text",), ("rotten", "fresh"), ("accuracy",)),
    )
}


def normalize_name(name: object) -> str:
    """A name compared without case, spaces, ``-`` and ``_`` ("SST-2" -> "sst2"): for task names,
    GLUE folder names and class names."""
    return re.sub(r"[\s_\-]", "", str(name)).lower()


_BY_NORMALIZED: dict[str, Task] = {}
for _t in TASKS.values():
    _BY_NORMALIZED[normalize_name(_t.name)] = _t
    if _t.glue_dir:
        _BY_NORMALIZED[normalize_name(_t.glue_dir)] = _t


def get_task(name: str) -> Task:
    """Look a task up by name, case- and dash-insensitively ("sst2", "SST-2", "sst-2")."""
    task = _BY_NORMALIZED.get(normalize_name(str(name)))
    if task is None:
        raise LgtmInputError(
            f"unknown task {name!r}; known tasks: {', '.join(TASKS)}", field="task"
        )
    return task


def custom_task(
    name: str,
    text_columns: tuple[str, ...] | list[str],
    label_names: tuple[str, ...] | list[str] | None,
    metrics: tuple[str, ...] | list[str] | None = None,
) -> Task:
    """A task for the user's own data: classification with ``label_names``, or regression (None).

    Metrics default to accuracy (classification) or pearson and spearmanr (regression).
    """
    if label_names is not None:
        label_names = tuple(str(x) for x in label_names)
        if len(label_names) < 2:
            raise LgtmInputError(
                f"a classification task needs at least two labels, got {list(label_names)}",
                field="label",
            )
        if len(set(label_names)) != len(label_names):
            raise LgtmInputError(f"duplicate label names in {list(label_names)}", field="label")
    if metrics is None:
        metrics = ("pearson", "spearmanr") if label_names is None else ("accuracy",)
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise LgtmInputError(
            f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRIC_NAMES)}",
            field="metrics",
        )
    columns = tuple(text_columns)
    if not 1 <= len(columns) <= 2:
        raise LgtmInputError(
            f"give one or two text columns, not {len(columns)}", field="text_columns"
        )
    return Task(name, columns, label_names, tuple(metrics))
