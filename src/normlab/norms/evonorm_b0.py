"""EvoNorm-B0 (Liu, Brock, Simonyan & Le, 2020, "Evolving Normalization-Activation Layers",
Fig. 1 and Table 1), a normalization and an activation in one layer:

    y = x / max( sqrt(s2_batch(x) + eps),  v1 * x + sqrt(s2_instance(x) + eps) ) * gamma + beta

s2_batch is BatchNorm's variance, s2_instance InstanceNorm's (both biased, no centering of the
numerator); v1 is learned per channel (initialised to ones). The max makes the layer
nonlinear: for large positive x the instance term wins and the output saturates, while
negative x are divided by the batch std only.

- ``nchw``: s2_batch over (N, H, W) per channel, s2_instance over (H, W) per sample and channel;
- ``nlc``:  s2_batch over (N, L) per channel, s2_instance over L per sample and channel (so a
  token sees later tokens, in training and in eval).

In eval mode s2_batch is the running variance (BatchNorm's estimate, ``running.py``). The
running mean is not in the formula; it is kept anyway, updated as BatchNorm's, so that the
tools that look for BatchNorm-like layers (PreciseBN) find and re-estimate this one too.

Both variances come from one pass over x: the instance means and variances (``fused.moments``),
then the batch variance from them by the law of total variance, var_B = mean_n(var_n) + var_n(mean_n).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms.fused import moments
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, instance_dims, per_channel
from normlab.norms.running import add_running_stats, update_running


class EvoNormB0(AffineNorm):
    axes = {
        "nchw": "(N, H, W) per channel, and (H, W) per sample and channel",
        "nlc": "(N, L) per channel, and L per sample and channel",
    }
    batch_dependent = True
    instance_stats = True  # per-sequence statistics over L in every mode (see models/gpt.py)

    def __init__(
        self, num_channels: int, layout: str = "nchw", eps: float = 1e-5, momentum: float = 0.1, affine: bool = True
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum = momentum
        self.v1 = nn.Parameter(torch.ones(num_channels))
        add_running_stats(self, num_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "EvoNormB0")
        dims = instance_dims(x, self.layout)
        mu_i, var_i = moments(x, dims)  # (N, C, 1, 1) or (N, 1, C); fp32, one pass each way (fused.py)
        if self.training:
            between, mu_b = torch.var_mean(mu_i, 0, correction=0, keepdim=True)  # over the samples
            var_b = var_i.mean(0, keepdim=True) + between  # law of total variance
            update_running(self, mu_b.flatten(), var_b.flatten(), x.shape[0] * math.prod(x.shape[d] for d in dims))
        else:
            var_b = per_channel(self.running_var, x, self.layout)
        v1 = per_channel(self.v1, x, self.layout)
        # max(s_b, v1 x + s_i) as s_b + relu(v1 x + s_i - s_b): ReLU's backward masks in one pass,
        # torch.maximum's took 5x as long (measured 2026-11-23 on a CPU).
        s_b = torch.sqrt(var_b + self.eps)
        den = F.relu(torch.addcmul(torch.sqrt(var_i + self.eps) - s_b, x, v1)) + s_b
        y = x / den
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)
