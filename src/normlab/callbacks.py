"""Small Lightning callbacks every run gets."""

from __future__ import annotations

import time

import lightning as L


class Throughput(L.Callback):
    """Training samples per second, one number per epoch.

    Counts batch sizes from tensor shapes (host-side metadata, no device sync), and times the
    epoch as a whole, so it costs nothing per step.
    """

    def on_train_epoch_start(self, trainer, pl_module):
        self.t0, self.samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += len(batch[-1])

    def on_train_epoch_end(self, trainer, pl_module):
        dt = time.perf_counter() - self.t0
        if self.samples and dt > 0:
            pl_module.log("train/samples_per_s", self.samples / dt * trainer.world_size, sync_dist=False)
