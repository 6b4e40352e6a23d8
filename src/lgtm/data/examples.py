"""What every data source gives: labelled examples with stable ids, and a task's splits of them."""

from __future__ import annotations

from dataclasses import dataclass

from lgtm.data.tasks import Task


@dataclass
class Example:
    """One labelled row. ``id`` is the 0-based index of the data row in its source file."""

    id: int
    texts: tuple[str, ...]
    label: int | float


@dataclass
class TaskData:
    """A task's training examples and its evaluation splits, with where they came from."""

    task: Task
    train: list[Example]
    evals: dict[str, list[Example]]
    source: str
