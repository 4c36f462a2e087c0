"""LayerNorm over the channels at every position, ConvNeXt's ``LayerNorm2d`` (Liu et al., 2022,
"A ConvNet for the 2020s", Sec. 2.6), with LayerNorm's statistics, Eq. 3 (Ba, Kiros & Hinton, 2016).

    y = gamma * (x - mu) / sqrt(var + eps) + beta,  mu and var over C at each (n, h, w)

- ``nchw``: reduce over C, one mean/var per sample and pixel. Not ``layer``, which reduces
  over (C, H, W) per sample (GroupNorm with one group, ``group1``);
- ``nlc``:  reduce over C per token: ``layer`` (a Transformer's LayerNorm), with eps 1e-6.

Images in channels-last memory (``trainer.channels_last=true``) are (N, H, W, C) rows already:
LayerNorm's native kernel runs on the permuted view, no copy. Contiguous NCHW images are not
permuted (timm's LayerNorm2d does, which copies the activation twice each way): they are
reduced over the channel axis where they lie, in the formula and, faster, in the fast path
(``fast/layer2d.py``: LayerNorm's backward in closed form, and on the CPU a C loop).

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path, rows of channels
(tokens, channels-last images) given to ``F.layer_norm`` too: statistics, gamma and beta in fp32,
the output rounded once to x's dtype, x's gradient summed in fp32 and rounded once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import per_channel
from normlab.norms.precision import upcast


class LayerNorm2d(AffineNorm):
    axes = {"nchw": "C per sample and pixel", "nlc": "C per token"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-6, affine: bool = True):
        # eps 1e-6: ConvNeXt's and timm's LayerNorm2d (PyTorch's LayerNorm default is 1e-5).
        super().__init__(num_channels, layout, eps, affine)

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "nlc":
            return self.over_rows(x)
        if channels_last(x):
            return self.over_rows(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # views: the kernel on the rows
        # bf16/fp16 x as one fp32 copy: x's two gradients (through the statistics and through x - mu)
        # added in fp32 and rounded once, not each rounded to x's dtype. fp32 x: x.
        xs = upcast(x)
        var, mu = torch.var_mean(xs, 1, correction=0, keepdim=True)  # (N, 1, H, W)
        y = (xs - mu) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)

    def over_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """LayerNorm's native kernel over the last dim (C). bf16/fp16 rows as an fp32 copy, the output
        rounded once: given bf16, the CPU kernel's gradients are off by more than one rounding. fp32: rows."""
        w, b = upcast(self.weight), upcast(self.bias)
        return F.layer_norm(upcast(rows), (self.num_channels,), w, b, self.eps).to(rows.dtype)


def channels_last(x: torch.Tensor) -> bool:
    """Whether x is an image in channels-last memory: (N, H, W, C) rows of channels."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
