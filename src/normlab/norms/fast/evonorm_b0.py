"""EvoNorm-B0's fast path for large inputs: the layer with its backward in closed form; with
u = x / den, den = max(s_b, v1 x + s_i),

    du = gamma dy,  dx = du / den - v1 M (du u / den) + (the variances' share, per block)

where M marks where the instance branch is the larger: 7 passes over the activation forward and
12 back, against about 30 through autograd. On the CPU (contiguous fp32 images) the passes are
C loops over each sample's channel (``kernels/rows.c`` for the moments, ``kernels/evonorm.c``):
two forward, two back, the max and its mask recomputed rather than stored. With the C kernels
the path starts at a quarter of ``FUSED_MIN_ELEMENTS`` (docs/performance.md).
"""

from __future__ import annotations

import functools
import math

import torch
from torch.autograd import Function

from normlab.norms.evonorm_b0 import EvoNormB0
from normlab.norms.fast import fast_path, first_order, kernels, use_fused
from normlab.norms.fast.kernels import evonorm, rows
from normlab.norms.fast.moments import raw_moments
from normlab.norms.fast.normalize import block_sums, scale_rows, sum_to
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import batch_moments


@fast_path(EvoNormB0)
def evonorm_b0(layer: EvoNormB0, x: torch.Tensor) -> torch.Tensor | None:
    if layer.v1 is None or not use_fused(x, share=1 / 4 if kernels.ready("evonorm", x) else 1.0):
        return None
    dims = instance_dims(x, layer.layout)
    count = x.shape[0] * math.prod(x.shape[d] for d in dims)  # values per channel
    deviations = functools.partial(_deviations, layer, count)
    return _EvoNormB0.apply(x, dims, layer.layout, deviations, layer.v1, layer.weight, layer.bias)


def _deviations(layer, count, mean, var):
    """sqrt(var + eps) of the instances (per sample and channel) and of the batch (per
    channel; the running estimate in eval mode), from the instance moments."""
    _, var_b = batch_moments(layer, mean, var, count, layer.layout)
    return torch.sqrt(var + layer.eps), torch.sqrt(var_b + layer.eps)


