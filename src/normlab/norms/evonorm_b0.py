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
variance from them by the law of total variance, var_B = mean_n(var_n) + var_n(mean_n). Fast
path for large inputs (``fast/evonorm_b0.py``): the layer with its backward in closed form.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: the statistics,
the max and its mask in fp32, x's gradients summed in fp32 and rounded to x's dtype once.

Deviation: The paper defines EvoNorm for images; the token axes (``nlc``) are normlab's reading of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms.fast.moments import moments
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, update_running


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

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        if self.v1 is None:
            return self.affine_only(x)
        dims = instance_dims(x, self.layout)
        # bf16/fp16 x as one fp32 copy: x's three uses give three gradients, which autograd would round
        # to x's dtype one by one and add in it; from the copy their fp32 sum is rounded once. fp32 x: x.
        xs = upcast(x)
        mu_i, var_i = moments(xs, dims)  # (N, C, 1, 1) or (N, 1, C); fp32, one pass each way
        if self.training:
            between, mu_b = torch.var_mean(mu_i, 0, correction=0, keepdim=True)  # over the samples
            var_b = var_i.mean(0, keepdim=True) + between  # law of total variance
            update_running(self, mu_b.flatten(), var_b.flatten(), x.shape[0] * math.prod(x.shape[d] for d in dims))
        else:
            var_b = per_channel(upcast(self.running_var), x, self.layout)  # a bf16 layer's, in fp32
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
