"""The examples of one run: read from where the configuration names, then carved.

The training sample is drawn first, then the selection set (if asked) and the feedback set are
carved from it, for every method alike, so all methods see the same labelled data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from lgtm.config import RunConfig
from lgtm.errors import LgtmInputError

#: The share of a user's --train-file held out for evaluation when no --eval-file is given.
EVAL_FRACTION = 0.1
SELECTION_STREAM = 2  # seeds the selection set's carving apart from the feedback set's
TRANSFER_STREAM = 3  # seeds the transfer set's sample (--max-transfer-samples)


@dataclass
class RunData:
    """The examples of a run: training rest, feedback set, evaluation splits, provenance."""

    task: Any
    train: list
    feedback: list
    evals: dict[str, list]
    source: str
    feedback_source: str  # "train" | "validation"
    selection: list = dataclass_field(default_factory=list)  # carved from train, unused by all
    transfer: Any = None  # data.transfer.TransferSet, or None: no transfer set

    @property
    def leaks_into_evaluation(self) -> bool:
        """True when the feedback set is (part of) what the run is scored on."""
        return self.feedback_source == "validation"

    def digests(self) -> dict[str, str]:
        """SHA-256 of each set of rows as read (ids, texts, labels, in order) by the set's name
        (``train``, ``feedback``, ``selection``, ``eval SPLIT``, ``transfer``): ``--resume``
        compares them with the run's start."""
        sets = {"train": self.train, "feedback": self.feedback, "selection": self.selection}
        sets |= {f"eval {split}": rows for split, rows in self.evals.items()}
        if self.transfer is not None:
            sets["transfer"] = self.transfer.examples
        out = {}
        for name, rows in sets.items():
            digest = hashlib.sha256()
            for e in rows:
                digest.update(repr((e.id, tuple(e.texts), e.label)).encode())
            out[name] = digest.hexdigest()
        return out


def task_name(config: RunConfig) -> str:
    """The task's canonical name (``rotten_tomatoes`` for the offline default)."""
    from lgtm.data import get_task

    if config.uses_default_data:
        return "rotten_tomatoes"
    if config.task is None and config.data_dir is not None:
        try:
            return get_task(Path(config.data_dir).name).name
        except LgtmInputError:
            raise LgtmInputError(
                "cannot tell the task from the folder name: give --task", field="task"
            ) from None
    if config.task is None:
        if config.train_file is not None:
            return "custom"
        raise LgtmInputError("give --task", field="task")
    try:
        return get_task(config.task).name
    except LgtmInputError:
        if config.train_file is not None:
            return config.task
        raise


def default_output_dir(config: RunConfig) -> str:
    """``runs/lgtm-<task>-<method>``."""
    return str(Path("runs") / f"lgtm-{task_name(config)}-{config.method}")


