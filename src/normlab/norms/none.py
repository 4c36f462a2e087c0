"""No normalization: the baseline row of every comparison."""

from __future__ import annotations

from torch import nn


class NoNorm(nn.Identity):
    axes = {"nchw": "nothing", "nlc": "nothing"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw"):
        super().__init__()
        self.num_channels, self.layout = num_channels, layout
