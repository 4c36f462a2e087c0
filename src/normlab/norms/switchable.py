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
  mean and variance vary along every axis.

Fast paths for large inputs (``fast/switchable.py``): images from the per-(sample, channel)
moments, one pass each way; tokens with the mix differentiated in closed form.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: the three parts'
statistics, their importance weights and the mix in fp32, the output rounded once to x's dtype,
x's gradients summed in fp32 and rounded once.

The BN part keeps BatchNorm's running statistics (``running.py``: unbiased variance,
``momentum``) and uses them in eval mode; IN and LN use the sample's own statistics in every
mode (for tokens, IN's statistics span the sequence: a token sees later tokens in eval too).
The importance weights start equal (lambda = 0); ``mixing_weights()`` returns their softmax,
which ``MixingWeights`` (``normlab.callbacks.norm_stats``) logs at the end of every epoch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from normlab.norms.fast.moments import moments
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, update_running

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

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        channel_dim = -1 if self.layout == "nlc" else 1
        dims = instance_dims(x, self.layout)
        # bf16/fp16 x as one fp32 copy: statistics in fp32 (E[x^2] - mu^2 below would cancel badly in
        # bf16), and x's gradients (through each part's moments and the scale) added in fp32 and rounded
        # once, not each rounded to x's dtype. fp32 x: x. One pass each way.
        xs = upcast(x)
        mu_in, var_in = moments(xs, dims)  # (N, C, 1, 1) or (N, 1, C)
        square_in = var_in + mu_in**2  # E[x^2] per sample and channel
        if self.layout == "nlc":
            mu_ln, var_ln = moments(xs, (-1,))  # (N, L, 1)
        else:
            mu_ln = mu_in.mean(channel_dim, keepdim=True)  # (N, 1, 1, 1)
            var_ln = square_in.mean(channel_dim, keepdim=True) - mu_ln**2
        if self.training:
            mu_bn = mu_in.mean(0, keepdim=True)  # (1, C, 1, 1) or (1, 1, C)
            var_bn = square_in.mean(0, keepdim=True) - mu_bn**2
            update_running(self, mu_bn.flatten(), var_bn.flatten(), x.shape[0] * math.prod(x.shape[d] for d in dims))
        else:
            # A bf16 layer's in fp32: times a 0-dim fp32 weight below, a bf16 tensor would stay bf16.
            mu_bn = per_channel(upcast(self.running_mean), x, self.layout)
            var_bn = per_channel(upcast(self.running_var), x, self.layout)
        wm, wv = importance(self.mean_weight), importance(self.var_weight)
        mu = wm[0] * mu_in + wm[1] * mu_ln + wm[2] * mu_bn  # (N, C, 1, 1); (N, L, C) for tokens
        var = wv[0] * var_in + wv[1] * var_ln + wv[2] * var_bn
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * per_channel(self.weight, x, self.layout)
        # (x - mu) * scale + beta as x * scale + (beta - mu * scale): one pass over x for images.
        shift = -mu * scale
        if self.bias is not None:
            shift = shift + per_channel(self.bias, x, self.layout)
        return torch.addcmul(shift, xs, scale).to(x.dtype)


def importance(lam: torch.Tensor) -> torch.Tensor:
    """softmax(lambda), the three parts' weights; in fp32 for a layer cast to bf16, not rounded before the mix."""
    return torch.softmax(upcast(lam), 0)
