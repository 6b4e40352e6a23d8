"""The user's own data: labelled CSV / TSV / JSON Lines files (train and evaluation), a task
built from the label values in them, and unlabelled files to predict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lgtm.data.examples import Example, TaskData
from lgtm.data.table import (
    check_texts,
    label_key,
    label_number,
    numeral,
    read_text,
    table_format,
    table_rows,
    to_examples,
)
from lgtm.data.tasks import Task, custom_task
from lgtm.errors import LgtmInputError


def load_table(
    task: Task,
    train_path: str | Path,
    eval_path: str | Path | None,
    *,
    text_columns: Sequence[str],
    label_column: str,
) -> TaskData:
    """Read the user's own train (and evaluation) file: CSV, TSV or JSON Lines, by extension.

    Labels may be label names or class indices; regression labels must parse as floats.
    ``eval_path=None`` gives no evaluation split (``evals == {}``).
    """
    text_columns = tuple(text_columns)
    if len(text_columns) != len(task.text_columns):
        raise LgtmInputError(
            f"task {task.name!r} takes {len(task.text_columns)} text column(s), "
            f"got {len(text_columns)}: {', '.join(text_columns)}",
            field="text_columns",
        )
    train = read_table(task, train_path, text_columns=text_columns, label_column=label_column)
    evals: dict[str, list[Example]] = {}
    source = str(train_path)
    if eval_path is not None:
        evals[task.eval_splits[0]] = read_table(
            task, eval_path, text_columns=text_columns, label_column=label_column
        )
        source += f" + {eval_path}"
    return TaskData(task, train, evals, source=source)


def read_table(
    task: Task, path: str | Path, *, text_columns: Sequence[str], label_column: str
) -> list[Example]:
    """Read one CSV / TSV / JSON Lines file into examples (ids are data-row indices)."""
    path = Path(path)
    columns = (*text_columns, label_column)
    rows = table_rows(read_text(path), path, columns, fmt=table_format(path))
    return to_examples(task, path, rows, tuple(text_columns), label_column)


def table_task(
    train_path: str | Path,
    *,
    text_columns: Sequence[str],
    label_column: str,
    regression: bool = False,
    name: str = "custom",
) -> Task:
    """Build a :class:`Task` for the user's own file from the label values in it.

    Label names are the distinct values of ``label_column``, sorted; when they are all
    numbers, distinct by value and sorted numerically (so that "0", "1" keep their indices, and
    "0.0", "1.0", as pandas writes a float column, are the labels 0 and 1).
    """
    path = Path(train_path)
    if regression:
        return custom_task(name, tuple(text_columns), None)
    columns = (*text_columns, label_column)
    rows = table_rows(read_text(path), path, columns, fmt=table_format(path))
    values: set[str] = set()
    for _index, line, row in rows:
        key = label_key(row[-1])
        if key is None or key == "":
            raise LgtmInputError(
                f"label {row[-1]!r} is not a class name", file=path, line=line, field=label_column
            )
        values.add(key)
    if all(label_number(v) is not None for v in values):
        names = tuple(numeral(v) for v in sorted({label_number(v) for v in values}))
    else:
        names = tuple(sorted(values))
    if len(names) < 2:
        raise LgtmInputError(
            f"only one label value ({', '.join(names)}) in the training file; a classifier "
            f"needs two or more",
            file=path,
            field=label_column,
        )
    return custom_task(name, tuple(text_columns), names)


def read_unlabelled(path: Path, text_columns: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(index, texts) of every row of an unlabelled CSV / TSV / JSONL file (e.g. GLUE's
    ``test.tsv``); the index is the file's ``index`` (or ``id``) column, else the 0-based
    row number. Used to write predictions."""
    text = read_text(path)
    fmt = table_format(path)
    if fmt == "json":
        first = json.loads(next((ln for ln in text.splitlines() if ln.strip()), "{}"))
        header = list(first) if isinstance(first, dict) else []
    else:
        delimiter = "\t" if fmt == "tsv" else ","
        header = [h.strip() for h in text.splitlines()[0].split(delimiter)] if text else []
    index_column = next((c for c in ("index", "id", "idx") if c in header), None)
    columns = [*text_columns] + ([index_column] if index_column else [])
    rows = []
    for number, line, values in table_rows(text, path, columns, fmt):
        texts = values[: len(text_columns)]
        check_texts(texts, text_columns, path, line)
        index = str(values[-1]) if index_column else str(number)
        rows.append((index, tuple(texts)))
    return rows
