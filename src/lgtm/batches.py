"""Batches of encoded examples in seeded orders that can be redrawn after a restart, each process
taking its share of every global batch (a process whose share is empty takes a stand-in that
weighs nothing, ``lgtm.distributed.PADDING``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from lgtm.distributed import PADDING
from lgtm.objectives import IGNORE_INDEX


class Batches:
    """Batches of encoded examples in seeded per-epoch (or per-pass) orders.

    The order of epoch ``e`` is a permutation drawn from ``(seed, stream, e)`` alone, so that any
    batch can be redrawn after a restart without replaying the ones before it.
    """

    def __init__(
        self,
        features: list[dict],
        collate: Callable,
        batch_size: int,
        seed: int,
        stream: int,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not features:
            raise ValueError("no examples to batch")
        self.features, self.collate, self.batch_size = features, collate, batch_size
        self.seed, self.stream, self.shuffle = seed, stream, shuffle
        self.rank, self.world = rank, world
        self.per_epoch = math.ceil(len(features) / batch_size)
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch``."""
        if self._order is None or self._order[0] != epoch:
            n = len(self.features)
            if self.shuffle:
                perm = np.random.default_rng([self.seed, self.stream, epoch]).permutation(n)
            else:
                perm = np.arange(n)
            self._order = (epoch, perm)
        return self._order[1]

    def global_size(self, index: int) -> int:
        """Size of the ``index``-th batch over all processes together."""
        position = index % self.per_epoch
        return min(self.batch_size, len(self.features) - position * self.batch_size)

    def features_at(self, index: int) -> list[dict]:
        """This process's share of the ``index``-th batch, not yet collated."""
        epoch, position = divmod(index, self.per_epoch)
        chosen = self.order(epoch)[position * self.batch_size : (position + 1) * self.batch_size]
        chosen = chosen[self.rank :: self.world] if self.world > 1 else chosen
        return [self.features[int(i)] for i in chosen]

    def first_at(self, index: int) -> dict:
        """The first example of the ``index``-th global batch (a stand-in's content)."""
        epoch, position = divmod(index, self.per_epoch)
        return self.features[int(self.order(epoch)[position * self.batch_size])]

    def get(self, index: int) -> dict[str, torch.Tensor]:
        """This process's share of the ``index``-th batch of the endless stream (epoch
        ``index // per_epoch``), or a stand-in when its share is empty (:func:`stand_in`)."""
        share = self.features_at(index)
        return self.collate(share) if share else stand_in(self.collate([self.first_at(index)]))


class MixedBatches:
    """Each step, a batch of labelled examples and one of transfer examples, padded together
    (labelled first): ``--batch-size`` + ``--transfer-batch-size`` samples.

    Each stream keeps its own seeded orders; an epoch is a pass over the longer one, while
    the shorter starts its next pass (a new order) whenever it runs out. Any step's batch is a
    pure function of its index, as for :class:`Batches`, so resume redraws it exactly.
    """

    def __init__(self, labelled: Batches, transfer: Batches) -> None:
        self.labelled, self.transfer, self.collate = labelled, transfer, labelled.collate
        self.per_epoch = max(labelled.per_epoch, transfer.per_epoch)

    def global_size(self, index: int) -> int:
        """Samples of the ``index``-th step over all processes together (both streams)."""
        return self.labelled.global_size(index) + self.transfer.global_size(index)

    def get(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th step's batch: this process's labelled then transfer samples (a
        stand-in when it has neither)."""
        share = self.labelled.features_at(index) + self.transfer.features_at(index)
        if share:
            return self.collate(share)
        return stand_in(self.collate([self.labelled.first_at(index)]))


def stand_in(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A collated one-sample ``batch`` made a stand-in: its label dropped (the ignore index, NaN
    for a score) and marked :data:`~lgtm.distributed.PADDING`, so that it weighs nothing
    (``distributed.samples_in`` is 0) while its process takes part in every collective."""
    labels = batch["labels"]
    missing = float("nan") if labels.is_floating_point() else IGNORE_INDEX
    mark = torch.ones(1, dtype=torch.bool)
    return {**batch, "labels": torch.full_like(labels, missing), PADDING: mark}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}
