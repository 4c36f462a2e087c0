"""PyTorch's own layer computing what a normlab norm computes, where there is one.

``native(layer)`` builds it from a normlab layer (same knobs, a copy of its parameters), so the
benchmark compares two implementations of one function; ``tests/test_bench.py`` checks that
both give the same output. ``None``: PyTorch has no such layer, and the norm is held to
native GroupNorm instead.

Tokens ``(N, L, C)``: the native layers want channels second, so the wrapper does what a
PyTorch user would: BatchNorm and GroupNorm see the ``(N * L, C)`` rows (a view),
InstanceNorm the transposed ``(N, C, L)`` (a copy, and one back).
"""

from __future__ import annotations

import torch
from torch import nn


class Rows(nn.Module):
    """``(N, L, C)`` as ``(N * L, C)`` rows: a view, no copy."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.reshape(-1, x.shape[-1])).view_as(x)


class ChannelsSecond(nn.Module):
    """``(N, L, C)`` as ``(N, C, L)`` for the instance-norm kernels, and back."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


def _copy_affine(dst: nn.Module, weight, bias) -> nn.Module:
    with torch.no_grad():
        if weight is not None:
            dst.weight.copy_(weight)
        if bias is not None:
            dst.bias.copy_(bias)
    return dst


def _batch(m, tokens):
    cls = nn.BatchNorm1d if tokens else nn.BatchNorm2d
    layer = _copy_affine(cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats), m.weight, m.bias)
    return Rows(layer) if tokens else layer


def _group(m, tokens, groups=None):
    layer = nn.GroupNorm(groups or m.num_groups, m.num_channels, m.eps, m.weight is not None)
    layer = _copy_affine(layer, m.weight, m.bias)
    return Rows(layer) if tokens else layer


def _layer(m, tokens):
    if not tokens:  # (C, H, W) per sample with per-channel gamma: GroupNorm with one group
        return _group(m, tokens, groups=1)
    return _copy_affine(nn.LayerNorm(m.num_channels, m.eps, m.weight is not None), m.weight, m.bias)


def _instance(m, tokens, weight=None, bias=None):
    cls = nn.InstanceNorm1d if tokens else nn.InstanceNorm2d
    affine = weight is not None or getattr(m, "weight", None) is not None
    layer = cls(m.num_channels, m.eps, getattr(m, "momentum", 0.1), affine, getattr(m, "track_running_stats", False))
    layer = _copy_affine(layer, weight if weight is not None else m.weight, bias if bias is not None else m.bias)
    return ChannelsSecond(layer) if tokens else layer


def _cond_instance(m, tokens):
    return _instance(m, tokens, m.style_weight[m.style], m.style_bias[m.style])


def _rms(m, tokens):
    if not tokens or m.bias is not None:  # over (C, H, W) with per-channel gamma: no such layer
        return None
    layer = nn.RMSNorm(m.num_channels, m.eps, m.weight is not None)
    return _copy_affine(layer, m.weight, None)


def _layer2d(m, tokens):
    return _layer(m, tokens) if tokens else None  # per pixel over C: timm permutes to use LayerNorm


BUILDERS = {
    "batch": _batch,
    "sync_batch": _batch,  # one process: BatchNorm
    "layer": _layer,
    "group1": lambda m, tokens: _group(m, tokens, groups=1) if not tokens else _layer(m, tokens),
    "group": _group,
    "instance": _instance,
    "cond_instance": _cond_instance,
    "rms": _rms,
    "layer2d": _layer2d,
}


def native(name: str, layer: nn.Module) -> nn.Module | None:
    """PyTorch's layer for what ``layer`` (normlab norm ``name``) computes, or None if there is none."""
    build = BUILDERS.get(name)
    if build is None:
        return None
    out = build(layer, layer.layout == "nlc")
    return None if out is None else out.train(layer.training)
