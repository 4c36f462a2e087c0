"""Batches straight from in-memory tensors: a shuffled index, one slice per batch.

Used instead of a DataLoader over per-sample items: no collate, no workers. Each rank of a
multi-device run takes every ``world``-th index of the same permutation, so the ranks see
disjoint data and, together, one epoch.

Resumable: ``state_dict()`` says which epoch's order is being served and how many of its
batches went out; Lightning saves it in every checkpoint (it does so for any training loader
with ``state_dict``/``load_state_dict``) and hands it back on resume, so a run killed
mid-epoch continues with the very next batch of the same order.
"""

from __future__ import annotations

import torch

from normlab.data.splits import Split


def batch_sizes(n: int, batch_size: int, drop_last: bool) -> list[int]:
    """How ``n`` items are cut into batches; without ``drop_last`` a last batch of one joins the one before.

    A batch of one has no statistics across samples: a norm that uses the batch would
    normalize that image by itself.
    """
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full
    if drop_last or rest == 0:
        return sizes
    if rest == 1 and sizes:
        sizes[-1] += 1
        return sizes
    return sizes + [rest]


def split_batch(x: torch.Tensor, chunk: int | None) -> tuple[torch.Tensor, ...]:
    """``x`` in chunks of ``chunk`` rows (a last chunk of one row joins the one before)."""
    if not chunk or chunk >= len(x):
        return (x,)
    return x.split(batch_sizes(len(x), chunk, drop_last=False))


class TensorBatches:
    def __init__(
        self, split: Split, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0, rank: int = 0, world: int = 1
    ):
        self.split, self.batch_size, self.shuffle, self.drop_last = split, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0  # whose order the next pass serves; set_epoch() or each pass moves it on
        self._served = (0, 0)  # (epoch, batches served) of the latest pass
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Serve the order of ``epoch`` next (the trainer's epoch: the ``DistributedSampler`` convention)."""
        self.epoch = epoch

    def state_dict(self) -> dict:
        epoch, served = self._served
        return {"epoch": epoch, "served": served}

    def load_state_dict(self, state: dict) -> None:
        if state["served"] >= len(self):  # saved at the end of an epoch: the next one starts afresh
            self.epoch, self._resume = state["epoch"] + 1, None
        else:
            self.epoch, self._resume = state["epoch"], (state["epoch"], state["served"])

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

    def __iter__(self):
        # A generator: this body runs at the first next(), after Lightning restored the state.
        epoch, start = self.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]  # resumed mid-epoch: skip the batches already trained on
        self._resume = None
        self.epoch = epoch + 1
        idx, sizes = self._indices(epoch), self.sizes()
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        for b in range(start, len(sizes)):
            # Counted before the yield: a checkpoint taken while this batch trains includes it.
            # (Lightning does not prefetch from loaders that have a length.)
            self._served = (epoch, b + 1)
            chunk = idx[offsets[b] : offsets[b + 1]]
            yield self.split.x[chunk], self.split.y[chunk]
