"""Batch Layer Normalization as its authors run it (Ziaee & Cano, 2022, "Batch Layer
Normalization, a new normalization layer for CNNs and RNNs"; their Keras layer
``bln_layer`` and callback ``bln_callback``, github.com/A2Amir/Batch-Layer-Normalization).

    x_B = (x - mu_B) / sqrt(var_B + eps)       over the batch axis N only
    x_F = (x - mu_F) / sqrt(var_F + eps)       over the channels only
    y   = gamma * ((1/m - 1e-4) x_F + (1 - 1/m - 1e-4) x_B) / sqrt(C) + beta

- ``nchw``: batch part over N, one mean/var per (c, h, w); feature part over C per (n, h, w);
- ``nlc``:  batch part over N per (l, c), the authors' RNN form (N, T, C); feature part over
  C per (n, l). A token sees the other sequences' tokens at its own position, never later ones;
  in eval a shorter sequence (sampling) takes the statistics of the first positions.

What differs from ``bln_pooled``, normlab's variant with statistics over (N, H, W) and (C, H, W):

- the two weights do not sum to one: their sum is 1 - 2e-4, and at m = 1 the batch part gets
  -1e-4 (the authors' shift of the weights, kept as they have it);
- the mix is divided by sqrt(C) (their sqrt(d_k)): at initialization (gamma = 1) the output
  has standard deviation about 1/sqrt(C), which gamma can undo only by learning it;
- eps = 1e-3 (their ``offset``); gamma and beta per channel.

Inference (their defaults, ``batch_moving_mean = batch_moving_var = True`` and the feature
moving statistics off): the batch part uses running estimates, one per position and channel,
and the feature part the sample's own statistics. The running estimates are the plain average
of the batch statistics over the current training epoch, the variance Bessel-corrected with
the batch size, restarted at every epoch (``start_epoch``, called by the ``EpochAverages``
callback). ``momentum`` set to a number: BatchNorm's exponential average instead.
``batch_moving=false``: the test batch's own batch statistics at inference.

m is the training batch size; the authors pass it to the constructor, here it is read from
each training batch and kept in a buffer for inference (the training loaders drop the last
partial batch, so both are the same number).

Deviations: before the first training batch the running estimates are mean 0 and variance 1
(BatchNorm's start; the authors' start at variance 0); their per-sample feature moving
statistics (shape (m, H, W, 1), tied to the sample's index in the batch) are not provided.
"""

from __future__ import annotations

import math

import torch

from normlab.errors import ConfigError
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import per_channel
from normlab.norms.precision import upcast

SHIFT = 1e-4  # the authors' shift of the two weights


def centered(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x - mean, the biased variance and the mean over ``dim``, in two passes: ``torch.var_mean``
    over a dim that is not the innermost is several times slower on a CPU (docs/performance.md),
    and x - mean is needed for the output anyway."""
    mu = x.mean(dim, keepdim=True)
    d = x - mu
    return d, d.square().mean(dim, keepdim=True), mu


class BatchLayerNorm(AffineNorm):
    axes = {
        "nchw": "N per (c, h, w), mixed with C per (n, h, w)",
        "nlc": "N per (l, c), mixed with C per (n, l)",
    }
    batch_dependent = True
    one_input_size = True  # statistics per position: training and eval at one size (config_check)
    mixes_tokens = False  # for tokens, the batch part is per position: no token sees a later one

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-3,
        momentum: float | None = None,
        batch_moving: bool = True,
        affine: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum, self.batch_moving = momentum, batch_moving
        # One statistic per position: the shape is known at the first forward (it grows then,
        # and from a checkpoint's shape when one is loaded first).
        self.register_buffer("running_mean", torch.zeros(0))
        self.register_buffer("running_var", torch.ones(0))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))  # in this epoch
        self.register_buffer("layer_weight", torch.tensor(1.0))  # 1/m of the training batches

    def start_epoch(self) -> None:
        """Restart the epoch's averages (the authors' ``reset_states`` at every epoch's start)."""
        self.num_batches_tracked.zero_()

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        channel = 1 if self.layout == "nchw" else -1
        xs = upcast(x)
        d_f, var_f, _ = centered(xs, channel)
        self._materialize(x)
        if self.training or not self.batch_moving:
            d_b, var_b, mu_b = centered(xs, 0)
        if self.training:
            self.layer_weight.fill_(1.0 / x.shape[0])
            self._update(mu_b, var_b, x.shape[0])
        if not self.training and self.batch_moving:
            # Tokens: a shorter sequence (sampling) takes the statistics of its first positions.
            rows = slice(None) if self.layout == "nchw" else slice(0, x.shape[1])
            var_b = self.running_var[rows].unsqueeze(0).to(xs.dtype)
            d_b = xs - self.running_mean[rows].unsqueeze(0).to(xs.dtype)
        w, root_c = self.layer_weight.to(xs.dtype), math.sqrt(self.num_channels)
        # y = ((w - shift) x_F + (1 - w - shift) x_B) / sqrt(C), with the weights and 1/sqrt(C) folded
        # into the two per-position factors, so that only two products of x's size remain.
        a_f = (w - SHIFT) / root_c * torch.rsqrt(var_f + self.eps)
        a_b = (1 - w - SHIFT) / root_c * torch.rsqrt(var_b + self.eps)
        y = torch.addcmul(d_f * a_f, d_b, a_b)
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, y, self.layout), y, per_channel(self.weight, y, self.layout))
        return y.to(x.dtype)

    def _materialize(self, x: torch.Tensor) -> None:
        shape = x.shape[1:]
        if self.running_mean.shape == shape:
            return
        if (
            self.layout == "nlc"
            and not self.training
            and self.running_mean.shape[1:] == shape[1:]
            and shape[0] <= self.running_mean.shape[0]
        ):
            return  # a shorter sequence in eval: the first positions' statistics
        if self.running_mean.numel() > 0:
            raise ConfigError(
                f"bln keeps its running statistics per position, of shape {tuple(self.running_mean.shape)}, "
                f"and got input of shape {tuple(x.shape)}. Fix: feed inputs of the training size, "
                f"or use norm=bln_pooled (statistics per channel)."
            )
        like = dict(device=self.running_mean.device, dtype=self.running_mean.dtype)
        self.running_mean = torch.zeros(shape, **like)
        self.running_var = torch.ones(shape, **like)

    @torch.no_grad()
    def _update(self, mu_b: torch.Tensor, var_b: torch.Tensor, n: int) -> None:
        # The epoch's plain average (momentum None), or BatchNorm's exponential one.
        if self.momentum is not None:
            share = self.momentum
        else:  # a tensor: the count is never read on the host
            share = 1.0 / (self.num_batches_tracked.to(self.running_mean.dtype) + 1)
        unbiased = var_b * (n / max(n - 1, 1))
        self.running_mean.lerp_(mu_b.squeeze(0).to(self.running_mean.dtype), share)
        self.running_var.lerp_(unbiased.squeeze(0).to(self.running_var.dtype), share)
        self.num_batches_tracked += 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("running_mean", "running_var"):  # a trained layer's shape, before copying into it
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", momentum={self.momentum}, batch_moving={self.batch_moving}"
