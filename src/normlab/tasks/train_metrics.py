"""Training metrics without a call to Lightning's ``self.log`` at every step.

``self.log(..., on_step=True, on_epoch=True)`` must run at every step for its epoch mean, and
each call costs about a millisecond of Python on a CPU (measured 2026-11-23 with cProfile, two
calls per step: 5% of a ResNet-20 step at batch 2 on two cores). Here a step adds its detached
values to running sums on the device, one in-place add per metric and no host sync, and
``self.log`` runs only on the steps Lightning writes to the loggers (every
``trainer.log_every_n_steps``) and once at the end of the epoch.

The names are those Lightning gives: a metric logged per step and per epoch appears as
``train/<k>_step`` (the value of that step) and ``train/<k>_epoch`` (the batch-size-weighted
mean of the epoch), and as ``train/<k>`` in the run summary; a metric logged per epoch only
appears as ``train/<k>``.
"""

from __future__ import annotations

import lightning as L
import torch


class TrainMetrics:
    def __init__(self, per_step: tuple[str, ...] = ("loss",)):
        self.per_step = per_step  # also logged on the logging steps, and shown in the progress bar
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0  # samples so far this epoch (a host number: batch sizes are shapes, no sync)

    def update(self, module: L.LightningModule, values: dict[str, torch.Tensor], n: int) -> None:
        """Add one training step's values, weighted by its batch size ``n``."""
        for k, v in values.items():
            if k not in self.sums:
                self.sums[k] = torch.zeros((), dtype=torch.float32, device=v.device)
            self.sums[k].add_(v.detach(), alpha=n)
        self.count += n
        if logs_this_step(module.trainer):
            for k in self.per_step:
                module.log(
                    f"train/{k}_step", values[k].detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=n
                )

    def log_epoch(self, module: L.LightningModule) -> dict[str, torch.Tensor]:
        """Log the epoch means (from ``on_train_epoch_end``), return them, and start the next epoch from zero."""
        means = {k: total / max(self.count, 1) for k, total in self.sums.items()}
        for k, mean in means.items():
            if k in self.per_step:
                module.log(f"train/{k}_epoch", mean, prog_bar=True)
                module.log(f"train/{k}", mean, logger=False)  # the summary's name, as Lightning's own would be
            else:
                module.log(f"train/{k}", mean)
        self.sums, self.count = {}, 0
        return means


def logs_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes this training step's metrics to the loggers (called before the step is taken)."""
    every = trainer.log_every_n_steps
    return bool(trainer.fast_dev_run) or bool(every) and (trainer.global_step + 1) % every == 0
