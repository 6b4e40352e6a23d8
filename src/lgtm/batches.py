"""Batches of encoded examples in seeded orders that can be redrawn after a restart, each process
taking its share of every global batch."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


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

    def get(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th batch of the endless stream (epoch ``index // per_epoch``)."""
        return self.collate(self.features_at(index))


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
        """The ``index``-th step's batch: this process's labelled then transfer samples."""
        return self.collate(self.labelled.features_at(index) + self.transfer.features_at(index))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}
