"""EvoNorm-S0's fast path: the layer with its backward in closed form. With f = x sigmoid(v1 x),
k = gamma / sqrt(s2 + eps) per sample and channel and df = k dy,

    dx = df (s + v1 x s (1 - s)) + (the group variance's share),   s = sigmoid(v1 x)
    dv1 = sum(df x^2 s (1 - s)),  dgamma = sum(dy f / sqrt(s2 + eps)),  dbeta = sum(dy)

with the sigmoid kept from forward (one exp per element) and s (1 - s) by sigmoid's backward
kernel: 6 passes over the activation forward and 10 back, against about 25 through autograd.
On the CPU (contiguous fp32) the same formulas are a C loop per group (``kernels/evonorm.c``),
at every size (it has no fixed cost to amortize): one read of x for the statistics and one more
for y and the sigmoid forward, one of x, dy and the sigmoid for the sums and one for dx
backward. The sigmoid is stored, as on the PyTorch path: its exp per element cost more than the
activation-sized write and read. Images only; channels-last images take the PyTorch path (the
kernels read each group as one contiguous block), whose group statistics read a contiguous copy.
"""

from __future__ import annotations

import torch
from torch.autograd import Function

from normlab.norms.evonorm_s0 import EvoNormS0, per_group
from normlab.norms.fast import fast_path, first_order, kernels, use_fused
from normlab.norms.fast.kernels import evonorm
from normlab.norms.fast.moments import raw_moments
from normlab.norms.fast.normalize import block_sums
from normlab.norms.layout import per_channel
from normlab.norms.precision import upcast


@fast_path(EvoNormS0)
def evonorm_s0(layer: EvoNormS0, x: torch.Tensor) -> torch.Tensor | None:
    if layer.v1 is None or layer.layout != "nchw" or not (kernels.ready("evonorm", x) or use_fused(x)):
        return None
    return _EvoNormS0.apply(x, layer.num_groups, layer.eps, layer.v1, layer.weight, layer.bias)


class _EvoNormS0(Function):
    """EvoNorm-S0 on (N, C, ...) images; statistics in fp32 at least."""

    @staticmethod
    def forward(ctx, x, groups, eps, v1, weight, bias):
        ctx.has_bias, ctx.groups = bias is not None, groups
        ctx.native = kernels.ready("evonorm", x)
        if ctx.native:  # the statistics, then y with its sigmoid, per group in cache (evonorm.c)
            y, sig, mean, rstd = evonorm.s0_forward(x, *(kernels.vector(t) for t in (v1, weight, bias)), groups, eps)
            ctx.save_for_backward(x, sig, mean, rstd, v1, weight)
            ctx.sig_spent = False  # the first backward writes dx over it
            return y
        xs = upcast(x)
        # (N, G, 1). A view of contiguous x; a copy of channels-last x, whose groups are not rows.
        mean, var = raw_moments(xs.reshape(x.shape[0], groups, -1), (2,))
        rstd = torch.rsqrt(var + eps)
        sig = _sigmoid(xs, v1)
        k = per_group(rstd, x)  # (N, C, 1, ...): 1/std, times gamma
        k = k * per_channel(weight.detach(), x, "nchw") if weight is not None else k
        y = torch.mul(xs, sig).mul_(k)
        if bias is not None:
            y.add_(per_channel(bias.detach(), x, "nchw"))
        ctx.save_for_backward(x, sig, mean, rstd, k, v1, weight)
        return y.to(x.dtype)

    @staticmethod
    @first_order
    def backward(ctx, dy):
        if ctx.native:
            return _native_backward(ctx, dy.contiguous())
        x, sig, mean, rstd, k, v1, weight = ctx.saved_tensors
        xs, dy = upcast(x), upcast(dy)
        n, g = x.shape[0], ctx.groups
        block = k.shape
        f = torch.mul(xs, sig)
        g_f, g_one = block_sums(dy, f, block)  # sum(dy f), sum(dy) per sample and channel
        g_bias = g_one.sum(0).flatten() if ctx.has_bias else None
        g_weight = (g_f * per_group(rstd, x)).sum(0).flatten() if weight is not None else None
        gamma_f = g_f * per_channel(weight.detach(), x, "nchw") if weight is not None else g_f
        g_rstd = gamma_f.view(n, g, -1).sum(2, keepdim=True)  # (N, G, 1)
        g_var = g_rstd * rstd.pow(3) * -0.5
        df = torch.mul(dy, k, out=f)
        # df x s (1 - s) in one pass: sigmoid's backward kernel, given df x and s.
        sb = torch.mul(df, xs)
        sb = torch.ops.aten.sigmoid_backward.grad_input(sb, sig, grad_input=sb)
        g_v1, _ = block_sums(sb, xs, block)  # sum(df x^2 s (1 - s))
        dx = sb.mul_(per_channel(v1.detach(), x, "nchw")).addcmul_(df, sig)  # df (s + v1 x s (1 - s))
        p = g_var * (2.0 / (x.numel() // (n * g)))  # the group variance's share: 2 (x - mean) / count
        dx.addcmul_(xs, per_group(p, x)).add_(per_group(-p * mean, x))
        return dx.to(x.dtype), None, None, g_v1.sum(0).flatten().to(v1.dtype), g_weight, g_bias


def _native_backward(ctx, dy):
    """The C kernel's backward: dx, and the parameters' gradients from its per-(sample, channel) sums.

    dx is written over the sigmoid kept from forward: no new activation-sized buffer, whose
    first touch costs page faults (on this CPU a fresh 8 MB buffer cost more than the kernel
    that fills it). A second backward through the same graph (``retain_graph=True``) finds it
    spent and recomputes it."""
    x, sig, mean, rstd, v1, weight = ctx.saved_tensors
    if ctx.sig_spent:
        sig = _sigmoid(x, v1)
    ctx.sig_spent = True
    gamma = kernels.vector(weight)
    dx, s_f, s_one, s_v = evonorm.s0_backward(dy, x, sig, mean, rstd, kernels.vector(v1), gamma, out=sig)
    rstd_c = rstd.repeat_interleave(x.shape[1] // ctx.groups, dim=1)  # (N, C)
    g_v1 = (s_v * rstd_c).sum(0) * (gamma if gamma is not None else 1.0)
    g_weight = (s_f * rstd_c).sum(0) if weight is not None else None
    g_bias = s_one.sum(0) if ctx.has_bias else None
    return dx, None, None, g_v1.to(v1.dtype), g_weight, g_bias


def _sigmoid(x: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """sigmoid(v1 x) on (N, C, ...) images, a new tensor."""
    return torch.mul(x, per_channel(v1.detach(), x, "nchw")).sigmoid_()
