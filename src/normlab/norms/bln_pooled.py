"""Batch Layer Normalization with pooled statistics, a variant of the layer of Ziaee & Cano
(Ziaee & Cano, 2022, "Batch Layer Normalization, a new normalization layer for CNNs and RNNs");
the authors' own layer is ``bln``, the default BLN.

BLN normalizes x once with batch statistics and once with layer (feature) statistics and
mixes the two with a weight set by the inverse mini-batch size m:

    x_B = (x - mu_B) / sqrt(var_B + eps)          batch part, as BatchNorm
    x_L = (x - mu_L) / sqrt(var_L + eps)          layer part, as LayerNorm
    y   = gamma * ((1/m) * x_L + (1 - 1/m) * x_B) + beta

so a batch of one is pure LayerNorm and large batches approach BatchNorm.

- ``nchw``: batch part over (N, H, W) per channel, layer part over (C, H, W) per sample;
- ``nlc``:  batch part over (N, L) per channel, layer part over C per token.

At inference the batch part uses running estimates (updated as in BatchNorm, with the
unbiased variance) and the layer part the sample's own statistics, the authors' default
(``batch_moving_mean=batch_moving_var=True``, feature moving statistics off). The weight 1/m
at inference is that of the last training batch, kept in a buffer.

Deviations from the authors' layer (``bln`` is that layer, checked against their code):
their batch statistics are over N only (one per position and channel) and their feature
statistics over C only (one per position), where this layer pools (N, H, W) and (C, H, W);
their mix is divided by sqrt(C), a constant scale that gamma can learn but which changes the
start of training; their weights are 1/m - 1e-4 and 1 - 1/m - 1e-4, which sum to 1 - 2e-4 (not
a rescaling: at m = 1 the batch part gets -1e-4); their eps is 1e-3; their running averages
are one epoch's plain average, here BatchNorm's exponential one.

Implementation: the two parts from native kernels (BatchNorm's and GroupNorm's or LayerNorm's),
mixed with lerp. Fast path for large images (``fast/bln_pooled.py``): both parts' statistics from the
per-(sample, channel) moments in one pass, the mix one scale and shift per (sample, channel).

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: both parts, the
mix and the affine in fp32, the output rounded once to x's dtype; x's gradients summed in fp32
and rounded once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_statistics, per_channel, spatial_size
from normlab.norms.precision import upcast
from normlab.norms.running import batch_norm


class BatchLayerNormPooled(AffineNorm):
    axes = {
        "nchw": "(N, H, W) per channel, mixed with (C, H, W) per sample",
        "nlc": "(N, L) per channel, mixed with C per token",
    }
    batch_dependent = True

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.register_buffer("layer_weight", torch.tensor(1.0))  # 1/m of the last training batch

    def check(self, x: torch.Tensor) -> None:
        if self.layout == "nchw":
            check_statistics(
                x, self.num_channels * spatial_size(x, "nchw"), "BatchLayerNormPooled", "(C, H, W) per sample"
            )

    def mix_weight(self, x: torch.Tensor) -> torch.Tensor:
        """w = 1/m: in training the batch's, kept in a buffer for inference."""
        if self.training:
            self.layer_weight.fill_(1.0 / x.shape[0])
        return self.layer_weight

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        # Both parts from native kernels, each one fused pass over x. bf16/fp16 x as one fp32 copy: both
        # parts, the mix and gamma, beta in fp32, rounded to x's dtype once; x's two gradients added in fp32.
        xs = upcast(x)
        w = self.mix_weight(x)
        x_b = batch_norm(self, xs, None, None, self.momentum)
        if self.layout == "nlc":
            x_l = F.layer_norm(xs, (self.num_channels,), None, None, self.eps)
        else:
            x_l = F.group_norm(xs, 1, None, None, self.eps)
        y = torch.lerp(x_b, x_l, w.to(xs.dtype))  # (1 - w) x_b + w x_l
        if self.weight is not None:
            y = torch.addcmul(per_channel(self.bias, x, self.layout), y, per_channel(self.weight, x, self.layout))
        return y.to(x.dtype)
