"""Teaching methods, one module each, registered by name: kd, online, meta, lgtm, lgtm-exact,
and the baselines ce, pkd, dml, prokt, pesf, takd, rco. The registry is the one list of names."""

from __future__ import annotations

from typing import Any

import torch

from . import ce, dml, kd, lgtm, lgtm_exact, meta, online, pesf, pkd, prokt, rco, takd  # noqa: F401
from .base import REGISTRY, Method
from .options import SHARED, Option

#: Every method, by name (registered when its module above is imported).
METHOD_NAMES = tuple(REGISTRY)
#: Every option a method declares, each once: the shared ones, then each method's own.
REGISTRY_OPTIONS: tuple[Option, ...] = tuple(
    {o.name: o for o in (*SHARED, *(o for c in REGISTRY.values() for o in c.options))}.values()
)

# Every method-level choice of the released LGTM implementation (ALGORITHMS.md, "A preset
# that reproduces the released code"). Its data-level choices (feedback drawn in order from
# the validation split, zero-initialised classifiers) are applied by the training loop.
PRESETS: dict[str, dict[str, Any]] = {
    "official-code": {
        "alpha": 1.0,
        "temperature": 1.0,
        "teacher_alpha": 0.4,
        "objective": "kl",
        "fd_radius": 0.01,
        "lookahead": "adam",
        "influence_objective": "teacher",
        "influence_step": "teacher_lr",
    }
}


def make_method(
    name: str,
    *,
    teacher: torch.nn.Module | None = None,
    student: torch.nn.Module,
    student_optimizer: torch.optim.Optimizer,
    teacher_optimizer: torch.optim.Optimizer | None = None,
    preset: str | None = None,
    **options: Any,
) -> Method:
    """Build the teaching method ``name`` (one of ``METHOD_NAMES``; takd and rco build their
    stages' ``kd`` step).

    ``options`` are the keyword arguments of :class:`Method` (alpha, teacher_alpha,
    temperature, objective, fd_radius, lookahead, influence_objective, influence_step,
    student_weighting: ``"influence"`` weighs the student's distillation term per sample,
    ``methods/influence.py``; refused by ``ce``), and
    those of the method itself: ``pkd_beta``, ``pkd_layers`` (pkd), ``pesf_rank`` (pesf).
    A ``preset`` fills them in; an explicit option that contradicts it is an error.
    ``teacher`` may be ``None`` only for ``ce``; ``pesf`` needs a teacher wrapped by
    :func:`lgtm.methods.pesf.wrap_teacher`. Raises ``ValueError`` for an unknown name or preset,
    a preset contradicted, or options the method refuses.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        clash = {
            k: v for k, v in options.items() if k in PRESETS[preset] and v != PRESETS[preset][k]
        }
        if clash:
            raise ValueError(f"preset {preset!r} sets {PRESETS[preset]}; it contradicts {clash}")
        options = {**options, **PRESETS[preset]}
    return REGISTRY[name](teacher, student, teacher_optimizer, student_optimizer, **options)


def method_class(name: str) -> type[Method]:
    """The registered class of method ``name``; ``ValueError`` for an unknown name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = [
    "METHOD_NAMES",
    "PRESETS",
    "REGISTRY_OPTIONS",
    "Method",
    "Option",
    "make_method",
    "method_class",
]
