"""What every data source gives: labelled examples with stable ids, and a task's splits of them."""

from __future__ import annotations

from dataclasses import dataclass

from lgtm.data.tasks import Task


@dataclass
class Example:
    """One row. ``id`` is the 0-based index of the data row in its source file (a transfer
    file's rows: ``-1 - index``, apart from every training row); ``label`` is None for a row
    without one (a transfer set's)."""

    id: int
    texts: tuple[str, ...]
    label: int | float | None


@dataclass
class TaskData:
    """A task's training examples and its evaluation splits, with where they came from."""

    task: Task
    train: list[Example]
    evals: dict[str, list[Example]]
    source: str
