"""The GLUE folder layout: a task's ``train.tsv`` and dev file(s) read exactly as distributed.

The column names of each GLUE file, where a task's folder lies (the folder itself or its
parent), and which file holds the unlabelled rows to predict (``test.tsv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lgtm.data.examples import Example, TaskData
from lgtm.data.table import read_text, table_rows, to_examples
from lgtm.data.tasks import Task, normalize_name
from lgtm.errors import LgtmInputError


@dataclass(frozen=True)
class GlueLayout:
    """The columns of a GLUE task's files, as named in them."""

    text_columns: tuple[str, ...]  # column names in the file
    label_column: str
    header: tuple[str, ...] | None = None  # names given to the columns of a header-less file


GLUE_LAYOUTS: dict[str, GlueLayout] = {
    # CoLA ships without a header: source, label, original label ("*" or empty), sentence.
    "cola": GlueLayout(("sentence",), "label", ("source", "label", "original_label", "sentence")),
    "sst2": GlueLayout(("sentence",), "label"),
    "mrpc": GlueLayout(("#1 String", "#2 String"), "Quality"),
    "qqp": GlueLayout(("question1", "question2"), "is_duplicate"),
    "stsb": GlueLayout(("sentence1", "sentence2"), "score"),
    "mnli": GlueLayout(("sentence1", "sentence2"), "gold_label"),
    "qnli": GlueLayout(("question", "sentence"), "label"),
    "rte": GlueLayout(("sentence1", "sentence2"), "label"),
    "wnli": GlueLayout(("sentence1", "sentence2"), "label"),
}

_GLUE_DEV_FILES: dict[str, dict[str, str]] = {
    "mnli": {
        "validation_matched": "dev_matched.tsv",
        "validation_mismatched": "dev_mismatched.tsv",
    },
}


def glue_dev_files(task: Task) -> dict[str, str]:
    """Evaluation split name -> file name in the GLUE folder (``dev.tsv``; MNLI has two)."""
    return _GLUE_DEV_FILES.get(task.name, {task.eval_splits[0]: "dev.tsv"})


def load_glue_dir(task: Task, data_dir: str | Path, *, read_eval: bool = True) -> TaskData:
    """Read ``train.tsv`` and the dev file(s) of a GLUE task folder exactly as distributed.

    ``data_dir`` is the task folder itself (``glue_data/SST-2``) or its parent (``glue_data``).
    ``read_eval=False`` leaves the dev files unopened (``evals == {}``).
    """
    layout = GLUE_LAYOUTS.get(task.name)
    if layout is None:
        raise LgtmInputError(
            f"task {task.name!r} has no GLUE folder layout; GLUE tasks: {', '.join(GLUE_LAYOUTS)}",
            field="task",
        )
    folder = _find_glue_folder(task, Path(data_dir))
    train = _read_glue_file(task, layout, folder / "train.tsv")
    evals = {
        split: _read_glue_file(task, layout, folder / name)
        for split, name in glue_dev_files(task).items()
        if read_eval
    }
    return TaskData(task, train, evals, source=str(folder))


def _find_glue_folder(task: Task, data_dir: Path) -> Path:
    if not data_dir.exists():
        raise LgtmInputError("data folder not found", file=data_dir, field="data_dir")
    if not data_dir.is_dir():
        raise LgtmInputError(
            "expected a folder in the GLUE layout (train.tsv, dev.tsv), got a file",
            file=data_dir,
            field="data_dir",
        )
    if (data_dir / "train.tsv").exists():
        return data_dir
    wanted = {normalize_name(task.name)} | (
        {normalize_name(task.glue_dir)} if task.glue_dir else set()
    )
    children = sorted(
        p for p in data_dir.iterdir() if p.is_dir() and normalize_name(p.name) in wanted
    )
    for child in children:
        if (child / "train.tsv").exists():
            return child
    where = children[0] if children else data_dir
    raise LgtmInputError(
        f"train.tsv not found: pass the GLUE folder of task {task.name!r} "
        f"({task.glue_dir or task.name}/ with train.tsv and dev.tsv) or its parent",
        file=where / "train.tsv",
        field="data_dir",
    )


def _read_glue_file(task: Task, layout: GlueLayout, path: Path) -> list[Example]:
    text = read_text(path)
    rows = table_rows(
        text, path, (*layout.text_columns, layout.label_column), fmt="tsv", header=layout.header
    )
    return to_examples(task, path, rows, layout.text_columns, layout.label_column)


def glue_unlabelled_file(task: Task, data_dir: Path, split: str) -> tuple[Path, list[str]]:
    """The file of ``split`` ("test" or "dev") in a GLUE folder and its text columns."""
    folder = _find_glue_folder(task, Path(data_dir))
    layout = GLUE_LAYOUTS[task.name]
    path = folder / ("test.tsv" if split == "test" else "dev.tsv")
    if task.name == "mnli":
        path = folder / f"{split}_matched.tsv"
    if split != "test" and layout.header is not None:
        raise LgtmInputError(
            f"predicting on the header-less {task.name} dev file is not supported: pass --input",
            field="split",
        )
    return path, list(layout.text_columns)
