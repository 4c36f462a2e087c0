"""BLN's fast path on large images: both parts' statistics from the per-(sample, channel)
moments, one pass over x, and the mix of x_L and x_B as one scale and shift per (sample,
channel) (``normalize.py``); the formula's two native kernels and the mix make several passes."""

from __future__ import annotations

import torch

from normlab.norms.bln_pooled import BatchLayerNormPooled
from normlab.norms.fast import fast_path, use_fused
from normlab.norms.fast.moments import pool
from normlab.norms.fast.normalize import normalize
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import batch_moments


@fast_path(BatchLayerNormPooled)
def bln_pooled(layer: BatchLayerNormPooled, x: torch.Tensor) -> torch.Tensor | None:
    if layer.layout == "nlc" or not use_fused(x):  # tokens: the parts share no axis
        return None
    w = layer.mix_weight(x)
    count = x.numel() // layer.num_channels  # values per channel

    def coeffs(mean, var, weight, bias):
        mu_l, var_l = pool(mean, var, (1,))  # (N, 1, 1, 1): LayerNorm's (C, H, W) of each sample
        mu_b, var_b = batch_moments(layer, mean, var, count, "nchw")  # (1, C, 1, 1): BatchNorm's (N, H, W)
        r_l, r_b = torch.rsqrt(var_l + layer.eps), torch.rsqrt(var_b + layer.eps)
        scale = w * r_l + (1 - w) * r_b  # (N, C, 1, 1): x_L and x_B mixed, as one scale and shift
        shift = -(w * mu_l * r_l + (1 - w) * mu_b * r_b)
        if weight is None:
            return scale, shift
        gamma = per_channel(upcast(weight), mean, "nchw")  # bf16: its two gradients added in fp32, rounded once
        return scale * gamma, torch.addcmul(per_channel(bias, mean, "nchw"), shift, gamma)

    return normalize(x, instance_dims(x, "nchw"), coeffs, layer.weight, layer.bias)
