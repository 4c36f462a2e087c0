"""Norms written outside normlab, as a researcher would: one that keeps the contract, and ones
that each break one part of it (the checks must say which, in one line)."""

from __future__ import annotations

import torch
from torch import nn


class PixelRMS(nn.Module):
    """RMS over the channels of each pixel or token, with a gain: batch-independent."""

    axes = {"nchw": "C per sample and pixel, uncentered", "nlc": "C per token, uncentered"}
    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-6):
        super().__init__()
        self.layout, self.eps = layout, eps
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = 1 if self.layout == "nchw" else -1
        shape = (1, -1) + (1,) * (x.dim() - 2) if self.layout == "nchw" else (-1,)
        return x * torch.rsqrt(x.square().mean(dim, keepdim=True) + self.eps) * self.weight.view(shape)


class NoAxes(nn.Identity):
    """Says nothing of what it reduces over."""

    batch_dependent = False

    def __init__(self, num_channels: int, layout: str = "nchw"):
        super().__init__()


class HidesTheBatch(PixelRMS):
    """Uses the batch's mean, and declares it does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - x.mean(0, keepdim=True))


class HalfPrecision(PixelRMS):
    """Returns bfloat16 whatever it is given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(torch.bfloat16)


class CountsInEval(PixelRMS):
    """Updates a buffer at every forward, eval mode too."""

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-6):
        super().__init__(num_channels, layout, eps)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        return super().forward(x)


class RequiredKnob(PixelRMS):
    """A knob without a default: ``build_norm(name, C, layout)`` cannot build it."""

    def __init__(self, num_channels: int, layout: str = "nchw", *, scale: float):
        super().__init__(num_channels, layout)


class ImagesOnly(PixelRMS):
    """Has a meaning for images only, and says so: the factory refuses it for tokens."""

    layouts = ("nchw",)
