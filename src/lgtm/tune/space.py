"""The search space of ``lgtm tune``: which settings a method reads, their default ranges, and
the ``--search`` syntax (``lr=1e-5:3e-3:log,alpha=0.2:0.9``; a bare name takes its default range).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lgtm.config import RunConfig, resolve
from lgtm.errors import LgtmInputError


@dataclass(frozen=True)
class Range:
    """One searched setting: a ``RunConfig`` field sampled in ``[low, high]`` (log-uniformly
    when ``log``; integers when ``kind is int``)."""

    name: str
    low: float
    high: float
    log: bool = False
    kind: type = float

    def text(self) -> str:
        """``name=low:high[:log][:int]``, the ``--search`` syntax."""
        flags = (":log" if self.log else "") + (":int" if self.kind is int else "")
        return f"{self.name}={self.low:g}:{self.high:g}{flags}"


def _method(config: RunConfig) -> type:
    from lgtm.methods import method_class

    return method_class(config.method)


def _distils(config: RunConfig) -> str | None:
    return None if _method(config).needs_teacher else f"--method {config.method} has no teacher"


def _teacher_learns(config: RunConfig) -> str | None:
    cls = _method(config)
    if not cls.needs_teacher:
        return f"--method {config.method} has no teacher"
    if cls.trains_teacher or not config.teacher_finetuned:  # trained jointly, or fine-tuned first
        return None
    return f"--method {config.method} with --teacher-finetuned never trains its teacher"


def _teacher_aux(config: RunConfig) -> str | None:
    cls = _method(config)
    ok = cls.needs_teacher and cls.trains_teacher
    return None if ok else f"--method {config.method} has no teacher loss towards the student"


def _tempered(config: RunConfig) -> str | None:
    if (why := _distils(config)) is not None:
        return why
    if config.objective == "mse":
        return "--objective mse compares logits and reads no temperature"
    return None


def _influence(config: RunConfig) -> str | None:
    if _method(config).computes_influence:
        return None
    return f"--method {config.method} computes no distillation influence"


def _always(config: RunConfig) -> str | None:
    return None


#: Every setting ``--search`` may name: its default range and when the run reads it (a
#: function giving why not, or None). The first four are the default space (docs/tune.md).
TUNABLE: dict[str, tuple[Range, Callable[[RunConfig], str | None]]] = {
    "lr": (Range("lr", 1e-5, 3e-3, log=True), _always),
    "teacher_lr": (Range("teacher_lr", 1e-5, 3e-4, log=True), _teacher_learns),
    "alpha": (Range("alpha", 0.1, 0.9), _distils),
    "temperature": (Range("temperature", 1.0, 8.0, log=True), _tempered),
    "teacher_alpha": (Range("teacher_alpha", 0.1, 0.9), _teacher_aux),
    "fd_radius": (Range("fd_radius", 1e-3, 1e-1, log=True), _influence),
    "warmup_ratio": (Range("warmup_ratio", 0.0, 0.3), _always),
    "weight_decay": (Range("weight_decay", 0.0, 0.1), _always),
    "epochs": (Range("epochs", 1, 5, kind=int), _always),
    "batch_size": (Range("batch_size", 8, 64, log=True, kind=int), _always),
}
DEFAULT_SPACE = ("lr", "teacher_lr", "alpha", "temperature")


def default_space(config: RunConfig) -> list[Range]:
    """The default ranges of the settings the run reads: the student lr always; the teacher's
    lr, α and τ where the method (and objective) use them."""
    return [TUNABLE[n][0] for n in DEFAULT_SPACE if TUNABLE[n][1](config) is None]


def parse_search(text: str, config: RunConfig) -> list[Range]:
    """The space ``--search`` gives (it replaces the default space; unnamed settings keep the
    configuration's values).

    Raises :class:`LgtmInputError` (field ``search``) for an unknown, repeated or malformed
    entry, a setting the run does not read, a range that is empty, not finite, not positive on a
    log scale, or outside what the setting accepts.
    """
    out: list[Range] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            raise LgtmInputError(f"empty entry in {text!r}", field="search")
        name, _, spec = entry.partition("=")
        name = name.strip().replace("-", "_")
        if name not in TUNABLE:
            raise LgtmInputError(
                f"unknown setting {name!r} in {entry!r}; tunable: {', '.join(TUNABLE)}",
                field="search",
            )
        if any(r.name == name for r in out):
            raise LgtmInputError(f"{name!r} is given twice", field="search")
        default, reads = TUNABLE[name]
        if (why := reads(config)) is not None:
            raise LgtmInputError(f"cannot search {name}: {why}", field="search")
        out.append(_parse_range(name, spec, entry) if spec else default)
    for r in out:
        _check_endpoints(r, config)
    return out


def _parse_range(name: str, spec: str, entry: str) -> Range:
    parts = [p.strip() for p in spec.split(":")]
    usage = f"expected NAME=LOW:HIGH[:log][:int], got {entry!r}"
    flags = parts[2:]
    if (
        len(parts) < 2
        or any(p not in ("log", "int") for p in flags)
        or len(set(flags)) < len(flags)
    ):
        raise LgtmInputError(usage, field="search")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise LgtmInputError(usage, field="search") from None
    log, kind = "log" in parts[2:], int if "int" in parts[2:] else float
    if not (math.isfinite(low) and math.isfinite(high)):
        raise LgtmInputError(f"the range of {name} must be finite, got {entry!r}", field="search")
    if not low < high:
        raise LgtmInputError(f"the range of {name} is empty: {low:g} ≥ {high:g}", field="search")
    if log and low <= 0:
        raise LgtmInputError(
            f"a log range needs a positive low end, got {name} from {low:g}", field="search"
        )
    if kind is int and (low != int(low) or high != int(high)):
        raise LgtmInputError(f"an :int range needs whole ends, got {entry!r}", field="search")
    if TUNABLE[name][0].kind is int and kind is not int:
        kind = int
        if low != int(low) or high != int(high):
            raise LgtmInputError(f"{name} takes whole numbers, got {entry!r}", field="search")
    return Range(name, low, high, log, kind)


def _check_endpoints(r: Range, config: RunConfig) -> None:
    """Both ends of ``r`` must be settings the configuration accepts."""
    base = config.to_dict(saved=True)
    for end in (r.low, r.high):
        value = int(end) if r.kind is int else float(end)
        try:
            resolve({**base, r.name: value})
        except LgtmInputError as err:
            raise LgtmInputError(
                f"{r.text()}: {r.name} = {value:g} is refused ({err.message})", field="search"
            ) from None
