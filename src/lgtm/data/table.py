"""The table parser: a CSV, TSV or JSON Lines file (or JSON array) turned into rows, then examples.

Text is read as UTF-8 (with or without a byte-order mark); CSV records may be quoted and span
lines, TSV has no quoting (quotes are text, as in GLUE). Every problem raises
:class:`~lgtm.errors.LgtmInputError` naming the file, the 1-based line (header included) and the
field; no row is ever skipped silently. Labels are parsed against the task here too.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lgtm.data.examples import Example
from lgtm.data.tasks import Task
from lgtm.errors import LgtmInputError

#: File extension -> table format (see :func:`table_rows`).
TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
}


def table_format(path: Path) -> str:
    """The table format of ``path`` by its extension: ``"csv"``, ``"tsv"`` or ``"json"``."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LgtmInputError(
            f"unknown file type {path.suffix!r}: use .csv, .tsv or .jsonl (JSON Lines)", file=path
        )
    return fmt


def read_text(path: Path) -> str:
    """The text of the file at ``path`` (see :func:`decode`); a missing file or a folder is an
    :class:`LgtmInputError`."""
    if not path.exists():
        raise LgtmInputError("file not found", file=path)
    if path.is_dir():
        raise LgtmInputError("expected a file, found a folder", file=path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LgtmInputError(f"cannot read: {err.strerror or err}", file=path) from None
    return decode(data, path)


def decode(data: bytes, path: Path) -> str:
    """UTF-8 with or without a byte-order mark (MRPC has one); UTF-16 is named as such."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise LgtmInputError(
            "not UTF-8 text: UTF-16 (its byte-order mark says so): save the file as UTF-8",
            file=path,
            line=1,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise LgtmInputError(
            f"not UTF-8 text (byte {err.start}: {err.reason})", file=path, line=line
        ) from None


Row = tuple[int, int, list[Any]]  # (data-row index, 1-based line in the file, values)


def table_rows(
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
            yield number, json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise LgtmInputError(
                f"invalid JSON Lines row: {err.msg} (column {err.colno})", file=path, line=number
            ) from None
        except _RepeatedKey as err:
            raise _repeated(err, path, number) from None


class _RepeatedKey(Exception):
    """A JSON object that gives one key twice (``json`` would keep the last silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses an object giving a key twice."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _RepeatedKey(key)
        obj[key] = value
    return obj


def _repeated(err: _RepeatedKey, path: Path, line: int) -> LgtmInputError:
    key = str(err.args[0])
    return LgtmInputError("key given twice in one row; keep one", file=path, line=line, field=key)


def _json_array(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
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
        except _RepeatedKey as err:
            raise _repeated(err, path, line_at(pos)) from None
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


#: An integer written as text ("3", "-1", "2.0"): a class index, or an integer label name.
INT_RE = re.compile(r"[+-]?\d+(\.0*)?")


#: A number written in decimal ("3", "-1", "2.0", "0.5"): label names that are all such numbers
#: are compared by value ("0.0", what pandas writes for a float column, is the label 0).
NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def label_number(raw: Any) -> float | None:
    """The value of a label written as a decimal number (``"1"``, ``"1.0"``, ``1.0``), else
    None (names, booleans, non-finite numbers)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw) if math.isfinite(raw) else None
    if isinstance(raw, str) and NUMBER_RE.fullmatch(raw.strip()):
        return float(raw.strip())
    return None


def numeral(value: float) -> str:
    """A label number's name: ``"1"`` for 1.0, ``"0.5"`` for 0.5."""
    return str(int(value)) if value.is_integer() else repr(value)


def label_key(raw: Any) -> str | None:
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


def parse_label(task: Task, raw: Any, *, file: Path, line: int, field: str) -> int | float:
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
    key = label_key(raw)
    values = [label_number(n) for n in names]
    if None not in values and label_number(raw) is not None:  # numbers: compared as numbers
        if values.count(label_number(raw)) == 1:
            return values.index(label_number(raw))
    elif key is not None:
        if key in names:
            return names.index(key)
        lowered = [n.lower() for n in names]
        if lowered.count(key.lower()) == 1:
            return lowered.index(key.lower())
        numeric_names = any(INT_RE.fullmatch(n) for n in names)
        if not numeric_names and INT_RE.fullmatch(key):
            index = int(float(key))
            if 0 <= index < len(names):
                return index
    raise LgtmInputError(
        f"label {raw!r} is not one of the task's labels: {', '.join(names)}"
        + ("" if any(INT_RE.fullmatch(n) for n in names) else f" (or 0..{len(names) - 1})"),
        file=file,
        line=line,
        field=field,
    )


def check_texts(texts: Sequence[Any], columns: Sequence[str], path: Path, line: int) -> None:
    """Every text field must be a string (JSON rows may hold numbers or nulls)."""
    for name, text in zip(columns, texts, strict=True):
        if not isinstance(text, str):
            raise LgtmInputError(
                f"text is {type(text).__name__}, not a string", file=path, line=line, field=name
            )


def to_examples(
    task: Task, path: Path, rows: Iterator[Row], text_columns: tuple[str, ...], label_column: str
) -> list[Example]:
    """Examples from ``rows`` of ``(index, line, [*texts, label])``: texts checked, label parsed."""
    examples = []
    for index, line, values in rows:
        texts = values[:-1]
        check_texts(texts, text_columns, path, line)
        label = parse_label(task, values[-1], file=path, line=line, field=label_column)
        examples.append(Example(index, tuple(texts), label))
    return examples
