"""GLUE from the Hugging Face hub (``datasets.load_dataset("nyu-mll/glue", task)``) or its cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lgtm.data.examples import Example, TaskData
from lgtm.data.glue import GLUE_LAYOUTS, glue_dev_files
from lgtm.data.table import to_examples
from lgtm.data.tasks import Task
from lgtm.errors import LgtmInputError

HF_GLUE_REPO = "nyu-mll/glue"


def load_hf_glue(task: Task, cache_dir: str | None = None, *, read_eval: bool = True) -> TaskData:
    """Load a GLUE task with ``datasets.load_dataset`` (needs the package and the hub or its cache).

    Any failure (no ``datasets``, no network, ``HF_HUB_OFFLINE=1`` without a cache) becomes an
    :class:`LgtmInputError` that tells the user to pass ``--data-dir`` with a local GLUE folder.
    """
    if task.name not in GLUE_LAYOUTS:
        raise LgtmInputError(f"task {task.name!r} is not a GLUE task", field="task")
    hint = (
        f"pass --data-dir with a local GLUE folder ({task.glue_dir}/train.tsv, "
        f"{'/'.join(glue_dev_files(task).values())})"
    )
    try:
        import datasets
    except ImportError:
        raise LgtmInputError(
            f"cannot load GLUE {task.name} from the Hugging Face hub: the 'datasets' package is "
            f"not installed (pip install 'lgtm[hub]'); or {hint}",
            field="data_dir",
        ) from None
    try:
        dataset = datasets.load_dataset(HF_GLUE_REPO, task.name, cache_dir=cache_dir)
    except Exception as err:  # network, cache and hub errors all mean the same here
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise LgtmInputError(
            f"cannot load GLUE {task.name} from the Hugging Face hub ({reason}); {hint}",
            field="data_dir",
        ) from None
    source = f"huggingface {HF_GLUE_REPO}/{task.name}"
    train = _hf_split(task, dataset, "train", source)
    splits = task.eval_splits if read_eval else ()  # read_eval=False: evals == {}
    evals = {split: _hf_split(task, dataset, split, source) for split in splits}
    return TaskData(task, train, evals, source=source)


def _hf_split(task: Task, dataset: Any, split: str, source: str) -> list[Example]:
    where = f"{source}[{split}]"
    try:
        part = dataset[split]
    except KeyError:
        raise LgtmInputError(f"the dataset has no split {split!r}", file=source) from None
    present = list(part.column_names)
    columns = []
    for name in (*task.text_columns, "label"):
        if name not in present:
            raise LgtmInputError(
                f"missing column {name!r}; columns present: {', '.join(present)}",
                file=where,
                field=name,
            )
        columns.append(list(part[name]))
    rows = ((i, i + 1, list(values)) for i, values in enumerate(zip(*columns, strict=True)))
    return to_examples(task, Path(where), _non_empty(rows, where), task.text_columns, "label")


def _non_empty(rows: Iterator[tuple[int, int, list[Any]]], where: str) -> Iterator:
    count = 0
    for row in rows:
        count += 1
        yield row
    if count == 0:
        raise LgtmInputError("empty split: no data rows", file=where)
