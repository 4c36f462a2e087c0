"""LayerNorm over the channels at every position, ConvNeXt's ``LayerNorm2d`` (Liu et al., 2022,
"A ConvNet for the 2020s", Sec. 2.6), with LayerNorm's statistics, Eq. 3 (Ba, Kiros & Hinton, 2016).

    y = gamma * (x - mu) / sqrt(var + eps) + beta,  mu and var over C at each (n, h, w)

- ``nchw``: reduce over C, one mean/var per sample and pixel. Not ``layer``, which reduces
  over (C, H, W) per sample (GroupNorm with one group, ``group1``);
- ``nlc``:  reduce over C per token: ``layer`` (a Transformer's LayerNorm), with eps 1e-6.

Images in channels-last memory (``trainer.channels_last=true``) are (N, H, W, C) rows already:
LayerNorm's native kernel runs on the permuted view, no copy. Contiguous NCHW images are not
permuted (timm's LayerNorm2d does, which copies the activation twice each way): large ones
are reduced over the channel axis where they lie, by ``_ChannelNorm``, with LayerNorm's
backward in closed form (Ba et al.'s gradient, as PyTorch's kernel computes it),

    g  = dy * gamma,   dx = (g - mean_C(g) - xhat * mean_C(g * xhat)) / sqrt(var + eps)

On the CPU (contiguous fp32) ``_ChannelNorm`` is a C loop over each sample's channels in memory
order with one running sum per position (``kernels/layer2d.c``), at every size: three reads of
the sample forward and two back, mostly from the cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import Function

from normlab import kernels
from normlab.kernels import layer2d
from normlab.norms.fused import block_sums, first_order, kernel_ready, use_fused
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, per_channel
from normlab.norms.precision import upcast


class LayerNorm2d(AffineNorm):
    axes = {"nchw": "C per sample and pixel", "nlc": "C per token"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-6, affine: bool = True):
        # eps 1e-6: ConvNeXt's and timm's LayerNorm2d (PyTorch's LayerNorm default is 1e-5).
        super().__init__(num_channels, layout, eps, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "LayerNorm2d")
        if self.layout == "nlc":
            return F.layer_norm(x, (self.num_channels,), self.weight, self.bias, self.eps)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = F.layer_norm(x.permute(0, 2, 3, 1), (self.num_channels,), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)  # a view: the native kernel on the channels-last rows
        # The closed form from 16k elements (batch 2 of ResNet-20's first stage is 32k): it has no
        # nested graph, and took 0.9x, 0.7x and 0.3x the composite path's time at 16k, 32k and
        # 128k (measured 2026-11-29, one CPU thread). torch.var_mean over C is slow (14-23 ms at
        # 32x64x32x32), and permuting to channels-last for F.layer_norm costs a transposing copy
        # each way (10 ms).
        # With the C kernel (layer2d.c), at every size: 0.5x the composite path at 8k elements.
        if kernel_ready("layer2d", x) or use_fused(x, share=1 / 8):
            return _ChannelNorm.apply(x, self.weight, self.bias, self.eps)
        var, mu = torch.var_mean(upcast(x), 1, correction=0, keepdim=True)  # (N, 1, H, W)
        y = (x - mu) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)


class _ChannelNorm(Function):
    """LayerNorm over dim 1 of (N, C, ...) with per-channel gamma and beta, statistics in fp32 at
    least. Sums over C weighted by gamma are matrix products (gamma^T @ x[n]): one read, no
    product tensor. Three activation-sized tensors forward (xhat, saved; the squares; y), two
    backward (a product for the sums, which becomes dx)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        ctx.has_bias, ctx.dtype = bias is not None, x.dtype
        ctx.native = kernels.ready("layer2d", x)
        if ctx.native:  # each sample's channels in order, one running sum per position (layer2d.c)
            y, mean, rstd = layer2d.forward(x, kernels.vector(weight), kernels.vector(bias), eps)
            ctx.save_for_backward(x, mean, rstd, weight)
            return y
        xs = upcast(x)
        xhat = torch.sub(xs, _mean_channels(xs))
        rstd = _mean_channels(torch.mul(xhat, xhat)).add_(eps).rsqrt_()  # (N, 1, H, W)
        xhat.mul_(rstd)
        # gamma xhat + beta per channel in one pass: BatchNorm's inference kernel with mean 0 and
        # variance 1 (a product and a sum took twice as long).
        zero, one = xs.new_zeros(x.shape[1]), xs.new_ones(x.shape[1])
        y = torch.batch_norm(xhat, weight, bias, zero, one, False, 0.0, 0.0, False)
        ctx.save_for_backward(xhat, rstd, weight)  # xhat, not x: the same memory, fewer passes back
        return y.to(x.dtype)

    @staticmethod
    @first_order
    def backward(ctx, dy):
        if ctx.native:
            x, mean, rstd, weight = ctx.saved_tensors
            dx, g_xhat, g_one = layer2d.backward(dy.contiguous(), x, mean, rstd, kernels.vector(weight))
            return dx, g_xhat.sum(0) if weight is not None else None, g_one.sum(0) if ctx.has_bias else None, None
        xhat, rstd, weight = ctx.saved_tensors
        dy = upcast(dy)
        w = weight.detach().to(dy.dtype) if weight is not None else dy.new_ones(dy.shape[1])
        g_xhat, g_one = block_sums(dy, xhat, dy.shape[:2] + (1,) * (dy.dim() - 2))  # per sample and channel
        g_weight = g_xhat.sum(0).flatten() if weight is not None else None
        g_bias = g_one.sum(0).flatten() if ctx.has_bias else None
        scratch = torch.mul(dy, xhat)
        # With g = dy gamma: mean_C(g) and mean_C(g xhat), per sample and position.
        mean_g, mean_gx = _mean_channels(dy, w), _mean_channels(scratch, w)
        dx = torch.mul(dy, per_channel(w, dy, "nchw"), out=scratch)  # g, over the scratch
        dx.addcmul_(xhat, mean_gx, value=-1).sub_(mean_g).mul_(rstd)
        return dx.to(ctx.dtype), g_weight, g_bias, None


def _mean_channels(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean_C(weight * x) of (N, C, ...) as (N, 1, ...): a batched product, 3x faster than a
    reduction over dim 1 (0.3 against 1.0 ms, 32x64x32x32, one CPU thread). Not matmul: given a
    tensor that requires grad, it folds the batch with a copy."""
    n, c = x.shape[0], x.shape[1]
    w = weight if weight is not None else x.new_ones(c)
    return torch.bmm(w.view(1, 1, c).expand(n, 1, c), x.reshape(n, c, -1)).div_(c).view(n, 1, *x.shape[2:])

