"""Batches straight from in-memory tensors: a shuffled index, one slice per batch.

Used instead of a DataLoader over per-sample items: no collate, no workers. Each rank of a
multi-device run takes every ``world``-th index of the same permutation, so the ranks see
disjoint data and, together, one epoch.
"""

from __future__ import annotations

import torch

from normlab.data.splits import Split


class TensorBatches:
    def __init__(
        self, split: Split, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0, rank: int = 0, world: int = 1
    ):
        self.split, self.batch_size, self.shuffle, self.drop_last = split, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def _indices(self) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:
            # seed + epoch: every epoch differs, and a resumed run replays the same order.
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            idx = torch.arange(n)
        # Every rank gets the same count, or DDP would wait forever for the rank that ran out.
        return idx[: n - n % self.world][self.rank :: self.world]

    def __len__(self) -> int:
        n = len(self.split) // self.world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        self.epoch += 1
        for b in range(len(self)):
            chunk = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.split.x[chunk], self.split.y[chunk]
