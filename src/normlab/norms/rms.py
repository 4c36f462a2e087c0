"""Root Mean Square Layer Normalization (Zhang & Sennrich, 2019, Eq. 4).

    y = gamma * x / sqrt(mean(x^2) + eps)   (+ beta if ``bias=True``)

LayerNorm without the centering: the same axes as ``LayerNorm``, no mean subtracted.

- ``nlc``:  mean of squares over C, per token;
- ``nchw``: mean of squares over (C, H, W), per sample.

The paper has a gain only; ``bias`` is off by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, per_channel


class RMSNorm(AffineNorm):
    axes = {"nchw": "(C, H, W) per sample, uncentered", "nlc": "C per token, uncentered"}
    batch_dependent = False

    def __init__(
        self, num_channels: int, layout: str = "nchw", eps: float = 1e-6, affine: bool = True, bias: bool = False
    ):
        super().__init__(num_channels, layout, eps, affine, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "RMSNorm")
        if self.layout == "nlc":
            y = F.rms_norm(x, (self.num_channels,), self.weight, self.eps)
            return y if self.bias is None else y + self.bias
        y = F.rms_norm(x, x.shape[1:], None, self.eps)
        if self.weight is None:
            return y
        w, b = per_channel(self.weight, x, self.layout), per_channel(self.bias, x, self.layout)
        return y * w if b is None else torch.addcmul(b, y, w)
