"""``lgtm export MODEL_DIR --output-dir DIR``: what the command line names, resolved into
:func:`lgtm.export.export_model`'s arguments.

``MODEL_DIR`` is a run folder (its ``student/`` is exported, its ``teacher/`` measured, its
``config.yaml`` gives the evaluation set and the training and transfer text) or a model folder
(``--task`` / ``--data-dir`` / ``--eval-file`` give the evaluation set, unless the folder sits
in a run folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lgtm.errors import LgtmInputError
from lgtm.export.onnx import DEFAULT_OPSET, INT8_FILE, find_onnx, is_quantized


def _refuse_exported(source: Path, quantize: str | None) -> None:
    file = find_onnx(source)
    if file is None:
        return
    if quantize and ((file.parent / INT8_FILE).is_file() or is_quantized(file)):
        raise LgtmInputError(
            "is already quantised (an exported model): give the model folder it was exported from",
            file=source,
            field="quantize",
        )
    raise LgtmInputError(
        "is already an exported (ONNX) model: give the model folder it was exported from",
        file=source,
        field="model_dir",
    )


def locate(source: Path) -> tuple[Path, Path | None, Path | None]:
    """(student folder, run folder or None, teacher folder or None) for ``MODEL_DIR``.
    Raises :class:`LgtmInputError` when it is neither a model nor a run folder."""
    if (source / "student" / "config.json").is_file():
        teacher = source / "teacher"
        return source / "student", source, teacher if (teacher / "config.json").is_file() else None
    if (source / "config.json").is_file():
        run = source.parent if (source.parent / "config.yaml").is_file() else None
        teacher = source.parent / "teacher"
        if run is None or source.name != "student" or not (teacher / "config.json").is_file():
            teacher = None
        return source, run, teacher
    if not source.exists():
        raise LgtmInputError("not found", file=source, field="model_dir")
    raise LgtmInputError(
        "not a model folder (no config.json) nor a run folder (no student/)",
        file=source,
        field="model_dir",
    )


def _checked_model(path: Path, task: Any, role: str) -> tuple[Any, Any]:
    from lgtm import models as M
    from lgtm.checks import align_labels, check_embeddings, require_trained_head

    model, tokenizer = M.load_model(str(path), task.num_labels)
    require_trained_head(model, role, str(path), "give a fine-tuned model, such as student/")
    check_embeddings(model, tokenizer, task, role, str(path))
    notice = align_labels(model, task, role, str(path))
    if notice:
        print(notice, file=sys.stderr)
    return model.eval(), tokenizer


def _run_data(run: Path) -> Any:
    from lgtm import config as cfg
    from lgtm.rundata import load_data

    return load_data(cfg.resolve(cfg.load_yaml(run / "config.yaml")))


def _given_flags(args: argparse.Namespace, max_length: int) -> list[str]:
    """``lgtm evaluate``'s options for the evaluation data given to ``lgtm export``."""
    flags = [] if args.task is None else ["--task", args.task]
    flags += [] if args.data_dir is None else ["--data-dir", str(args.data_dir)]
    flags += [] if args.eval_file is None else ["--eval-file", str(args.eval_file)]
    if args.text_columns:
        flags += ["--text-columns", ",".join(args.text_columns)]
    if args.label_column:
        flags += ["--label-column", args.label_column]
    if args.max_eval_samples is not None:
        flags += ["--max-eval-samples", str(args.max_eval_samples), "--seed", str(args.seed)]
    return [*flags, "--max-length", str(max_length)]


