"""The transfer set: text without labels that the teacher labels for the student (Hinton et
al. 2015's transfer set; Tang et al. 2019 and TinyBERT distil on such text).

It comes from a file (``--transfer-file``: CSV, TSV, JSON Lines with the task's text columns,
or plain text, one example a line) or from the training rows the labelled sample leaves out
(``--transfer-from-train``). Labels are never read: a file's label column is not even parsed,
and rows taken from train lose theirs as they are read. Rows whose text also occurs in a set
the run is scored or chosen on are dropped, and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lgtm.data.examples import Example
from lgtm.data.table import check_texts, read_text, table_format, table_rows
from lgtm.errors import LgtmInputError

#: Extensions read as plain text, one example a line.
PLAIN_TEXT = (".txt", ".text")


@dataclass
class TransferSet:
    """The transfer rows of a run (labels None) and where they came from."""

    examples: list[Example]
    sources: list[str] = field(default_factory=list)
    read: int = 0  # rows read, before any was dropped
    dropped_in_eval: int = 0  # rows whose text is in the evaluation, selection or feedback set
    blank_lines: int = 0  # empty lines of a plain-text file, not examples

    def record(self) -> dict:
        """``metrics.json["transfer"]``."""
        return {
            "rows": len(self.examples),
            "read": self.read,
            "dropped_in_eval": self.dropped_in_eval,
            "blank_lines": self.blank_lines,
            "source": "; ".join(self.sources),
        }


def read_transfer_file(path: str | Path, text_columns: Sequence[str]) -> tuple[list[Example], int]:
    """The rows of a transfer file as examples without labels (ids ``-1 - row``), and the
    number of blank lines of a plain-text file (skipped: they hold no example).

    Raises :class:`LgtmInputError` (file, line, field) for a missing, empty or unreadable file,
    a missing text column, a non-text value, or plain text for a task of text pairs.
    """
    path = Path(path)
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
        lines = text.splitlines()
        examples = [
            Example(-1 - row, (line.strip(),), None)
            for row, line in enumerate(ln for ln in lines if ln.strip())
        ]
        if not examples:
            raise LgtmInputError("empty transfer file: no line of text", file=path, line=1)
        return examples, sum(1 for ln in lines if not ln.strip())
    rows = table_rows(text, path, tuple(text_columns), fmt=table_format(path))
    examples = []
    for index, line, values in rows:
        check_texts(values, text_columns, path, line)
        examples.append(Example(-1 - index, tuple(values), None))
    return examples, 0


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
