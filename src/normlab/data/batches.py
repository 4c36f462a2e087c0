"""Batches straight from in-memory tensors: a shuffled index, one slice per batch.

Used instead of a DataLoader over per-sample items: no collate, no workers. Each rank of a
multi-device run takes every ``world``-th index of the same permutation, so the ranks see
disjoint data and, together, one epoch.

Resumable mid-epoch (``resumable.py``).
"""

from __future__ import annotations

import torch

from normlab.chunks import batch_sizes
from normlab.data.resumable import ResumableEpochs
from normlab.data.splits import Split


class TensorBatches(ResumableEpochs):
    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.split, self.batch_size, self.shuffle, self.drop_last = split, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world = seed, rank, world

    def _indices(self, epoch: int) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:
            # seed + epoch: every epoch differs, and a resumed run replays the same order.
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            idx = torch.arange(n)
        # Every rank gets the same count, or DDP would wait forever for the rank that ran out.
        return idx[: n - n % self.world][self.rank :: self.world]

    def sizes(self) -> list[int]:
        return batch_sizes(len(self.split) // self.world, self.batch_size, self.drop_last)

    def dropped(self) -> int:
        """Images of this rank left out of every pass by ``drop_last`` (the last partial batch)."""
        return len(self.split) // self.world - sum(self.sizes())

    def __len__(self) -> int:
        return len(self.sizes())

    def plan(self, epoch: int) -> list[torch.Tensor]:
        sizes = self.sizes()
        return list(self._indices(epoch)[: sum(sizes)].split(sizes))

    def batch(self, plan: list[torch.Tensor], b: int):
        return self.split.x[plan[b]], self.split.y[plan[b]]
