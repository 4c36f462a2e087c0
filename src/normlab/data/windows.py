"""Batches of character windows cut from one encoded split held in memory.

A window is ``block_size + 1`` consecutive ids; its first ``block_size`` are the input and the
last ``block_size`` the targets (the next character at every position). A batch is one
gather, ``ids[starts[:, None] + arange(block_size + 1)]``: no per-sample Python, no collate.

- ``RandomWindows`` (training): a fixed number of batches of random windows per "epoch",
  since a stream of text has no natural epoch. Seeded by (seed, epoch, rank); resumable
  mid-epoch (``resumable.py``).
- ``FixedWindows`` (validation, test): the same evenly spaced windows every time, so that
  successive evaluations and different runs score the same characters.
"""

from __future__ import annotations

import numpy as np
import torch

from normlab.data.resumable import ResumableEpochs
from normlab.errors import ConfigError


def check_length(ids: torch.Tensor, block_size: int, split: str) -> None:
    if len(ids) < block_size + 1:
        raise ConfigError(
            f"the {split} split has {len(ids)} characters, fewer than model.block_size + 1 = "
            f"{block_size + 1}. Fix: lower model.block_size or give more text."
        )


def gather(ids: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = ids[starts[:, None] + torch.arange(block_size + 1)].long()  # (B, T+1)
    return w[:, :-1], w[:, 1:]  # (B, T) inputs, (B, T) next-character targets


class RandomWindows(ResumableEpochs):
    def __init__(
        self,
        ids: torch.Tensor,
        block_size: int,
        batch_size: int,
        batches: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        check_length(ids, block_size, "train")
        self.ids, self.block_size, self.batch_size, self.batches = ids, block_size, batch_size, batches
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self) -> int:
        return self.batches

    def plan(self, epoch: int) -> torch.Tensor:
        # (seed, epoch, rank) through SeedSequence: distinct streams, no collisions between seeds.
        state = np.random.SeedSequence([self.seed, epoch, self.rank]).generate_state(1)[0]
        g = torch.Generator().manual_seed(int(state))
        return torch.randint(len(self.ids) - self.block_size, (self.batches, self.batch_size), generator=g)

    def batch(self, starts: torch.Tensor, b: int):
        return gather(self.ids, starts[b], self.block_size)


class FixedWindows:
    def __init__(
        self,
        ids: torch.Tensor,
        block_size: int,
        batch_size: int,
        windows: int,
        rank: int = 0,
        world: int = 1,
        split: str = "val",
    ):
        check_length(ids, block_size, split)
        self.ids, self.block_size, self.batch_size = ids, block_size, batch_size
        last = len(ids) - block_size - 1
        starts = torch.linspace(0, last, min(windows, last + 1)).round().long().unique()
        # Every rank gets the same count, or DDP would wait forever for the rank that ran out.
        self.starts = starts[: len(starts) - len(starts) % world][rank::world]

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def __iter__(self):
        for chunk in self.starts.split(self.batch_size):
            yield gather(self.ids, chunk, self.block_size)
