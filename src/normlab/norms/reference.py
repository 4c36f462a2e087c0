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
            update_running(
                m,
                mu.movedim(channel_dim, 1).flatten(1).mean(0),
                per_instance.movedim(channel_dim, 1).flatten(1).mean(0),
            )
    else:
        mu = per_channel(m.running_mean, x, m.layout)
        var = per_channel(m.running_var, x, m.layout)
    return affine(standardize(x, mu, var, m.eps), m, m.layout)


def groups_of(m, x):
    """``x`` with its channels split into ``m.num_groups`` groups, and the axes of one group."""
    n, c, g = x.shape[0], m.num_channels, m.num_groups
    if m.layout == "nlc":
        return x.reshape(n, x.shape[1], g, c // g), (3,)  # (N, L, G, C/G)
    grouped = x.reshape(n, g, c // g, *x.shape[2:])  # (N, G, C/G, H, W)
    return grouped, tuple(range(2, grouped.dim()))


def group(m, x):
    grouped, dims = groups_of(m, x)
    mu = mean(grouped, dims)
    y = standardize(grouped, mu, variance(grouped, dims, mu), m.eps).reshape(x.shape)
    return affine(y, m, m.layout)


def rms(m, x):
    squares = x**2
    return affine(x / torch.sqrt(mean(squares, layer_axes(x, m.layout)) + m.eps), m, m.layout)


def bln_pooled(m, x):
    w = 1.0 / x.shape[0] if m.training else float(m.layer_weight)
    if m.training:
        m.layer_weight.fill_(w)
    y = w * layer_part(m, x, m.layout) + (1 - w) * batch_part(m, x, m.layout)
    return affine(y, m, m.layout)


def bln(m, x):
    """The authors' layer (helpers/bln_layer.py): batch moments over N, feature moments over C,
    weights 1/m - 1e-4 and 1 - 1/m - 1e-4, the mix divided by sqrt(C)."""
    channel = 1 if m.layout == "nchw" else 2
    if m.running_mean.numel() == 0:
        m.running_mean, m.running_var = torch.zeros(x.shape[1:], dtype=x.dtype), torch.ones(x.shape[1:], dtype=x.dtype)
    mu_f = mean(x, (channel,))
    x_f = standardize(x, mu_f, variance(x, (channel,), mu_f), m.eps)
    if m.training:
        w = 1.0 / x.shape[0]
        m.layer_weight.fill_(w)
        mu_b = mean(x, (0,))
        var_b = variance(x, (0,), mu_b)
        with torch.no_grad():
            share = m.momentum if m.momentum is not None else 1.0 / (int(m.num_batches_tracked) + 1)
            m.running_mean.mul_(1 - share).add_(share * mu_b[0].to(m.running_mean.dtype))
            unbiased = variance(x, (0,), mu_b, unbiased=True) if x.shape[0] > 1 else var_b
            m.running_var.mul_(1 - share).add_(share * unbiased[0].to(m.running_var.dtype))
            m.num_batches_tracked += 1
    else:
        w = float(m.layer_weight)
        mu_b, var_b = m.running_mean[None].to(x.dtype), m.running_var[None].to(x.dtype)
    x_b = standardize(x, mu_b, var_b, m.eps)
    y = ((w - 1e-4) * x_f + (1 - w - 1e-4) * x_b) / math.sqrt(m.num_channels)
    return affine(y, m, m.layout)


def none(m, x):
    return x


def ramp(step: float, start: int, end: int) -> float:
    return min(max((step - start) / max(end - start, 1), 0.0), 1.0)


def batch_renorm(m, x):
    if not m.training:
        return batch(m, x)  # BatchNorm's inference
    dims = batch_axes(x, m.layout)
    mu = mean(x, dims)
    sigma_b = torch.sqrt(variance(x, dims, mu) + m.eps)
    running_mu = per_channel(m.running_mean, x, m.layout).to(x.dtype)
    sigma = torch.sqrt(per_channel(m.running_var, x, m.layout).to(x.dtype) + m.eps)
    step = float(m.num_batches_tracked)
    r_max = 1 + (m.r_max - 1) * ramp(step, m.relax_start, m.r_max_step)
    d_max = m.d_max * ramp(step, m.relax_start, m.d_max_step)
    r = torch.clamp((sigma_b / sigma).detach(), 1 / r_max, r_max)
    d = torch.clamp(((mu - running_mu) / sigma).detach(), -d_max, d_max)
    update_running(m, mu.flatten(), variance(x, dims, mu, unbiased=True).flatten())  # also counts the step
    return affine((x - mu) / sigma_b * r + d, m, m.layout)


def ghost_batch(m, x):
    if not m.training:
        return batch(m, x)
    dims = batch_axes(x, m.layout)
    outputs, mixed_mean, mixed_var = [], 0, 0
    for part in x.split(m.virtual_batch):
        mu = mean(part, dims)
        outputs.append(standardize(part, mu, variance(part, dims, mu), m.eps))
        share = len(part) / len(x)  # running statistics: the size-weighted mean of the parts' statistics
        mixed_mean = mixed_mean + share * mu.flatten()
        mixed_var = mixed_var + share * variance(part, dims, mu, unbiased=True).flatten()
    update_running(m, mixed_mean, mixed_var)
    return affine(torch.cat(outputs), m, m.layout)


def frn(m, x):
    nu2 = mean(x**2, instance_axes(x, m.layout))
    eps = m.eps if m.eps_l is None else m.eps + per_channel(m.eps_l.abs(), x, m.layout)
    y = affine(x / torch.sqrt(nu2 + eps), m, m.layout)
    return y if m.tau is None else torch.maximum(y, per_channel(m.tau, x, m.layout))  # apply_act=False: no TLU


def evonorm_b0(m, x):
    if m.v1 is None:  # apply_act=False: the affine transform only
        return affine(x, m, m.layout)
    dims = instance_axes(x, m.layout)
    var_instance = variance(x, dims, mean(x, dims))
    if m.training:
        dims = batch_axes(x, m.layout)
        mu = mean(x, dims)
        var_batch = variance(x, dims, mu)
        update_running(m, mu.flatten(), variance(x, dims, mu, unbiased=True).flatten())
    else:
        var_batch = per_channel(m.running_var, x, m.layout).to(x.dtype)
    v1 = per_channel(m.v1, x, m.layout)
    den = torch.maximum(torch.sqrt(var_batch + m.eps), v1 * x + torch.sqrt(var_instance + m.eps))
    return affine(x / den, m, m.layout)


def evonorm_s0(m, x):
    if m.v1 is None:  # apply_act=False: the affine transform only
        return affine(x, m, m.layout)
    grouped, dims = groups_of(m, x)
    std = torch.sqrt(variance(grouped, dims, mean(grouped, dims)) + m.eps)
    numerator = x * torch.sigmoid(per_channel(m.v1, x, m.layout) * x)
    return affine((numerator.reshape(grouped.shape) / std).reshape(x.shape), m, m.layout)


def switchable(m, x):
    stats = {}
    for part, dims in (("in", instance_axes(x, m.layout)), ("ln", layer_axes(x, m.layout))):
        mu = mean(x, dims)
        stats[part] = (mu, variance(x, dims, mu))
    if m.training:
        dims = batch_axes(x, m.layout)
        mu = mean(x, dims)
        stats["bn"] = (mu, variance(x, dims, mu))
        update_running(m, mu.flatten(), variance(x, dims, mu, unbiased=True).flatten())
    else:
        stats["bn"] = (
            per_channel(m.running_mean, x, m.layout).to(x.dtype),
            per_channel(m.running_var, x, m.layout).to(x.dtype),
        )
    w_mean, w_var = torch.softmax(m.mean_weight, 0), torch.softmax(m.var_weight, 0)
    mu = sum(w * stats[part][0] for w, part in zip(w_mean, ("in", "ln", "bn")))
    var = sum(w * stats[part][1] for w, part in zip(w_var, ("in", "ln", "bn")))
    return affine(standardize(x, mu, var, m.eps), m, m.layout)


def layer2d(m, x):
    dims = (2,) if m.layout == "nlc" else (1,)  # the channels, at every position
    mu = mean(x, dims)
    return affine(standardize(x, mu, variance(x, dims, mu), m.eps), m, m.layout)


def batch_instance(m, x):
    if m.training:  # rho projected onto [0, 1] in place, then used as is (its gradient intact at 0 and 1)
        m.rho.data.clamp_(0.0, 1.0)
        rho = per_channel(m.rho, x, m.layout)
    else:
        rho = per_channel(m.rho.clamp(0.0, 1.0), x, m.layout)
    dims = instance_axes(x, m.layout)
    mu = mean(x, dims)
    x_instance = standardize(x, mu, variance(x, dims, mu), m.eps)
    return affine(rho * batch_part(m, x, m.layout) + (1 - rho) * x_instance, m, m.layout)


def cond_instance(m, x):
    dims = instance_axes(x, m.layout)
    mu = mean(x, dims)
    y = standardize(x, mu, variance(x, dims, mu), m.eps)
    return y * per_channel(m.style_weight[m.style], x, m.layout) + per_channel(m.style_bias[m.style], x, m.layout)


REFERENCE = {
    "batch": batch,
    "layer": layer,
    "instance": instance,
    "group": group,
    "rms": rms,
    "bln_pooled": bln_pooled,
    "bln": bln,
    "none": none,
    "batch_renorm": batch_renorm,
    "ghost_batch": ghost_batch,
    "frn": frn,
    "evonorm_b0": evonorm_b0,
    "evonorm_s0": evonorm_s0,
    "switchable": switchable,
    "layer2d": layer2d,
    "group1": group,
    "batch_instance": batch_instance,
    "cond_instance": cond_instance,
    "sync_batch": batch,  # on one process: BatchNorm over its batch
}
