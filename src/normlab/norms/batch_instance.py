"""Batch-Instance Normalization (Nam & Kim, 2018, "Batch-Instance Normalization for Adaptively
Style-Invariant Neural Networks";
authors' code: github.com/hyeonseob-nam/Batch-Instance-Normalization).

    x_B = (x - mu_B) / sqrt(var_B + eps)      BatchNorm's standardization
    x_I = (x - mu_I) / sqrt(var_I + eps)      InstanceNorm's
    y   = (rho * x_B + (1 - rho) * x_I) * gamma + beta,   rho in [0, 1] per channel

- ``nchw``: BN part over (N, H, W) per channel, IN part over (H, W) per sample and channel;
- ``nlc``:  BN part over (N, L) per channel, IN part over L per sample and channel (so a
  token sees later tokens, in training and in eval).

rho is learned and kept in [0, 1] by projection, clipped after every
update: at the start of each training forward, before it is used, rho is clipped in place
(which is the clip after the previous optimizer step); eval mode uses the clipped value without
writing it. It starts at 1, pure BatchNorm, and learns at ``rho_lr`` = 10 times the learning
rate with no weight decay, as in the authors' code (main.py: ``--bin-lr 10``). The BN part keeps running
statistics and uses them in eval mode; the IN part always uses the sample's own.

Both parts come from native kernels with their share of gamma folded in
(weight = gamma * rho for BN, gamma * (1 - rho) for IN), so the mix is a single add. Fast path
for large inputs (``fast/batch_instance.py``): both parts' statistics from the per-(sample,
channel) moments in one pass, mixed as one scale and shift per (sample, channel).

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on both paths: both parts, their
mix and the affine in fp32, the output rounded once to x's dtype; the gradients of x and of a
bf16 layer's gamma and rho summed in fp32 and rounded once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_statistics, spatial_size
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, batch_norm


class BatchInstanceNorm(AffineNorm):
    axes = {
        "nchw": "(N, H, W) per channel, mixed with (H, W) per sample and channel",
        "nlc": "(N, L) per channel, mixed with L per sample and channel",
    }
    batch_dependent = True
    instance_stats = True  # the IN part: per-sequence statistics over L in every mode (see models/gpt.py)
    no_weight_decay = ("rho",)  # decay would pull the gate towards pure InstanceNorm (tasks/optim.py)

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        rho_lr: float = 10.0,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum = momentum
        # The authors train the gate at 10x the learning rate (main.py, --bin-lr 10, no weight
        # decay): a factor on the learning rate, applied by the optimizer's groups (tasks/optim.py).
        self.lr_scale = {"rho": rho_lr}
        self.rho = nn.Parameter(torch.ones(num_channels))
        add_running_stats(self, num_channels)

    def gate(self) -> torch.Tensor:
        """rho, projected onto [0, 1]."""
        if self.training:
            self.rho.data.clamp_(0.0, 1.0)  # the clip after the last step; not an autograd op
            return self.rho
        return self.rho.clamp(0.0, 1.0)

    def mixing_weights(self) -> dict[str, float]:
        """Mean share of the BN part over channels (logged by ``MixingWeights``)."""
        return {"rho_mean": float(self.rho.detach().clamp(0.0, 1.0).mean())}

    def check(self, x: torch.Tensor) -> None:
        check_statistics(x, spatial_size(x, self.layout), "BatchInstanceNorm", "the pixels or tokens of each sample")

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        # bf16/fp16 x and parameters as one fp32 copy each: both parts and their sum in fp32, rounded to
        # x's dtype once; x's two gradients, and gamma's and rho's, added in fp32. fp32: x and the parameters.
        xs, rho, gamma = upcast(x), upcast(self.gate()), upcast(self.weight)
        w_bn, w_in = (rho, 1 - rho) if gamma is None else (gamma * rho, gamma * (1 - rho))
        y_bn = batch_norm(self, xs, w_bn, upcast(self.bias), self.momentum)
        if self.layout == "nlc":
            y_in = F.instance_norm(xs.transpose(1, 2), weight=w_in, eps=self.eps).transpose(1, 2)  # over L
        else:
            y_in = F.instance_norm(xs, weight=w_in, eps=self.eps)
        return (y_bn + y_in).to(x.dtype)
