"""ProKT (Shi et al., ECML-PKDD 2021, "Follow your path"), as the released LGTM code runs it.

The teacher is projected towards what the student can follow: it trains on its task loss and
a term towards the student, online distillation's ``L_aux``. As in the released LGTM code
(BASELINES.md, ``prokt``), ProKT is ``online`` with both classification heads zero-initialised,
so that ProKT and LGTM differ only by the influence term. The heads are zeroed when the method
is built (in place, through :func:`lgtm.models.zero_init_classifier`), so both models start from
uniform predictions; every step is then exactly ``online``'s.
"""

from __future__ import annotations

from typing import Any

from .base import register
from .online import Online


@register("prokt")
class ProKT(Online):
    """``online`` distillation from zero-initialised classification heads."""

    @classmethod
    def ignored_settings(cls, values: Any, regression: bool = False) -> dict[str, str]:
        """As :meth:`Method.ignored_settings`, and ``--init-classifier``: both heads are
        zeroed whatever it says."""
        heads = "--method prokt zero-initialises both classification heads itself"
        return {**super().ignored_settings(values, regression), "init_classifier": heads}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`Method`; then the final classification layer of teacher and student is
        zeroed. Raises ``LgtmInputError`` when a model has no recognisable classifier."""
        from ..models import zero_init_classifier  # transformers' modelling: import when used

        super().__init__(*args, **kwargs)
        for model in (self.teacher, self.student):  # unwrap DistributedDataParallel
            zero_init_classifier(getattr(model, "module", model))
