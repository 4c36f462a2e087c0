"""Synchronized Batch Normalization: BatchNorm whose statistics cover the images of every device.

Under DistributedDataParallel, BatchNorm (Ioffe & Szegedy 2015) normalizes each device's
images with that device's statistics: with 8 GPUs at 2 images each it sees 2 images while the
optimizer sees 16, the setting in which Wu & He (2018) find BatchNorm's error growing.
Cross-GPU Batch Normalization (Peng et al. 2018, "MegDet: A Large Mini-Batch Object Detector")
all-reduces the per-channel sums instead, so every device normalizes with the mean and variance
of the global batch:

    mu = sum_d sum_i x_di / (N D),   var = sum_d sum_i (x_di - mu)^2 / (N D)   (D devices, N images each)

- ``nchw``: per channel over (N x D, H, W);
- ``nlc``:  per channel over (N x D, L).

``torch.nn.SyncBatchNorm`` does the all-reduce, for CUDA tensors only (DDP refuses it in a CPU
module). So the layer is built as BatchNorm (``SyncBatchNorm``), and ``SyncBatchNormPlugin``, a
Lightning layer-sync plugin, turns it into ``CrossDeviceBatchNorm`` when DDP on GPUs sets up
training, and back after. Everywhere else (one process, CPU processes with gloo) it stays
BatchNorm over the device's own images, and the run says so in its log (``normlab.run.batch_scale``).
Running statistics and eval mode are BatchNorm's, from the global batch's statistics when synced.
"""

from __future__ import annotations

import torch
from torch import nn

from normlab.norms.batch import BatchNorm
from normlab.norms.layout import check_input, check_layout


class SyncBatchNorm(BatchNorm):
    """What ``build_norm("sync_batch", C)`` builds: BatchNorm, until DDP on GPUs converts it."""

    axes = {"nchw": "(N x devices, H, W) per channel", "nlc": "(N x devices, L) per channel"}


class CrossDeviceBatchNorm(nn.SyncBatchNorm):
    """``torch.nn.SyncBatchNorm`` with normlab's layouts: (N, L, C) tokens are (N*L, C) rows to it."""

    axes = SyncBatchNorm.axes
    batch_dependent = True

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__(num_channels, eps, momentum, affine, track_running_stats)
        self.layout = check_layout(layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_features, "SyncBatchNorm")
        rows = x.reshape(-1, x.shape[-1]) if self.layout == "nlc" else x  # a view
        return super().forward(rows).view_as(x)


def _swap(layer: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """``layer`` as ``cls``, sharing its parameters and buffers (as torch's convert_sync_batchnorm does)."""
    new = cls(layer.num_features, layer.layout, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    if layer.affine:
        new.weight, new.bias = layer.weight, layer.bias
    if layer.track_running_stats:
        new.running_mean, new.running_var = layer.running_mean, layer.running_var
        new.num_batches_tracked = layer.num_batches_tracked
    return new.train(layer.training)


def convert(module: nn.Module, old: type[nn.Module], new: type[nn.Module]) -> nn.Module:
    """Replace every ``old`` layer below ``module`` by a ``new`` one, in place."""
    for name, child in module.named_children():
        if type(child) is old:
            setattr(module, name, _swap(child, new))
        else:
            convert(child, old, new)
    return module
