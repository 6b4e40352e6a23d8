"""The ``lgtm`` command: ``distill``, ``evaluate``, ``predict`` (GLUE submission files), ``plot``.

Bad input of any kind (a flag, a file, a row, a field) ends with one line on stderr,
``lgtm: error: FILE:LINE: field 'FIELD': what is wrong``, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

from lgtm import config as cfg
from lgtm import rundir
from lgtm.errors import LgtmInputError

# GLUE tasks whose submission files hold class indices (the others hold label names).
NUMERIC_GLUE_LABELS = frozenset({"cola", "sst2", "mrpc", "qqp", "wnli"})


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit status 2 all the same)."""

    def error(self, message: str) -> NoReturn:
        raise LgtmInputError(f"{message} (see: {self.prog} --help)")


# --------------------------------------------------------------------------- distill


def distill_config(argv_args: argparse.Namespace) -> cfg.RunConfig:
    """The run's configuration: --config file, then flags; with --resume, the saved
    configuration of the run being resumed under them."""
    from lgtm.rundata import default_output_dir

    explicit: dict[str, Any] = {}
    path = getattr(argv_args, "config", None)
    if path:
        explicit.update(cfg.load_yaml(path))
    flags = cfg.explicit_from_args(argv_args)
    explicit.update(flags)
    try:
        config = cfg.resolve(explicit)
    except LgtmInputError as err:  # a setting from the file: its file:line
        raise cfg.locate(err, path, flags) from None
    if config.resume:
        saved = Path(config.output_dir or default_output_dir(config)) / "config.yaml"
        if saved.is_file():
            config = cfg.resolve({**cfg.load_yaml(saved), **explicit})
    return config


def _distill(args: argparse.Namespace) -> int:
    from lgtm.run import distill

    distill(distill_config(args))
    return 0


def _tune(args: argparse.Namespace) -> int:
    explicit: dict[str, Any] = {}
    if args.config:
        explicit.update(cfg.load_yaml(args.config))
    flags = cfg.explicit_from_args(args)
    explicit.update(flags)
    try:
        return _tune_with(args, explicit)
    except LgtmInputError as err:  # a setting from the file: its file:line
        raise cfg.locate(err, args.config, flags) from None


def _tune_with(args: argparse.Namespace, explicit: dict[str, Any]) -> int:
    from lgtm.rundata import task_name
    from lgtm.tune import TuneSettings, tune

    out = explicit.pop("output_dir", None)
    for key in ("overwrite", "resume"):  # a study continues by itself; it is never overwritten
        if explicit.pop(key, False):
            raise LgtmInputError(
                f"lgtm tune takes no {cfg.flag(key)}: run it again to continue its study, or "
                "give a new --output-dir",
                field=key,
            )
    if out is None:
        base = cfg.resolve(explicit)
        out = str(Path("runs") / f"tune-{task_name(base)}-{base.method}")
    settings = TuneSettings(
        trials=args.trials,
        output_dir=Path(out),
        search=args.search,
        storage=args.storage,
        study_name=args.study_name,
        pruning=args.pruning,
        keep_trial_models=args.keep_trial_models,
    )
    try:
        tune(explicit, settings)
    except KeyboardInterrupt:  # the trial it stopped is run again by the same command
        print(f"lgtm: interrupted; the same command continues the study in {out}", file=sys.stderr)
        return 130
    return 0


def _boolean(field: str) -> Any:
    """An argparse type for a true/false option of ``lgtm tune`` (not a run setting): a bad
    value is one line naming ``field``."""
    from lgtm.config.values import boolean

    def parse(value: str) -> bool:
        try:
            return boolean(value)
        except ValueError as err:
            raise LgtmInputError(str(err), field=field) from None

    return parse


# --------------------------------------------------------------------------- evaluate / predict


