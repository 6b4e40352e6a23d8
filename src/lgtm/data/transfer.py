"""The transfer set: text without labels that the teacher labels for the student (Hinton et
al. 2015's transfer set; Tang et al. 2019 and TinyBERT distil on such text).

It comes from a file (``--transfer-file``: CSV, TSV, JSON Lines with the task's text columns,
or plain text, one example a line) or from the training rows the labelled sample leaves out
(``--transfer-from-train``). Labels are never read: a file's label column is not even parsed,
and rows taken from train lose theirs as they are read. Rows whose text also occurs in a set
the run is scored or chosen on are dropped, and counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lgtm.data.examples import Example
from lgtm.data.table import (
    TABLE_FORMATS,
    Row,
    check_texts,
    read_text,
    table_format,
    table_rows,
)
from lgtm.errors import LgtmInputError

#: Extensions read as plain text, one example a line.
PLAIN_TEXT = (".txt", ".text")
#: Where a plain-text line ends: universal newlines only (``str.splitlines`` would also split
#: at form feeds, NEL and U+2028, which are characters of a line).
LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class TransferSet:
    """The transfer rows of a run (labels None) and where they came from."""

    examples: list[Example]
    sources: list[str] = field(default_factory=list)
    read: int = 0  # rows read, before any was dropped
    dropped_in_eval: int = 0  # rows whose text is in the evaluation, selection or feedback set
    blank_lines: int = 0  # lines of a plain-text file without text (is_text), not examples

    def record(self) -> dict:
        """``metrics.json["transfer"]``."""
        return {
            "rows": len(self.examples),
            "read": self.read,
            "dropped_in_eval": self.dropped_in_eval,
            "blank_lines": self.blank_lines,
            "source": "; ".join(self.sources),
        }


def is_text(line: str) -> bool:
    """True when ``line`` holds a character that is neither whitespace nor a control, format
    or other invisible character (Unicode category ``C*``: NUL bytes, BOMs, ...)."""
    return any(not ch.isspace() and not unicodedata.category(ch).startswith("C") for ch in line)


def read_transfer_file(
    path: str | Path,
    text_columns: Sequence[str],
    *,
    need_text: bool = True,
    also: Sequence[str] | None = None,
) -> tuple[list[Example], int]:
    """The rows of a transfer file as examples without labels (ids ``-1 - row``), and the
    number of lines of a plain-text file that hold no text (:func:`is_text`; skipped: they
    hold no example). A table lacking ``text_columns`` may name them ``also`` (a GLUE file's
    names: MRPC's '#1 String', '#2 String').

    Raises :class:`LgtmInputError` (file, line, field) for a missing, empty or unreadable file,
    a missing text column, a non-text value, a table's text without text (white space or
    control characters alone; kept when not ``need_text``), or plain text for a task of pairs.
    """
    path = Path(path)
    if path.suffix.lower() not in (*PLAIN_TEXT, *TABLE_FORMATS):
        raise LgtmInputError(
            f"unknown file type {path.suffix!r}: use .csv, .tsv, .jsonl (JSON Lines) or .txt "
            "(one text a line)",
            file=path,
        )
    text = read_text(path)
    if path.suffix.lower() in PLAIN_TEXT:
        if len(text_columns) != 1:
            raise LgtmInputError(
                f"plain text gives one text a line, but the task's inputs are pairs "
                f"({', '.join(text_columns)}): give a .csv, .tsv or .jsonl file with both "
                "columns",
                file=path,
                field="transfer_file",
            )
        lines = LINE_END.split(text.removesuffix("\n").removesuffix("\r"))
        examples = [
            Example(-1 - row, (line.strip(),), None)
            for row, line in enumerate(ln for ln in lines if is_text(ln))
        ]
        if not examples:
            raise LgtmInputError("empty transfer file: no line of text", file=path, line=1)
        return examples, len(lines) - len(examples)
    examples = []
    for index, line, values in _table_rows(text, path, text_columns, also):
        check_texts(values, text_columns, path, line)
        for name, value in zip(text_columns, values, strict=True):
            if need_text and not is_text(value):
                raise LgtmInputError(
                    "holds no text (white space or control characters alone): give the "
                    "row a text or remove it",
                    file=path,
                    line=line,
                    field=name,
                )
        examples.append(Example(-1 - index, tuple(values), None))
    return examples, 0


def _table_rows(
    text: str, path: Path, columns: Sequence[str], also: Sequence[str] | None
) -> list[Row]:
    """The rows of ``columns``, else of ``also`` when the table names its texts so."""
    fmt = table_format(path)
    try:
        return list(table_rows(text, path, tuple(columns), fmt=fmt))
    except LgtmInputError as err:
        if not also or tuple(also) == tuple(columns) or err.field not in columns:
            raise
        try:
            return list(table_rows(text, path, tuple(also), fmt=fmt))
        except LgtmInputError:
            names = ", ".join(map(repr, also))
            err.message += f" (or the GLUE files' names: {names})"
            raise err from None


def unlabelled(examples: Sequence[Example]) -> list[Example]:
    """``examples`` with their labels dropped (``--transfer-from-train``)."""
    return [Example(e.id, e.texts, None) for e in examples]


def drop_overlap(
    examples: list[Example], held: Sequence[Sequence[Example]]
) -> tuple[list[Example], int]:
    """``examples`` without those whose texts equal a row of any of ``held`` (the sets a run
    is scored or chosen on), and how many were dropped. Texts are compared after stripping
    surrounding white space."""
    seen = {tuple(t.strip() for t in e.texts) for group in held for e in group}
    kept = [e for e in examples if tuple(t.strip() for t in e.texts) not in seen]
    return kept, len(examples) - len(kept)
