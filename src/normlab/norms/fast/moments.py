"""Moments of x over some of its axes, the statistics every hand-written norm starts from.

``moments`` is ``torch.var_mean(x, dims, correction=0)`` in fp32 at least, differentiable, in
one pass forward and one back: over contiguous trailing axes (a sample's channel, a group)
GroupNorm's kernel reads each row once, and backward is the closed form
dx = g_mean / n + g_var * 2 (x - mean) / n; several times faster than ``torch.var_mean`` on a
ResNet stage's activations (docs/performance.md). ``pool`` combines the
moments of equal-sized blocks: per-channel batch statistics from the per-(sample, channel) ones.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import Function

from normlab.norms.fast import first_order, plain
from normlab.norms.precision import upcast


def trailing(x: torch.Tensor, dims: tuple[int, ...]) -> bool:
    return tuple(sorted(dims)) == tuple(range(x.dim() - len(dims), x.dim()))


def raw_moments(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over ``dims`` (kept), no autograd; fp32 at least."""
    x = upcast(x)
    if trailing(x, dims) and x.is_contiguous() and x.numel() > 0:
        # Rows of x: GroupNorm's kernel with one group computes their mean and 1/std in one
        # vectorized pass, 2-3x faster than the two passes below (its normalized output is
        # not used). With eps = 0, var = rstd^-2 exactly as rounding allows (0 for constant rows).
        shape = x.shape[: x.dim() - len(dims)] + (1,) * len(dims)
        rows = x.reshape(-1, 1, math.prod(x.shape[d] for d in dims))
        _, mean, rstd = torch.native_group_norm(rows, None, None, rows.shape[0], 1, rows.shape[2], 1, 0.0)
        return mean.view(shape), rstd.pow(-2).view(shape)
    mean = x.mean(dims, keepdim=True)
    centered = x - mean  # two passes, not E[x^2] - mean^2, which cancels for inputs with an offset
    return mean, centered.mul_(centered).mean(dims, keepdim=True)


def pool(mean: torch.Tensor, var: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of the union of equal-sized blocks from the blocks' moments (law of total variance).

    Per-channel batch statistics are the per-(sample, channel) ones pooled over the samples:
    one pass over x serves InstanceNorm's, LayerNorm's and BatchNorm's axes at once.
    """
    m = mean.mean(dims, keepdim=True)
    return m, var.mean(dims, keepdim=True) + (mean - m).square().mean(dims, keepdim=True)


class _Moments(Function):
    @staticmethod
    def forward(ctx, x, dims):
        mean, var = raw_moments(x, dims)
        ctx.save_for_backward(x, mean)
        ctx.count = x.numel() // max(mean.numel(), 1)
        return mean, var

    @staticmethod
    @first_order
    def backward(ctx, g_mean, g_var):
        x, mean = ctx.saved_tensors
        q = g_mean / ctx.count if g_mean is not None else torch.zeros_like(mean)
        if g_var is None:
            return torch.zeros_like(x).add_(q), None
        p = g_var * (2.0 / ctx.count)
        return torch.addcmul(q - p * mean, x, p).to(x.dtype), None


def moments(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance of ``x`` over ``dims`` (kept), differentiable: for the norms whose
    output is not ``x * a + b`` (EvoNorm), one pass forward and one back."""
    if plain():  # the plain formula: for inductor to fuse, and autograd to any order in composite_only
        var, mean = torch.var_mean(upcast(x), dims, correction=0, keepdim=True)
        return mean, var
    return _Moments.apply(x, tuple(d % x.dim() for d in dims))
