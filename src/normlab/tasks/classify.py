"""Image classification: cross-entropy, top-1 error in percent, per split."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from normlab.chunks import split_batch
from normlab.data import build_image_datamodule
from normlab.models import build_model
from normlab.tasks import optim
from normlab.tasks.train_metrics import TrainMetrics


class ImageClassifier(L.LightningModule):
    def __init__(self, model: nn.Module, optim_cfg: dict, batch_size: int, global_batch: int):
        super().__init__()
        self.model, self.optim_cfg = model, optim_cfg
        self.batch_size, self.global_batch = batch_size, global_batch  # per device, and over all devices
        self.train_metrics = TrainMetrics(per_step=("loss",))  # train/loss per step and epoch, train/err per epoch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @staticmethod
    def evaluate(model: nn.Module, batch, chunk: int | None = None) -> dict[str, torch.Tensor]:
        """Loss and top-1 error (%) of ``model`` on a batch, fed ``chunk`` images at a time if given."""
        x, y = batch
        logits = torch.cat([model(part) for part in split_batch(x, chunk)])  # never a chunk of one
        return {"loss": F.cross_entropy(logits, y), "err": (logits.argmax(1) != y).float().mean() * 100}

    def _step(self, batch, stage: str) -> torch.Tensor:
        metrics = self.evaluate(self.model, batch)
        loss, err, y = metrics["loss"], metrics["err"], batch[1]
        self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log(f"{stage}/err", err, on_epoch=True, batch_size=len(y), sync_dist=True, prog_bar=stage == "val")
        return loss

    def training_step(self, batch, batch_idx):
        metrics = self.evaluate(self.model, batch)
        # Sums on the device, self.log only every log_every_n_steps (train_metrics.py): no per-step cost.
        self.train_metrics.update(self, metrics, n=len(batch[1]))
        return metrics["loss"]

    def on_train_epoch_end(self):
        self.train_metrics.log_epoch(self)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return optim.configure(self, self.trainer, self.optim_cfg, self.global_batch)


def build_classify(cfg: DictConfig, world_size: int):
    data = build_image_datamodule(
        OmegaConf.to_container(cfg.data, resolve=True), cfg.seed, channels_last=cfg.trainer.get("channels_last", False)
    )
    data.setup()
    model = build_model(
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.norm, resolve=True),
        num_classes=data.num_classes,
        in_channels=data.splits.in_channels,
    )
    if cfg.trainer.get("channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    optim_cfg = OmegaConf.to_container(cfg.task.optim, resolve=True)
    return ImageClassifier(model, optim_cfg, cfg.data.batch, cfg.data.batch * world_size), data
