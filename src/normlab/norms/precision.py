"""Statistics in at least fp32, whatever the activations' dtype.

Native norm kernels given bf16 or fp16 activations accumulate means and variances in fp32 and
round only the output. A layer written with tensor ops must do the same by hand: a bf16 mean
of inputs with an offset of 4 is off by up to 2**-6, and every normalized output inherits that
error (``scripts/explain_norm.py`` measures it). So the hand-written layers reduce an fp32 copy
of low-precision inputs, keep their per-channel factors in fp32, and round the output once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOW_PRECISION = (torch.float16, torch.bfloat16)


def upcast(x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` in fp32 if it is bf16/fp16 (a copy), else ``x`` itself (None: an absent parameter)."""
    return x.float() if x is not None and x.dtype in LOW_PRECISION else x


def layer_norm(x: torch.Tensor, size: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float):
    """``F.layer_norm`` over the last ``size`` values, a bf16/fp16 ``x`` (and a bf16 layer's gamma
    and beta) as one fp32 copy, the output rounded once to x's dtype. On the CPU the kernel given
    bf16 x sums gamma's gradient in bf16 and, in a bf16 layer, rounds the output twice
    (tests/norms/test_bf16.py); CUDA's autocast runs layer_norm in fp32 for the same reason."""
    return F.layer_norm(upcast(x), (size,), upcast(weight), upcast(bias), eps).to(x.dtype)
