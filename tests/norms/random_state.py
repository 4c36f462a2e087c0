"""A norm layer with random parameters and running statistics, so no test passes by its init values."""

from __future__ import annotations

import torch
from torch import nn


def randomize(layer: nn.Module, seed: int | None = 0, params: bool = True) -> nn.Module:
    """Gains and biases in [0.5, 1.5], 1-d float buffers (running statistics) in [0.5, 2]."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        if params:
            for p in layer.parameters():
                p.uniform_(0.5, 1.5)
        for b in layer.buffers():
            if b.is_floating_point() and b.dim() == 1:
                b.uniform_(0.5, 2.0)
    return layer
