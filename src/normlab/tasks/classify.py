"""Image classification: cross-entropy, top-1 error in percent, per split."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from normlab.tasks import optim


class ImageClassifier(L.LightningModule):
    def __init__(self, model: nn.Module, optim_cfg: dict, global_batch: int):
        super().__init__()
        self.model, self.optim_cfg, self.global_batch = model, optim_cfg, global_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        err = (logits.argmax(1) != y).float().mean() * 100
        on_step = stage == "train"
        # Logged tensors stay on the device; Lightning reads them only every log_every_n_steps.
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, batch_size=len(y), sync_dist=not on_step,
                 prog_bar=on_step)
        self.log(f"{stage}/err", err, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=not on_step,
                 prog_bar=stage == "val")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return optim.configure(self, self.optim_cfg, self.global_batch)