def load_data(config: RunConfig) -> RunData:
    """Read the data named by ``config``; carve the selection and feedback sets; apply the
    sample limits.

    Order matters for fairness: the training sample is drawn first, then the selection set (if
    asked) and then the feedback set are carved from it, for every method alike (those that
    take no feedback train on the same rest), so all methods see the same labelled data.
    """
    from lgtm import data as D

    name = task_name(config)
    text_columns: list[str] | None = None
    if config.uses_default_data:
        loaded = D.load_default()
    elif config.train_file is not None:
        try:
            task = D.get_task(config.task) if config.task else None
        except LgtmInputError:
            task = None
        label_column = config.label_column or "label"
        if task is None:
            if not config.text_columns:
                raise LgtmInputError("--train-file needs --text-columns", field="text_columns")
            task = D.table_task(
                config.train_file,
                text_columns=config.text_columns,
                label_column=label_column,
                name=name,
            )
        text_columns = list(config.text_columns or task.text_columns)
        loaded = D.load_table(
            task,
            config.train_file,
            config.eval_file if config.do_eval else None,
            text_columns=text_columns,
            label_column=label_column,
        )
    elif config.data_dir is not None:
        loaded = D.load_glue_dir(D.get_task(name), config.data_dir, read_eval=config.do_eval)
    else:
        loaded = D.load_hf_glue(D.get_task(name), read_eval=config.do_eval)
    text_columns = text_columns or list(loaded.task.text_columns)

    train = sampled = D.subsample(loaded.train, config.max_train_samples, config.seed)
    evals = dict(loaded.evals)
    source = loaded.source
    if config.train_file is not None and config.eval_file is None:
        # the user's own data without --eval-file: hold out 10% of train (also with --do-eval
        # false, so that the training rows are those of the run that evaluates)
        train, held = D.split_feedback(train, EVAL_FRACTION, config.seed + 1)
        evals = {loaded.task.eval_splits[0]: held}
        source += f" ({EVAL_FRACTION:.0%} of train held out for evaluation)"
    for split, examples in evals.items():
        if not examples:
            raise LgtmInputError(f"empty evaluation split {split!r}", field=split)
    selection: list = []
    if config.selection_fraction is not None:
        train, selection = D.split_feedback(
            train, config.selection_fraction, config.seed + SELECTION_STREAM
        )
    if config.feedback_from == "train":
        train, feedback = D.split_feedback(train, config.feedback_fraction, config.seed)
    else:
        feedback = list(next(iter(evals.values())))
    if not config.do_eval:  # dev neither read nor scored: every evaluation scores the selection set
        evals = {"selection": selection}
    held = [*evals.values(), selection, feedback]  # what the run is scored or chosen on
    transfer = _transfer(config, loaded, sampled, text_columns, held)
    if config.do_eval:
        evals = {k: D.subsample(v, config.max_eval_samples, config.seed) for k, v in evals.items()}
    return RunData(
        loaded.task, train, feedback, evals, source, config.feedback_from, selection, transfer
    )


def _transfer(
    config: RunConfig, loaded: Any, sampled: list, text_columns: list[str], held: list[list]
) -> Any:
    """The run's transfer set (``data.transfer``), or None when it has none: the rows of
    ``--transfer-file`` and, with ``--transfer-from-train``, the training rows not in
    ``sampled`` (labels dropped); sampled to ``--max-transfer-samples``; rows whose text is in
    ``held`` dropped."""
    from lgtm import data as D
    from lgtm.data import transfer as T
    from lgtm.data.default import load_default_plots
    from lgtm.data.glue import GLUE_LAYOUTS

    if config.transfer_file is None and not config.transfer_from_train:
        return None
    out = T.TransferSet([])
    if config.transfer_from_train:
        chosen = {e.id for e in sampled}
        left = T.unlabelled([e for e in loaded.train if e.id not in chosen])
        words = f"{len(left)} training rows left out of the labelled sample, labels dropped"
        if config.uses_default_data:
            plots = load_default_plots()
            left += plots
            words += f", and {len(plots)} plot summaries"
        if not left:
            raise LgtmInputError(
                f"--transfer-from-train takes the training rows that --max-train-samples leaves "
                f"out, and it leaves none of the {len(loaded.train)}: give a smaller "
                "--max-train-samples, or --transfer-file",
                field="transfer_from_train",
            )
        out.examples += left
        out.sources.append(words)
    if config.transfer_file is not None:
        glue = None  # a GLUE folder's run: its files' column names too
        if config.data_dir is not None and config.train_file is None:
            glue = GLUE_LAYOUTS[loaded.task.name].text_columns
        rows, out.blank_lines = T.read_transfer_file(config.transfer_file, text_columns, also=glue)
        out.examples += rows
        out.sources.append(f"{len(rows)} rows of {config.transfer_file}")
    out.read = len(out.examples)
    out.examples, out.dropped_in_eval = T.drop_overlap(out.examples, held)
    out.examples = D.subsample(
        out.examples, config.max_transfer_samples, config.seed + TRANSFER_STREAM, stratify=False
    )
    if not out.examples:
        raise LgtmInputError(
            f"every one of the {out.read} transfer rows also occurs in the evaluation, "
            "selection or feedback set, and none is left to distil on",
            file=config.transfer_file,
            field="transfer_file" if config.transfer_file is not None else "transfer_from_train",
        )
    return out
