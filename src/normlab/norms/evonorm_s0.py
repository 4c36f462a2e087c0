"""EvoNorm-S0 (Liu, Brock, Simonyan & Le, 2020, "Evolving Normalization-Activation Layers",
Fig. 1 and Table 1), a normalization and an activation in one layer, batch-independent:

    y = x * sigmoid(v1 * x) / sqrt(s2_group(x) + eps) * gamma + beta

The numerator is a Swish with a learned slope v1 per channel (initialised to ones); the
denominator is GroupNorm's std (biased variance, no centering of the numerator).

- ``nchw``: s2_group over (C/G, H, W) per sample and group;
- ``nlc``:  over the C/G channels of each group, per token (GroupNorm's token axes).

``num_groups`` and ``group_size`` work as for ``group``; the paper uses 32 groups.
"""

from __future__ import annotations

import torch
from torch import nn

from normlab.norms.fused import moments
from normlab.norms.group import resolve_groups
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, per_channel


class EvoNormS0(AffineNorm):
    axes = {"nchw": "(C/G, H, W) per sample and group", "nlc": "C/G per token and group"}
    batch_dependent = False

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        num_groups: int | None = 8,
        group_size: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.num_groups = resolve_groups(num_channels, num_groups, group_size)
        self.v1 = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "EvoNormS0")
        g = self.num_groups
        if self.layout == "nlc":
            grouped_shape = (*x.shape[:-1], g, self.num_channels // g)  # (N, L, G, C/G)
        else:
            grouped_shape = (x.shape[0], g, -1)  # (N, G, C/G * H * W)
        _, var = moments(x.reshape(grouped_shape), (-1,))  # fp32, one pass each way (fused.py)
        v1 = per_channel(self.v1, x, self.layout)
        swish = x * torch.sigmoid(x * v1)
        rstd = torch.rsqrt(var + self.eps)
        if self.layout == "nchw":  # 1/std and gamma as one factor per (sample, channel): one pass, not two
            scale = rstd.repeat_interleave(self.num_channels // g, dim=1).view(x.shape[0], -1, *[1] * (x.dim() - 2))
            if self.weight is None:
                return (swish * scale).to(x.dtype)
            gamma, beta = per_channel(self.weight, x, self.layout), per_channel(self.bias, x, self.layout)
            return torch.addcmul(beta, swish, scale * gamma).to(x.dtype)
        y = (swish.reshape(grouped_shape) * rstd).view_as(x)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_groups={self.num_groups}"
