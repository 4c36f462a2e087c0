"""Checkpoints a killed run can resume from: ``last.ckpt`` every N steps and every epoch, ``best.ckpt``.

Written atomically. Lightning's own writer saves through an fsspec transaction whose temporary
file lives in the system temp folder; when that is another file system than the run directory
(a tmpfs /tmp, a network home), the final move is a plain copy onto ``last.ckpt``, and a kill
during the copy leaves a truncated file where the last good checkpoint was. Here the file is
written next to its destination, flushed to disk, and renamed over it in one step.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from normlab.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_write(path, "wb", durable=True) as f:  # on disk before the rename makes it the checkpoint
            torch.save(checkpoint, f)


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` every ``every_n_steps`` training steps (0: never mid-epoch) and at the end of every epoch.

    A ``Checkpoint`` subclass, so Lightning runs it after the other callbacks of a step: the
    divergence check has looked at the loss before the weights are written.
    """

    def __init__(self, dirpath: Path, every_n_steps: int = 0):
        self.path, self.every_n_steps = Path(dirpath) / "last.ckpt", every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer, pl_module):
        # after the epoch's validation, which runs before this hook
        trainer.save_checkpoint(self.path, weights_only=False)


def checkpoint_callbacks(run_dir: Path, monitor: str, mode: str, every_n_steps: int) -> list[L.Callback]:
    dirpath = Path(run_dir) / "checkpoints"
    best = ModelCheckpoint(
        dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_last=False, enable_version_counter=False
    )  # overwrite best.ckpt; never best-v1.ckpt
    return [best, LastCheckpoint(dirpath, every_n_steps)]
