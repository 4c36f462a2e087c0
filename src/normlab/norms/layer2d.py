"""LayerNorm over the channels at every position, ConvNeXt's ``LayerNorm2d`` (Liu et al., 2022,
"A ConvNet for the 2020s", Sec. 2.6), with LayerNorm's Eq. 4 (Ba, Kiros & Hinton, 2016).

    y = gamma * (x - mu) / sqrt(var + eps) + beta,  mu and var over C at each (n, h, w)

- ``nchw``: reduce over C, one mean/var per sample and pixel. Not ``layer``, which reduces
  over (C, H, W) per sample (GroupNorm with one group, ``group1``);
- ``nlc``:  reduce over C per token: exactly ``layer`` (a Transformer's LayerNorm).

Images in channels-last memory (``trainer.channels_last=true``) are (N, H, W, C) rows already:
LayerNorm's native kernel runs on the permuted view, no copy. Contiguous NCHW images are not
permuted (timm's LayerNorm2d does, which copies the activation twice each way): their
statistics are reduced over the channel axis in place, with ``fused.py`` for large inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.fused import normalize, use_fused
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
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = F.layer_norm(x.permute(0, 2, 3, 1), (self.num_channels,), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)  # a view: the native kernel on the channels-last rows
        if use_fused(x):
            # Large images: the per-pixel statistics in two passes and the standardization in one
            # (fused.py), then gamma and beta per channel. torch.var_mean over C took 14 ms on a
            # 32x64x32x32 input (measured 2026-11-23), and permuting to channels-last for
            # F.layer_norm costs two copies each way: 6x native GroupNorm.
            y = normalize(x, (1,), self._standardize)
        else:
            var, mu = torch.var_mean(upcast(x), 1, correction=0, keepdim=True)  # (N, 1, H, W)
            y = (x - mu) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)

    def _standardize(self, mean, var):
        scale = torch.rsqrt(var + self.eps)  # (N, 1, H, W)
        return scale, -mean * scale
