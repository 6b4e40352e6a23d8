"""Errors caused by the user's input: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class LgtmInputError(Exception):
    """Bad input (a file, a row, a field, an option), reported without a traceback.

    ``str(err)`` reads ``FILE:LINE: field 'FIELD': MESSAGE`` with the parts that are known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = f"field '{self.field}': " if self.field is not None else ""
        return f"{where}{what}{self.message}"


class TrainingDiverged(LgtmInputError):
    """A loss or a parameter became NaN or infinite during training (a learning rate too high,
    most often): reported like bad input; ``lgtm tune`` records the trial as diverged."""


class LgtmWriteError(LgtmInputError):
    """A file of a run could not be written: the disk is full or read-only, or a permission or
    quota is lacking. Reported like bad input (one line, exit status 2: the fix lies outside
    lgtm), naming what could not be written and, once :meth:`keeping` has added it, what was
    kept."""

    kept: str | None = None

    def keeping(self, kept: str) -> LgtmWriteError:
        """This error with ``kept`` (what of the run is still good) added to its message."""
        err = LgtmWriteError(f"{self.message}; {kept}", file=self.file, field=self.field)
        err.kept = kept
        return err
