"""``lgtm export``: a trained classifier to ONNX (float32, and int8 with ``--quantize int8``),
optionally with its vocabulary pruned to a corpus, measured against the PyTorch models.

``export_model`` does the work on loaded models; ``lgtm.export.command`` turns the command
line (a run folder or a model folder, the data to score on, the texts to keep) into its
arguments. The exported folder holds ``model.onnx``, ``model_int8.onnx``, the configuration and
tokenizer (``lgtm evaluate`` / ``predict`` read it), ``export.json``, ``export.md`` and
its model card ``README.md``. ``--overwrite`` replaces only a folder an earlier export wrote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lgtm.errors import LgtmInputError
from lgtm.export.onnx import (
    DEFAULT_OPSET,
    FP32_FILE,
    INT8_FILE,
    OnnxClassifier,
    export_onnx,
    find_onnx,
    load_onnx_classifier,
    onnx_parameters,
    quantize_int8,
)
from lgtm.export.prune import prune_vocabulary

__all__ = [
    "DEFAULT_OPSET",
    "ExportSettings",
    "FP32_FILE",
    "INT8_FILE",
    "OnnxClassifier",
    "export_model",
    "export_onnx",
    "find_onnx",
    "load_onnx_classifier",
    "prune_vocabulary",
    "quantize_int8",
]


@dataclass
class ExportSettings:
    """How to export and measure (the ``lgtm export`` flags)."""

    quantize: str | None = None  # "int8" or None
    opset: int = DEFAULT_OPSET
    max_length: int = 128
    batch_size: int = 64  # evaluation batches
    threads: int | None = None  # torch and ONNX Runtime threads while measuring; None: theirs
    repeats: int = 10  # forward passes per latency
    max_metric_drop: float = 1.0  # points of the main metric an exported file may lose


#: The file that marks a folder written by ``lgtm export`` (the only kind ``--overwrite``
#: replaces, besides an empty folder).
EXPORT_MARKER = "export.json"


def is_export(folder: Path) -> bool:
    """True when ``folder`` was written by ``lgtm export`` (its report and its float32 file)."""
    return (folder / EXPORT_MARKER).is_file() and (folder / FP32_FILE).is_file()


def _model_or_run(folder: Path, *, below: bool) -> str | None:
    """What ``folder`` is (with ``below``: or holds, at any depth) that an export must never
    replace: a model folder (``config.json``, not an lgtm export) or a run folder
    (:func:`lgtm.rundir.holds_run`); None when neither."""
    from lgtm import rundir

    for here, dirs, _ in os.walk(folder):
        path = Path(here)
        if is_export(path):
            pass
        elif (path / "config.json").is_file():
            return f"a model folder ({path})"
        elif rundir.holds_run(path):
            return f"an lgtm run ({path})"
        if not below:
            break
        dirs.sort()
    return None


def check_output_dir(
    out: Path, overwrite: bool, source: Path | None = None, keep: Sequence[Path] = ()
) -> None:
    """Refuse, before anything loads, an output folder whose replacement would lose anything
    but an earlier export. Refused whatever ``overwrite`` says: a file; ``source`` (the model
    folder exported), a folder inside it, or one holding it or a folder of ``keep`` (the run
    folder, the teacher); a folder that is or holds a model folder or a run. Without
    ``overwrite``, any non-empty folder; with it, a non-empty folder that ``lgtm export`` did
    not write (:func:`is_export`). Raises :class:`LgtmInputError` (field ``output_dir``)."""
    if out.exists() and not out.is_dir():
        raise LgtmInputError("is a file: give a folder", file=out, field="output_dir")
    where = out.resolve()
    for folder in (*keep, *([source] if source is not None else [])):  # the widest first
        here = folder.resolve()
        what = "the run folder" if (folder / "config.yaml").is_file() else "the model folder"
        if here == where or where in here.parents:  # replacing ``out`` would delete it
            raise LgtmInputError(
                f"{'is' if here == where else 'holds'} {what} {folder} that this export "
                "reads: replacing it would delete it; give another folder (a run's exports go "
                "to RUN_DIR/export)",
                file=out,
                field="output_dir",
            )
        if (folder / "config.json").is_file() and here in where.parents:  # not in a model
            raise LgtmInputError(
                f"lies inside the model folder {folder} that this export reads: give a folder "
                "outside it",
                file=out,
                field="output_dir",
            )
    if not out.is_dir() or not any(out.iterdir()):
        return
    held = _model_or_run(out, below=is_export(out))
    if held is not None:
        raise LgtmInputError(
            f"is or holds {held}, not an lgtm export: give another folder",
            file=out,
            field="output_dir",
        )
    if not is_export(out):
        raise LgtmInputError(
            f"holds files that are not an lgtm export (no {EXPORT_MARKER}): give an empty or "
            "new folder (--overwrite replaces only an earlier export)",
            file=out,
            field="output_dir",
        )
    if not overwrite:
        raise LgtmInputError(
            "holds an earlier export: pass --overwrite to replace it",
            file=out,
            field="output_dir",
        )


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (unchanged when None)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def export_model(
    student: Any,
    tokenizer: Any,
    task: Any,
    evals: dict[str, list],
    out: Path,
    *,
    source: Path,
    settings: ExportSettings,
    teacher: Any = None,
    teacher_tokenizer: Any = None,
    teacher_dir: Path | None = None,
    run_dir: Path | None = None,
    prune_texts: list[str] | None = None,
    overwrite: bool = False,
    student_card: str | None = None,
    evaluate_flags: list[str] | None = None,
) -> dict[str, Any]:
    """Export ``student`` (loaded from the folder ``source``) into ``out`` and measure it.

    ``evals``: evaluation split -> examples (``lgtm.data.Example``), the first scored in the
    report; ``prune_texts``: single texts whose tokens are kept (None: no pruning); ``teacher``
    (loaded from ``teacher_dir``, sharing ``tokenizer``) adds its row; ``run_dir``: the run
    folder ``source`` belongs to, if any (never replaced, see :func:`check_output_dir`);
    ``student_card``: the student's README.md, if any; ``evaluate_flags``: the ``lgtm
    evaluate`` options that read the same examples as ``evals`` (None: it cannot). Writes
    ``model.onnx`` (and ``model_int8.onnx``), the configuration and tokenizer,
    ``export.json``, ``export.md`` and the folder's model card ``README.md``
    (:func:`lgtm.export.card.export_card`) into a temporary folder renamed to ``out`` when
    complete, so nothing of an earlier ``out`` is lost to a failed export. Returns the report
    (as in ``export.json``; its ``checks`` say which files lose more than the allowed drop).

    Raises :class:`LgtmInputError` for a corpus without text, a model the exporter cannot
    translate, an output folder that :func:`check_output_dir` refuses.
    """
    from lgtm import rundir
    from lgtm.export import report as R
    from lgtm.export.card import export_card
    from lgtm.models import count_parameters

    check_output_dir(out, overwrite, source, [p for p in (run_dir, teacher_dir) if p])
    student = student.float().eval()
    exported_model, exported_tokenizer, pruning = student, tokenizer, None
    if prune_texts is not None:
        exported_model, exported_tokenizer, pruning = prune_vocabulary(
            student, tokenizer, prune_texts
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay with the folder renamed to ``out``
    try:
        export_onnx(
            exported_model,
            exported_tokenizer,
            tmp / FP32_FILE,
            opset=settings.opset,
            shown=str(source),
        )
        files = [FP32_FILE]
        if settings.quantize == "int8":
            quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE)
            files.append(INT8_FILE)
        exported_model.config.save_pretrained(tmp)
        exported_tokenizer.save_pretrained(tmp)

        common = dict(
            max_length=settings.max_length,
            batch_size=settings.batch_size,
            repeats=settings.repeats,
        )
        rows = []
        with _torch_threads(settings.threads):
            if teacher is not None:
                rows.append(
                    R.measure(
                        "teacher",
                        "PyTorch",
                        teacher.float().eval(),
                        teacher_tokenizer or tokenizer,
                        task,
                        evals,
                        size_bytes=R.weights_size(teacher_dir) if teacher_dir else 0,
                        parameters=count_parameters(teacher),
                        **common,
                    )[0]
                )
            row, reference = R.measure(
                "student",
                "PyTorch",
                student,
                tokenizer,
                task,
                evals,
                size_bytes=R.weights_size(source),
                parameters=count_parameters(student),
                **common,
            )
            rows.append(row)
            if pruning is not None:  # the logits fp32 ONNX must equal: the pruned model's
                from lgtm.data.encode import encode, make_collator
                from lgtm.evaluation import predict_logits

                first = next(iter(evals.values()))
                reference = predict_logits(
                    exported_model,
                    encode(first, exported_tokenizer, settings.max_length),
                    make_collator(exported_tokenizer),
                    settings.batch_size,
                )
            diff = None
            for name in files:
                session = OnnxClassifier(tmp / name, exported_model.config, settings.threads)
                row, logits = R.measure(
                    name,
                    "ONNX Runtime",
                    session,
                    exported_tokenizer,
                    task,
                    evals,
                    size_bytes=(tmp / name).stat().st_size,
                    parameters=onnx_parameters(tmp / name),
                    **common,
                )
                rows.append(row)
                if name == FP32_FILE:
                    diff = float(np.abs(logits - reference).max()) if len(logits) else 0.0
        first_split = next(iter(evals))
        report = {
            "source": str(source),
            "task": task.name,
            "main_metric": task.main_metric,
            "eval_split": first_split,
            "eval_examples": len(evals[first_split]),
            "max_length": settings.max_length,
            "opset": settings.opset,
            "threads": settings.threads,
            "repeats": settings.repeats,
            "fp32_file": FP32_FILE,
            "onnx_max_abs_diff": diff,
            "pruning": pruning.summary() if pruning is not None else None,
            "rows": [R.row_dict(r) for r in rows],
            "checks": R.drop_checks(rows, "student", files, settings.max_metric_drop),
            "evaluate_flags": evaluate_flags,
        }
        R.write_report(tmp, report)
        (tmp / "README.md").write_text(export_card(report, student_card), encoding="utf-8")
        rundir.replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return report