def _load_for_inference(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Model, tokenizer and task: the task from --task, the data folder's name, or the model."""
    import torch
    from transformers import AutoConfig

    from lgtm import data as D
    from lgtm import models as M
    from lgtm.checks import align_labels, check_embeddings, require_trained_head, usable_max_length
    from lgtm.export.onnx import find_onnx

    onnx_file = find_onnx(args.model)  # an exported folder (lgtm export), or one of its files
    path = str(onnx_file.parent) if onnx_file else M.resolve_model_path(args.model)
    if not Path(path).exists():
        raise LgtmInputError(
            "does not exist: give a model folder, an exported folder or one of its .onnx files",
            file=args.model,
            field="model",
        )
    if not (Path(path) / "config.json").is_file():
        raise LgtmInputError("not a model folder (no config.json)", file=args.model, field="model")
    mconf = AutoConfig.from_pretrained(path)
    name = (
        args.task
        or (Path(args.data_dir).name if getattr(args, "data_dir", None) else None)
        or getattr(mconf, "finetuning_task", None)
    )
    if name is None:
        raise LgtmInputError(
            "give --task (the model does not say which task it was trained on)", field="task"
        )
    try:
        task = D.get_task(name)
    except LgtmInputError:
        if args.task is None and getattr(mconf, "finetuning_task", None):
            task = _task_from_model(
                mconf, str(mconf.finetuning_task), args.text_columns or ["text"]
            )
        elif args.task is not None and (
            getattr(args, "eval_file", None) or getattr(args, "input", None)
        ):
            task = _task_from_model(mconf, args.task, args.text_columns or ["text"])
        else:
            raise
    if onnx_file is not None:
        from lgtm.checks import check_label_count
        from lgtm.export.onnx import load_onnx_classifier

        check_label_count(mconf, task.num_labels, str(args.model))
        model, tokenizer = load_onnx_classifier(onnx_file)  # ONNX Runtime, CPU
    else:
        model, tokenizer = M.load_model(path, task.num_labels)
    shown = str(args.model)
    require_trained_head(
        model, "model", shown, "give a fine-tuned model, such as a run's student/ folder"
    )
    check_embeddings(model, tokenizer, task, "model", shown)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise LgtmInputError(
            "the model's weights hold NaN or infinite values", file=shown, field="model"
        )
    notice = align_labels(model, task, "model", shown)
    args.max_length, lowered = usable_max_length(args.max_length, [model], tokenizer)
    for line in (notice, lowered):
        if line:
            print(line, file=sys.stderr)
    return model, tokenizer, task


def _task_from_model(mconf: Any, name: str, text_columns: list[str]) -> Any:
    from lgtm.data import custom_task

    if mconf.num_labels == 1:
        return custom_task(name, tuple(text_columns), None)
    return custom_task(
        name, tuple(text_columns), [mconf.id2label[i] for i in range(mconf.num_labels)]
    )


def _evaluate(args: argparse.Namespace) -> int:
    from lgtm.data.encode import encode, make_collator
    from lgtm.evaluation import evaluate, undefined_notice

    model, tokenizer, task = _load_for_inference(args)
    evals = _eval_splits(args, task)
    features = {k: encode(v, tokenizer, args.max_length) for k, v in evals.items()}
    undefined: dict[str, str] = {}
    metrics = evaluate(
        model, task, features, make_collator(tokenizer), args.batch_size, undefined=undefined
    )
    notice = undefined_notice(undefined)
    if notice is not None:
        print(notice, file=sys.stderr)
    if len(features) == 1:
        metrics = {next(iter(features)): metrics}
    print(
        json.dumps(
            {
                "model": str(args.model),
                "task": task.name,
                "examples": {k: len(v) for k, v in features.items()},
                "metrics": metrics,
            },
            indent=2,
        )
    )
    return 0


def _eval_splits(args: argparse.Namespace, task: Any) -> dict[str, list]:
    """The evaluation split(s) named by --eval-file, --data-dir, the offline default data or
    the hub, sampled to --max-eval-samples."""
    from lgtm import data as D

    if args.eval_file:
        columns = args.text_columns or list(task.text_columns)
        evals = {
            task.eval_splits[0]: D.read_table(
                task,
                args.eval_file,
                text_columns=columns,
                label_column=args.label_column or "label",
            )
        }
    elif args.data_dir:
        evals = D.load_glue_dir(task, args.data_dir).evals
    elif task.name == "rotten_tomatoes":
        evals = D.load_default().evals
    else:
        evals = D.load_hf_glue(task).evals
    return {k: D.subsample(v, args.max_eval_samples, args.seed) for k, v in evals.items()}


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from lgtm.data import Example
    from lgtm.data.encode import encode, make_collator
    from lgtm.data.glue import glue_unlabelled_file
    from lgtm.data.user import read_unlabelled
    from lgtm.evaluation import predict_logits
    from lgtm.fileio import atomic_write

    model, tokenizer, task = _load_for_inference(args)
    if args.input:
        path = Path(args.input)
        columns = args.text_columns or list(task.text_columns)
    elif args.data_dir:
        path, glue_columns = glue_unlabelled_file(task, Path(args.data_dir), args.split)
        columns = args.text_columns or glue_columns
    else:
        raise LgtmInputError("give --input FILE or --data-dir DIR", field="input")
    out = _prediction_file(Path(args.output), args.overwrite)
    rows = read_unlabelled(path, columns)
    examples = [
        Example(i, texts, 0.0 if task.is_regression else 0) for i, (_, texts) in enumerate(rows)
    ]
    features = encode(examples, tokenizer, args.max_length)
    logits = predict_logits(model, features, make_collator(tokenizer), args.batch_size)
    lines = ["index\tprediction"]
    if task.is_regression:
        lines += [f"{i}\t{v:.3f}" for (i, _), v in zip(rows, logits[:, 0], strict=True)]
    else:
        names = list(task.label_names)  # the task's names, whatever the model calls them
        numeric = task.name in NUMERIC_GLUE_LABELS
        preds = np.argmax(logits, axis=-1)
        lines += [
            f"{i}\t{int(p) if numeric else names[int(p)]}"
            for (i, _), p in zip(rows, preds, strict=True)
        ]
    atomic_write(out, "\n".join(lines) + "\n")
    print(f"wrote {len(rows)} predictions to {out}", file=sys.stderr)
    return 0


def _prediction_file(out: Path, overwrite: bool) -> Path:
    """Check, before any inference, that predictions can be written to ``out``."""
    if out.is_dir():
        raise LgtmInputError("is a folder: give a file name", file=out, field="output")
    if out.exists() and not overwrite:
        raise LgtmInputError("exists: pass --overwrite to replace it", file=out, field="output")
    for folder in (out.parent, *out.parent.resolve().parents):  # its folder or one above it
        holder = rundir.live_holder(folder)
        if holder is not None:
            raise LgtmInputError(
                f"a live run holds this folder ({holder}): write the predictions elsewhere, "
                "or wait for it to end",
                file=folder,
                field="output",
            )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(out.name + ".tmp")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise LgtmInputError(
            f"cannot write here: {err.strerror or type(err).__name__}", file=out, field="output"
        ) from None
    return out


def _export(args: argparse.Namespace) -> int:
    from lgtm.export.command import run

    return run(args)


def _plot(args: argparse.Namespace) -> int:
    from lgtm.report import make_plots

    folder = Path(args.run_dir)
    # a run's own folder: held while its plots are drawn (refused while a live run holds it)
    with rundir.holding(folder, field="run_dir") if folder.is_dir() else nullcontext():
        paths = make_plots(folder)
    for path in paths:
        print(path)
    return 0


# --------------------------------------------------------------------------- parser


def _checked_int(name: str) -> Any:
    """An argparse type for a whole number (the range is checked where it is used)."""

    def convert(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None

    convert.__name__ = name
    return convert


def _checked(name: str) -> Any:
    """An argparse type that parses and range-checks like the distill option ``name``."""

    def parse(value: str) -> Any:
        parsed = cfg.parse_value(name, value)
        if name == "max_length" and parsed < 2:
            raise argparse.ArgumentTypeError(f"must be at least 2, got {parsed}")
        if name == "seed" and not 0 <= parsed < 2**32:
            raise argparse.ArgumentTypeError(f"must lie in 0..{2**32 - 1}, got {parsed}")
        return parsed

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except LgtmInputError as err:
            raise argparse.ArgumentTypeError(err.message) from None

    convert.__name__ = name
    return convert


def build_parser() -> argparse.ArgumentParser:
    """The ``lgtm`` argument parser with its four subcommands."""
    import lgtm

    parser = _Parser(
        prog="lgtm",
        description="Knowledge distillation of Hugging Face text "
        "classifiers with LGTM (ACL 2023) and its baselines.",
    )
    parser.add_argument("--version", action="version", version=f"lgtm {lgtm.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "distill",
        parents=[cfg.flags_parser()],
        usage="lgtm distill [--config FILE.yaml] [--OPTION VALUE ...]",
        help="distil a student from a teacher (default: an offline "
        "5-minute run on Rotten Tomatoes)",
        description="Distil a student from a teacher. Without --task or data: "
        "an offline demonstration run (under 5 minutes on 2 CPU cores): the "
        "bundled all-MiniLM-L6-v2, fine-tuned on labelled Rotten Tomatoes reviews, "
        "teaches its first 2 layers with kd on those and on the unlabelled reviews and "
        "plot summaries the data ships, with the settings "
        + ", ".join(
            f"{cfg.flag(k)} {v}" for k, v in cfg.DEFAULT_RUN.items() if k != "student_layers"
        )
        + " (flags override it).",
    )
    d.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file holding any of the options "
        "below (flags override it); every run saves its own as config.yaml",
    )
    d.set_defaults(func=_distill)

    t = sub.add_parser(
        "tune",
        parents=[cfg.flags_parser()],
        usage="lgtm tune --trials N --selection-fraction F [--search SPACE] "
        "[--config FILE.yaml] [--OPTION VALUE ...]",
        help="find a run's settings on the selection set (an Optuna study; dev is never read)",
        description="Search the settings of a run (the student lr always; the teacher's lr, "
        "alpha and temperature where the method uses them) with an Optuna study: TPE seeded "
        "by --seed, a median pruner on the selection-set evaluations. Each trial is an "
        "ordinary run whose student is scored on the selection set; the dev split is neither "
        "read nor scored. The study is kept in a database (default: study.db in "
        "--output-dir): run the command again to continue it; several processes may share "
        "it (--storage). Writes trials.csv, best.yaml (lgtm distill --config best.yaml), "
        "tune.png and tune.json.",
    )
    for action in t._actions:  # the run flags that mean something else, or nothing, here
        if action.dest == "output_dir":
            action.help = "the study's folder; default runs/tune-<task>-<method>"
        elif action.dest in ("overwrite", "resume"):  # refused: the study continues by itself
            action.help = argparse.SUPPRESS
    t.add_argument("--config", metavar="FILE.yaml", help="YAML file of the run's settings")
    t.add_argument(
        "--trials",
        type=_checked_int("trials"),
        required=True,
        metavar="N",
        help="trials in the study, finished, pruned or diverged, counting earlier runs of "
        "this command and other processes sharing the study",
    )
    t.add_argument(
        "--search",
        metavar="SPACE",
        help="the settings searched, replacing the default space: NAME=LOW:HIGH[:log][:int] "
        "or a bare NAME (its default range), comma-separated, e.g. "
        "lr=1e-5:3e-3:log,alpha=0.2:0.9",
    )
    t.add_argument(
        "--storage",
        metavar="URL",
        help="an Optuna storage URL shared by several processes or machines "
        "(sqlite:///FILE, postgresql://..., mysql://...); default: sqlite in --output-dir",
    )
    t.add_argument("--study-name", default="lgtm-tune", metavar="NAME", help="the study's name")
    t.add_argument(
        "--pruning",
        type=_boolean("pruning"),
        default=True,
        metavar="[true|false]",
        help="stop a trial whose selection score falls below the median of earlier trials' "
        "at an evaluation (default: true)",
    )
    t.add_argument(
        "--keep-trial-models",
        type=_boolean("keep_trial_models"),
        default=False,
        metavar="[true|false]",
        help="keep each trial's saved models (default: false; a trial keeps its config.yaml, "
        "metrics.json and plots, and best.yaml runs the best trial again)",
    )
    t.set_defaults(func=_tune)

    def inference_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model",
            required=True,
            metavar="DIR",
            help="a model folder (e.g. RUN_DIR/student), an exported folder or one of its "
            ".onnx files",
        )
        p.add_argument("--task", help="task name (default: the one the model was trained on)")
        p.add_argument("--data-dir", metavar="DIR", help="GLUE folder of the task")
        p.add_argument(
            "--text-columns",
            type=lambda v: cfg.parse_value("text_columns", v),
            metavar="A[,B]",
            help="text column(s) of your own file",
        )
        p.add_argument("--max-length", type=_checked("max_length"), default=128, metavar="N")
        p.add_argument("--batch-size", type=_checked("eval_batch_size"), default=64, metavar="N")

    e = sub.add_parser("evaluate", help="score a model on a task's evaluation split(s)")
    inference_args(e)
    e.add_argument("--eval-file", metavar="FILE", help="your own labelled file (.csv/.tsv/.jsonl)")
    e.add_argument("--label-column", metavar="NAME", help="label column of --eval-file")
    e.add_argument("--max-eval-samples", type=_checked("max_eval_samples"), metavar="N")
    e.add_argument("--seed", type=_checked("seed"), default=42)
    e.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "predict", help="write predictions as a GLUE submission file (index<TAB>prediction)"
    )
    inference_args(p)
    p.add_argument(
        "--input",
        metavar="FILE",
        help="file to predict (.csv/.tsv/.jsonl); its index column is kept, else the row number",
    )
    p.add_argument(
        "--split",
        choices=("test", "dev"),
        default="test",
        help="with --data-dir: which file to predict (default: test)",
    )
    p.add_argument("--output", required=True, metavar="FILE.tsv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.set_defaults(func=_predict)

    x = sub.add_parser(
        "export",
        usage="lgtm export MODEL_DIR --output-dir DIR [--quantize int8] [--prune-vocab [FILE ...]]",
        help="export a student to ONNX (float32, int8), with a report against PyTorch",
        description="Export a model to ONNX (dynamic batch and sequence axes) for ONNX Runtime, "
        "optionally quantised to int8 and with its vocabulary pruned, and measure every model "
        "(teacher, PyTorch student, each file: metric, size, parameters, latency at batch 1 "
        "and 64) into export.json and export.md. MODEL_DIR is a run folder (its student is "
        "exported, its teacher measured, its data used) or a model folder (give --task, "
        "--data-dir or --eval-file). Exit status 1 when an exported file loses more than "
        "--max-metric-drop points.",
    )
    x.add_argument("model_dir", metavar="MODEL_DIR", help="a run folder or a model folder")
    x.add_argument("--output-dir", required=True, metavar="DIR", help="the exported folder")
    x.add_argument(
        "--quantize",
        choices=("int8",),
        help="also write model_int8.onnx (ONNX Runtime's dynamic quantisation)",
    )
    x.add_argument(
        "--prune-vocab",
        nargs="*",
        metavar="FILE",
        help="keep only the special tokens and those of these texts (.txt one a line, or "
        ".csv/.tsv/.jsonl with the text columns); no FILE: the run's training and transfer text",
    )
    x.add_argument(
        "--teacher",
        metavar="DIR",
        help="a teacher to measure beside the student (default: the run's teacher/)",
    )
    x.add_argument("--task", help="task name (a model folder outside a run)")
    x.add_argument("--data-dir", metavar="DIR", help="GLUE folder of the task")
    x.add_argument("--eval-file", metavar="FILE", help="your own labelled file")
    x.add_argument("--label-column", metavar="NAME", help="label column of --eval-file")
    x.add_argument(
        "--text-columns",
        type=lambda v: cfg.parse_value("text_columns", v),
        metavar="A[,B]",
        help="text column(s) of your own files",
    )
    x.add_argument("--max-eval-samples", type=_checked("max_eval_samples"), metavar="N")
    x.add_argument("--seed", type=_checked("seed"), default=42)
    x.add_argument(
        "--max-length",
        type=_checked("max_length"),
        metavar="N",
        help="default: the run's, else 128",
    )
    x.add_argument("--batch-size", type=_checked("eval_batch_size"), default=64, metavar="N")
    x.add_argument(
        "--opset",
        type=_checked_int("opset"),
        default=18,
        metavar="N",
        help="ONNX opset (default 18)",
    )
    x.add_argument(
        "--threads",
        type=_checked("eval_batch_size"),
        metavar="N",
        help="CPU threads while measuring latency (default: torch's and ONNX Runtime's own)",
    )
    x.add_argument(
        "--repeats",
        type=_checked("eval_batch_size"),
        default=10,
        metavar="N",
        help="forward passes per latency (the median is reported)",
    )
    x.add_argument(
        "--max-metric-drop",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="points of the main metric an exported file may lose against the "
        "PyTorch student (default 1)",
    )
    x.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export in --output-dir (never a model, a run or other files)",
    )
    x.set_defaults(func=_export)

    pl = sub.add_parser("plot", help="redraw the plots of a run")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.set_defaults(func=_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lgtm`` command; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except LgtmInputError as err:
        message = " ".join(str(err).split())  # always one line
        print(f"lgtm: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help, --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("lgtm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
