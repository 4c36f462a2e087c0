"""How the hand-written norms normalize: statistics of x in one pass, autograd only on the small
tensors computed from them, and one closed-form pass back.

Most norms PyTorch has no kernel for scale and shift x with coefficients shared by a block of
x (a sample and channel, a channel, a sample, a group), computed from the blocks' moments:

    y = normalize(x, dims, coeffs, *params)           # with
    mean, var = moments of x over dims                # (N, C, 1, 1), (1, 1, C), ...: one pass
    a, b      = coeffs(mean, var, *params)            # the paper's formula, on a few thousand numbers
    y         = x * a + b                             # one pass;  FRN: max(x * a + b, floor)

and backward, with da = sum(dy * x) and db = sum(dy) per block, autograd takes them through
``coeffs`` to dmean, dvar and the parameters' gradients, and

    dx = dy * a + dmean / n + dvar * 2 (x - mean) / n  =  dy * a + x * p + q   (p, q per block)

is two fused multiply-adds. Written as broadcasting tensor ops with autograd instead, the same
layer makes a pass over the activation per op, forward and backward: BLN, FRN or Batch Renorm
cost 5 to 13 times native GroupNorm on a 32x64x32x32 activation, and ``torch.var_mean`` alone
took 14-22 ms where a mean and a second pass take 3 (measured 2026-11-23 on a CPU, one
thread, torch 2.14). Statistics are computed in fp32 at least (``precision.py``); the output
is rounded once, to x's dtype.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from normlab.norms.precision import upcast


# Below this many elements a layer keeps its composite path (native kernels and a few tensor
# ops with autograd): the fused path's fixed cost, about 100 small-tensor ops forward and
# backward, is more than the passes it saves. Measured 2026-11-23 on two busy CPU cores: BLN,
# FRN and Batch Renorm break even at 8x16x32x32 (131k elements); at 2x16x28x28 the fused path
# is 1.4-2.8x slower, at 32x64x32x32 2.5-4x faster.
FUSED_MIN_ELEMENTS = 1 << 17


def stat_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def use_fused(x: torch.Tensor) -> bool:
    return x.numel() >= FUSED_MIN_ELEMENTS


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


def scale_rows(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x * a + b`` in x's dtype, computed with a's (fp32 factors, one rounding).

    When a and b have one value per contiguous row of x (per sample and channel of an image),
    this is BatchNorm's inference with mean 0 and variance 1 over rows as channels, whose
    kernel applies it in one vectorized pass: 0.8 ms against 1.26 ms for addcmul (measured
    2026-11-23, 32x64x32x32, one thread).
    """
    reduced = tuple(d for d in range(x.dim()) if a.shape[d] == 1 and x.shape[d] != 1)
    if b is not None and a.shape == b.shape and reduced and trailing(x, reduced) and x.is_contiguous():
        rows = a.numel()
        zero, one = a.new_zeros(rows), a.new_ones(rows)
        y = torch.batch_norm(x.view(1, rows, -1), a.reshape(rows), b.reshape(rows), zero, one, False, 0.0, 0.0, False)
        return y.view_as(x)
    y = torch.addcmul(b, x, a) if b is not None else x * a
    return y.to(x.dtype)


def fits(t: torch.Tensor, block: torch.Tensor) -> bool:
    """Whether ``t`` broadcasts to ``block``'s shape: one value per block, or per group of blocks."""
    return torch.broadcast_shapes(t.shape, block.shape) == block.shape


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return t.sum_to_size(shape) if t.shape != shape else t


