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

Fast path (``fast/evonorm_s0.py``): the layer with its backward in closed form, and on the CPU
a C loop per group.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: the statistics and
the sigmoid in fp32, x's gradients summed in fp32 and rounded to x's dtype once.

Deviation: The paper defines EvoNorm for images; the token axes (``nlc``) are normlab's reading of it.
"""

from __future__ import annotations

import torch
from torch import nn

from normlab.norms.fast.moments import moments
from normlab.norms.group import resolve_groups
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import per_channel
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

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        if self.v1 is None:
            return self.affine_only(x)
        g = self.num_groups
        if self.layout == "nlc":
            grouped_shape = (*x.shape[:-1], g, self.num_channels // g)  # (N, L, G, C/G)
        else:
            grouped_shape = (x.shape[0], g, -1)  # (N, G, C/G * H * W)
        # bf16/fp16 x as one fp32 copy: x's three uses give three gradients, which autograd would round
        # to x's dtype one by one and add in it; from the copy their fp32 sum is rounded once. fp32 x: x.
        xs = upcast(x)
        _, var = moments(xs.reshape(grouped_shape), (-1,))  # fp32, one pass each way
        v1 = per_channel(self.v1, x, self.layout)
        swish = xs * torch.sigmoid(xs * v1)
        rstd = torch.rsqrt(var + self.eps)
        if self.layout == "nchw":  # 1/std and gamma as one factor per (sample, channel): one pass, not two
            scale = per_group(rstd, x)
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


def per_group(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, G, 1) per group as (N, C, 1, ...) per channel of x (a copy of N * C values)."""
    n, g = t.shape[:2]
    c = x.shape[1]
    return t.view(n, g, 1).expand(n, g, c // g).reshape(n, c, *[1] * (x.dim() - 2))
