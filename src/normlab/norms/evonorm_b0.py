"""EvoNorm-B0 (Liu, Brock, Simonyan & Le, 2020, "Evolving Normalization-Activation Layers";
authors' code: github.com/tensorflow/tpu, models/official/resnet),
a normalization and an activation in one layer:

    y = x / max( sqrt(s2_batch(x) + eps),  v1 * x + sqrt(s2_instance(x) + eps) ) * gamma + beta

s2_batch is BatchNorm's variance, s2_instance InstanceNorm's (both biased, no centering of the
numerator); v1 is learned per channel (initialised to ones). The max makes the layer
nonlinear: for large positive x the instance term wins and the output saturates, while
negative x are divided by the batch std only.

- ``nchw``: s2_batch over (N, H, W) per channel, s2_instance over (H, W) per sample and channel;
- ``nlc``:  s2_batch over (N, L) per channel, s2_instance over L per sample and channel (so a
  token sees later tokens, in training and in eval).

``apply_act=False`` is the layer's form where no activation follows (a residual branch's last
norm): an affine transform only, y = gamma * x + beta, with no v1, no statistics and no running
ones (so it does not use the batch), as in the authors' ResNets (TF TPU ``evonorm(...,
nonlinearity=False)``) and timm's ``EvoNorm2dB0(apply_act=False)``. ``activates`` says which
form a layer is; the models put no ReLU after one that activates.

In eval mode s2_batch is the running variance (BatchNorm's estimate, ``running.py``). The
running mean is not in the formula; it is kept anyway, updated as BatchNorm's, so that the
tools that look for BatchNorm-like layers (PreciseBN) find and re-estimate this one too.

Both variances come from one pass over x: the instance means and variances, then the batch
variance from them by the law of total variance, var_B = mean_n(var_n) + var_n(mean_n). Large
inputs take ``_EvoNormB0``, the layer with its backward in closed form; with u = x / den,

    du = gamma dy,  dx = du / den - v1 M (du u / den) + (the variances' share, per block)

where M marks where the instance branch is the larger: 7 passes over the activation forward and
12 back, against about 30 through autograd. On the CPU (contiguous fp32 images) the passes are
C loops over each sample's channel (``kernels/rows.c`` for the moments, ``kernels/evonorm.c``):
two forward, two back, the max and its mask recomputed rather than stored.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: the statistics,
the max and its mask in fp32, x's gradients summed in fp32 and rounded to x's dtype once.

Deviation: The paper defines EvoNorm for images; the token axes (``nlc``) are normlab's reading of it.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function

from normlab import kernels
from normlab.kernels import evonorm, rows
from normlab.norms.fused import block_sums, first_order, moments, raw_moments, scale_rows, sum_to, use_fused
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, batch_moments, update_running


class EvoNormB0(AffineNorm):
    axes = {
        "nchw": "(N, H, W) per channel, and (H, W) per sample and channel",
        "nlc": "(N, L) per channel, and L per sample and channel",
    }
    batch_dependent = True
    activates = True  # the class's default form; apply_act=False sets it per layer
    instance_stats = True  # per-sequence statistics over L in every mode (see models/gpt.py)

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        apply_act: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum = momentum
        self.activates = apply_act
        self.v1 = nn.Parameter(torch.ones(num_channels)) if apply_act else None
        if apply_act:
            add_running_stats(self, num_channels)
        else:  # gamma x + beta: nothing of the batch, nothing for PreciseBN to re-estimate
            self.batch_dependent = self.instance_stats = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "EvoNormB0")
        if self.v1 is None:
            return self.affine_only(x)
        dims = instance_dims(x, self.layout)
        # With the C kernels from a quarter of the threshold: 0.9x the composite path at 32k elements,
        # 1.1x at 4k (measured 2026-11-29, one thread).
        if use_fused(x, share=1 / 4 if kernels.ready("evonorm", x) else 1.0):
            count = x.shape[0] * math.prod(x.shape[d] for d in dims)  # values per channel
            deviations = functools.partial(self._deviations, count)
            return _EvoNormB0.apply(x, dims, self.layout, deviations, self.v1, self.weight, self.bias)
        # bf16/fp16 x as one fp32 copy: x's three uses give three gradients, which autograd would round
        # to x's dtype one by one and add in it; from the copy their fp32 sum is rounded once. fp32 x: x.
        xs = upcast(x)
        mu_i, var_i = moments(xs, dims)  # (N, C, 1, 1) or (N, 1, C); fp32, one pass each way (fused.py)
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
        den = F.relu(torch.addcmul(torch.sqrt(var_i + self.eps) - s_b, xs, v1)) + s_b
        y = xs / den
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", apply_act={self.activates}"

    def _deviations(self, count, mean, var):
        """sqrt(var + eps) of the instances (per sample and channel) and of the batch (per
        channel; the running estimate in eval mode), from the instance moments."""
        _, var_b = batch_moments(self, mean, var, count, self.layout)
        return torch.sqrt(var + self.eps), torch.sqrt(var_b + self.eps)


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
