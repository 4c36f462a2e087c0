"""No normalization: the baseline row of every comparison."""

from __future__ import annotations

import torch
from torch import nn

from normlab.norms.layout import check_input


class NoNorm(nn.Identity):
    axes = {"nchw": "nothing", "nlc": "nothing"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw"):
        super().__init__()
        self.num_channels, self.layout = num_channels, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "NoNorm")  # the same input contract as every norm
        return x
