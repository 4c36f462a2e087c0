"""Training loaders that a checkpoint can stop and restart in the middle of an epoch.

Every training loader in normlab serves, per epoch, a fixed number of batches in an order
that depends only on (seed, epoch, rank). Such a loader can say exactly where it is:
``state_dict()`` gives the epoch whose order is being served and how many of its batches went
out. Checkpoints carry that state (``callbacks.ResumeState``), so a run killed mid-epoch
continues with the very next batch of the same order, and ends as the uninterrupted run would.

A subclass gives ``__len__`` (batches per epoch), ``plan(epoch)`` (whatever fixes the epoch's
order: a permutation, window starts) and ``batch(plan, b)`` (the b-th batch of that plan).
"""

from __future__ import annotations

from typing import Any


class ResumableEpochs:
    epoch: int = 0  # whose order the next pass serves; set_epoch() or each pass moves it on
    _served: tuple[int, int] = (0, 0)  # (epoch, batches served) of the latest pass
    _resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def plan(self, epoch: int) -> Any:
        raise NotImplementedError

    def batch(self, plan: Any, b: int):
        raise NotImplementedError

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

    def __iter__(self):
        # A generator: this body runs at the first next(), after the state was restored.
        epoch, start = self.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]  # resumed mid-epoch: skip the batches already trained on
        self._resume = None
        self.epoch = epoch + 1
        plan = self.plan(epoch)
        for b in range(start, len(self)):
            # Counted before the yield: a checkpoint taken while this batch trains includes it.
            # (Lightning does not prefetch from loaders that have a length.)
            self._served = (epoch, b + 1)
            yield self.batch(plan, b)
