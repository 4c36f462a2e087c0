"""Character-level language modelling: next-character cross-entropy, in nats and bits.

    loss = -(1/N) sum_t ln p(x_{t+1} | x_{<=t})      (nats per character)
    bpc  = loss / ln 2                                (bits per character)

Validation and test run in eval mode (Lightning switches the model before every evaluation),
so norms with running statistics (batch, both BLNs, instance with ``track_running_stats=true``) use
them there, and no token sees later tokens. Instance norm without running statistics still
normalizes each sequence over its own tokens in eval mode: its val/test losses are not those
of a causal model, and the model warns about it when it is built (``models/gpt.py`` has the
table of what every norm means on tokens). In training, batch, bln_pooled and instance norm all let
a token see statistics of later tokens (and batch/bln_pooled of other sequences too; the authors'
bln sees other sequences' tokens at its own position only).
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from normlab.data.text_module import build_text_datamodule
from normlab.models import build_model
from normlab.tasks import optim
from normlab.tasks.samples import TextSamples
from normlab.tasks.train_metrics import TrainMetrics


class LanguageModel(L.LightningModule):
    counts_tokens = True  # Throughput logs train/tokens_per_s

    def __init__(self, model: nn.Module, optim_cfg: dict, global_batch: int, samples: TextSamples | None = None):
        super().__init__()
        self.model, self.optim_cfg, self.global_batch, self.samples = model, optim_cfg, global_batch, samples
        self.train_metrics = TrainMetrics(per_step=("loss",))  # train/loss per step and epoch; train/bpc from it

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def loss(self, batch) -> torch.Tensor:
        x, y = batch  # (B, T) inputs, (B, T) next characters
        logits = self(x)  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def _step(self, batch, stage: str) -> torch.Tensor:
        loss, n = self.loss(batch), len(batch[1])
        # Every batch has B x T characters, so the batch-size-weighted epoch mean is per character.
        self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=n, sync_dist=True, prog_bar=True)
        self.log(f"{stage}/bpc", loss / math.log(2), on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        # Sums on the device, self.log only every log_every_n_steps (train_metrics.py): no per-step cost.
        self.train_metrics.update(self, {"loss": loss}, n=len(batch[1]))
        return loss

    def on_train_epoch_end(self):
        means = self.train_metrics.log_epoch(self)
        if "loss" in means:
            self.log("train/bpc", means["loss"] / math.log(2))

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        # Matrices and embeddings decay; gains and biases (norms' gamma and beta) do not, as in
        # GPT-2 and nanoGPT: decay would pull every norm's gamma towards zero.
        return optim.configure(self, self.trainer, self.optim_cfg, self.global_batch, decay_vectors=False)

    def configure_callbacks(self):
        # Asked again by trainer.test(); returning it twice would only print an "override" notice.
        if self.samples is None or any(c is self.samples for c in self.trainer.callbacks):
            return []
        return [self.samples]


def build_lm(cfg: DictConfig, world_size: int):
    data = build_text_datamodule(OmegaConf.to_container(cfg.data, resolve=True), cfg.model.block_size, cfg.seed)
    data.setup()
    model = build_model(
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.norm, resolve=True),
        vocab_size=len(data.vocab),
    )
    sample_cfg = OmegaConf.to_container(cfg.task.sample, resolve=True) if cfg.task.get("sample") else None
    run_dir = cfg.get("resume") or cfg.paths.output_dir  # a resumed run writes into its own directory
    samples = TextSamples(data.vocab, run_dir, **sample_cfg) if sample_cfg else None
    optim_cfg = OmegaConf.to_container(cfg.task.optim, resolve=True)
    return LanguageModel(model, optim_cfg, cfg.data.batch * world_size, samples), data
