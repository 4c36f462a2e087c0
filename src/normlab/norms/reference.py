"""Every norm written out as a student would, from its paper's formula.

Means and variances are plain sums divided by counts, one operation per line, in the dtype of
the input. The tests hold the factory's layers (native kernels) to these; ``explain_norm``
uses them to show why bf16 results drift: here every intermediate (mean, x - mean, its square,
the variance) is rounded to the input dtype, while native kernels accumulate in fp32.

Each function takes the layer (for its knobs, parameters and buffers) and the input, and
updates the layer's running statistics in training mode, as the layer itself would. Pass a
copy of the layer if the original must stay untouched.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from normlab.norms.layout import per_channel


def mean(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    count = math.prod(x.shape[d] for d in dims)
    return x.sum(dim=dims, keepdim=True) / count


def variance(x: torch.Tensor, dims: tuple[int, ...], mu: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    count = math.prod(x.shape[d] for d in dims)
    squares = (x - mu) ** 2
    return squares.sum(dim=dims, keepdim=True) / (count - 1 if unbiased else count)


def standardize(x, mu, var, eps):
    return (x - mu) / torch.sqrt(var + eps)


def affine(y: torch.Tensor, m: nn.Module, layout: str) -> torch.Tensor:
    if getattr(m, "weight", None) is not None:
        y = y * per_channel(m.weight, y, layout)
    if getattr(m, "bias", None) is not None:
        y = y + per_channel(m.bias, y, layout)
    return y


def batch_axes(x, layout):  # per channel, over everything else
    return (0, 1) if layout == "nlc" else (0,) + tuple(range(2, x.dim()))


def layer_axes(x, layout):  # per sample (nchw) or per token (nlc)
    return (2,) if layout == "nlc" else tuple(range(1, x.dim()))


def instance_axes(x, layout):  # per sample and channel
    return (1,) if layout == "nlc" else tuple(range(2, x.dim()))


@torch.no_grad()
def update_running(m: nn.Module, batch_mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
    """running = (1 - momentum) * running + momentum * batch; momentum=None is a plain average."""
    if getattr(m, "num_batches_tracked", None) is not None:
        m.num_batches_tracked += 1
    momentum = m.momentum if m.momentum is not None else 1.0 / float(m.num_batches_tracked)
    m.running_mean.mul_(1 - momentum).add_(momentum * batch_mean.to(m.running_mean.dtype))
    m.running_var.mul_(1 - momentum).add_(momentum * unbiased_var.to(m.running_var.dtype))


def batch_part(m: nn.Module, x: torch.Tensor, layout: str) -> torch.Tensor:
    dims = batch_axes(x, layout)
    if m.training or m.running_mean is None:
        mu = mean(x, dims)
        var = variance(x, dims, mu)
        if m.training and m.running_mean is not None:
            unbiased = variance(x, dims, mu, unbiased=True)
            update_running(m, mu.flatten(), unbiased.flatten())
    else:
        mu = per_channel(m.running_mean, x, layout).to(x.dtype)
        var = per_channel(m.running_var, x, layout).to(x.dtype)
    return standardize(x, mu, var, m.eps)


def layer_part(m: nn.Module, x: torch.Tensor, layout: str) -> torch.Tensor:
    dims = layer_axes(x, layout)
    mu = mean(x, dims)
    return standardize(x, mu, variance(x, dims, mu), m.eps)


def batch(m, x):
    return affine(batch_part(m, x, m.layout), m, m.layout)


def layer(m, x):
    return affine(layer_part(m, x, m.layout), m, m.layout)


def instance(m, x):
    dims = instance_axes(x, m.layout)
    if m.training or not m.track_running_stats:
        mu = mean(x, dims)
        var = variance(x, dims, mu)
        if m.training and m.track_running_stats:
            # PyTorch averages the per-instance statistics over the batch for the running estimate.
            per_instance = variance(x, dims, mu, unbiased=True)
            channel_dim = -1 if m.layout == "nlc" else 1
            update_running(m, mu.movedim(channel_dim, 1).flatten(1).mean(0),
                           per_instance.movedim(channel_dim, 1).flatten(1).mean(0))
    else:
        mu = per_channel(m.running_mean, x, m.layout)
        var = per_channel(m.running_var, x, m.layout)
    return affine(standardize(x, mu, var, m.eps), m, m.layout)


def group(m, x):
    n, c, g = x.shape[0], m.num_channels, m.num_groups
    if m.layout == "nlc":
        grouped = x.reshape(n, x.shape[1], g, c // g)  # (N, L, G, C/G)
        dims = (3,)
    else:
        grouped = x.reshape(n, g, c // g, *x.shape[2:])  # (N, G, C/G, H, W)
        dims = tuple(range(2, grouped.dim()))
    mu = mean(grouped, dims)
    y = standardize(grouped, mu, variance(grouped, dims, mu), m.eps).reshape(x.shape)
    return affine(y, m, m.layout)


def rms(m, x):
    squares = x**2
    return affine(x / torch.sqrt(mean(squares, layer_axes(x, m.layout)) + m.eps), m, m.layout)


def bln(m, x):
    w = 1.0 / x.shape[0] if m.training else float(m.layer_weight)
    if m.training:
        m.layer_weight.fill_(w)
    y = w * layer_part(m, x, m.layout) + (1 - w) * batch_part(m, x, m.layout)
    return affine(y, m, m.layout)


def none(m, x):
    return x


REFERENCE = {
    "batch": batch, "layer": layer, "instance": instance, "group": group,
    "rms": rms, "bln": bln, "none": none,
}
