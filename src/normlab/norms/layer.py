"""Layer Normalization (Ba, Kiros & Hinton, 2016, "Layer Normalization", Eq. 3: the statistics).

    y = gamma * (x - mu) / sqrt(var + eps) + beta,  mu and var over the features of one sample

- ``nlc``:  reduce over C, one mean/var per token (the Transformer LayerNorm);
- ``nchw``: reduce over (C, H, W), one mean/var per sample (the LN column of the GroupNorm
  paper, Wu & He 2018, Fig. 2).

gamma and beta are per channel in both layouts. For ``nchw`` this is exactly GroupNorm with
one group, so the native group-norm kernel is used; ``nn.LayerNorm([C, H, W])`` would instead
learn one gamma per element and tie the layer to one image size. The identity
GN(G=1) == LN(C, H, W) is checked in the tests against ``F.layer_norm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms import fast, precision
from normlab.norms.layout import check_input, check_layout, check_statistics, per_channel, spatial_size


class AffineNorm(nn.Module):
    """Shared plumbing: per-channel gamma (ones) and beta (zeros), a layout and an eps.

    A subclass writes its paper's formula as ``formula(x)``, in plain PyTorch. ``forward`` checks
    x, then runs the layer's fast path where one is registered and applies (``norms/fast/``),
    else the formula; both compute the same function (tests/norms/test_fused.py).
    """

    def __init__(self, num_channels: int, layout: str, eps: float, affine: bool, bias: bool = True):
        super().__init__()
        self.num_channels, self.layout, self.eps = num_channels, check_layout(layout), eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, type(self).__name__)
        self.check(x)
        y = fast.run(self, x)
        return self.formula(x) if y is None else y

    def check(self, x: torch.Tensor) -> None:
        """What the formula needs of x beyond its shape (enough values per statistic): a ConfigError."""

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} writes its paper's formula as formula(x)")

    def affine_only(self, x: torch.Tensor) -> torch.Tensor:
        """gamma x + beta, per channel: a normalization-activation layer's form without its activation."""
        if self.weight is not None and self.bias is not None:
            return torch.addcmul(per_channel(self.bias, x, self.layout), x, per_channel(self.weight, x, self.layout))
        y = x if self.weight is None else x * per_channel(self.weight, x, self.layout)
        return y if self.bias is None else y + per_channel(self.bias, x, self.layout)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, layout={self.layout}, eps={self.eps}, affine={self.weight is not None}"


class LayerNorm(AffineNorm):
    axes = {"nchw": "(C, H, W) per sample", "nlc": "C per token"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-5, affine: bool = True):
        super().__init__(num_channels, layout, eps, affine)

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "nlc":
            return precision.layer_norm(x, self.num_channels, self.weight, self.bias, self.eps)
        check_statistics(x, self.num_channels * spatial_size(x, "nchw"), "LayerNorm", self.axes["nchw"])
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)
