"""LayerNorm over the channels at every position, ConvNeXt's ``LayerNorm2d`` (Liu et al., 2022,
"A ConvNet for the 2020s", Sec. 2.6), with LayerNorm's Eq. 4 (Ba, Kiros & Hinton, 2016).

    y = gamma * (x - mu) / sqrt(var + eps) + beta,  mu and var over C at each (n, h, w)

- ``nchw``: reduce over C, one mean/var per sample and pixel. Not ``layer``, which reduces
  over (C, H, W) per sample (GroupNorm with one group, ``group1``);
- ``nlc``:  reduce over C per token: exactly ``layer`` (a Transformer's LayerNorm).

For images the statistics come from one ``var_mean`` over the channel axis, read in place:
no permute to channels-last and back, which would copy the activation twice (timm's
LayerNorm2d permutes). On a channels-last tensor the same reduction is over contiguous memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, per_channel
from normlab.norms.precision import upcast


class LayerNorm2d(AffineNorm):
    axes = {"nchw": "C per sample and pixel", "nlc": "C per token"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-5, affine: bool = True):
        super().__init__(num_channels, layout, eps, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "LayerNorm2d")
        if self.layout == "nlc":
            return F.layer_norm(x, (self.num_channels,), self.weight, self.bias, self.eps)
        var, mu = torch.var_mean(upcast(x), 1, correction=0, keepdim=True)  # (N, 1, H, W)
        y = (x - mu) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)
