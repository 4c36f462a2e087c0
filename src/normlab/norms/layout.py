"""The two tensor layouts every norm accepts.

``nchw``: images, ``(N, C, H, W)`` (any number of trailing spatial dims works).
``nlc``:  tokens, ``(N, L, C)``; channels last, as Transformers keep them.

Every norm takes the channel count first and a layout, so any norm can stand in for any
other (the calling convention of timm's ``create_norm``).
"""

from __future__ import annotations

import math

import torch

from normlab.errors import ConfigError

LAYOUTS = ("nchw", "nlc")


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}'. Fix: use one of {', '.join(LAYOUTS)}.")
    return layout


def channel_shape(x: torch.Tensor, layout: str) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector ``(C,)`` against ``x``."""
    if layout == "nlc":
        return (x.shape[-1],)
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def per_channel(p: torch.Tensor | None, x: torch.Tensor, layout: str) -> torch.Tensor | None:
    return None if p is None else p.view(channel_shape(x, layout))


def batch_dims(x: torch.Tensor, layout: str) -> tuple[int, ...]:
    """Axes of BatchNorm-style statistics: everything but the channels."""
    return (0, 1) if layout == "nlc" else (0,) + tuple(range(2, x.dim()))


def instance_dims(x: torch.Tensor, layout: str) -> tuple[int, ...]:
    """Axes of InstanceNorm-style statistics, per sample and channel: (H, W), or L for tokens."""
    return (1,) if layout == "nlc" else tuple(range(2, x.dim()))


def check_input(x: torch.Tensor, layout: str, num_channels: int, who: str) -> None:
    """Fail with a sentence, not with a shape error from deep inside a kernel."""
    if not x.is_floating_point():
        raise ConfigError(
            f"{who} expects floating-point input, got {x.dtype}. "
            f"Fix: convert it first (images: x.float() / 255, then standardize)."
        )
    if x.numel() == 0:
        raise ConfigError(f"{who} got an empty input of shape {tuple(x.shape)}. Fix: feed at least one sample.")
    if layout == "nlc":
        ok, want = x.dim() == 3 and x.shape[-1] == num_channels, f"(N, L, {num_channels})"
    else:
        ok, want = x.dim() >= 3 and x.shape[1] == num_channels, f"(N, {num_channels}, H, W)"
    if not ok:
        raise ConfigError(
            f"{who} expects input of shape {want} for layout '{layout}', got {tuple(x.shape)}. "
            f"Fix: check the layout the model passes to build_norm and the channel count."
        )


def spatial_size(x: torch.Tensor, layout: str) -> int:
    """Pixels per image (``nchw``) or tokens per sequence (``nlc``)."""
    return math.prod(x.shape[2:]) if layout == "nchw" else x.shape[1]


def check_statistics(x: torch.Tensor, count: int, who: str, over: str) -> None:
    """A mean and a variance need two or more values; over one, torch refuses from inside a kernel."""
    if count < 2:
        raise ConfigError(
            f"{who} takes statistics over {over}, and input of shape {tuple(x.shape)} leaves one value for each. "
            f"Fix: feed more pixels or tokens per sample, or use a norm over more axes (layer, or fewer groups)."
        )


def check_batch_statistics(x: torch.Tensor, layout: str, who: str) -> None:
    """Statistics across the batch need two or more values per channel.

    With one (a batch of one image of one pixel, or one token) the variance is zero, or 0/0
    for the unbiased running estimate, and torch fails deep inside a kernel.
    """
    channels = x.shape[-1] if layout == "nlc" else x.shape[1]
    if x.numel() // max(channels, 1) < 2:
        raise ConfigError(
            f"{who} takes statistics across the batch, and input of shape {tuple(x.shape)} has one value per "
            f"channel. Fix: use 2 or more samples per batch, or a norm that does not use the batch (group, layer)."
        )
