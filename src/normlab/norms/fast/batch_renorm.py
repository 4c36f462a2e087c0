"""Batch Renorm's fast path in training, for large inputs: images' per-(sample, channel)
moments pooled over the samples, tokens' over the N*L rows; one pass over x and one back
(``normalize.py``), r, d and the affine on (C,) vectors (``BatchRenorm.coefficients``)."""

from __future__ import annotations

import functools

import torch

from normlab.norms.batch_renorm import BatchRenorm
from normlab.norms.fast import fast_path, use_fused
from normlab.norms.fast.normalize import normalize
from normlab.norms.layout import instance_dims


@fast_path(BatchRenorm)
def batch_renorm(layer: BatchRenorm, x: torch.Tensor) -> torch.Tensor | None:
    if not layer.training or not use_fused(x):  # eval: BatchNorm's native inference
        return None
    dims = instance_dims(x, "nchw") if layer.layout == "nchw" else (0, 1)
    coeffs = functools.partial(layer.coefficients, x.numel() // layer.num_channels)  # values per channel
    return normalize(x, dims, coeffs, layer.weight, layer.bias)
