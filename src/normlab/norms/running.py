"""BatchNorm's running statistics, for layers that compute their batch statistics themselves.

    running_mean = (1 - momentum) * running_mean + momentum * mu_B
    running_var  = (1 - momentum) * running_var  + momentum * var_B * n / (n - 1)

The variance fed to the estimate is the unbiased one, as in ``F.batch_norm`` (Ioffe & Szegedy
2015, Algorithm 2), so every BatchNorm-like layer of normlab keeps the same kind of estimate
and ``diagnostics.precise_bn`` (momentum 1/(i+1): a plain average) works on all of them.
"""

from __future__ import annotations

import torch
from torch import nn


def add_running_stats(m: nn.Module, num_channels: int) -> None:
    m.register_buffer("running_mean", torch.zeros(num_channels))
    m.register_buffer("running_var", torch.ones(num_channels))


@torch.no_grad()
def update_running(m: nn.Module, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """``mean`` and the biased ``var`` of ``count`` values per channel, shape ``(C,)``."""
    unbiased = var * (count / max(count - 1, 1))
    m.running_mean.lerp_(mean.to(m.running_mean.dtype), m.momentum)
    m.running_var.lerp_(unbiased.to(m.running_var.dtype), m.momentum)
