"""Root Mean Square Layer Normalization (Zhang & Sennrich, 2019, Eq. 4).

    y = gamma * x / sqrt(mean(x^2) + eps)   (+ beta if ``bias=True``)

LayerNorm without the centering: the same axes as ``LayerNorm``, no mean subtracted.

- ``nlc``:  mean of squares over C, per token;
- ``nchw``: mean of squares over (C, H, W), per sample.

The paper has a gain only; ``bias`` is off by default. Tokens use ``F.rms_norm`` with gamma;
images ``F.rms_norm`` over (C, H, W) and gamma per channel. Fast path for large images
(``fast/rms.py``): one scale per (sample, channel), from the per-(sample, channel) moments.

Precision: a bf16 or fp16 image is normalized as an fp32 copy, gamma (and beta) applied in fp32,
and the output rounded once (tests/norms/test_bf16.py); tokens rely on ``F.rms_norm`` for that.

Deviation: The paper defines RMSNorm for vectors (tokens); the image axes (C, H, W) are normlab's reading
of it, as LayerNorm's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import per_channel
from normlab.norms.precision import upcast


class RMSNorm(AffineNorm):
    axes = {"nchw": "(C, H, W) per sample, uncentered", "nlc": "C per token, uncentered"}
    batch_dependent = False

    def __init__(
        self, num_channels: int, layout: str = "nchw", eps: float = 1e-6, affine: bool = True, bias: bool = False
    ):
        super().__init__(num_channels, layout, eps, affine, bias)

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "nlc":
            y = F.rms_norm(x, (self.num_channels,), self.weight, self.eps)
            return y if self.bias is None else y + self.bias
        # bf16/fp16 x as one fp32 copy: the normalized value and its per-channel gamma (and beta) in
        # fp32, rounded to x's dtype once, not once after rms_norm and again after the affine.
        y = F.rms_norm(upcast(x), x.shape[1:], None, self.eps)
        if self.weight is None:
            return y.to(x.dtype)
        w, b = per_channel(self.weight, x, self.layout), per_channel(self.bias, x, self.layout)
        return (y * w if b is None else torch.addcmul(b, y, w)).to(x.dtype)
