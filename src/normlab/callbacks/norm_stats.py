"""What batch statistics do to a trained model: measured, and repaired, by callbacks.

A network trained with BatchNorm can be evaluated three ways, and ``BatchStatDiagnostics``
adds the two besides eval mode to the test metrics of every run with a batch-dependent norm:

- eval mode: the running averages gathered during training (the standard ``test/err``);
- batch statistics (``test/err_batch_stats``): each test batch of the training batch size
  normalized by its own statistics, as during training; the gap to eval mode is the
  train/test inconsistency of small batches;
- PreciseBN (``test/err_precise_bn``; Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm",
  Sec. 3): population statistics (E[x], E[x^2] - E[x]^2 over all values) recomputed with the
  final weights over many training batches, instead of an exponential average over weights
  that kept changing. If it helps,
  the running averages were a bad estimate; if not, the noise of small-batch statistics
  during training is what hurt.

Both evaluate a copy of the model, or restore every buffer and attribute of it afterwards,
so the standard metrics and later checkpoints are untouched.

``PreciseBN`` (the callback, ``callbacks=precise_bn``) recomputes the running statistics of
every BatchNorm-like layer (``batch_dependent`` and ``running_mean``, as ``norms.contract.Norm``
says) before every validation and test, in the model itself: val/*, test/* and the checkpoints then use them.
Under DDP each device averages its own batches (as BatchNorm's running statistics are per device).

``EpochAverages`` restarts, at every training epoch, the running averages of layers that keep
one epoch's plain average (``start_epoch()``: bln, as its authors do).

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

from normlab.norms.contract import declared


def batch_stat_layers(model: nn.Module) -> list[nn.Module]:
    """Layers that normalize with batch statistics in training and keep running averages."""
    return [m for m in model.modules() if declared(m, "batch_dependent") and declared(m, "running_mean") is not None]


def snapshot(model: nn.Module):
    """Every buffer's value and every module's public attributes (flags, numbers, tensors a
    forward may set, such as BLN's mixing weight 1/m or BatchRenorm's step): what a forward
    in train mode can change besides the parameters."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    attributes = [
        (
            m,
            {
                k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                for k, v in vars(m).items()
                if not k.startswith("_")
            },
        )
        for m in model.modules()
    ]
    return buffers, attributes


def restore(model: nn.Module, saved) -> None:
    """Put back what ``snapshot`` saved."""
    buffers, attributes = saved
    for m, attrs in attributes:
        for k in [k for k in vars(m) if not k.startswith("_") and k not in attrs]:
            delattr(m, k)  # set by a forward, absent before
        vars(m).update(attrs)
    for name, _ in list(model.named_buffers()):
        owner, _, attr = name.rpartition(".")
        set_buffer(model.get_submodule(owner), attr, buffers[name])


@torch.no_grad()
def set_buffer(m: nn.Module, name: str, value: torch.Tensor) -> None:
    """In place where the shape allows (references to the buffer stay valid), else replaced (a
    layer that sized its buffers at its first forward, bln)."""
    if getattr(m, name).shape == value.shape:
        getattr(m, name).copy_(value)
    else:
        setattr(m, name, value.to(getattr(m, name).dtype).clone())


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """Normalize with each batch's own statistics; afterwards every buffer and attribute of the
    model is as before (running averages, BLN's weight 1/m, step counters)."""
    saved = snapshot(model)
    for m in batch_stat_layers(model):
        m.train()
    try:
        yield model
    finally:
        restore(model, saved)


class Population:
    """Per channel, the mean and the variance of all values of all batches seen, from each
    batch's mean, unbiased variance and count n (fvcore's population variance estimator)."""

    def __init__(self):
        self.total, self.mean, self.square = 0, 0.0, 0.0

    def add(self, mean: torch.Tensor, unbiased: torch.Tensor, n: int) -> None:
        mean = mean.double()
        square = unbiased.double() * (max(n - 1, 1) / n) + mean.square()  # E[x^2] of this batch
        self.total += n
        self.mean = self.mean + (mean - self.mean) * (n / self.total)
        self.square = self.square + (square - self.square) * (n / self.total)

    def var(self) -> torch.Tensor:
        return (self.square - self.mean.square()).clamp_min(0.0)


def values_per_statistic(m: nn.Module, x: torch.Tensor) -> int:
    """How many values of ``x`` each running statistic of ``m`` averages in one forward."""
    n = x.numel() // m.running_mean.numel()
    virtual = getattr(m, "virtual_batch", None)  # ghost_batch: one ghost batch's values
    return n if virtual is None else n * min(virtual, x.shape[0]) // x.shape[0]


@torch.no_grad()
def precise_bn(model: nn.Module, batches, num_batches: int) -> int:
    """Recompute running statistics as population statistics over ``num_batches`` batches.

    Wu & Johnson (2021), "Rethinking 'Batch' in BatchNorm", Sec. 3, as current fvcore does it:
    per channel, E[x] and E[x^2] - E[x]^2 over every value of every batch, each batch weighted
    by its count. The older estimator, the average of per-batch unbiased variances,
    underestimates at small batch: a batch's values are correlated within each sample, so its
    variance misses most of the spread of the batch means, and n / (n - 1) with n = N H W does
    not put it back. Each forward runs at momentum 1 (running = that batch's statistics), and
    BatchRenorm as plain BatchNorm (``renorm = False``). Afterwards every buffer and attribute
    but the running averages is as before (the step counters, BLN's weight 1/m).
    """
    layers = batch_stat_layers(model)
    saved = snapshot(model)
    counts: dict[nn.Module, int] = {}
    # After the forward: a layer with a statistic per position (bln) sizes them on its first.
    hooks = [
        m.register_forward_hook(lambda m, args, out: counts.__setitem__(m, values_per_statistic(m, args[0])))
        for m in layers
    ]
    model.eval()
    for m in layers:
        m.train()
        m.momentum = 1.0
        if hasattr(m, "renorm"):
            m.renorm = False
    population = [Population() for _ in layers]
    seen = 0
    try:
        for x in itertools.islice(batches, num_batches):
            model(x)
            for m, pop in zip(layers, population):
                pop.add(m.running_mean, m.running_var, counts[m])
            seen += 1
    finally:
        for h in hooks:
            h.remove()
        restore(model, saved)
    if seen:
        for m, pop in zip(layers, population):
            set_buffer(m, "running_mean", pop.mean)
            set_buffer(m, "running_var", pop.var())
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
                    metrics = pl_module.evaluate(
                        model, batch, chunk=pl_module.batch_size if suffix == "batch_stats" else None
                    )
                for name, value in metrics.items():
                    pl_module.log(
                        f"test/{name}_{suffix}", value, on_epoch=True, batch_size=len(batch[-1]), sync_dist=True
                    )


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


class EpochAverages(L.Callback):
    """Restarts the running averages of layers that average over one epoch (``start_epoch``:
    bln, as its authors' callback resets them at every epoch's start)."""

    def on_train_epoch_start(self, trainer, pl_module):
        for m in norm_model(pl_module).modules():
            if declared(m, "start_epoch"):
                m.start_epoch()


class MixingWeights(L.Callback):
    """Straight to the loggers, not ``pl_module.log``: one curve per layer is for plots, not for
    the run's summary."""

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = {
            f"mixing/{name}/{key}": value
            for name, m in norm_model(pl_module).named_modules()
            if declared(m, "mixing_weights")
            for key, value in m.mixing_weights().items()
        }
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
