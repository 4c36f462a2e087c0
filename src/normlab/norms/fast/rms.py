"""RMSNorm's fast path on large images: the mean of x^2 per sample from the per-(sample,
channel) moments about zero, and one scale (and shift) per (sample, channel), one pass each
way (``normalize.py``); ``rms_norm`` over (C, H, W) and the per-channel gamma make several."""

from __future__ import annotations

import torch

from normlab.norms.fast import fast_path, use_fused
from normlab.norms.fast.normalize import normalize
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.rms import RMSNorm


@fast_path(RMSNorm)
def rms(layer: RMSNorm, x: torch.Tensor) -> torch.Tensor | None:
    if layer.layout == "nlc" or not use_fused(x):
        return None

    def coeffs(mean, var, weight, bias):
        nu2 = (var + mean.square()).mean(1, keepdim=True)  # mean of x^2 over (C, H, W): (N, 1, 1, 1)
        scale = torch.rsqrt(nu2 + layer.eps).expand(mean.shape)
        if weight is not None:
            scale = scale * per_channel(weight, mean, "nchw")
        return scale, per_channel(bias, mean, "nchw")

    return normalize(x, instance_dims(x, "nchw"), coeffs, layer.weight, layer.bias, center=False)
