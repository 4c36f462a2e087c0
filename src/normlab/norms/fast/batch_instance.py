"""Batch-Instance Norm's fast path for large inputs: InstanceNorm's statistics per (sample,
channel) in one pass, BatchNorm's pooled from them, and rho x_B + (1 - rho) x_I as one scale and
shift per (sample, channel) (``normalize.py``); the formula's two native kernels and their sum
make several passes."""

from __future__ import annotations

import functools

import torch

from normlab.norms.batch_instance import BatchInstanceNorm
from normlab.norms.fast import fast_path, use_fused
from normlab.norms.fast.normalize import normalize
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import batch_moments


@fast_path(BatchInstanceNorm)
def batch_instance(layer: BatchInstanceNorm, x: torch.Tensor) -> torch.Tensor | None:
    if not use_fused(x):
        return None
    coeffs = functools.partial(_coeffs, layer, x.numel() // layer.num_channels)  # values per channel
    return normalize(x, instance_dims(x, layer.layout), coeffs, layer.gate(), layer.weight, layer.bias)


def _coeffs(layer, count, mean, var, rho, weight, bias):
    # mean, var: InstanceNorm's, (N, C, 1, 1) or (N, 1, C); BatchNorm's pooled over the samples.
    mu_b, var_b = batch_moments(layer, mean, var, count, layer.layout)
    rho = per_channel(upcast(rho), mean, layer.layout)  # bf16: 1 - rho exact, its two gradients added in fp32
    r_b, r_i = torch.rsqrt(var_b + layer.eps) * rho, torch.rsqrt(var + layer.eps) * (1 - rho)
    scale, shift = r_b + r_i, -(mu_b * r_b + mean * r_i)  # rho x_B + (1 - rho) x_I
    if weight is None:
        return scale, shift
    gamma = per_channel(upcast(weight), mean, layer.layout)  # bf16: its two gradients added in fp32
    return scale * gamma, torch.addcmul(per_channel(bias, mean, layer.layout), shift, gamma)
