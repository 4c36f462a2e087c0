"""Root Mean Square Layer Normalization (Zhang & Sennrich, 2019, Eq. 4).

    y = gamma * x / sqrt(mean(x^2) + eps)   (+ beta if ``bias=True``)

LayerNorm without the centering: the same axes as ``LayerNorm``, no mean subtracted.

- ``nlc``:  mean of squares over C, per token;
- ``nchw``: mean of squares over (C, H, W), per sample.

The paper has a gain only; ``bias`` is off by default. Tokens use ``F.rms_norm`` with gamma;
images ``F.rms_norm`` over (C, H, W) and gamma per channel, or, when large, the mean of x^2
from the per-(sample, channel) moments and one scale per (sample, channel) (``fused.py``).

Precision: a bf16 or fp16 image is normalized as an fp32 copy, gamma (and beta) applied in fp32,
and the output rounded once (tests/norms/test_bf16.py); tokens rely on ``F.rms_norm`` for that.

Deviation: The paper defines RMSNorm for vectors (tokens); the image axes (C, H, W) are normlab's reading
of it, as LayerNorm's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.fused import normalize, use_fused
from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_input, instance_dims, per_channel
from normlab.norms.precision import upcast


class RMSNorm(AffineNorm):
    axes = {"nchw": "(C, H, W) per sample, uncentered", "nlc": "C per token, uncentered"}
    batch_dependent = False

    def __init__(
        self, num_channels: int, layout: str = "nchw", eps: float = 1e-6, affine: bool = True, bias: bool = False
    ):
        super().__init__(num_channels, layout, eps, affine, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "RMSNorm")
        if self.layout == "nlc":
            y = F.rms_norm(x, (self.num_channels,), self.weight, self.eps)
            return y if self.bias is None else y + self.bias
        if use_fused(x):
            # Large images: the mean of x^2 per sample from the per-(sample, channel) moments about
            # zero and one scale (and shift) per (sample, channel) (fused.py); rms_norm over (C, H, W) and
            # the per-channel gamma cost 5x native GroupNorm at 32x64x32x32 (measured 2026-11-23).
            return normalize(x, instance_dims(x, "nchw"), self._coeffs, self.weight, self.bias, center=False)
        # bf16/fp16 x as one fp32 copy: the normalized value and its per-channel gamma (and beta) in
        # fp32, rounded to x's dtype once, not once after rms_norm and again after the affine.
        y = F.rms_norm(upcast(x), x.shape[1:], None, self.eps)
        if self.weight is None:
            return y.to(x.dtype)
        w, b = per_channel(self.weight, x, self.layout), per_channel(self.bias, x, self.layout)
        return (y * w if b is None else torch.addcmul(b, y, w)).to(x.dtype)

    def _coeffs(self, mean, var, weight, bias):
        nu2 = (var + mean.square()).mean(1, keepdim=True)  # mean of x^2 over (C, H, W): (N, 1, 1, 1)
        scale = torch.rsqrt(nu2 + self.eps).expand(mean.shape)
        if weight is not None:
            scale = scale * per_channel(weight, mean, "nchw")
        return scale, per_channel(bias, mean, "nchw")
