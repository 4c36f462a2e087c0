"""FRN's fast path: nu^2 = mean(x^2) per block (the moments about zero, one read of x),
gamma x / sqrt(nu^2 + eps) + beta and the TLU's max in one pass, and one pass back
(``normalize.py``); through autograd the max alone cost more than the rest of the layer.
Without the TLU (``apply_act=False``) the floor is None: the same pass without the max."""

from __future__ import annotations

import torch

from normlab.norms.fast import fast_path, use_fused
from normlab.norms.fast.normalize import normalize
from normlab.norms.frn import FilterResponseNorm
from normlab.norms.layout import instance_dims, per_channel


@fast_path(FilterResponseNorm)
def frn(layer: FilterResponseNorm, x: torch.Tensor) -> torch.Tensor | None:
    if not use_fused(x):
        return None

    def coeffs(mean, var, weight, bias, eps_l):
        return layer.factors(var + mean.square(), weight, bias, eps_l)  # nu^2 = mean(x^2) = var + mean^2

    floor = per_channel(layer.tau, x, layer.layout)
    dims = instance_dims(x, layer.layout)
    return normalize(x, dims, coeffs, layer.weight, layer.bias, layer.eps_l, floor=floor, center=False)
