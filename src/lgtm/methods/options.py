"""What a method declares about its options: one :class:`Option` per setting.

A method class lists its own options in ``options`` (``Method.options`` holds those every
method shares: α, τ, the objective, LGTM's radius...). The configuration reads them to make
its fields, flags, YAML keys and help; the method checks the values it is given with the same
:meth:`Option.check`, so a range is written once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..lookahead import LOOKAHEADS
from ..objectives import OBJECTIVES


@dataclass(frozen=True)
class Option:
    """One setting of a method: a ``RunConfig`` field, a flag ``--name-with-dashes``, a key.

    ``kind`` is the value's type (``float``, ``int``, ``str``), ``choices`` the allowed texts;
    ``low``/``high`` inclusive bounds (``why`` says what fails beyond them), ``parse`` a
    converter of a text or YAML value for options with a syntax of their own (raises
    ``ValueError``). ``to_method``: passed to the method's constructor (False: read by the
    method's plan, e.g. takd's assistant size)."""

    name: str
    default: Any
    kind: type
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    why: str = ""
    optional: bool = False  # None is a valid value (the default decides)
    parse: Callable[[Any], Any] | None = None
    to_method: bool = True

    def check(self, value: Any) -> str | None:
        """What is wrong with ``value`` (one phrase), or None when it is acceptable."""
        if value is None:
            return None if self.optional else "must be given"
        if self.choices is not None:
            if value not in self.choices:
                return f"{value!r} is not one of {', '.join(self.choices)}"
            return None
        if self.kind in (int, float) and isinstance(value, int | float):
            if not math.isfinite(value):
                return f"expected a finite number, got {value!r}"
            low, high = self.low, self.high
            if low is not None and high is not None and not low <= value <= high:
                why = f" ({self.why})" if self.why else ""
                return f"must lie in [{low:g}, {high:g}]{why}, got {value:g}"
            if low is not None and high is None and value < low:
                return (
                    f"must not be negative, got {value:g}"
                    if low == 0
                    else f"must be at least {low:g}, got {value:g}"
                )
        return None


#: The options every method takes (``Method.__init__``'s keywords), in flag order.
SHARED = (
    Option("alpha", 1.0, float, "weight of distillation in the student's loss", "A", low=0, high=1),
    Option(
        "teacher_alpha",
        0.4,
        float,
        "weight of the teacher's term towards the student in its auxiliary loss",
        "A",
        low=0,
        high=1,
    ),
    Option(
        "temperature",
        1.0,
        float,
        "distillation temperature",
        "T",
        low=0.05,
        high=100.0,
        why="the softened distributions degenerate in float32",
    ),
    Option(
        "objective",
        "kl",
        str,
        "distillation objective (skd: spherical KD, classification only)",
        choices=tuple(OBJECTIVES),
    ),
    Option(
        "fd_radius",
        0.01,
        float,
        "finite-difference radius r of LGTM",
        "R",
        low=1e-4,
        high=1.0,
        why="the finite difference degenerates in float32",
    ),
    Option(
        "lookahead", "adam", str, "the student's one-step look-ahead", choices=tuple(LOOKAHEADS)
    ),
    Option(
        "influence_objective",
        "student",
        str,
        "loss the influence is taken on: the paper's (student) or the released code's (teacher)",
        choices=("student", "teacher"),
    ),
    Option(
        "influence_step",
        "student_lr",
        str,
        "step size scaling the influence term",
        choices=("student_lr", "teacher_lr"),
    ),
    Option(
        "student_weighting",
        "none",
        str,
        "the student's distillation term per sample: uniform (none), or weighted by each "
        "sample's positive distillation influence on a feedback batch (influence; every "
        "method that distils, not ce; lgtm reuses its influence, the others pay a "
        "look-ahead and a few student passes a step)",
        choices=("none", "influence"),
    ),
)
