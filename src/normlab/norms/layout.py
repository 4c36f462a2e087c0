"""The two tensor layouts every norm accepts.

``nchw``: images, ``(N, C, H, W)`` (any number of trailing spatial dims works).
``nlc``:  tokens, ``(N, L, C)``; channels last, as Transformers keep them.

Every norm takes the channel count first and a layout, so any norm can stand in for any
other (the calling convention of timm's ``create_norm``).
"""

from __future__ import annotations

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


def check_input(x: torch.Tensor, layout: str, num_channels: int, who: str) -> None:
    """Fail with a sentence, not with a shape error from deep inside a kernel."""
    if layout == "nlc":
        ok, want = x.dim() == 3 and x.shape[-1] == num_channels, f"(N, L, {num_channels})"
    else:
        ok, want = x.dim() >= 3 and x.shape[1] == num_channels, f"(N, {num_channels}, H, W)"
    if not ok:
        raise ConfigError(
            f"{who} expects input of shape {want} for layout '{layout}', got {tuple(x.shape)}. "
            f"Fix: check the layout the model passes to build_norm and the channel count."
        )
