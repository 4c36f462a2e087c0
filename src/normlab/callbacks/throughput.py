"""Training throughput, one number per epoch."""

from __future__ import annotations

import time

import lightning as L


class Throughput(L.Callback):
    """Training samples per second (and tokens per second for sequence tasks), one number per epoch.

    Counts from tensor shapes (host-side metadata, no device sync), and times the epoch as a
    whole, so it costs nothing per step. Validation inside the epoch (Lightning runs it before
    the epoch ends) is left out of the time. A task whose targets are token sequences sets
    ``counts_tokens = True`` on its LightningModule to get ``train/tokens_per_s`` too.
    """

    def __init__(self):
        self.t0 = self.paused = None

    def on_train_start(self, trainer, pl_module):
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch skips the epoch-start hook

    def on_train_epoch_start(self, trainer, pl_module):
        self.t0, self.samples, self.tokens = time.perf_counter(), 0, 0

    def on_validation_start(self, trainer, pl_module):
        self.paused = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if self.t0 is not None and self.paused is not None:
            self.t0 += time.perf_counter() - self.paused  # the epoch's clock stood still meanwhile
        self.paused = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += len(batch[-1])
        self.tokens += batch[-1].numel()

    def on_train_epoch_end(self, trainer, pl_module):
        dt = time.perf_counter() - self.t0
        if not self.samples or dt <= 0:
            return
        pl_module.log("train/samples_per_s", self.samples / dt * trainer.world_size, sync_dist=False)
        if getattr(pl_module, "counts_tokens", False):
            pl_module.log("train/tokens_per_s", self.tokens / dt * trainer.world_size, sync_dist=False)
