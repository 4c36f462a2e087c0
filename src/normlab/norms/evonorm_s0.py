"""EvoNorm-S0 (Liu, Brock, Simonyan & Le, 2020, "Evolving Normalization-Activation Layers";
authors' code: github.com/tensorflow/tpu, models/official/resnet),
a normalization and an activation in one layer, batch-independent:

    y = x * sigmoid(v1 * x) / sqrt(s2_group(x) + eps) * gamma + beta

The numerator is a Swish with a learned slope v1 per channel (initialised to ones); the
denominator is GroupNorm's std (biased variance, no centering of the numerator).

- ``nchw``: s2_group over (C/G, H, W) per sample and group;
- ``nlc``:  over the C/G channels of each group, per token (GroupNorm's token axes).

``num_groups`` and ``group_size`` work as for ``group``; the paper uses 32 groups.

``apply_act=False`` is the layer's form where no activation follows (a residual branch's last
norm): an affine transform only, y = gamma * x + beta, with no v1 and no statistics, as in the
authors' ResNets (TF TPU ``evonorm(..., nonlinearity=False)``) and timm's
``EvoNorm2dS0(apply_act=False)``. ``activates`` says which form a layer is; the models put no
ReLU after one that activates.

Large images take ``_EvoNormS0``, the layer with its backward in closed form: with
f = x sigmoid(v1 x), k = gamma / sqrt(s2 + eps) per sample and channel and df = k dy,

    dx = df (s + v1 x s (1 - s)) + (the group variance's share),   s = sigmoid(v1 x)
    dv1 = sum(df x^2 s (1 - s)),  dgamma = sum(dy f / sqrt(s2 + eps)),  dbeta = sum(dy)

with the sigmoid kept from forward (one exp per element) and s (1 - s) by sigmoid's backward
kernel: 6 passes over the activation forward and 10 back, against about 25 through autograd.
On the CPU (contiguous fp32) the same formulas are a C loop per group (``kernels/evonorm.c``),
at every size: one read of x for the statistics and one more for y and the sigmoid forward,
one of x, dy and the sigmoid for the sums and one for dx backward. The sigmoid is stored, as
on the PyTorch path: its exp per element cost more than the activation-sized write and read.

Channels-last images take the PyTorch path (the kernels read each group as one contiguous block);
the groups' statistics then read a contiguous copy of x.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: the statistics and
the sigmoid in fp32, x's gradients summed in fp32 and rounded to x's dtype once.

Deviation: The paper defines EvoNorm for images; the token axes (``nlc``) are normlab's reading of it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd import Function

from normlab import kernels
from normlab.kernels import evonorm
from normlab.norms.fused import block_sums, first_order, kernel_ready, moments, raw_moments, use_fused
from normlab.norms.group import resolve_groups
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, per_channel
from normlab.norms.precision import upcast


class EvoNormS0(AffineNorm):
    axes = {"nchw": "(C/G, H, W) per sample and group", "nlc": "C/G per token and group"}
    batch_dependent = False
    activates = True  # the class's default form; apply_act=False sets it per layer

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        num_groups: int | None = 8,
        group_size: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        apply_act: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.num_groups = resolve_groups(num_channels, num_groups, group_size)
        self.activates = apply_act
        self.v1 = nn.Parameter(torch.ones(num_channels)) if apply_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "EvoNormS0")
        if self.v1 is None:
            return self.affine_only(x)
        g = self.num_groups
        # The C kernel at every size: it has no fixed cost to amortize, and took 0.5x the
        # composite path's time from 2x16x32x32 (32k elements) on (measured 2026-11-29, one thread).
        if self.layout == "nchw" and (kernel_ready("evonorm", x) or use_fused(x)):
            return _EvoNormS0.apply(x, g, self.eps, self.v1, self.weight, self.bias)
        if self.layout == "nlc":
            grouped_shape = (*x.shape[:-1], g, self.num_channels // g)  # (N, L, G, C/G)
        else:
            grouped_shape = (x.shape[0], g, -1)  # (N, G, C/G * H * W)
        # bf16/fp16 x as one fp32 copy: x's three uses give three gradients, which autograd would round
        # to x's dtype one by one and add in it; from the copy their fp32 sum is rounded once. fp32 x: x.
        xs = upcast(x)
        _, var = moments(xs.reshape(grouped_shape), (-1,))  # fp32, one pass each way (fused.py)
        v1 = per_channel(self.v1, x, self.layout)
        swish = xs * torch.sigmoid(xs * v1)
        rstd = torch.rsqrt(var + self.eps)
        if self.layout == "nchw":  # 1/std and gamma as one factor per (sample, channel): one pass, not two
            scale = _per_channel(rstd, x)
            if self.weight is None:
                return (swish * scale).to(x.dtype)
            gamma, beta = per_channel(self.weight, x, self.layout), per_channel(self.bias, x, self.layout)
            return torch.addcmul(beta, swish, scale * gamma).to(x.dtype)
        y = (swish.reshape(grouped_shape) * rstd).view_as(x)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_groups={self.num_groups}, apply_act={self.activates}"


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
        k = _per_channel(rstd, x)  # (N, C, 1, ...): 1/std, times gamma
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
        g_weight = (g_f * _per_channel(rstd, x)).sum(0).flatten() if weight is not None else None
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
        dx.addcmul_(xs, _per_channel(p, x)).add_(_per_channel(-p * mean, x))
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


def _per_channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, G, 1) per group as (N, C, 1, ...) per channel of x (a copy of N * C values)."""
    n, g = t.shape[:2]
    c = x.shape[1]
    return t.view(n, g, 1).expand(n, g, c // g).reshape(n, c, *[1] * (x.dim() - 2))
