"""Batch Renormalization (Ioffe, 2017, "Batch Renormalization: Towards Reducing Minibatch
Dependence in Batch-Normalized Models", Algorithm 1).

In training, x is normalized with the batch statistics and then corrected towards what the
running statistics would give:

    sigma_B = sqrt(var_B + eps),  sigma = sqrt(running_var + eps)
    r = stop_gradient(clip(sigma_B / sigma, 1 / r_max, r_max))
    d = stop_gradient(clip((mu_B - running_mean) / sigma, -d_max, d_max))
    y = gamma * ((x - mu_B) / sigma_B * r + d) + beta

Unclipped, the bracket equals (x - running_mean) / sigma, the inference-time normalization, so
training and inference agree; with r_max = 1 and d_max = 0 it is BatchNorm. r and d are
constants for backpropagation (detached), as the paper requires. Eval mode is BatchNorm's
inference with the running statistics (native kernel).

- ``nchw``: statistics over (N, H, W) per channel;
- ``nlc``:  over (N, L) per channel.

Warm-up (the schedule of the paper's experiments, Sec. 4, as knobs): r_max = 1 and d_max = 0 for the first
``relax_start`` training steps, then both relax linearly to reach ``r_max`` at step
``r_max_step`` and ``d_max`` at step ``d_max_step`` (the paper: 5k, 40k and 25k steps for
r_max = 3, d_max = 5). The step is the buffer ``num_batches_tracked``, as in BatchNorm, so
it is saved in checkpoints, and tools that save and restore it (``batch_statistics``,
``precise_bn``) do not advance the warm-up. While PreciseBN re-estimates the running
statistics, ``renorm = False`` makes the layer plain BatchNorm (r = 1, d = 0): its output must
not depend on the averages being rebuilt.

Deviation, on purpose: Algorithm 1 keeps a moving average of sigma_B; here the running
variance is kept as BatchNorm keeps it (unbiased, ``running.py``) and sigma is derived from
it, so eval mode is exactly BatchNorm's and PreciseBN re-estimates this layer like any other.

Implementation: the batch statistics from ``torch.var_mean``; r, d, gamma and beta folded into
one scale and shift per channel. Fast path for large inputs (``fast/batch_renorm.py``): the
statistics from per-(sample, channel) moments pooled over the samples, one pass each way.

Precision: in training, bf16 and fp16 inputs are normalized as an fp32 copy on both paths: the
statistics, r, d and the folded scale and shift in fp32, the output rounded once to x's dtype,
x's gradient summed in fp32 and rounded once. Eval mode's native kernel rounds only its output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.fast.moments import pool
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import batch_dims
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, update_running


def ramp(step: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """0 until ``start``, linear to 1 at ``end``; a tensor, so the step is never read on the host."""
    return ((step - start) / max(end - start, 1)).clamp(0.0, 1.0)


class BatchRenorm(AffineNorm):
    axes = {"nchw": "(N, H, W) per channel", "nlc": "(N, L) per channel"}
    batch_dependent = True

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        r_max: float = 3.0,
        d_max: float = 5.0,
        relax_start: int = 500,
        r_max_step: int = 4000,
        d_max_step: int = 2500,
        eps: float = 1e-5,
        momentum: float = 0.01,
        affine: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.r_max, self.d_max, self.momentum = r_max, d_max, momentum
        self.relax_start, self.r_max_step, self.d_max_step = relax_start, r_max_step, d_max_step
        add_running_stats(self, num_channels)
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        # False: r = 1 and d = 0, plain BatchNorm in training. PreciseBN sets it while it
        # re-estimates the running statistics, so that r and d do not read the averages it rebuilds.
        self.renorm = True

    def limits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_max, d_max) at the current step of the warm-up."""
        t = self.num_batches_tracked
        r_max = 1 + (self.r_max - 1) * ramp(t, self.relax_start, self.r_max_step)
        return r_max, self.d_max * ramp(t, self.relax_start, self.d_max_step)

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            rows = x.reshape(-1, x.shape[-1]) if self.layout == "nlc" else x
            y = F.batch_norm(rows, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
            return y.view_as(x)
        # bf16/fp16 x as one fp32 copy: x's two gradients (through the statistics and through the
        # scale) added in fp32 and rounded once, not each rounded to x's dtype. fp32 x: x.
        xs = upcast(x)
        var, mu = torch.var_mean(xs, batch_dims(x, self.layout), correction=0, keepdim=True)
        scale, shift = self.coefficients(x.numel() // self.num_channels, mu, var, self.weight, self.bias)
        return torch.addcmul(shift, xs, scale).to(x.dtype)

    def coefficients(self, count, mean, var, weight, bias):
        """One scale and shift per channel from the batch's moments (``count`` values per channel),
        or from each sample's (N, C, 1, 1), pooled here; updates the running statistics."""
        shape = (1, mean.shape[1]) + mean.shape[2:] if self.layout == "nchw" else mean.shape
        if mean.shape != shape:
            mean, var = pool(mean, var, (0,))  # the batch's statistics, from each sample's
        mu, var = mean.flatten(), var.flatten()  # (C,)
        std = torch.sqrt(var + self.eps)
        with torch.no_grad():
            sigma = torch.sqrt(upcast(self.running_var) + self.eps)  # a bf16 layer's, in fp32
            r_max, d_max = self.limits()
            r = (std / sigma).clamp(1 / r_max, r_max)
            d = ((mu - self.running_mean) / sigma).clamp(-d_max, d_max)
            if not self.renorm:
                r, d = torch.ones_like(r), torch.zeros_like(d)
            update_running(self, mu, var, count)  # after r and d used the old ones
            self.num_batches_tracked += 1
        # (x - mu) / std * r + d, then gamma and beta, folded into one scale and shift per channel.
        scale = r / std
        shift = d - mu * scale
        if weight is not None:
            weight = upcast(weight)  # bf16: its two gradients added in fp32 and rounded once
            scale, shift = weight * scale, torch.addcmul(bias, weight, shift)
        return scale.view(shape), shift.view(shape)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r_max={self.r_max}, d_max={self.d_max}"
