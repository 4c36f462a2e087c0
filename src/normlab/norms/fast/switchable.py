"""SwitchableNorm's fast paths for large inputs.

Images: the three parts' statistics from the per-(sample, channel) moments, one pass over x, and
one scale and shift per (sample, channel) (``normalize.py``); autograd through the formula's mix
makes a pass per op.

Tokens (``_SwitchableTokens``): LN's axes (C per token) do not contain IN's, so the mixed mean
and variance vary along every axis. With mu = P + Q and v = Pv + Qv, P and Pv per (sample,
channel) (IN and BN), Q and Qv per token (LN), xhat = (x - mu) / sqrt(v) and t = dy gamma / sqrt(v),

    d mu = -t,   d v = -t xhat / (2 sqrt(v)),   dx = t + (the four moments' shares)

summed over L for P, over C for Q: two activation-sized tensors forward, two backward, where
autograd through the mix keeps a dozen.
"""

from __future__ import annotations

import functools

import torch
from torch.autograd import Function

from normlab.norms.fast import fast_path, first_order, use_fused
from normlab.norms.fast.moments import pool, raw_moments
from normlab.norms.fast.normalize import block_sums, normalize
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import batch_moments
from normlab.norms.switchable import SwitchableNorm, importance


@fast_path(SwitchableNorm)
def switchable(layer: SwitchableNorm, x: torch.Tensor) -> torch.Tensor | None:
    if not use_fused(x):
        return None
    if layer.layout == "nlc":
        coeffs = functools.partial(_token_coeffs, layer)
        return _SwitchableTokens.apply(x, coeffs, layer.weight, layer.bias, layer.mean_weight, layer.var_weight)
    coeffs = functools.partial(_coeffs, layer, x.numel() // layer.num_channels)  # values per channel
    params = (layer.mean_weight, layer.var_weight, layer.weight, layer.bias)
    return normalize(x, instance_dims(x, "nchw"), coeffs, *params)


def _token_coeffs(layer, m_in, v_in, m_ln, v_ln, mean_weight, var_weight):
    """(P, Q, Pv, Qv) of the mixed mean P + Q and variance Pv + Qv (eps in Qv) from the
    per-(sample, channel) moments (N, 1, C) and the per-token ones (N, L, 1)."""
    m_bn, v_bn = batch_moments(layer, m_in, v_in, m_in.shape[0] * m_ln.shape[1], "nlc")  # (1, 1, C)
    wm, wv = importance(mean_weight), importance(var_weight)
    return (wm[0] * m_in + wm[2] * m_bn, wm[1] * m_ln, wv[0] * v_in + wv[2] * v_bn, wv[1] * v_ln + layer.eps)


def _coeffs(layer, count, mean, var, mean_weight, var_weight, weight, bias):
    mu_ln, var_ln = pool(mean, var, (1,))  # (N, 1, 1, 1); mean, var: IN's (N, C, 1, 1)
    mu_bn, var_bn = batch_moments(layer, mean, var, count, "nchw")  # (1, C, 1, 1)
    wm, wv = importance(mean_weight), importance(var_weight)
    mu = wm[0] * mean + wm[1] * mu_ln + wm[2] * mu_bn
    scale = torch.rsqrt(wv[0] * var + wv[1] * var_ln + wv[2] * var_bn + layer.eps)
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
        grads = [
            t.sum(1, keepdim=True).neg_(),
            t.sum(2, keepdim=True).neg_(),
            u.sum(1, keepdim=True).mul_(-0.5),
            u.sum(2, keepdim=True).mul_(-0.5),
        ]
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
