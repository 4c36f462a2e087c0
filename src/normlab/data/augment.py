"""Augmentation on whole batches: random crop with zero padding, horizontal flip.

Each image gets its own offsets and flip, drawn from torch's RNG (so ``seed`` fixes them), and
the crop is a single gather over the padded batch, on whatever device the batch lives on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy).expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, rows)  # (N, C, H, W + 2 pad)
    cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx).expand(n, c, h, w)
    return out.gather(3, cols)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(3), x)


def augment(x: torch.Tensor, crop_pad: int = 0, flip: bool = False) -> torch.Tensor:
    x = random_crop(x, crop_pad)
    return random_flip(x) if flip else x
