"""Conditional Instance Normalization (Dumoulin, Shlens & Kudlur, 2017, "A Learned
Representation for Artistic Style"): InstanceNorm with one (gamma, beta) per style.

    y = gamma_s * (x - mu) / sqrt(var + eps) + beta_s,   s = the current style index

- ``nchw``: statistics over (H, W) per sample and channel, as ``instance``;
- ``nlc``:  over the L tokens of each sequence and channel (a token sees later tokens).

The factory's layers take one input, so the style is state: ``num_styles`` rows of gamma
(ones) and beta (zeros), and a style index (default 0) set with ``layer.style = s`` or, for
every such layer of a model, ``set_style(model, s)``. With ``num_styles=1`` it is ``instance``.

AdaIN (Huang & Belongie, 2017) is the limit where gamma and beta are not learned but taken
from a second input, a style image's features; it needs that input in ``forward`` and so is
not a factory norm: it is the function ``normlab.norms.adain.adain(content, style)``, for the
style task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_statistics, spatial_size


class CondInstanceNorm(AffineNorm):
    axes = {"nchw": "(H, W) per sample and channel", "nlc": "L per sample and channel"}
    batch_dependent = False
    instance_stats = True  # per-sequence statistics over L in every mode (see models/gpt.py)

    def __init__(self, num_channels: int, layout: str = "nchw", num_styles: int = 1, eps: float = 1e-5):
        super().__init__(num_channels, layout, eps, affine=False)
        if num_styles < 1:
            raise ConfigError(f"CondInstanceNorm with num_styles={num_styles}. Fix: set norm.num_styles to 1 or more.")
        self.num_styles = num_styles
        self.style_weight = nn.Parameter(torch.ones(num_styles, num_channels))  # gamma_s, one row per style
        self.style_bias = nn.Parameter(torch.zeros(num_styles, num_channels))  # beta_s
        self._style = 0

    @property
    def style(self) -> int:
        return self._style

    @style.setter
    def style(self, s: int) -> None:
        if not 0 <= s < self.num_styles:
            raise ConfigError(
                f"style {s} of a layer with num_styles={self.num_styles}. "
                f"Fix: pick a style in 0..{self.num_styles - 1}."
            )
        self._style = int(s)

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        check_statistics(x, spatial_size(x, self.layout), "CondInstanceNorm", "the pixels or tokens of each sample")
        w, b = self.style_weight[self._style], self.style_bias[self._style]  # (C,) views
        if self.layout == "nlc":
            return F.instance_norm(x.transpose(1, 2), weight=w, bias=b, eps=self.eps).transpose(1, 2)  # over L
        return F.instance_norm(x, weight=w, bias=b, eps=self.eps)

    def extra_repr(self) -> str:
        base = f"{self.num_channels}, layout={self.layout}, eps={self.eps}"
        return base + f", num_styles={self.num_styles}, style={self._style}"


def set_style(model: nn.Module, s: int) -> int:
    """Set the style of every conditional instance norm in ``model``; returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, CondInstanceNorm)]
    for m in layers:
        m.style = s
    return len(layers)