class _EvoNormB0(Function):
    @staticmethod
    def forward(ctx, x, dims, layout, deviations, v1, weight, bias):
        xs = upcast(x)
        ctx.native = layout == "nchw" and kernels.ready("evonorm", x)
        if ctx.native:  # moments in one read of each row, no normalized copy (rows.c)
            mean, var = (t.view(*x.shape[:2], *[1] * (x.dim() - 2)) for t in rows.moments(x, x.shape[0] * x.shape[1]))
        else:
            mean, var = raw_moments(xs, dims)  # (N, C, 1, 1) or (N, 1, C)
        with torch.enable_grad():  # the small graph from the moments to the deviations, for backward
            m, v = mean.detach().requires_grad_(), var.detach().requires_grad_()
            s_i, s_b = deviations(m, v)
        ctx.graph, ctx.layout, ctx.has_bias = (m, v, s_i, s_b), layout, bias is not None
        ctx.count = x.numel() // max(mean.numel(), 1)
        if ctx.native:  # the max and the division in one pass, recomputed in backward (evonorm.c)
            factors = [kernels.vector(t) for t in (v1, s_i, s_b, weight)]  # per channel, per row, per channel
            ctx.save_for_backward(x, *factors)
            return evonorm.b0_forward(x, *factors, kernels.vector(bias))
        v1_, s_i_, s_b_ = per_channel(v1.detach(), mean, layout), s_i.detach(), s_b.detach()
        den = scale_rows(xs, v1_.expand(mean.shape), s_i_ - s_b_)  # v1 x + s_i - s_b
        den.relu_().add_(s_b_)  # max(s_b, v1 x + s_i)
        y = torch.div(xs, den)
        if weight is not None:
            y.mul_(per_channel(weight.detach(), mean, layout))
        if bias is not None:
            y.add_(per_channel(bias.detach(), mean, layout))
        ctx.save_for_backward(x, den, v1, weight)
        return y.to(x.dtype)

    @staticmethod
    @first_order
    def backward(ctx, dy):
        if ctx.native:
            return _native_backward(ctx, dy.contiguous())
        x, den, v1, weight = ctx.saved_tensors
        m, v, s_i, s_b = ctx.graph
        xs, dy = upcast(x), upcast(dy)
        layout, block = ctx.layout, m.shape
        channel = (1, *block[1:])  # (1, C, 1, 1) or (1, 1, C)
        u = torch.div(xs, den)
        g_u, g_one = block_sums(dy, u, block)  # sum(dy u), sum(dy) per block
        g_weight = sum_to(g_u, channel).flatten() if weight is not None else None
        g_bias = sum_to(g_one, channel).flatten() if ctx.has_bias else None
        # A = du / den; B = A u = -d loss / d den, over u's buffer; BM = B where v1 x + s_i > s_b.
        a = torch.mul(dy, per_channel(weight.detach(), m, layout)) if weight is not None else dy.clone()
        a.div_(den)
        b = torch.mul(a, u, out=u)
        bm = torch.sub(den, s_b.detach())
        torch.ops.aten.threshold_backward.grad_input(b, bm, 0, grad_input=bm)
        g_bmx, g_bm = block_sums(bm, xs, block)
        g_v1 = -sum_to(g_bmx, channel).flatten()
        g_s_i = -g_bm
        g_s_b = sum_to(g_bm, channel) - sum_to(b, channel)  # -(sum B - sum BM) over the batch
        outputs, grads = [s_i], [g_s_i.to(s_i.dtype)]
        if s_b.requires_grad:
            outputs.append(s_b), grads.append(g_s_b.to(s_b.dtype))
        g_m, g_v = torch.autograd.grad(outputs, [m, v], grads, allow_unused=True, retain_graph=True)
        g_m = g_m if g_m is not None else torch.zeros_like(m)
        p = g_v * (2.0 / ctx.count)  # the variances' share: d var / dx = 2 (x - mean) / n
        a.addcmul_(bm, per_channel(v1.detach(), m, layout), value=-1).addcmul_(xs, p).add_(g_m / ctx.count - p * m)
        return a.to(x.dtype), None, None, None, g_v1.to(v1.dtype), g_weight, g_bias


def _native_backward(ctx, dy):
    """The C kernels' backward (evonorm.c): the per-row sums in one pass, the deviations' small
    graph by autograd, dx in one more pass."""
    x, v1, s_i_, s_b_, gamma = ctx.saved_tensors
    m, v, s_i, s_b = ctx.graph
    g_u, g_one, g_bm, g_bmx, g_b = evonorm.b0_backward_sums(dy, x, v1, s_i_, s_b_, gamma)  # (N, C) each
    g_weight = g_u.sum(0) if gamma is not None else None
    g_bias = g_one.sum(0) if ctx.has_bias else None
    outputs, grads = [s_i], [(-g_bm).view(s_i.shape).to(s_i.dtype)]
    if s_b.requires_grad:  # -(sum B - sum Bm) over the batch, per channel
        outputs.append(s_b), grads.append((g_bm - g_b).sum(0).view(s_b.shape).to(s_b.dtype))
    g_m, g_v = torch.autograd.grad(outputs, [m, v], grads, allow_unused=True, retain_graph=True)
    g_m = g_m if g_m is not None else torch.zeros_like(m)
    p = g_v * (2.0 / ctx.count)  # the variances' share: d var / dx = 2 (x - mean) / n
    q = g_m / ctx.count - p * m.detach()
    dx = evonorm.b0_dx(dy, x, v1, s_i_, s_b_, gamma, kernels.vector(p), kernels.vector(q))
    return dx, None, None, None, -g_bmx.sum(0), g_weight, g_bias  # fp32, as v1 (the kernels take fp32 only)
