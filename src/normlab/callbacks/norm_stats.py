"""What batch statistics do to a trained model: measured, and repaired, by callbacks.

A network trained with BatchNorm can be evaluated three ways, and ``BatchStatDiagnostics``
adds the two besides eval mode to the test metrics of every run with a batch-dependent norm:

- eval mode: the running averages gathered during training (the standard ``test/err``);
- batch statistics (``test/err_batch_stats``): each test batch of the training batch size
  normalized by its own statistics, as during training; the gap to eval mode is the
  train/test inconsistency of small batches;
- PreciseBN (``test/err_precise_bn``; Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm",
  Sec. 3): population statistics recomputed with the final weights over many training
  batches, instead of an exponential average over weights that kept changing. If it helps,
  the running averages were a bad estimate; if not, the noise of small-batch statistics
  during training is what hurt.

Both evaluate a copy of the model (or restore it), so the standard metrics are untouched.

``PreciseBN`` (the callback, ``precise_bn.enabled=true``) recomputes the running statistics of
every BatchNorm-like layer (``batch_dependent`` and ``running_mean``: batch, bln, batch_renorm,
ghost_batch, evonorm_b0, switchable, batch_instance) before every validation and test, in the
model itself: val/*, test/* and the checkpoints then use them. Under DDP each device averages
its own batches (as BatchNorm's running statistics are per device).

``MixingWeights`` logs, at the end of every training epoch, what the layers that learn a
mixture learned (any layer with a ``mixing_weights()`` method: switchable's softmax importance
weights, batch_instance's mean rho), as ``mixing/<layer>/<weight>``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools

import lightning as L
import torch
from torch import nn


def batch_stat_layers(model: nn.Module) -> list[nn.Module]:
    """Layers that normalize with batch statistics in training and keep running averages."""
    return [m for m in model.modules()
            if getattr(m, "batch_dependent", False) and getattr(m, "running_mean", None) is not None]


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """Normalize with each batch's own statistics, without touching the running averages."""
    layers = batch_stat_layers(model)
    saved = [(m.training, m.momentum, copy.deepcopy(getattr(m, "num_batches_tracked", None))) for m in layers]
    for m in layers:
        m.train()
        m.momentum = 0.0  # running = (1 - 0) * running: unchanged
    try:
        yield model
    finally:
        for m, (training, momentum, tracked) in zip(layers, saved):
            m.train(training)
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def precise_bn(model: nn.Module, batches, num_batches: int) -> int:
    """Recompute running statistics as the plain average over ``num_batches`` batches.

    At step i the momentum is 1/(i+1), so ``running`` is the mean of all batch statistics
    seen so far (the running variance averages the unbiased batch variances). These forwards
    are not training steps: ``num_batches_tracked`` is restored (Batch Renormalization's
    warm-up counts it).
    """
    layers = batch_stat_layers(model)
    saved = [(m.momentum, m.training) for m in layers]
    tracked = [copy.deepcopy(getattr(m, "num_batches_tracked", None)) for m in layers]
    was_training = model.training
    model.eval()
    for m in layers:
        m.train()
    seen = 0
    for i, x in enumerate(itertools.islice(batches, num_batches)):
        for m in layers:
            m.momentum = 1.0 / (i + 1)
        model(x)
        seen += 1
    for m, (momentum, training), count in zip(layers, saved, tracked):
        m.momentum = momentum
        m.train(training)
        if count is not None:
            m.num_batches_tracked.copy_(count)
    model.train(was_training)
    return seen


def train_inputs(trainer: L.Trainer, pl_module: L.LightningModule):
    """Model inputs of the training split, on the module's device, as the datamodule prepares them
    (outside training: no augmentation)."""
    data = trainer.datamodule
    for batch in data.train_dataloader():
        yield data.on_after_batch_transfer([t.to(pl_module.device) for t in batch], 0)[0]


class BatchStatDiagnostics(L.Callback):
    """Adds ``test/err_batch_stats`` and ``test/err_precise_bn`` to runs whose model has batch-dependent norms.

    The LightningModule provides ``evaluate(model, batch) -> dict of metric tensors`` and
    ``batch_size``; the datamodule provides training batches.
    """

    def __init__(self, precise_batches: int = 200):
        self.precise_batches = precise_batches
        self.active = False

    def on_test_epoch_start(self, trainer, pl_module):
        self.active = bool(batch_stat_layers(pl_module.model))
        if not self.active:
            return
        self.precise = copy.deepcopy(pl_module.model)
        precise_bn(self.precise, train_inputs(trainer, pl_module), self.precise_batches)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self.active:
            return
        with torch.no_grad():
            for suffix, model in (("precise_bn", self.precise), ("batch_stats", pl_module.model)):
                ctx = batch_statistics(model) if suffix == "batch_stats" else contextlib.nullcontext()
                with ctx:
                    metrics = pl_module.evaluate(model, batch, chunk=pl_module.batch_size if suffix == "batch_stats" else None)
                for name, value in metrics.items():
                    pl_module.log(f"test/{name}_{suffix}", value, on_epoch=True, batch_size=len(batch[-1]), sync_dist=True)

def norm_model(pl_module: L.LightningModule):
    return getattr(pl_module, "model", pl_module)


class PreciseBN(L.Callback):
    def __init__(self, num_batches: int = 100):
        self.num_batches = num_batches

    def recompute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        model = norm_model(pl_module)
        if not batch_stat_layers(model):
            return 0
        return precise_bn(model, train_inputs(trainer, pl_module), self.num_batches)

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:  # the untrained network's statistics are not worth a pass
            self.recompute(trainer, pl_module)

    def on_test_start(self, trainer, pl_module):
        self.recompute(trainer, pl_module)


class MixingWeights(L.Callback):
    """Straight to the loggers, not ``pl_module.log``: one curve per layer is for plots, not for
    the run's summary."""

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = {
            f"mixing/{name}/{key}": value
            for name, m in norm_model(pl_module).named_modules() if callable(getattr(m, "mixing_weights", None))
            for key, value in m.mixing_weights().items()
        }
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
