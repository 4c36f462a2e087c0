"""BatchNorm's running statistics, for layers that compute their batch statistics themselves.

    running_mean = (1 - momentum) * running_mean + momentum * mu_B
    running_var  = (1 - momentum) * running_var  + momentum * var_B * n / (n - 1)

The variance fed to the estimate is the unbiased one, as in ``F.batch_norm`` (Ioffe & Szegedy
2015, Algorithm 2), so every BatchNorm-like layer of normlab keeps the same kind of estimate
and PreciseBN (``callbacks/norm_stats.py``, momentum 1/(i+1): a plain average) works on all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms.fast.moments import pool
from normlab.norms.layout import per_channel
from normlab.norms.precision import upcast


def add_running_stats(m: nn.Module, num_channels: int) -> None:
    m.register_buffer("running_mean", torch.zeros(num_channels))
    m.register_buffer("running_var", torch.ones(num_channels))


@torch.no_grad()
def update_running(m: nn.Module, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """``mean`` and the biased ``var`` of ``count`` values per channel, shape ``(C,)``."""
    unbiased = var * (count / max(count - 1, 1))
    m.running_mean.lerp_(mean.to(m.running_mean.dtype), m.momentum)
    m.running_var.lerp_(unbiased.to(m.running_var.dtype), m.momentum)


def batch_moments(m: nn.Module, mean: torch.Tensor, var: torch.Tensor, count: int, layout: str):
    """BatchNorm's per-channel mean and biased variance, shaped like one sample of ``mean``: in
    training pooled over the samples from the per-(sample, channel) moments ``mean``, ``var``
    ((N, C, 1, 1) or (N, 1, C); ``count`` values per channel), the running estimate updated;
    in eval mode the running estimate (in fp32 from a layer cast to bf16: sqrt(var + eps) not rounded)."""
    if m.training:
        mu_b, var_b = pool(mean, var, (0,))
        update_running(m, mu_b.flatten(), var_b.flatten(), count)
        return mu_b, var_b
    return per_channel(upcast(m.running_mean), mean, layout), per_channel(upcast(m.running_var), mean, layout)


def batch_norm(m: nn.Module, x: torch.Tensor, weight, bias, momentum: float) -> torch.Tensor:
    """``F.batch_norm`` of ``x`` in ``m``'s layout with ``m``'s running statistics: in training the
    batch's, the running ones updated with ``momentum``; in eval mode the running ones. Tokens
    (N, L, C) go to the kernel as (N*L, C) rows, a view: it reduces over rows.

    The hand-written layers give it the fp32 copy of bf16/fp16 activations, so that its output
    is rounded once, by the layer. The kernel takes an fp32 input's statistics in fp32 only: a
    layer cast to bf16 lends it fp32 copies of its running statistics, written back after an update.
    """
    mean, var = upcast(m.running_mean), upcast(m.running_var)
    rows = x.reshape(-1, x.shape[-1]) if m.layout == "nlc" else x
    y = F.batch_norm(rows, mean, var, weight, bias, m.training, momentum, m.eps).view_as(x)
    if m.training and mean is not m.running_mean:
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return y
