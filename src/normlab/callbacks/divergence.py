"""Stop a run whose training loss turned NaN or infinite, and keep its last good checkpoint.

Checking ``loss.isfinite()`` on the host every step would wait for the device every step. So
each step only updates a flag on the device (the first step whose loss was not finite), and
the host reads it every ``check_every`` steps and at the end of every epoch. Before any
checkpoint is written, the weights themselves are checked too (an update can turn them
infinite while the loss that produced it was still finite): diverged weights never reach
``last.ckpt`` or ``best.ckpt``.
"""

from __future__ import annotations

import lightning as L
import torch

from normlab.errors import Diverged


class DivergenceGuard(L.Callback):
    NONE = 2**62  # no bad step yet (a sentinel, so that the minimum over devices is the first bad step)

    def __init__(self, check_every: int):
        self.check_every = max(int(check_every), 1)
        self.first_bad: torch.Tensor | None = None  # on the device

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        step = trainer.global_step  # steps taken, this one included: the first step is 1
        if self.first_bad is None or self.first_bad.device != loss.device:
            self.first_bad = torch.full((), self.NONE, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad == self.NONE), step, self.first_bad)  # no host sync
        if step % self.check_every == 0:
            self.check(trainer)

    def check(self, trainer) -> None:
        if self.first_bad is None:
            return
        # Every device stops together (one that raised alone would leave DDP waiting for it).
        step = int(trainer.strategy.reduce(self.first_bad.clone(), reduce_op="min"))  # the one host sync
        if step != self.NONE:
            raise Diverged(step)

    def on_train_epoch_end(self, trainer, pl_module):
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        # Runs before the file is written: raising here keeps the last good one.
        self.check(trainer)
        finite = torch.stack([p.detach().isfinite().all() for p in pl_module.parameters()]).all()
        if not bool(trainer.strategy.reduce(finite.float(), reduce_op="min")):
            raise Diverged(trainer.global_step)  # this step's update made them so
