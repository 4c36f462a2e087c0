"""Switchable Normalization (Luo, Ren, Peng, Zhang & Li, 2018, "Differentiable Learning-to-
Normalize via Switchable Normalization";
authors' code: github.com/switchablenorms/Switchable-Normalization).

One mean and one variance per position, each a softmax-weighted mix of InstanceNorm's,
LayerNorm's and BatchNorm's statistics, with separate importance weights for the two:

    mu    = sum_k softmax(lambda_mean)_k * mu_k,   k in (in, ln, bn)
    var   = sum_k softmax(lambda_var)_k  * var_k
    y     = gamma * (x - mu) / sqrt(var + eps) + beta

- ``nchw``: IN over (H, W) per sample and channel, LN over (C, H, W) per sample, BN over
  (N, H, W) per channel. As in the paper, LN and BN statistics are computed from the IN
  ones (means of means, and E[x^2] - mu^2), so x is reduced only once.
- ``nlc``:  IN over L per sample and channel, LN over C per token, BN over (N, L) per channel.
  Here LN's axes do not contain IN's, so LN takes a second reduction over x, and the mixed
  mean and variance vary along every axis. Large token tensors take ``_SwitchableTokens``:
  with mu = P + Q and v = Pv + Qv, P and Pv per (sample, channel) (IN and BN), Q and Qv per
  token (LN), xhat = (x - mu) / sqrt(v) and t = dy gamma / sqrt(v),

      d mu = -t,   d v = -t xhat / (2 sqrt(v)),   dx = t + (the four moments' shares)

  summed over L for P, over C for Q: two activation-sized tensors forward, two backward.

The BN part keeps BatchNorm's running statistics (``running.py``: unbiased variance,
``momentum``) and uses them in eval mode; IN and LN use the sample's own statistics in every
mode (for tokens, IN's statistics span the sequence: a token sees later tokens in eval too).
The importance weights start equal (lambda = 0); ``mixing_weights()`` returns their softmax,
which ``MixingWeights`` (``normlab.callbacks.norm_stats``) logs at the end of every epoch.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.autograd import Function

from normlab.norms.fused import block_sums, first_order, moments, normalize, pool, raw_moments, use_fused
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, batch_moments, update_running

PARTS = ("in", "ln", "bn")


class SwitchableNorm(AffineNorm):
    axes = {
        "nchw": "mix of (H, W) per sample and channel, (C, H, W) per sample and (N, H, W) per channel",
        "nlc": "mix of L per sample and channel, C per token and (N, L) per channel",
    }
    batch_dependent = True
    instance_stats = True  # the IN part: per-sequence statistics over L in every mode (see models/gpt.py)
    no_weight_decay = ("mean_weight", "var_weight")  # decay would pull the mix towards uniform (tasks/optim.py)

    def __init__(
        self, num_channels: int, layout: str = "nchw", eps: float = 1e-5, momentum: float = 0.1, affine: bool = True
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum = momentum
        self.mean_weight = nn.Parameter(torch.zeros(len(PARTS)))  # the paper's lambda, for (in, ln, bn)
        self.var_weight = nn.Parameter(torch.zeros(len(PARTS)))
        add_running_stats(self, num_channels)

    def mixing_weights(self) -> dict[str, float]:
        """The softmax importance weights, e.g. ``{"mean/in": 0.2, ..., "var/bn": 0.5}``."""
        out = {}
        for stat, lam in (("mean", self.mean_weight), ("var", self.var_weight)):
            out.update({f"{stat}/{part}": float(w) for part, w in zip(PARTS, torch.softmax(lam.detach().float(), 0))})
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "SwitchableNorm")
        if self.layout == "nchw" and use_fused(x):
            # Large images: the three parts' statistics from the per-(sample, channel) moments,
            # one pass over x, and one scale and shift per (sample, channel) (fused.py): 8x native
            # GroupNorm through autograd at 32x64x32x32 (measured 2026-11-23), about 2x this way.
            coeffs = functools.partial(self._coeffs, x.numel() // self.num_channels)  # values per channel
            return normalize(x, instance_dims(x, "nchw"), coeffs, self.mean_weight, self.var_weight,
                             self.weight, self.bias)
        if self.layout == "nlc" and use_fused(x) and not torch.compiler.is_compiling():
            # Large token tensors: autograd through the mix keeps a dozen activation-sized
            # tensors, 3-4x native GroupNorm at 32x128x256 (measured 2026-11-29, one CPU thread).
            return _SwitchableTokens.apply(x, self._token_coeffs, self.weight, self.bias,
                                           self.mean_weight, self.var_weight)
        channel_dim = -1 if self.layout == "nlc" else 1
        dims = instance_dims(x, self.layout)
        # Statistics in fp32 (E[x^2] - mu^2 below would cancel badly in bf16), through fused.py's
        # moments: torch.var_mean took 12-15 ms on a 32x128x256 input, two passes 1.1 ms.
        mu_in, var_in = moments(x, dims)  # (N, C, 1, 1) or (N, 1, C)
        square_in = var_in + mu_in**2  # E[x^2] per sample and channel
        if self.layout == "nlc":
            mu_ln, var_ln = moments(x, (-1,))  # (N, L, 1)
        else:
            mu_ln = mu_in.mean(channel_dim, keepdim=True)  # (N, 1, 1, 1)
            var_ln = square_in.mean(channel_dim, keepdim=True) - mu_ln**2
        if self.training:
            mu_bn = mu_in.mean(0, keepdim=True)  # (1, C, 1, 1) or (1, 1, C)
            var_bn = square_in.mean(0, keepdim=True) - mu_bn**2
            update_running(self, mu_bn.flatten(), var_bn.flatten(), x.shape[0] * math.prod(x.shape[d] for d in dims))
        else:
            mu_bn = per_channel(self.running_mean, x, self.layout)
            var_bn = per_channel(self.running_var, x, self.layout)
        wm, wv = torch.softmax(self.mean_weight, 0), torch.softmax(self.var_weight, 0)
        mu = wm[0] * mu_in + wm[1] * mu_ln + wm[2] * mu_bn  # (N, C, 1, 1); (N, L, C) for tokens
        var = wv[0] * var_in + wv[1] * var_ln + wv[2] * var_bn
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * per_channel(self.weight, x, self.layout)
        # (x - mu) * scale + beta as x * scale + (beta - mu * scale): one pass over x for images.
        shift = -mu * scale
        if self.bias is not None:
            shift = shift + per_channel(self.bias, x, self.layout)
        return torch.addcmul(shift, x, scale).to(x.dtype)

    def _token_coeffs(self, m_in, v_in, m_ln, v_ln, mean_weight, var_weight):
        """(P, Q, Pv, Qv) of the mixed mean P + Q and variance Pv + Qv (eps in Qv) from the
        per-(sample, channel) moments (N, 1, C) and the per-token ones (N, L, 1)."""
        m_bn, v_bn = batch_moments(self, m_in, v_in, m_in.shape[0] * m_ln.shape[1], "nlc")  # (1, 1, C)
        wm, wv = torch.softmax(mean_weight, 0), torch.softmax(var_weight, 0)
        return (wm[0] * m_in + wm[2] * m_bn, wm[1] * m_ln,
                wv[0] * v_in + wv[2] * v_bn, wv[1] * v_ln + self.eps)

    def _coeffs(self, count, mean, var, mean_weight, var_weight, weight, bias):
        mu_ln, var_ln = pool(mean, var, (1,))  # (N, 1, 1, 1); mean, var: IN's (N, C, 1, 1)
        mu_bn, var_bn = batch_moments(self, mean, var, count, "nchw")  # (1, C, 1, 1)
        wm, wv = torch.softmax(mean_weight, 0), torch.softmax(var_weight, 0)
        mu = wm[0] * mean + wm[1] * mu_ln + wm[2] * mu_bn
        scale = torch.rsqrt(wv[0] * var + wv[1] * var_ln + wv[2] * var_bn + self.eps)
        if weight is not None:
            scale = scale * per_channel(weight, mean, "nchw")
        shift = -mu * scale
        return scale, shift if bias is None else shift + per_channel(bias, mean, "nchw")


class _SwitchableTokens(Function):
    """SwitchableNorm on (N, L, C) tokens, statistics in fp32 at least; ``coeffs`` maps the IN
    and LN moments to (P, Q, Pv, Qv) and is differentiated as a small graph in backward."""

    @staticmethod
    def forward(ctx, x, coeffs, weight, bias, *params):
        xs = upcast(x)
        m_in, v_in = raw_moments(xs, (1,))  # (N, 1, C)
        m_ln, v_ln = raw_moments(xs, (2,))  # (N, L, 1)
        with torch.enable_grad():  # the small graph from the moments to (P, Q, Pv, Qv), for backward
            stats = [t.detach().requires_grad_() for t in (m_in, v_in, m_ln, v_ln)]
            leaves = [t.detach().requires_grad_(t.requires_grad) for t in params]
            mixed = coeffs(*stats, *leaves)
        p, q, pv, qv = (t.detach() for t in mixed)
        xhat = torch.sub(xs, p).sub_(q)
        rstd = torch.add(pv, qv).rsqrt_()
        xhat.mul_(rstd)
        if weight is not None:
            y = (
                torch.mul(xhat, weight.detach())
                if bias is None
                else torch.addcmul(bias.detach(), xhat, weight.detach())
            )
        else:
            y = xhat.add(bias.detach()) if bias is not None else xhat.clone()
        ctx.save_for_backward(x, xhat, rstd, weight)
        ctx.graph, ctx.bias_dtype = (stats, leaves, mixed), bias.dtype if bias is not None else None
        return y.to(x.dtype)

    @staticmethod
    @first_order
    def backward(ctx, dy):
        x, xhat, rstd, weight = ctx.saved_tensors
        stats, leaves, mixed = ctx.graph
        xs, dy = upcast(x), upcast(dy)
        g_xhat, g_one = block_sums(dy, xhat, (1, 1, x.shape[2]))  # per channel: sum(dy xhat), sum(dy)
        t = torch.mul(dy, weight.detach()) if weight is not None else dy.clone()
        t.mul_(rstd)  # dy gamma / sqrt(v): d y / d x at fixed statistics
        u = torch.mul(t, xhat).mul_(rstd)  # -2 d v
        grads = [t.sum(1, keepdim=True).neg_(), t.sum(2, keepdim=True).neg_(),
                 u.sum(1, keepdim=True).mul_(-0.5), u.sum(2, keepdim=True).mul_(-0.5)]
        learned = [t for t in leaves if t.requires_grad]
        found = torch.autograd.grad(mixed, [*stats, *learned], grads, allow_unused=True, retain_graph=True)
        # Each moment's share of dx: d mean / dx = 1 / n, d var / dx = 2 (x - mean) / n.
        for (mean, _), g_mean, g_var, n in ((stats[:2], *found[:2], x.shape[1]), (stats[2:], *found[2:4], x.shape[2])):
            g_mean = g_mean if g_mean is not None else torch.zeros_like(mean)
            g_var = g_var if g_var is not None else torch.zeros_like(mean)
            slope = g_var * (2.0 / n)
            t.addcmul_(xs, slope).add_(g_mean / n - slope * mean.detach())
        by_leaf = iter(found[4:])
        g_params = [next(by_leaf) if t.requires_grad else None for t in leaves]
        g_weight = g_xhat.flatten().to(weight.dtype) if weight is not None else None
        g_bias = g_one.flatten().to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
        return (t.to(x.dtype), None, g_weight, g_bias, *g_params)
