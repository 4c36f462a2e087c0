"""Ghost Batch Norm's fast path in training, for large inputs: every ghost batch's statistics
from the per-(sample, channel) moments, one pass over x and one back, and each sample scaled and
shifted by its ghost batch's factors (``normalize.py``), with no per-ghost kernel calls and no
concatenation."""

from __future__ import annotations

import functools

import torch

from normlab.chunks import batch_sizes
from normlab.norms.fast import fast_path, use_fused
from normlab.norms.fast.moments import pool
from normlab.norms.fast.normalize import normalize
from normlab.norms.ghost_batch import GhostBatchNorm
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast


@fast_path(GhostBatchNorm)
def ghost_batch(layer: GhostBatchNorm, x: torch.Tensor) -> torch.Tensor | None:
    if not layer.training or x.shape[0] <= layer.virtual_batch or not use_fused(x):
        return None  # eval, or one ghost batch: BatchNorm's native kernel
    sizes = batch_sizes(x.shape[0], layer.virtual_batch, drop_last=False)
    coeffs = functools.partial(_coeffs, layer, sizes, x.numel() // (x.shape[0] * layer.num_channels))
    return normalize(x, instance_dims(x, layer.layout), coeffs, layer.weight, layer.bias)


def _coeffs(layer, sizes, per_sample, mean, var, weight, bias):
    """Each ghost batch's scale and shift, repeated for its samples; one update of the running statistics."""
    equal = len(set(sizes)) == 1
    if equal:  # equal ghost batches: pooled all at once, (k, n_j, C, 1, 1) -> (k, C, 1, 1)
        mu, var = (t.squeeze(1) for t in pool(*(t.unflatten(0, (len(sizes), -1)) for t in (mean, var)), (1,)))
    else:
        parts = [pool(m, v, (0,)) for m, v in zip(mean.split(sizes), var.split(sizes))]  # each ghost's
        mu = torch.cat([m for m, _ in parts])  # (k, C, 1, 1) or (k, 1, C)
        var = torch.cat([v for _, v in parts])
    with torch.no_grad():  # one update towards the size-weighted mean of the ghosts' statistics
        counts = torch.tensor(sizes, dtype=var.dtype, device=var.device) * per_sample
        shares = (counts / counts.sum()).view(-1, *[1] * (var.dim() - 1))
        unbiased = var * (counts / (counts - 1).clamp(min=1)).view_as(shares)
        layer.running_mean.lerp_((shares * mu).sum(0).flatten().to(layer.running_mean.dtype), layer.momentum)
        layer.running_var.lerp_((shares * unbiased).sum(0).flatten().to(layer.running_var.dtype), layer.momentum)
    scale = torch.rsqrt(var + layer.eps)
    shift = -mu * scale
    if weight is not None:
        gamma = per_channel(upcast(weight), mean, layer.layout)  # bf16: its two gradients added in fp32
        scale, shift = scale * gamma, torch.addcmul(per_channel(bias, mean, layer.layout), shift, gamma)
    size = sizes[0] if equal else torch.tensor(sizes, device=scale.device)
    return scale.repeat_interleave(size, 0), shift.repeat_interleave(size, 0)  # per sample
