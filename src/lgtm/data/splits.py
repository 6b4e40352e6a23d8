"""Seeded, stratified subsets: the feedback set carved from training data, and quick-run samples.

The feedback set is what the teacher learns from in LGTM; carving it from the training data
(rather than reusing dev) keeps the dev score an honest estimate. Subsets keep the label
proportions (quantile bins of the score for regression) and depend only on the seed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lgtm.errors import LgtmInputError

if TYPE_CHECKING:
    from lgtm.data.examples import Example

REGRESSION_BINS = 5


def _strata(labels: Sequence[int | float]) -> list[int | float]:
    """The stratum of each label: the class itself, or a quantile bin for real-valued scores."""
    if not any(isinstance(label, float) for label in labels):
        return list(labels)
    values = np.asarray(labels, dtype=float)
    bins = max(1, min(REGRESSION_BINS, len(values) // 10))
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return [int(b) for b in np.searchsorted(edges, values, side="right")]


def stratified_indices(
    labels: Sequence[int | float], k: int, seed: int, *, stratify: bool = True
) -> list[int]:
    """Pick ``k`` positions of ``labels`` at random (seeded), keeping label proportions.

    Each stratum gets ``k * size / n`` rounded down, and the remaining picks go to the strata
    with the largest remainders (ties: stratum order), so the total is exactly ``k``.
    Returns the positions in increasing order.
    """
    n = len(labels)
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n}")
    rng = np.random.default_rng(seed)
    if not stratify:
        return sorted(int(i) for i in rng.permutation(n)[:k])
    groups: dict[int | float, list[int]] = {}
    for position, stratum in enumerate(_strata(labels)):
        groups.setdefault(stratum, []).append(position)
    keys = sorted(groups)
    quotas = {key: k * len(groups[key]) / n for key in keys}
    counts = {key: int(quotas[key]) for key in keys}
    by_remainder = sorted(keys, key=lambda key: (-(quotas[key] - counts[key]), keys.index(key)))
    for key in by_remainder[: k - sum(counts.values())]:
        counts[key] += 1
    picked: list[int] = []
    for key in keys:
        members = groups[key]
        order = rng.permutation(len(members))[: counts[key]]
        picked.extend(members[int(i)] for i in order)
    return sorted(picked)


def split_feedback(
    examples: list[Example], fraction: float, seed: int, *, stratify: bool = True
) -> tuple[list[Example], list[Example]]:
    """Split training examples into ``(train_rest, feedback)``, disjoint, seeded, stratified.

    ``fraction`` of the examples (rounded, at least one, leaving at least one for training)
    become the feedback set. Both lists keep the original order.
    """
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, numbers.Real)
        or not (0.0 < fraction < 1.0)
    ):
        raise LgtmInputError(
            f"the feedback fraction must be between 0 and 1 (exclusive), got {fraction!r}",
            field="feedback_fraction",
        )
    n = len(examples)
    if n < 2:
        raise LgtmInputError(
            f"cannot carve a feedback set from {n} training example(s): need at least 2",
            field="feedback_fraction",
        )
    k = min(max(1, round(fraction * n)), n - 1)
    chosen = set(stratified_indices([e.label for e in examples], k, seed, stratify=stratify))
    rest = [e for i, e in enumerate(examples) if i not in chosen]
    feedback = [e for i, e in enumerate(examples) if i in chosen]
    return rest, feedback


def subsample(
    examples: list[Example], n: int | None, seed: int, *, stratify: bool = True
) -> list[Example]:
    """A seeded, stratified subset of ``n`` examples (original order), or all when ``n`` is None.

    For ``--max-train-samples`` / ``--max-eval-samples``; ``n`` larger than the data takes all.
    """
    if n is None:
        return list(examples)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LgtmInputError(
            f"the number of samples must be a positive integer, got {n!r}", field="max_samples"
        )
    if n >= len(examples):
        return list(examples)
    chosen = stratified_indices([e.label for e in examples], n, seed, stratify=stratify)
    return [examples[i] for i in chosen]