def _run_flags(config: dict, args: argparse.Namespace, max_length: int) -> list[str] | None:
    """``lgtm evaluate``'s options that read the examples a run's export is scored on (its
    evaluation split sampled as the run sampled it), or None where ``lgtm evaluate`` cannot
    read them: the feedback set carved from that split, or an evaluation file the run did not
    name (a training file's held-out part), or a sample (``lgtm export --max-eval-samples``)
    of the run's own sample."""
    if config.get("feedback_from", "train") != "train" or (
        config.get("train_file") and not config.get("eval_file")
    ):
        return None
    if args.max_eval_samples is not None and config.get("max_eval_samples") is not None:
        return None
    flags = ["--task", str(config["task"])] if config.get("task") else []
    if config.get("data_dir"):
        flags += ["--data-dir", str(config["data_dir"])]
    if config.get("eval_file"):
        flags += ["--eval-file", str(config["eval_file"])]
    if config.get("text_columns"):
        columns = config["text_columns"]
        flags += ["--text-columns", columns if isinstance(columns, str) else ",".join(columns)]
    if config.get("label_column"):
        flags += ["--label-column", str(config["label_column"])]
    samples, seed = config.get("max_eval_samples"), config.get("seed", 42)
    if args.max_eval_samples is not None:  # the export's own sample of the whole split
        samples, seed = args.max_eval_samples, args.seed
    if samples is not None:
        flags += ["--max-eval-samples", str(samples), "--seed", str(seed)]
    return [*flags, "--max-length", str(max_length)]


def _run_texts(data: Any) -> list[str]:
    """The run's training text (labelled rows, feedback set when carved from train) and its
    transfer text, one text per column."""
    rows = list(data.train)
    if data.feedback_source == "train":
        rows += data.feedback
    if data.transfer is not None:
        rows += data.transfer.examples
    return [text for e in rows for text in e.texts]


def read_corpus(files: list[str], text_columns: list[str]) -> list[str]:
    """The texts of ``--prune-vocab FILE...``: a ``.txt`` file one text a line, a table its
    text columns; lines of whitespace and control characters alone (:func:`is_text`) are not
    text. Raises :class:`LgtmInputError` naming a file without text."""
    from lgtm.data.table import read_text
    from lgtm.data.transfer import PLAIN_TEXT, read_transfer_file
    from lgtm.export.prune import is_text

    texts: list[str] = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise LgtmInputError("file not found", file=path, field="prune_vocab")
        if path.suffix.lower() in PLAIN_TEXT:
            lines = [line.strip() for line in read_text(path).splitlines() if is_text(line)]
        else:
            rows, _ = read_transfer_file(path, text_columns, need_text=False)
            lines = [t for e in rows for t in e.texts if is_text(t)]
        if not lines:
            raise LgtmInputError(
                "holds no text to keep the tokens of", file=path, line=1, field="prune_vocab"
            )
        texts += lines
    return texts


