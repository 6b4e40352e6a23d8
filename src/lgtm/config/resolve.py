"""A run's configuration resolved: defaults, the default run's budget, the preset, the user's
settings, in that order (later wins), then checked in one pass with one-line errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lgtm.config.fields import (
    DEFAULT_BUDGET,
    DEFAULT_RUN,
    DEFAULT_TASK,
    FIELDS,
    NOT_RESULT_FIELDS,
    PRESET_DATA,
    RunConfig,
)
from lgtm.errors import LgtmInputError


def parse_value(name: str, value: Any, *, file: str | None = None, line: int | None = None) -> Any:
    """Check and convert one configuration value; a bad one is an :class:`LgtmInputError`."""
    parse = FIELDS[name].metadata["parse"]
    try:
        return parse(value)
    except (ValueError, TypeError) as err:
        raise LgtmInputError(str(err), file=file, line=line, field=name) from None


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
    names_data = any(explicit.get(k) is not None for k in ("data_dir", "train_file"))
    names_data |= explicit.get("task") not in (None, DEFAULT_TASK)  # --task names the default
    if not names_data:  # the offline demonstration, or another method's budget on its data
        chosen = explicit.get("method", DEFAULT_RUN["method"])
        values.update(DEFAULT_RUN if chosen == DEFAULT_RUN["method"] else DEFAULT_BUDGET)
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
    if values["init_classifier"] is None:
        values["init_classifier"] = "random"
    base = dict(values)  # what the run would be without the user's settings
    values.update(explicit)
    if values["transfer_file"] is None and not values["transfer_from_train"]:
        for name in ("transfer_batch_size", "max_transfer_samples"):  # the default run's
            if name not in explicit:  # sizes of a transfer set the user turned off
                values[name] = None
    if values["init_classifier"] is None:
        values["init_classifier"] = "random"
    config = RunConfig(**values)
    _check(config)
    refuse_ignored(config, base)
    return config


def refuse_ignored(
    config: RunConfig,
    base: Mapping[str, Any] | None = None,
    regression: bool = False,
    names: Sequence[str] | None = None,
) -> None:
    """Refuse a setting that has no effect on this run (``Method.ignored_settings``: the
    temperature under ``--objective mse``, ``--alpha`` for dml, the teacher's learning rate of
    a teacher that is not trained, ...) when it differs from ``base``, the value the run would
    have without the user's settings (default: the defaults); ``names``: only these. A saved
    ``config.yaml`` holds those values, so it still runs. Raises :class:`LgtmInputError`
    (one line, exit status 2).
    """
    from lgtm.methods import method_class

    base = RunConfig().to_dict() if base is None else base
    values = config.to_dict()
    for name, why in method_class(config.method).ignored_settings(values, regression).items():
        if values[name] != base[name] and (names is None or name in names):
            flag = "--" + name.replace("_", "-")
            raise LgtmInputError(
                f"{flag} {values[name]} has no effect ({why}): drop it", field=name
            )


def _check(config: RunConfig) -> None:
    if not 0.0 < config.feedback_fraction < 1.0:
        raise LgtmInputError(
            f"must lie strictly between 0 and 1, got {config.feedback_fraction}",
            field="feedback_fraction",
        )
    _check_method_options(config)
    if config.lr == "auto" and config.selection_fraction is None:
        raise LgtmInputError(
            "--lr auto chooses the rate on a selection set, never on dev: give "
            "--selection-fraction",
            field="lr",
        )
    for name in ("lr", "teacher_lr"):
        if getattr(config, name) != "auto" and getattr(config, name) <= 0:
            raise LgtmInputError(f"must be positive, got {getattr(config, name)}", field=name)
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
    if not config.do_eval and config.selection_fraction is None:
        raise LgtmInputError(
            "--do-eval false scores the selection set instead of dev: give --selection-fraction",
            field="do_eval",
        )
    if not config.do_eval and config.feedback_from == "validation":
        raise LgtmInputError(
            "--do-eval false reads no evaluation split, and --feedback-from validation takes "
            "the feedback set from it",
            field="do_eval",
        )
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise LgtmInputError(f"must lie in [0, 1), got {config.warmup_ratio}", field="warmup_ratio")
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
    _check_transfer(config)
    if config.overwrite and config.resume:
        raise LgtmInputError("give --overwrite or --resume, not both", field="resume")


def _check_transfer(config: RunConfig) -> None:
    """A transfer set needs a teacher to label it; its own settings need a transfer set."""
    has_transfer = config.transfer_file is not None or config.transfer_from_train
    if has_transfer and config.method == "ce":
        raise LgtmInputError(
            "--method ce has no teacher to label a transfer set: use kd, lgtm or another "
            "method with a teacher, or drop the transfer set",
            field="transfer_file" if config.transfer_file is not None else "transfer_from_train",
        )
    if not has_transfer:
        for name in ("transfer_batch_size", "max_transfer_samples"):
            if getattr(config, name) is not None:
                raise LgtmInputError(
                    f"--{name.replace('_', '-')} needs a transfer set (--transfer-file or "
                    "--transfer-from-train)",
                    field=name,
                )


def _check_method_options(config: RunConfig) -> None:
    """Each method option within its declared range, and none set for a method that does not
    read it (``--ta-layers`` with ``--method kd`` is a mistake, not a no-op)."""
    from lgtm.methods import REGISTRY_OPTIONS, method_class
    from lgtm.methods.base import REGISTRY

    chosen = method_class(config.method)
    if config.student_weighting != "none" and not chosen.distills:
        raise LgtmInputError(
            f"--method {config.method} has no distillation term to weight: use "
            "--student-weighting with kd, lgtm or another method that distils",
            field="student_weighting",
        )
    own = {o.name for o in chosen.options}
    for option in REGISTRY_OPTIONS:
        value = getattr(config, option.name)
        problem = option.check(value)
        if problem is not None:
            raise LgtmInputError(problem, field=option.name)
        owners = [n for n, c in REGISTRY.items() if option in c.options]
        if owners and option.name not in own and value != option.default:
            raise LgtmInputError(
                f"--{option.name.replace('_', '-')} is for --method {' or '.join(owners)}",
                field=option.name,
            )


def drop_ignored(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (settings by field name) without those that have no effect on the run they
    describe (:func:`refuse_ignored` would refuse them): for scripts that give one budget to
    every method."""
    from lgtm.methods import method_class

    kept = dict(values)
    while True:  # dropping one (the student's weighting) can make others act no more
        full = {**RunConfig().to_dict(), **kept}
        ignored = method_class(full["method"]).ignored_settings(full)
        if not ignored.keys() & kept.keys():
            return kept
        kept = {k: v for k, v in kept.items() if k not in ignored}


def differences(saved: RunConfig, asked: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Result-changing settings in which ``asked`` differs from ``saved`` (for --resume)."""
    a, b = saved.to_dict(), asked.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in NOT_RESULT_FIELDS and a[k] != b[k]}
