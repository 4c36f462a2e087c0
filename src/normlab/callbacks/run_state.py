"""The state a checkpoint carries besides weights, optimizer and loop counters."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch


class ResumeState(L.Callback):
    """What a checkpoint needs, besides weights, optimizer and loop counters, to continue a run exactly.

    - The random number generators: augmentation (crops, flips) and dropout draw from torch's
      global generator. Their states go into every checkpoint and are put back when training
      starts again, so a resumed run draws what the uninterrupted run would have drawn.
    - The place in the data: which epoch's order the training loader serves and how many of
      its batches went out (the loader's ``state_dict``). Lightning would save and restore this
      itself, but drops it on resume when ``configure_optimizers`` asks for
      ``trainer.estimated_stepping_batches``, as every normlab task does (Lightning issue #20550);
      so it is carried here, and loaded before the first batch is drawn.
    - At every epoch start the loader is told the trainer's epoch (``set_epoch``), so its shuffle
      follows the epoch counter Lightning restores.
    """

    KEY = "normlab_resume_state"

    def __init__(self):
        self.restore: dict | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Tensors and plain numbers only: checkpoints load with torch.load(weights_only=True).
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        loader = trainer.train_dataloader
        checkpoint[self.KEY] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "train_loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.restore = checkpoint.get(self.KEY)  # applied at train start: nothing before may draw or fetch

    def on_train_start(self, trainer, pl_module):
        if self.restore is None:
            return
        state, self.restore = self.restore, None
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        loader = trainer.train_dataloader
        if state["train_loader"] is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(state["train_loader"])  # read when the loader's first batch is drawn

    def on_train_epoch_start(self, trainer, pl_module):
        loader = trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(trainer.current_epoch)