def run(args: argparse.Namespace) -> int:
    """``lgtm export``: returns 0, or 1 when an exported file loses more than
    ``--max-metric-drop`` (the report and the last line say which)."""
    from lgtm import data as D
    from lgtm.export import ExportSettings, check_output_dir, export_model
    from lgtm.export.onnx import require_packages

    require_packages()
    source, out = Path(args.model_dir), Path(args.output_dir)
    _refuse_exported(source, args.quantize)
    student_dir, run_dir, teacher_dir = locate(source)
    if args.quantize and "quantization_config" in json.loads(
        (student_dir / "config.json").read_text()
    ):
        raise LgtmInputError("is already quantised", file=student_dir, field="quantize")
    if args.teacher:
        teacher_dir = Path(args.teacher)
    check_output_dir(out, args.overwrite, student_dir, [p for p in (run_dir, teacher_dir) if p])

    data = None
    if args.task or args.data_dir or args.eval_file:
        from lgtm import cli

        ns = argparse.Namespace(
            **{
                **vars(args),
                "model": str(student_dir),
                "input": None,
                "max_length": args.max_length or 128,
            }
        )
        student, tokenizer, task = cli._load_for_inference(ns)
        student.eval()
        evals = cli._eval_splits(ns, task)
        max_length = ns.max_length
        evaluate_flags = _given_flags(args, max_length)
    elif run_dir is not None:
        data = _run_data(run_dir)
        task = data.task
        student, tokenizer = _checked_model(student_dir, task, "model")
        evals = {k: D.subsample(v, args.max_eval_samples, args.seed) for k, v in data.evals.items()}
        from lgtm import config as cfg

        run_config = cfg.load_yaml(run_dir / "config.yaml")
        max_length = args.max_length or run_config.get("max_length", 128)
        evaluate_flags = _run_flags(run_config, args, max_length)
    else:
        raise LgtmInputError(
            "give the data to score the export on: --task, --data-dir or --eval-file",
            file=source,
            field="task",
        )

    corpus = None
    if args.prune_vocab is not None:
        if args.prune_vocab:
            corpus = read_corpus(args.prune_vocab, list(args.text_columns or task.text_columns))
        elif run_dir is not None:
            corpus = _run_texts(data if data is not None else _run_data(run_dir))
        else:
            raise LgtmInputError(
                "give the texts whose tokens to keep (--prune-vocab FILE ...): this model "
                "folder is not in a run folder whose training text could be used",
                field="prune_vocab",
            )
    teacher = teacher_tokenizer = None
    if teacher_dir is not None:
        teacher, teacher_tokenizer = _checked_model(teacher_dir, task, "teacher")

    if not args.max_metric_drop >= 0 or args.max_metric_drop == float("inf"):
        raise LgtmInputError(
            f"must be a finite number of points >= 0, got {args.max_metric_drop}",
            field="max_metric_drop",
        )
    student_card = None
    if (student_dir / "README.md").is_file():  # its dataset names and warnings are carried
        student_card = (student_dir / "README.md").read_text(encoding="utf-8")
    settings = ExportSettings(
        quantize=args.quantize,
        opset=args.opset,
        max_length=int(max_length),
        batch_size=args.batch_size,
        threads=args.threads,
        repeats=args.repeats,
        max_metric_drop=args.max_metric_drop,
    )
    report = export_model(
        student,
        tokenizer,
        task,
        evals,
        out,
        source=student_dir,
        settings=settings,
        teacher=teacher,
        teacher_tokenizer=teacher_tokenizer,
        teacher_dir=teacher_dir,
        run_dir=run_dir,
        prune_texts=corpus,
        overwrite=args.overwrite,
        student_card=student_card,
        evaluate_flags=evaluate_flags,
    )
    from lgtm.export.report import markdown

    print(markdown(report), end="")
    return verdict(report, out)


def verdict(report: dict[str, Any], out: Path) -> int:
    """Print the closing line (stderr): which files lose more than the allowed drop, if any.
    Returns the exit status: 1 when one does, else 0."""
    bad = [c for c in report["checks"] if not c["ok"]]
    files = ", ".join(c["file"] for c in report["checks"])
    if bad:
        words = "; ".join(
            f"{c['file']} loses {c['drop_points']:.2f} points of {report['main_metric']}"
            for c in bad
        )
        print(
            f"lgtm: export: {words} against the PyTorch student, more than --max-metric-drop "
            f"{bad[0]['max']:g}: NOT a faithful export (files kept in {out}/)",
            file=sys.stderr,
        )
        return 1
    from lgtm.export.report import change_words

    changes = "; ".join(
        f"{c['file']}: {change_words(c['drop_points'], report['main_metric'])}"
        for c in report["checks"]
    )
    print(
        f"lgtm: exported {files} to {out}/ ({changes}), each within "
        f"{report['checks'][0]['max']:g} point(s) of the PyTorch student's "
        f"{report['main_metric']}",
        file=sys.stderr,
    )
    return 0


def export_run(run_dir: Path, formats: list[str], *, seed: int = 42) -> int:
    """``lgtm distill --export onnx[,int8][,prune]``: ``lgtm export RUN_DIR --output-dir
    RUN_DIR/export`` (replacing an earlier one) at the end of a run; returns its status."""
    args = argparse.Namespace(
        model_dir=str(run_dir),
        output_dir=str(Path(run_dir) / "export"),
        quantize="int8" if "int8" in formats else None,
        prune_vocab=[] if "prune" in formats else None,
        teacher=None,
        task=None,
        data_dir=None,
        eval_file=None,
        label_column=None,
        text_columns=None,
        max_eval_samples=None,
        seed=seed,
        max_length=None,
        batch_size=64,
        opset=DEFAULT_OPSET,
        threads=None,
        repeats=10,
        max_metric_drop=1.0,
        overwrite=True,
    )
    return run(args)