def block_sums(dy: torch.Tensor, x: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """sum(dy * x) and sum(dy) over the blocks of ``shape`` (x's shape with size-1 dims), in fp32 at least.

    When the blocks are contiguous rows of x (statistics over trailing dims), GroupNorm's
    backward kernel with one group per row, mean 0 and 1/std 1 computes both in one pass: its
    dgamma is sum(dy * (x - mean) / std) and its dbeta sum(dy), per group. 0.7 ms against
    1.1 ms for a product and two sums (measured 2026-11-23, 32x64x32x32, one thread).
    """
    reduced = tuple(d for d in range(x.dim()) if shape[d] == 1 and x.shape[d] != 1)
    full = x.dtype == dy.dtype == stat_dtype(x)  # fp32 or fp64: the kernel's sums come back in x's dtype
    if full and reduced and trailing(x, reduced) and dy.is_contiguous() and x.is_contiguous():
        rows, k = math.prod(shape), math.prod(x.shape[d] for d in reduced)
        zero, one = x.new_zeros(1, rows), x.new_ones(1, rows)
        _, g_a, g_b = torch.ops.aten.native_group_norm_backward(
            dy.view(1, rows, k), x.view(1, rows, k), zero, one, None, 1, rows, k, rows, [False, True, True])
        return g_a.view(shape), g_b.view(shape)
    return _sum_to(upcast(dy) * upcast(x), shape), _sum_to(upcast(dy), shape)


class _Normalize(Function):
    @staticmethod
    def forward(ctx, x, dims, coeffs, floor, *params):
        mean, var = raw_moments(x, dims)
        with torch.enable_grad():  # the small graph from the moments to (a, b), for backward
            m, v = mean.detach().requires_grad_(), var.detach().requires_grad_()
            leaves = [t.detach().requires_grad_(t.requires_grad) if t is not None else None for t in params]
            a, b = coeffs(m, v, *leaves)
            # Per-channel factors as per-block ones (a view): the backward's sums are per block.
            if fits(a, mean):
                a = a.expand(mean.shape)
                b = b.expand(mean.shape) if b is not None and fits(b, mean) else b
        y = scale_rows(x, a.detach(), b.detach() if b is not None else torch.zeros_like(a))
        if floor is not None:
            y = torch.maximum(y, floor, out=y) if y.dtype == floor.dtype else torch.maximum(y, floor).to(x.dtype)
        ctx.save_for_backward(x, y if floor is not None else None, floor)
        ctx.graph = (m, v, leaves, a, b)
        ctx.count = x.numel() // max(mean.numel(), 1)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, y, floor = ctx.saved_tensors
        m, v, leaves, a, b = ctx.graph
        g_floor = None
        if floor is not None:
            total = _sum_to(dy, floor.shape)
            # Below the floor the output is the floor: no gradient to x, a or b. ReLU's backward
            # kernel masks in one pass; masked_fill and where on a bool mask took 5x as long.
            dy = torch.ops.aten.threshold_backward(dy, (y - floor).to(dy.dtype), 0)
            g_floor = (total - _sum_to(dy, floor.shape)).to(floor.dtype)
        if b is None or a.shape == b.shape:
            g_a, g_b = block_sums(dy, x, a.shape)
            outputs, grads = [a], [g_a.to(a.dtype)]
            if b is not None:
                outputs.append(b), grads.append(g_b.to(b.dtype))
        else:
            outputs, grads = [a], [_sum_to(upcast(dy) * upcast(x), a.shape).to(a.dtype)]
            if b is not None:
                outputs.append(b), grads.append(_sum_to(upcast(dy), b.shape).to(b.dtype))
        learned = [t for t in leaves if t is not None and t.requires_grad]
        found = torch.autograd.grad(outputs, [m, v, *learned], grads, allow_unused=True)
        g_m, g_v = (g if g is not None else torch.zeros_like(t) for g, t in zip(found[:2], (m, v)))
        scale = g_v * (2.0 / ctx.count)
        shift = g_m / ctx.count - scale * m.detach()
        if x.dtype == stat_dtype(x) and a.shape == m.shape:  # x * scale + shift by BatchNorm's kernel, as forward
            dx = scale_rows(x, scale.expand(m.shape), shift.expand(m.shape)).addcmul_(dy, a.detach())
        else:
            dx = torch.addcmul(shift, x, scale).addcmul_(dy, a.detach())
        by_leaf = iter(found[2:])
        g_params = [next(by_leaf) if t is not None and t.requires_grad else None for t in leaves]
        return (dx.to(x.dtype), None, None, g_floor, *g_params)


def normalize(x: torch.Tensor, dims: tuple[int, ...], coeffs, *params: torch.Tensor | None,
              floor: torch.Tensor | None = None) -> torch.Tensor:
    """``x * a + b`` (``max(., floor)`` with a floor), where ``a, b = coeffs(mean, var, *params)``
    and ``mean``, ``var`` are the moments of ``x`` over ``dims`` (kept as size-1 dims).

    ``coeffs`` may read other state (running statistics) and update it under ``no_grad``; it
    runs once per forward. ``b`` may be None. ``params`` are the tensors whose gradients it
    must give (parameters, or None).
    """
    dims = tuple(d % x.dim() for d in dims)
    if torch.compiler.is_compiling():
        # Under torch.compile, the plain formula: inductor generates fused kernels for it, which
        # the custom autograd function (and its autograd inside) would hide from it.
        var, mean = torch.var_mean(upcast(x), dims, correction=0, keepdim=True)
        a, b = coeffs(mean, var, *params)
        y = x * a if b is None else torch.addcmul(b, x, a)
        return (y if floor is None else torch.maximum(y, floor)).to(x.dtype)
    return _Normalize.apply(x, dims, coeffs, floor, *params)


class _Moments(Function):
    @staticmethod
    def forward(ctx, x, dims):
        mean, var = raw_moments(x, dims)
        ctx.save_for_backward(x, mean)
        ctx.count = x.numel() // max(mean.numel(), 1)
        return mean, var

    @staticmethod
    @once_differentiable
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
    if torch.compiler.is_compiling():  # the plain formula for inductor, as in normalize
        var, mean = torch.var_mean(upcast(x), dims, correction=0, keepdim=True)
        return mean, var
    return _Moments.apply(x, tuple(d % x.dim() for d in dims))
