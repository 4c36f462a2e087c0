"""norm=sync_batch under DDP on GPUs: Lightning's layer-sync hook converts the layers for training.

Lightning calls a ``LayerSync`` plugin when DDP sets up ``fit`` (before the model is wrapped)
and reverts it after, as it does for ``Trainer(sync_batchnorm=True)``; that flag's plugin would
convert every BatchNorm with torch's own converter, which knows no layouts. This one converts
only normlab's ``SyncBatchNorm`` layers, into ``CrossDeviceBatchNorm`` (``norms/sync_batch.py``).
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn

from normlab.norms.sync_batch import CrossDeviceBatchNorm, SyncBatchNorm, convert


class SyncBatchNormPlugin(LayerSync):
    """Lightning's hook for syncing layers under DDP (``Trainer(plugins=[...])``); applied when fit sets up."""

    def apply(self, model: nn.Module) -> nn.Module:
        return convert(model, SyncBatchNorm, CrossDeviceBatchNorm)

    def revert(self, model: nn.Module) -> nn.Module:
        return convert(model, CrossDeviceBatchNorm, SyncBatchNorm)


def sync_plugin(norm: str, accelerator: str | None) -> SyncBatchNormPlugin | None:
    """The plugin a Trainer needs for ``norm``: for sync_batch on GPUs; on CPUs torch cannot sync."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator in ("auto", None) and torch.cuda.is_available())
    return SyncBatchNormPlugin() if norm == "sync_batch" and on_gpu else None
